// Tests for cli/ringctl.cc and cli/playground.cc: the ringctl binary run against a real
// ringd, checking what scripts depend on: exit codes, raw and --json output, and that
// playground starts, serves and cleans up after itself.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace ring::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// --- a small strict JSON reader, enough to prove that output parses ----------------------

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;

  // The field named `key` of an object; null if absent (a test then fails on its type).
  const Json& operator[](const std::string& key) const {
    static const Json kMissing;
    for (const auto& [k, v] : fields) {
      if (k == key) return v;
    }
    return kMissing;
  }
  bool Has(const std::string& key) const {
    for (const auto& f : fields) {
      if (f.first == key) return true;
    }
    return false;
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  // Parses exactly one value spanning the whole text (surrounding whitespace allowed).
  bool ParseAll(Json* out) {
    if (!Value(out)) return false;
    SkipSpace();
    return i_ == s_.size();
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool Value(Json* out) {
    SkipSpace();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return Object(out);
    if (c == '[') return Array(out);
    if (c == '"') {
      out->type = Json::Type::kString;
      return String(&out->string);
    }
    if (Literal("true")) return out->type = Json::Type::kBool, out->boolean = true, true;
    if (Literal("false")) return out->type = Json::Type::kBool, out->boolean = false, true;
    if (Literal("null")) return out->type = Json::Type::kNull, true;
    size_t start = i_;
    while (i_ < s_.size() && std::string_view("+-0123456789.eE").find(s_[i_]) != std::string_view::npos) ++i_;
    if (start == i_) return false;
    out->type = Json::Type::kNumber;
    out->number = std::stod(std::string(s_.substr(start, i_ - start)));
    return true;
  }
  bool Object(Json* out) {
    out->type = Json::Type::kObject;
    ++i_;
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
    for (;;) {
      SkipSpace();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !String(&key)) return false;
      SkipSpace();
      if (i_ >= s_.size() || s_[i_++] != ':') return false;
      Json v;
      if (!Value(&v)) return false;
      out->fields.emplace_back(std::move(key), std::move(v));
      SkipSpace();
      if (i_ >= s_.size()) return false;
      char c = s_[i_++];
      if (c == '}') return true;
      if (c != ',') return false;
    }
  }
  bool Array(Json* out) {
    out->type = Json::Type::kArray;
    ++i_;
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
    for (;;) {
      Json v;
      if (!Value(&v)) return false;
      out->items.push_back(std::move(v));
      SkipSpace();
      if (i_ >= s_.size()) return false;
      char c = s_[i_++];
      if (c == ']') return true;
      if (c != ',') return false;
    }
  }
  // Decodes \u00XX as the byte XX: common/json.h writes each byte that is not UTF-8 that
  // way, so this is the exact inverse for binary values.
  bool String(std::string* out) {
    ++i_;
    while (i_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // raw control characters are invalid JSON
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"': case '\\': case '/': out->push_back(e); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'u': {
          if (i_ + 4 > s_.size()) return false;
          unsigned code = std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16);
          i_ += 4;
          if (code > 0xFF) return false;  // never written by common/json.h
          out->push_back(static_cast<char>(code));
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// Requires `out` to be exactly one JSON object on one line, and returns it.
Json ParseOneObject(const std::string& out) {
  INFO("stdout: " << out);
  REQUIRE(!out.empty());
  REQUIRE(out.back() == '\n');
  REQUIRE(out.find('\n') == out.size() - 1);
  Json j;
  REQUIRE(JsonReader(out).ParseAll(&j));
  REQUIRE(j.type == Json::Type::kObject);
  return j;
}

// --- running ringctl --------------------------------------------------------------------

// Options for a node in `dir`. Spelled out because brace-initializing RingdOptions with
// only data_dir trips -Wmissing-field-initializers.
RingdOptions NodeIn(const TempDir& dir) {
  RingdOptions options;
  options.data_dir = dir.Sub("n1");
  return options;
}

std::string Show(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") + "\nstdout: " + r.out +
         "\nstderr: " + r.err;
}

CommandResult Ctl(const std::string& cluster, std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("ringctl"), "--cluster", cluster};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", 30s);
}

// Runs ringctl with `input` on stdin, fed from a file: RunCommand's stdin pipe does not
// reach EOF while the child itself inherits the pipe's write end, and `put KEY -` reads
// to EOF.
CommandResult CtlWithStdin(const TempDir& dir, const std::string& cluster, std::vector<std::string> args,
                           const std::string& input) {
  std::string path = dir.Sub("stdin.bin");
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(input.data(), static_cast<std::streamsize>(input.size()));
    REQUIRE(f.good());
  }
  std::vector<std::string> argv = {"/bin/sh", "-c", "f=$1; shift; exec \"$@\" < \"$f\"", "sh", path,
                                   Bin("ringctl"), "--cluster", cluster};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", 30s);
}

// A port that was free a moment ago: bind to port 0 and let the OS pick.

TEST_CASE("ringctl put then get round-trips a value", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));

  auto put = Ctl(node.address(), {"put", "greeting", "hello world"});
  INFO(Show(put));
  REQUIRE(put.exit_code == 0);
  CHECK(put.out == "OK\n");
  CHECK(put.err.empty());

  auto get = Ctl(node.address(), {"get", "greeting"});
  INFO(Show(get));
  REQUIRE(get.exit_code == 0);
  CHECK(get.out == "hello world\n");

  // Global flags may also follow the command, and an empty value is a value.
  auto empty = Ctl(node.address(), {"put", "blank", "", "--timeout-ms", "2000"});
  INFO(Show(empty));
  REQUIRE(empty.exit_code == 0);
  auto get_empty = Ctl(node.address(), {"get", "blank"});
  CHECK(get_empty.exit_code == 0);
  CHECK(get_empty.out == "\n");
}

TEST_CASE("ringctl get of a missing key exits 1 and says NotFound", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));

  auto r = Ctl(node.address(), {"get", "nope"});
  INFO(Show(r));
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("ringctl: NotFound") == 0);

  auto j = Ctl(node.address(), {"--json", "get", "nope"});
  INFO(Show(j));
  CHECK(j.exit_code == 1);
  Json o = ParseOneObject(j.out);
  CHECK(o["ok"].type == Json::Type::kBool);
  CHECK_FALSE(o["ok"].boolean);
  CHECK(o["code"].string == "NotFound");
  CHECK(o["key"].string == "nope");
  CHECK(o["found"].type == Json::Type::kBool);
  CHECK_FALSE(o["found"].boolean);
  CHECK(j.err.empty());
}

TEST_CASE("ringctl cas with a mismatched expected value exits 2 and shows the current value",
          "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  REQUIRE(Ctl(node.address(), {"put", "k", "apple"}).exit_code == 0);

  auto miss = Ctl(node.address(), {"cas", "k", "pear", "plum"});
  INFO(Show(miss));
  CHECK(miss.exit_code == 2);
  CHECK(miss.out.find("\"apple\"") != std::string::npos);

  auto miss_json = Ctl(node.address(), {"--json", "cas", "k", "pear", "plum"});
  INFO(Show(miss_json));
  CHECK(miss_json.exit_code == 2);
  Json o = ParseOneObject(miss_json.out);
  CHECK(o["ok"].boolean);
  CHECK(o["swapped"].type == Json::Type::kBool);
  CHECK_FALSE(o["swapped"].boolean);
  CHECK(o["current"].type == Json::Type::kString);
  CHECK(o["current"].string == "apple");
  CHECK(Ctl(node.address(), {"get", "k"}).out == "apple\n");  // nothing was written

  auto hit = Ctl(node.address(), {"--json", "cas", "k", "apple", "plum"});
  INFO(Show(hit));
  CHECK(hit.exit_code == 0);
  CHECK(ParseOneObject(hit.out)["swapped"].boolean);
  CHECK(Ctl(node.address(), {"get", "k"}).out == "plum\n");

  // A missing key does not match any expected value; current is then null.
  auto absent = Ctl(node.address(), {"--json", "cas", "ghost", "x", "y"});
  INFO(Show(absent));
  CHECK(absent.exit_code == 2);
  Json a = ParseOneObject(absent.out);
  CHECK(a.Has("current"));
  CHECK(a["current"].type == Json::Type::kNull);
}

TEST_CASE("ringctl cas --expect-absent writes only a key that does not exist", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));

  auto first = Ctl(node.address(), {"cas", "--expect-absent", "lock", "owner-1"});
  INFO(Show(first));
  CHECK(first.exit_code == 0);
  CHECK(first.out == "OK (swapped)\n");
  CHECK(Ctl(node.address(), {"get", "lock"}).out == "owner-1\n");

  auto second = Ctl(node.address(), {"--json", "cas", "--expect-absent", "lock", "owner-2"});
  INFO(Show(second));
  CHECK(second.exit_code == 2);
  Json o = ParseOneObject(second.out);
  CHECK_FALSE(o["swapped"].boolean);
  CHECK(o["current"].string == "owner-1");
  CHECK(Ctl(node.address(), {"get", "lock"}).out == "owner-1\n");
}

TEST_CASE("ringctl del reports whether the key existed and exits 0 either way", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  REQUIRE(Ctl(node.address(), {"put", "k", "v"}).exit_code == 0);

  auto first = Ctl(node.address(), {"--json", "del", "k"});
  INFO(Show(first));
  CHECK(first.exit_code == 0);
  Json o = ParseOneObject(first.out);
  CHECK(o["ok"].boolean);
  CHECK(o["existed"].type == Json::Type::kBool);
  CHECK(o["existed"].boolean);

  auto second = Ctl(node.address(), {"--json", "del", "k"});
  INFO(Show(second));
  CHECK(second.exit_code == 0);
  Json o2 = ParseOneObject(second.out);
  CHECK(o2["existed"].type == Json::Type::kBool);
  CHECK_FALSE(o2["existed"].boolean);

  auto human = Ctl(node.address(), {"del", "k"});
  CHECK(human.exit_code == 0);
  CHECK(human.out == "OK (the key did not exist)\n");
  CHECK(Ctl(node.address(), {"get", "k"}).exit_code == 1);
}

TEST_CASE("ringctl put - stores stdin byte for byte, NUL and non-UTF-8 bytes included",
          "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  std::string value("head\0mid\xff\xfe\x01\n\"quote\"\\tail\x7f", 27);
  REQUIRE(value.size() == 27);

  auto put = CtlWithStdin(dir, node.address(), {"put", "blob", "-"}, value);
  INFO(Show(put));
  REQUIRE(put.exit_code == 0);

  auto raw = Ctl(node.address(), {"get", "blob"});
  INFO(Show(raw));
  REQUIRE(raw.exit_code == 0);
  CHECK(raw.out == value + "\n");

  auto json = Ctl(node.address(), {"--json", "get", "blob"});
  INFO(Show(json));
  REQUIRE(json.exit_code == 0);
  Json o = ParseOneObject(json.out);
  CHECK(o["found"].boolean);
  CHECK(o["value"].string == value);

  // The largest allowed value also goes through stdin.
  std::string big(1 << 20, 'x');
  auto put_big = CtlWithStdin(dir, node.address(), {"--json", "put", "big", "-"}, big);
  INFO(Show(put_big));
  CHECK(put_big.exit_code == 0);
  CHECK(ParseOneObject(put_big.out)["bytes"].number == static_cast<double>(big.size()));
}

TEST_CASE("ringctl --json prints exactly one object for every command", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  const std::vector<std::vector<std::string>> commands = {
      {"put", "k", "v"}, {"get", "k"}, {"cas", "k", "v", "w"}, {"cas", "k", "v", "w"},
      {"del", "k"},      {"ping"},     {"status"},             {"get", "k"},
  };
  for (const auto& args : commands) {
    std::vector<std::string> argv = {"--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = Ctl(node.address(), argv);
    INFO(args.front() << ": " << Show(r));
    CHECK(r.exit_code >= 0);
    Json o = ParseOneObject(r.out);
    CHECK((o.Has("ok") || o.Has("nodes")));
  }
  auto put = ParseOneObject(Ctl(node.address(), {"--json", "put", "k", "v"}).out);
  CHECK(put["ok"].boolean);
  CHECK(put["key"].string == "k");
  auto get = ParseOneObject(Ctl(node.address(), {"--json", "get", "k"}).out);
  CHECK(get["ok"].boolean);
  CHECK(get["key"].string == "k");
  CHECK(get["found"].boolean);
  CHECK(get["value"].string == "v");
}

TEST_CASE("ringctl usage errors exit 64", "[integration][ringctl]") {
  // No node is needed: these fail before anything is sent.
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate"},
      {"get"},
      {"put", "k"},
      {"del"},
      {"cas", "k", "v"},                           // needs EXPECTED and NEW
      {"cas", "--expect-absent", "k", "e", "n"},   // one too many
      {"get", "k", "extra"},
      {"--no-such-flag", "get", "k"},
      {"--timeout-ms", "0", "ping"},
      {"--timeout-ms", "soon", "ping"},
      {"--cluster", "no-port-here", "ping"},
      {"--cluster", "127.0.0.1:99999", "ping"},
      {"playground", "--nodes", "0"},
      {"playground", "--nodes", "10"},
      {"playground", "--sync-policy", "sometimes"},
      {"playground", "--base-port", "65535", "--nodes", "2"},
      {"node"},
      {"node", "drain"},
      {"node", "drain", "four"},
      {"node", "drain", "0"},
      {"node", "remove", "-3"},
      {"node", "evict", "2"},
  };
  for (const auto& args : bad) {
    std::vector<std::string> argv = {Bin("ringctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCommand(argv, "", 10s);
    INFO(Show(r));
    CHECK(r.exit_code == 64);
    CHECK(r.err.find("ringctl: ") == 0);
  }
  // With --json, a usage error is still one object on stdout.
  auto j = RunCommand({Bin("ringctl"), "--json", "frobnicate"}, "", 10s);
  INFO(Show(j));
  CHECK(j.exit_code == 64);
  Json o = ParseOneObject(j.out);
  CHECK(o["code"].string == "UsageError");
  CHECK(o["error"].string.find("frobnicate") != std::string::npos);

  auto help = RunCommand({Bin("ringctl"), "--help"}, "", 10s);
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Exit codes") != std::string::npos);
  CHECK(help.out.find("65") != std::string::npos);
}

TEST_CASE("ringctl rejects an empty key, an oversized key and an oversized value with exit 65",
          "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));

  auto empty = Ctl(node.address(), {"get", ""});
  INFO(Show(empty));
  CHECK(empty.exit_code == 65);
  CHECK(empty.err.find("ringctl: InvalidArgument") == 0);

  std::string long_key(4097, 'k');
  auto long_put = Ctl(node.address(), {"--json", "put", long_key, "v"});
  INFO(Show(long_put));
  CHECK(long_put.exit_code == 65);
  CHECK(ParseOneObject(long_put.out)["code"].string == "InvalidArgument");
  CHECK(Ctl(node.address(), {"put", std::string(4096, 'k'), "v"}).exit_code == 0);  // the limit itself is fine

  auto big = CtlWithStdin(dir, node.address(), {"put", "big", "-"}, std::string((1 << 20) + 1, 'x'));
  INFO(Show(big));
  CHECK(big.exit_code == 65);
  CHECK(Ctl(node.address(), {"get", "big"}).exit_code == 1);
}

TEST_CASE("ringctl exits 69 within its timeout when the cluster is unreachable", "[integration][ringctl]") {
  for (const char* command : {"get", "ping", "status"}) {
    std::vector<std::string> args = {"--timeout-ms", "500", "--json", command};
    if (std::string(command) == "get") args.push_back("k");
    auto start = std::chrono::steady_clock::now();
    auto r = Ctl("127.0.0.1:1", args);
    auto took = std::chrono::steady_clock::now() - start;
    INFO(command << ": " << Show(r));
    CHECK(r.exit_code == 69);
    CHECK(took < 3s);
    Json o = ParseOneObject(r.out);
    CHECK_FALSE(o["ok"].boolean);
  }
  auto human = Ctl("127.0.0.1:1", {"--timeout-ms", "500", "put", "k", "v"});
  INFO(Show(human));
  CHECK(human.exit_code == 69);
  CHECK((human.err.find("ringctl: Unavailable: ") == 0 || human.err.find("ringctl: Timeout: ") == 0));
}

TEST_CASE("ringctl status describes each node and marks an unreachable one down", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));

  auto human = Ctl(node.address(), {"status"});
  INFO(Show(human));
  CHECK(human.exit_code == 0);
  CHECK(human.out.find("NODE") != std::string::npos);
  CHECK(human.out.find(node.address()) != std::string::npos);
  CHECK(human.out.find(" up ") != std::string::npos);
  CHECK(human.out.find("sync") != std::string::npos);

  auto json = Ctl(node.address(), {"--json", "status"});
  INFO(Show(json));
  CHECK(json.exit_code == 0);
  Json o = ParseOneObject(json.out);
  REQUIRE(o["nodes"].type == Json::Type::kArray);
  REQUIRE(o["nodes"].items.size() == 1);
  const Json& n = o["nodes"].items[0];
  CHECK(n["address"].string == node.address());
  CHECK(n["up"].boolean);
  CHECK(!n["node_id"].string.empty());
  CHECK(n["sync_policy"].string == "sync");
  CHECK(n["disk_ok"].boolean);
  CHECK(n["uptime_ms"].type == Json::Type::kNumber);
  // The node initialises its one-member cluster map shortly after it starts serving.
  Json map;
  for (int i = 0; i < 200 && map.type != Json::Type::kObject; ++i) {
    auto again = Ctl(node.address(), {"--json", "status"});
    Json obj = ParseOneObject(again.out);
    map = obj["cluster_map"];
    if (map.type != Json::Type::kObject) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(map.type == Json::Type::kObject);
  CHECK(map["version"].number >= 1);
  REQUIRE(map["members"].items.size() == 1);
  CHECK(map["members"].items[0]["address"].string == node.address());
  CHECK(map["members"].items[0]["state"].string == "up");
  CHECK(map["shards"].items.size() >= 1);
  CHECK(map["shards"].items[0]["leader"].string == node.address());
  CHECK(map["moves"].type == Json::Type::kArray);  // none in progress on one node
  CHECK(map["moves"].items.empty());
  CHECK(Ctl(node.address(), {"status"}).out.find("cluster map: version") != std::string::npos);

  // One node up and one down: both are listed and the exit code says something is wrong.
  auto mixed = Ctl(node.address() + ",127.0.0.1:1", {"--timeout-ms", "500", "--json", "status"});
  INFO(Show(mixed));
  CHECK(mixed.exit_code == 69);
  Json m = ParseOneObject(mixed.out);
  REQUIRE(m["nodes"].items.size() == 2);
  CHECK(m["nodes"].items[0]["up"].boolean);
  CHECK_FALSE(m["nodes"].items[1]["up"].boolean);
  CHECK(m["nodes"].items[1]["address"].string == "127.0.0.1:1");
  auto mixed_human = Ctl(node.address() + ",127.0.0.1:1", {"--timeout-ms", "500", "status"});
  CHECK(mixed_human.exit_code == 69);
  CHECK(mixed_human.out.find("down") != std::string::npos);
}

TEST_CASE("ringctl node drain and remove explain what they refuse", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  auto unknown = Ctl(node.address(), {"--json", "node", "drain", "7"});
  INFO(Show(unknown));
  CHECK(unknown.exit_code == 65);
  Json o = ParseOneObject(unknown.out);
  CHECK(o["code"].string == "InvalidArgument");
  CHECK(o["error"].string.find("not a member") != std::string::npos);
  // The only node holds every shard: removing it is refused, and nothing changes.
  auto remove = Ctl(node.address(), {"node", "remove", "1"});
  INFO(Show(remove));
  CHECK(remove.exit_code == 65);
  CHECK(remove.err.find("drain it first") != std::string::npos);
  // Draining it is accepted, but with nowhere to go its replicas stay (a bounded wait says so).
  auto drain = Ctl(node.address(), {"--timeout-ms", "1500", "node", "drain", "1", "--wait"});
  INFO(Show(drain));
  CHECK(drain.exit_code == 69);
  CHECK(drain.err.find("still holds") != std::string::npos);
  CHECK(Ctl(node.address(), {"node", "undrain", "1"}).exit_code == 0);
  CHECK(Ctl(node.address(), {"put", "k", "v"}).exit_code == 0);
}

TEST_CASE("ringctl moves pause and resume are recorded in the cluster map", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  auto paused = [&] {
    auto st = Ctl(node.address(), {"--json", "status"});
    Json o = ParseOneObject(st.out);
    return o["cluster_map"]["moves_paused"].boolean;
  };
  CHECK_FALSE(paused());
  auto pause = Ctl(node.address(), {"--json", "moves", "pause"});
  INFO(Show(pause));
  CHECK(pause.exit_code == 0);
  CHECK(ParseOneObject(pause.out)["moves_paused"].boolean);
  CHECK(Ctl(node.address(), {"moves", "pause"}).exit_code == 0);  // idempotent
  CHECK(paused());
  auto text = Ctl(node.address(), {"status"});
  CHECK(text.out.find("replica moves PAUSED") != std::string::npos);
  auto resume = Ctl(node.address(), {"moves", "resume"});
  INFO(Show(resume));
  CHECK(resume.exit_code == 0);
  CHECK(resume.out.find("resumed") != std::string::npos);
  CHECK_FALSE(paused());
  auto bad = Ctl(node.address(), {"moves", "stop"});
  CHECK(bad.exit_code == 64);
}

TEST_CASE("ringctl cluster init creates a cluster once on a node started with --join", "[integration][ringctl]") {
  TempDir dir;
  std::string address = "127.0.0.1:" + std::to_string(FreePort());
  Ringd node(RingdOptions{dir.Sub("data"), {"--listen", address, "--join", address}});
  // Waiting: data commands say why.
  auto early = Ctl(address, {"--timeout-ms", "1000", "put", "k", "v"});
  INFO(Show(early));
  CHECK(early.exit_code == 69);
  CHECK(early.err.find("not joined a cluster") != std::string::npos);
  // Bad parameters are usage errors; nothing is created.
  CHECK(Ctl(address, {"cluster", "init", "--shards", "0"}).exit_code == 64);
  CHECK(Ctl(address, {"cluster", "init", "--replication-factor", "8"}).exit_code == 64);
  CHECK(Ctl(address, {"cluster", "frobnicate"}).exit_code == 64);

  auto init = Ctl(address, {"--timeout-ms", "15000", "cluster", "init", "--shards", "4", "--replication-factor", "1"});
  INFO(Show(init));
  CHECK(init.exit_code == 0);
  CHECK(init.out.find("created cluster") != std::string::npos);
  auto again = Ctl(address, {"--json", "cluster", "init"});
  INFO(Show(again));
  CHECK(again.exit_code == 0);
  Json o = ParseOneObject(again.out);
  CHECK(o["already_initialized"].boolean);
  CHECK(o["node"].number == 1);
  CHECK(Ctl(address, {"--timeout-ms", "10000", "put", "k", "v"}).exit_code == 0);
  auto status = Ctl(address, {"--json", "status"});
  CHECK(ParseOneObject(status.out)["nodes"].items.at(0)["shard_count"].number == 4);

  // A restart keeps the cluster: the node is member 1 again and still serves the key.
  REQUIRE(node.Stop() == 0);
  node.Restart();
  auto get = Ctl(address, {"--timeout-ms", "10000", "get", "k"});
  INFO(Show(get));
  CHECK(get.exit_code == 0);
  CHECK(get.out == "v\n");
  CHECK(Ctl(address, {"--json", "cluster", "init"}).out.find("\"already_initialized\":true") != std::string::npos);
}

TEST_CASE("ringctl shard split halves a shard online; bad ids are refused", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  CHECK(Ctl(node.address(), {"--timeout-ms", "10000", "put", "k", "v"}).exit_code == 0);
  auto before = ParseOneObject(Ctl(node.address(), {"--json", "shard", "locate", "k"}).out);
  const double shards = before["shard_count"].number;
  CHECK(Ctl(node.address(), {"shard", "split"}).exit_code == 64);
  CHECK(Ctl(node.address(), {"shard", "split", "x"}).exit_code == 64);
  auto unknown = Ctl(node.address(), {"shard", "split", "999"});
  INFO(Show(unknown));
  CHECK(unknown.exit_code == 65);
  CHECK(unknown.err.find("does not exist") != std::string::npos);
  auto split = Ctl(node.address(), {"--json", "shard", "split", std::to_string(static_cast<int>(before["shard"].number))});
  INFO(Show(split));
  CHECK(split.exit_code == 0);
  auto after = ParseOneObject(Ctl(node.address(), {"--json", "shard", "locate", "k"}).out);
  CHECK(after["shard_count"].number == shards + 1);
  auto get = Ctl(node.address(), {"--timeout-ms", "10000", "get", "k"});
  CHECK(get.exit_code == 0);
  CHECK(get.out == "v\n");
}

TEST_CASE("ringctl ping reports OK from a serving node", "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  auto r = Ctl(node.address(), {"ping"});
  INFO(Show(r));
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("OK", 0) == 0);
}

// --- playground -------------------------------------------------------------------------

// Waits (bounded) until the playground's log shows `marker`; fails if it exits first.
std::string AwaitLog(Process& p, const std::string& marker) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    std::string log = p.Log();
    if (log.find(marker) != std::string::npos) return log;
    if (!p.running()) FAIL("playground exited before printing \"" << marker << "\":\n" << log);
    if (std::chrono::steady_clock::now() > deadline) FAIL("playground did not print \"" << marker << "\":\n" << log);
    std::this_thread::sleep_for(20ms);
  }
}

std::string LineValue(const std::string& log, const std::string& prefix) {
  auto at = log.find(prefix);
  REQUIRE(at != std::string::npos);
  at += prefix.size();
  return log.substr(at, log.find('\n', at) - at);
}

TEST_CASE("ringctl playground serves a node until SIGINT, then removes its directory",
          "[integration][ringctl][playground]") {
  TempDir tmp;
  std::string dir = tmp.Sub("pg");
  int port = FreePort();
  int metrics_port = FreePort();
  Process pg({Bin("ringctl"), "playground", "--nodes", "1", "--dir", dir, "--base-port", std::to_string(port),
              "--metrics-base-port", std::to_string(metrics_port)},
             tmp.Sub("playground.log"));
  std::string log = AwaitLog(pg, "Press Ctrl-C");
  INFO(log);
  std::string cluster = LineValue(log, "Cluster: ");
  CHECK(cluster == "127.0.0.1:" + std::to_string(port));
  CHECK(log.find("ringbench") != std::string::npos);
  CHECK(log.find("curl http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics") != std::string::npos);
  CHECK(fs::exists(dir + "/node-1.log"));

  CHECK(Ctl(cluster, {"put", "hello", "playground"}).exit_code == 0);
  auto get = Ctl(cluster, {"get", "hello"});
  CHECK(get.exit_code == 0);
  CHECK(get.out == "playground\n");
  CHECK(HttpGet("127.0.0.1:" + std::to_string(metrics_port), "/metrics").first == 200);

  pg.Signal(SIGINT);
  CHECK(pg.Wait(20s) == 0);
  INFO(pg.Log());
  CHECK_FALSE(fs::exists(dir));
  CHECK(Ctl(cluster, {"--timeout-ms", "300", "ping"}).exit_code == 69);  // the node is gone
}

TEST_CASE("a node started by hand with ringd --join joins the playground's cluster", "[integration][ringctl][playground]") {
  TempDir tmp;
  int port = FreePort();
  Process pg({Bin("ringctl"), "playground", "--nodes", "3", "--dir", tmp.Sub("pg"), "--base-port", std::to_string(port),
              "--metrics-base-port", "0"},
             tmp.Sub("playground.log"));
  std::string log = AwaitLog(pg, "Press Ctrl-C");
  INFO(log);
  CHECK(log.find("--join 127.0.0.1:" + std::to_string(port)) != std::string::npos);  // it says how
  std::string cluster = LineValue(log, "Cluster: ");
  std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  Ringd extra(RingdOptions{tmp.Sub("n4"), {"--listen", addr, "--join", "127.0.0.1:" + std::to_string(port)}});
  // It becomes member 4, up, and takes replicas; the playground's map says so.
  Json map;
  bool joined = false;
  for (int i = 0; i < 300 && !joined; ++i) {
    map = ParseOneObject(Ctl(cluster, {"--json", "status"}).out)["cluster_map"];
    size_t up = 0, on4 = 0;
    for (const auto& m : map["members"].items) up += m["state"].string == "up";
    for (const auto& sh : map["shards"].items) {
      for (const auto& v : sh["voters"].items) on4 += v.number == 4;
    }
    joined = up == 4 && on4 > 0;
    if (!joined) std::this_thread::sleep_for(100ms);
  }
  CHECK(joined);
  CHECK(Ctl(addr, {"--timeout-ms", "10000", "put", "via-4", "x"}).exit_code == 0);
  CHECK(Ctl(cluster, {"get", "via-4"}).out == "x\n");
  pg.Signal(SIGINT);
  CHECK(pg.Wait(30s) == 0);
}

TEST_CASE("ringctl playground --keep leaves its directory and stops its nodes on SIGTERM",
          "[integration][ringctl][playground]") {
  TempDir tmp;
  std::string dir = tmp.Sub("pg");
  int port = FreePort();
  Process pg({Bin("ringctl"), "--json", "playground", "--dir", dir, "--base-port", std::to_string(port),
              "--metrics-base-port", "0", "--keep", "--sync-policy", "async"},
             tmp.Sub("playground.log"));
  std::string log = AwaitLog(pg, "\"cluster\"");
  INFO(log);
  Json o = ParseOneObject(log.substr(log.find('{'), log.find('\n', log.find('{')) - log.find('{') + 1));
  CHECK(o["ok"].boolean);
  REQUIRE(o["nodes"].items.size() == 1);
  const Json& node = o["nodes"].items[0];
  CHECK(node["metrics"].type == Json::Type::kNull);
  auto pid = static_cast<pid_t>(node["pid"].number);
  REQUIRE(pid > 0);

  auto status = Ctl(o["cluster"].string, {"--json", "status"});
  INFO(Show(status));
  CHECK(ParseOneObject(status.out)["nodes"].items[0]["sync_policy"].string == "async");

  pg.Signal(SIGTERM);
  CHECK(pg.Wait(20s) == 0);
  CHECK(fs::exists(dir + "/node-1"));
  CHECK(fs::exists(dir + "/node-1.log"));
  CHECK(kill(pid, 0) == -1);  // the node was stopped and reaped, not orphaned
  CHECK(errno == ESRCH);
}

TEST_CASE("ringctl playground reports a node that dies and exits non-zero", "[integration][ringctl][playground]") {
  TempDir tmp;
  Process pg({Bin("ringctl"), "--json", "playground", "--dir", tmp.Sub("pg"), "--base-port",
              std::to_string(FreePort()), "--metrics-base-port", "0"},
             tmp.Sub("playground.log"));
  std::string log = AwaitLog(pg, "\"cluster\"");
  Json o = ParseOneObject(log.substr(log.find('{'), log.find('\n', log.find('{')) - log.find('{') + 1));
  auto pid = static_cast<pid_t>(o["nodes"].items[0]["pid"].number);
  REQUIRE(pid > 0);
  REQUIRE(kill(pid, SIGKILL) == 0);
  CHECK(pg.Wait(20s) == 70);
  std::string after = pg.Log();
  INFO(after);
  CHECK(after.find("node-1") != std::string::npos);
  CHECK(after.find("unexpectedly") != std::string::npos);
}

TEST_CASE("ringctl playground names a port that is already in use", "[integration][ringctl][playground]") {
  // Hold a listening socket on the port the playground wants.
  uint16_t bound = 0;
  int fd = BindLoopback(&bound);
  REQUIRE(listen(fd, 1) == 0);
  std::string port = std::to_string(bound);

  TempDir tmp;
  auto r = RunCommand({Bin("ringctl"), "playground", "--dir", tmp.Sub("pg"), "--base-port", port,
                       "--metrics-base-port", "0"},
                      "", 20s);
  close(fd);
  INFO(Show(r));
  CHECK(r.exit_code == 70);
  CHECK(r.err.find("port " + port) != std::string::npos);
  CHECK(r.err.find("in use") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.Sub("pg")));  // nothing was created
}


// --- ringbench ---------------------------------------------------------------------------

CommandResult Bench(const std::string& cluster, std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("ringbench"), "--cluster", cluster, "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", 60s);
}

TEST_CASE("ringbench loads and runs with batch and window pipelining, and refuses bad options",
          "[integration][ringctl]") {
  TempDir dir;
  Ringd node(NodeIn(dir));
  for (const char* style : {"batch", "window"}) {
    INFO(style);
    // 7 clients x pipeline 3 over 500 keys: the load's last batches are partial, so a
    // batch whose slots run out of keys must still end (the phase would hang otherwise).
    auto r = Bench(node.address(), {"--workload", "A", "--keys", "500", "--load", "--clients", "7", "--pipeline",
                                    "3", "--pipeline-style", style, "--duration", "1"});
    INFO(Show(r));
    REQUIRE(r.exit_code == 0);
    Json o = ParseOneObject(r.out);
    CHECK(o["pipeline_style"].string == style);
    CHECK(o["load"]["ops"].number == 500);
    CHECK(o["load"]["errors"].number == 0);
    CHECK(o["run"]["ops"].number > 0);
    CHECK(o["run"]["errors"].number == 0);
    CHECK(o["run"]["abandoned"].number == 0);
  }
  auto bad = RunCommand({Bin("ringbench"), "--cluster", node.address(), "--pipeline-style", "sliding"}, "", 30s);
  INFO(Show(bad));
  CHECK(bad.exit_code == 64);
  CHECK(bad.err.find("--pipeline-style") != std::string::npos);
}

}  // namespace
}  // namespace ring::test
