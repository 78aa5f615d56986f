#include "server/config.h"

#include <catch2/catch.hpp>

namespace ring::server {
namespace {

ParsedCommandLine Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ringd");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("defaults are usable without any flag", "[config]") {
  auto p = Parse({});
  REQUIRE(p.run);
  CHECK(p.config.listen.ToString() == "127.0.0.1:7001");
  CHECK(p.config.sync_policy == SyncPolicy::kSync);
  CHECK(p.config.node_id.empty());  // the server names itself after its bound address
  CHECK(p.config.shard_count == 64);
}

TEST_CASE("flags set every setting and a repeated flag takes its last value", "[config]") {
  auto p = Parse({"--listen", "0.0.0.0:8000", "--metrics-listen", "off", "--data-dir", "/d", "--sync-policy",
                  "async", "--max-connections", "5", "--idle-timeout-s", "0", "--shard-count", "7",
                  "--shard-count", "9", "--log-level", "debug", "--node-id", "n1"});
  REQUIRE(p.run);
  CHECK(p.config.listen.ToString() == "0.0.0.0:8000");
  CHECK_FALSE(p.config.metrics_enabled);
  CHECK(p.config.data_dir == "/d");
  CHECK(p.config.sync_policy == SyncPolicy::kAsync);
  CHECK(p.config.max_connections == 5);
  CHECK(p.config.idle_timeout_s == 0);
  CHECK(p.config.shard_count == 9);
  CHECK(p.config.node_id == "n1");
}

TEST_CASE("TOML settings load and unknown keys, wrong types and ranges are rejected with a line", "[config]") {
  Config c;
  REQUIRE(ApplyToml("listen = \"127.0.0.1:9\"\nsync_policy = \"async\"\nreserve_disk_mb = 0\n", "f.toml", &c).ok());
  CHECK(c.listen.port == 9);
  CHECK(c.sync_policy == SyncPolicy::kAsync);
  CHECK(c.reserve_disk_mb == 0);

  Status s = ApplyToml("\n\nbogus = 1\n", "f.toml", &c);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "f.toml:3: unknown setting \"bogus\"");
  s = ApplyToml("max_connections = \"10\"", "f.toml", &c);
  CHECK(s.message() == "f.toml:1: max_connections must be an integer");
  s = ApplyToml("shard_count = 0", "f.toml", &c);
  CHECK(s.message().find("shard_count must be from 1 to 65536, not 0") != std::string::npos);
  s = ApplyToml("listen = \"nohost\"", "f.toml", &c);
  CHECK(s.message().find("f.toml:1: bad address") != std::string::npos);
  s = ApplyToml("log_level = \"loud\"", "f.toml", &c);
  CHECK(s.message().find("log_level must be one of") != std::string::npos);
  s = ApplyToml("this is = not toml [", "f.toml", &c);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().rfind("f.toml:1:", 0) == 0);
}

TEST_CASE("bad flags exit non-zero with a message naming the flag", "[config]") {
  auto p = Parse({"--listen", "x"});
  CHECK_FALSE(p.run);
  CHECK(p.exit_code == 2);
  CHECK(p.output.find("--listen") != std::string::npos);
  p = Parse({"--max-connections", "0"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("--max-connections: max_connections must be from 1") != std::string::npos);
  p = Parse({"--max-connections", "-3"});
  CHECK_FALSE(p.run);
  p = Parse({"--listen", "127.0.0.1:7001", "--metrics-listen", "127.0.0.1:7001"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("must differ") != std::string::npos);
  p = Parse({"--help"});
  CHECK_FALSE(p.run);
  CHECK(p.exit_code == 0);
  CHECK(p.output.find("--sync-policy") != std::string::npos);
}


TEST_CASE("join takes seeds from a flag or the file, and is refused with peers or an unreachable address", "[config]") {
  auto p = Parse({"--listen", "10.0.0.5:7001", "--join", "10.0.0.1:7001,10.0.0.2:7001"});
  REQUIRE(p.run);
  REQUIRE(p.config.join.size() == 2);
  CHECK(p.config.join[1].ToString() == "10.0.0.2:7001");

  Config c;
  REQUIRE(ApplyToml("join = [\"10.0.0.1:7001\"]\nlisten = \"10.0.0.5:7001\"\n", "f.toml", &c).ok());
  CHECK(c.join.size() == 1);
  CHECK(ApplyToml("join = [7001]\n", "f.toml", &c).message().find("join must be a list") != std::string::npos);

  p = Parse({"--listen", "10.0.0.5:7001", "--join", "10.0.0.1:7001", "--peers", "10.0.0.5:7001"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("not both") != std::string::npos);
  p = Parse({"--listen", "0.0.0.0:7001", "--join", "10.0.0.1:7001"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("set advertise") != std::string::npos);
  p = Parse({"--listen", "0.0.0.0:7001", "--advertise", "10.0.0.5:7001", "--join", "10.0.0.1:7001"});
  CHECK(p.run);
  p = Parse({"--listen", "10.0.0.5:0", "--join", "10.0.0.1:7001"});
  CHECK_FALSE(p.run);
  p = Parse({"--listen", "10.0.0.5:7001", "--join", "10.0.0.1"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("--join") != std::string::npos);
}

TEST_CASE("failure timeouts are settings, and re-replication may not come before down", "[config]") {
  auto p = Parse({"--down-after-s", "3", "--rereplicate-after-s", "30"});
  REQUIRE(p.run);
  CHECK(p.config.down_after_s == 3);
  CHECK(p.config.rereplicate_after_s == 30);
  p = Parse({"--down-after-s", "30", "--rereplicate-after-s", "3"});
  CHECK_FALSE(p.run);
  CHECK(p.output.find("must not be below down_after_s") != std::string::npos);
  p = Parse({"--down-after-s", "0"});
  CHECK_FALSE(p.run);
}

}  // namespace
}  // namespace ring::server
