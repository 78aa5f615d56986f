// Real ringd processes on loopback, driven through libring and through raw sockets.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/keyspace.h"
#include "harness.h"
#include "integration/wire_util.h"
#include "ring/client.h"

namespace ring::test {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Client> Connect(const std::string& address, std::chrono::milliseconds timeout = 5000ms) {
  ClientOptions o;
  o.seeds = {address};
  o.default_timeout = timeout;
  std::unique_ptr<Client> c;
  REQUIRE(Client::Open(o, &c).ok());
  return c;
}

// The node still serves a fresh client: the check after every hostile input.
void RequireServes(const std::string& address) {
  auto c = Connect(address);
  REQUIRE(c->Put("still-alive", "yes").ok());
  std::string v;
  REQUIRE(c->Get("still-alive", &v).ok());
  REQUIRE(v == "yes");
}

TEST_CASE("every operation round-trips through a real node", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = Connect(node.address());

  REQUIRE(c->Ping().ok());
  REQUIRE(c->Put("k1", "v1").ok());
  std::string v;
  REQUIRE(c->Get("k1", &v).ok());
  CHECK(v == "v1");
  CHECK(c->Get("missing", &v).IsNotFound());

  // Binary and empty values are values.
  std::string binary("a\0b\xff", 4);
  REQUIRE(c->Put("bin", binary).ok());
  REQUIRE(c->Get("bin", &v).ok());
  CHECK(v == binary);
  REQUIRE(c->Put("empty", "").ok());
  REQUIRE(c->Get("empty", &v).ok());
  CHECK(v.empty());

  bool existed = false;
  REQUIRE(c->Delete("k1", &existed).ok());
  CHECK(existed);
  REQUIRE(c->Delete("k1", &existed).ok());
  CHECK_FALSE(existed);
  CHECK(c->Get("k1", &v).IsNotFound());

  CasResult cas;
  REQUIRE(c->CompareAndSet("c", std::nullopt, "1", &cas).ok());
  CHECK(cas.swapped);
  REQUIRE(c->CompareAndSet("c", std::nullopt, "2", &cas).ok());
  CHECK_FALSE(cas.swapped);
  CHECK(cas.current == std::optional<std::string>("1"));
  REQUIRE(c->CompareAndSet("c", std::string_view("0"), "2", &cas).ok());
  CHECK_FALSE(cas.swapped);
  REQUIRE(c->CompareAndSet("c", std::string_view("1"), "2", &cas).ok());
  CHECK(cas.swapped);
  REQUIRE(c->CompareAndSet("gone", std::string_view("x"), "y", &cas).ok());
  CHECK_FALSE(cas.swapped);
  CHECK_FALSE(cas.current.has_value());

  // A batch put is atomic, so its keys must share a shard: a {tag} makes them.
  REQUIRE(c->BatchPut({{"{b}1", "x"}, {"{b}2", "y"}, {"{b}3", "z"}}).ok());
  Status cross = c->BatchPut({{"b1", "x"}, {"b2", "y"}});
  CHECK(cross.IsInvalidArgument());
  CHECK(cross.message().find("use a {tag}") != std::string::npos);
  std::vector<std::optional<std::string>> vals;
  REQUIRE(c->BatchGet({"{b}1", "nope", "{b}2", "{b}3"}, &vals).ok());
  REQUIRE(vals.size() == 4);
  CHECK(vals[0] == std::optional<std::string>("x"));
  CHECK_FALSE(vals[1].has_value());
  CHECK(vals[2] == std::optional<std::string>("y"));
  CHECK(vals[3] == std::optional<std::string>("z"));

  NodeInfo info;
  REQUIRE(c->NodeStatus("", &info).ok());
  CHECK(info.listen == node.address());
  CHECK(info.sync_policy == "sync");
  CHECK(info.shard_count == 64);
  CHECK(info.disk_ok);
}

TEST_CASE("limits are enforced with errors that name the limit", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = Connect(node.address());
  Status s = c->Put("", "v");
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("empty") != std::string::npos);
  s = c->Put(std::string(4097, 'k'), "v");
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("4096") != std::string::npos);
  s = c->Put("k", std::string((1 << 20) + 1, 'v'));
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("1048576") != std::string::npos);
  REQUIRE(c->Put("k", std::string(1 << 20, 'v')).ok());  // exactly at the limit

  // The same limits hold for a client that skips libring's local checks.
  pb::Request big = PutReq(7, "k", std::string((1 << 20) + 1, 'v'));
  auto replies = ParseReplies(SendRaw(node.address(), Frame(big), 5s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].id() == 7);
  CHECK(replies[0].code() == pb::INVALID_ARGUMENT);

  std::vector<std::string> keys(10001, "k");
  std::vector<std::optional<std::string>> vals;
  CHECK(c->BatchGet(keys, &vals).IsInvalidArgument());
  pb::Request bg;
  bg.set_id(9);
  for (int i = 0; i < 10001; ++i) bg.mutable_batch_get()->add_keys("k");
  replies = ParseReplies(SendRaw(node.address(), Frame(bg), 5s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
  CHECK(replies[0].message().find("10000") != std::string::npos);

  // A batch put that fits a frame but is too large to replicate is refused whole by the
  // node (7 MiB + ~1 MB: over the replicated write limit, under the frame limit).
  std::vector<std::pair<std::string, std::string>> huge;
  for (int i = 0; i < 7; ++i) huge.emplace_back("{h}" + std::to_string(i), std::string(1 << 20, 'h'));
  huge.emplace_back("{h}7", std::string(1010000, 'h'));
  s = c->BatchPut(huge);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("replicated write limit") != std::string::npos);
  std::string h;
  CHECK(c->Get("{h}0", &h).IsNotFound());

  // A BatchGet whose reply could not fit in one frame is refused, not truncated.
  std::vector<std::pair<std::string, std::string>> pairs;
  // (One shard, through a tag: the client splits a batch by shard, and a part this big
  // is still refused.)
  for (int i = 0; i < 5; ++i) pairs.emplace_back("{big}" + std::to_string(i), std::string(1 << 20, 'x'));
  for (auto& p : pairs) REQUIRE(c->Put(p.first, p.second).ok());
  std::vector<std::string> nine;
  for (int i = 0; i < 9; ++i) nine.push_back("{big}" + std::to_string(i % 5));
  s = c->BatchGet(nine, &vals);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("split the batch") != std::string::npos);

  // Wrong shard: a request routed to a shard that does not own its key.
  ShardId owner = ShardRanges::Uniform(64).ShardOfKey("k");
  pb::Request ws = GetReq(11, "k");
  ws.set_shard(1 + (owner + 1) % 64);
  pb::Request rs = GetReq(12, "k");
  rs.set_shard(1 + owner);
  replies = ParseReplies(SendRaw(node.address(), Frame(ws) + Frame(rs), 5s, Replies(2)).bytes);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].code() == pb::WRONG_SHARD);
  CHECK(replies[0].message().find("belongs to shard " + std::to_string(owner)) != std::string::npos);
  // The refusal says which map the node routes by, so the client can fetch it.
  CHECK(replies[0].redirect().map_version() >= 1);
  CHECK(replies[0].redirect().shard_count() == 64);
  CHECK(replies[1].code() == pb::OK);
  // Hostile routing fields: a shard far out of range, a map version from the future; the
  // mutation and the batch read are refused alike, and nothing is written.
  pb::Request far = PutReq(13, "k-far", "v");
  far.set_shard(4000000000u);
  far.set_map_version(UINT64_MAX);
  pb::Request wrong_batch;
  wrong_batch.set_id(14);
  wrong_batch.mutable_batch_get()->add_keys("k");
  wrong_batch.set_shard(1 + (owner + 1) % 64);
  replies = ParseReplies(SendRaw(node.address(), Frame(far) + Frame(wrong_batch), 5s, Replies(2)).bytes);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].code() == pb::WRONG_SHARD);
  CHECK(replies[1].code() == pb::WRONG_SHARD);
  CHECK(c->Get("k-far", &h).IsNotFound());
  // A split is an entry of a shard's own log; one sent over the wire is refused.
  pb::Request split;
  split.set_id(15);
  split.mutable_split()->set_child(1);
  split.mutable_split()->set_mid(uint64_t{1} << 63);
  split.mutable_split()->add_founders(1);
  replies = ParseReplies(SendRaw(node.address(), Frame(split), 5s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
  CHECK(replies[0].message().find("\"split\" is not served here") != std::string::npos);
  RequireServes(node.address());
}

TEST_CASE("a thousand pipelined requests on one connection are all answered", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  std::string bytes;
  for (uint64_t i = 1; i <= 1000; ++i) {
    bytes += Frame(i % 2 ? PutReq(i, "p" + std::to_string(i), "v" + std::to_string(i)) : GetReq(i, "p" + std::to_string(i - 1)));
  }
  auto raw = SendRaw(node.address(), bytes, 10s, Replies(1000));
  auto replies = ParseReplies(raw.bytes);
  REQUIRE(replies.size() == 1000);
  std::vector<bool> seen(1001, false);
  for (const auto& r : replies) {
    REQUIRE(r.id() >= 1);
    REQUIRE(r.id() <= 1000);
    CHECK_FALSE(seen[r.id()]);
    seen[r.id()] = true;
    INFO("reply " << r.id() << ": code " << r.code() << " " << r.message());
    CHECK((r.code() == pb::OK || r.code() == pb::NOT_FOUND));
  }
}

TEST_CASE("a thousand concurrent connections are served", "[integration]") {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < 2200) {
    WARN("RLIMIT_NOFILE hard limit " << rl.rlim_max << " is too low for 1000 connections; skipping");
    return;
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto colon = node.address().rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(node.address().substr(colon + 1))));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  std::vector<int> fds;
  for (int i = 0; i < 1000; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    fds.push_back(fd);
  }
  // Every connection sends a request while all are open, then each reads its reply.
  for (size_t i = 0; i < fds.size(); ++i) {
    std::string f = Frame(PutReq(i + 1, "conn" + std::to_string(i), "v"));
    REQUIRE(send(fds[i], f.data(), f.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(f.size()));
  }
  int answered = 0;
  for (size_t i = 0; i < fds.size(); ++i) {
    std::string got;
    char buf[256];
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ParseReplies(got).empty() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[i], POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      ssize_t n = recv(fds[i], buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, n);
    }
    auto r = ParseReplies(got);
    if (r.size() == 1 && r[0].id() == i + 1 && r[0].code() == pb::OK) ++answered;
  }
  for (int fd : fds) close(fd);
  CHECK(answered == 1000);
  RequireServes(node.address());
}

TEST_CASE("hostile bytes get an error or a closed connection and the node keeps serving", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});

  SECTION("an oversized frame is refused and the connection closed") {
    std::string hdr = "\x7f\xff\xff\xff";
    auto r = SendRaw(node.address(), hdr + "junk", 3s);
    CHECK(r.closed);
    auto replies = ParseReplies(r.bytes);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
    CHECK(replies[0].message().find("exceeds") != std::string::npos);
  }
  SECTION("garbage bytes are refused") {
    auto r = SendRaw(node.address(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3s);
    auto replies = ParseReplies(r.bytes);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
    CHECK(r.closed);
  }
  SECTION("a payload that is not a Request gets InvalidArgument and the connection stays usable") {
    std::string bad("\x00\x00\x00\x03\xff\xff\xff", 7);
    auto r = SendRaw(node.address(), bad + Frame(PingReq(5)), 5s, Replies(2));
    auto replies = ParseReplies(r.bytes);
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
    CHECK(replies[0].id() == 0);
    CHECK(replies[1].id() == 5);
    CHECK(replies[1].code() == pb::OK);
  }
  SECTION("an unknown message type is named in the error") {
    // Field 99, length-delimited, inside an otherwise valid Request with id 3.
    std::string payload("\x08\x03\x9a\x06\x00", 5);
    std::string frame;
    AppendFrameHeader(&frame, static_cast<uint32_t>(payload.size()));
    frame += payload;
    auto replies = ParseReplies(SendRaw(node.address(), frame, 5s, Replies(1)).bytes);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].id() == 3);
    CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
    CHECK(replies[0].message().find("field 99") != std::string::npos);
  }
  SECTION("a cluster change with an unknown operation or node is refused with the reason") {
    pb::Request unknown_op;
    unknown_op.set_id(7);
    unknown_op.mutable_cluster_admin()->set_op(static_cast<pb::ClusterAdminRequest::Op>(99));
    unknown_op.mutable_cluster_admin()->set_node(1);
    pb::Request no_node;
    no_node.set_id(8);
    no_node.mutable_cluster_admin()->set_op(pb::ClusterAdminRequest::DRAIN);
    auto replies = ParseReplies(SendRaw(node.address(), Frame(unknown_op) + Frame(no_node), 5s, Replies(2)).bytes);
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].id() == 7);
    CHECK(replies[0].code() == pb::INVALID_ARGUMENT);
    CHECK(replies[0].message().find("unknown cluster admin operation") != std::string::npos);
    CHECK(replies[1].id() == 8);
    CHECK(replies[1].code() == pb::INVALID_ARGUMENT);
    CHECK(replies[1].message().find("not a member") != std::string::npos);
  }
  SECTION("a truncated frame from a peer that goes away costs nothing") {
    std::string f = Frame(PutReq(1, "trunc", "v"));
    auto r = SendRaw(node.address(), f.substr(0, f.size() - 2), 300ms);
    CHECK(ParseReplies(r.bytes).empty());
  }
  SECTION("random bytes on many connections never crash the node") {
    std::mt19937_64 rng(1234);
    for (int i = 0; i < 100; ++i) {
      std::string junk(1 + rng() % 300, '\0');
      for (auto& ch : junk) ch = static_cast<char>(rng());
      SendRaw(node.address(), junk, 50ms);
    }
  }
  RequireServes(node.address());
  CHECK(node.process().running());
}

TEST_CASE("SIGTERM answers requests in flight, then exits 0", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = Connect(node.address());
  std::atomic<int> ok{0}, failed{0};
  std::atomic<int> done{0};
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    c->PutAsync("t" + std::to_string(i), "v", [&](Status s) {
      (s.ok() ? ok : failed).fetch_add(1);
      done.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(5ms);
  node.process().Signal(SIGTERM);
  CHECK(node.process().Wait(20s) == 0);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done.load() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  REQUIRE(done.load() == n);
  CHECK(node.Log().find("shutdown complete") != std::string::npos);
  // Every acknowledged write is there after a restart.
  node.Restart();
  auto c2 = Connect(node.address());
  int present = 0;
  for (int i = 0; i < n; ++i) {
    std::string v;
    if (c2->Get("t" + std::to_string(i), &v).ok()) ++present;
  }
  CHECK(present >= ok.load());
}

TEST_CASE("data survives a clean restart", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  {
    auto c = Connect(node.address());
    for (int i = 0; i < 100; ++i) REQUIRE(c->Put("r" + std::to_string(i), std::to_string(i)).ok());
  }
  REQUIRE(node.Stop() == 0);
  node.Restart();
  auto c = Connect(node.address());
  for (int i = 0; i < 100; ++i) {
    std::string v;
    REQUIRE(c->Get("r" + std::to_string(i), &v).ok());
    CHECK(v == std::to_string(i));
  }
}

TEST_CASE("kill -9 loses no write acknowledged under the sync policy", "[integration][fault]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  std::vector<std::vector<int>> acked(4);
  std::atomic<bool> stop{false};
  {
    auto c = Connect(node.address(), 2000ms);
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < 100000 && !stop.load(); ++i) {
          if (c->Put("w" + std::to_string(t) + "-" + std::to_string(i), std::to_string(i)).ok()) acked[t].push_back(i);
        }
      });
    }
    std::this_thread::sleep_for(1500ms);
    node.Kill9();
    stop = true;
    for (auto& w : writers) w.join();
  }
  size_t total = 0;
  for (auto& a : acked) total += a.size();
  INFO("acknowledged writes before kill -9: " << total);
  REQUIRE(total > 100);
  node.Restart();
  auto c = Connect(node.address());
  size_t missing = 0;
  for (int t = 0; t < 4; ++t) {
    for (int i : acked[t]) {
      std::string v;
      Status s = c->Get("w" + std::to_string(t) + "-" + std::to_string(i), &v);
      if (!s.ok() || v != std::to_string(i)) ++missing;
    }
  }
  CHECK(missing == 0);
}

TEST_CASE("the connection limit refuses extra connections with Busy", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n"), {"--max-connections", "2"}});
  auto a = Connect(node.address());
  auto b = Connect(node.address());
  ClientOptions o;
  o.seeds = {node.address()};
  o.connections_per_node = 1;
  std::unique_ptr<Client> one, two;
  REQUIRE(Client::Open(o, &one).ok());
  REQUIRE(one->Ping().ok());
  REQUIRE(Client::Open(o, &two).ok());
  REQUIRE(two->Ping().ok());
  // A third connection gets a Busy frame and is closed.
  auto r = SendRaw(node.address(), "", 2s);
  auto replies = ParseReplies(r.bytes);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].code() == pb::BUSY);
  CHECK(replies[0].message().find("limit of 2") != std::string::npos);
  CHECK(r.closed);
  one.reset();
  std::this_thread::sleep_for(200ms);
  auto c = Connect(node.address());
  CHECK(c->Ping().ok());
}

TEST_CASE("idle connections are closed after the idle timeout", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n"), {"--idle-timeout-s", "1"}});
  auto r = SendRaw(node.address(), Frame(PingReq(1)), 4s);
  CHECK(r.closed);
  CHECK(ParseReplies(r.bytes).size() == 1);
  auto [code, body] = HttpGet(node.metrics_address(), "/metrics");
  REQUIRE(code == 200);
  CHECK(body.find("ringd_connections_idle_closed_total 1") != std::string::npos);
}

TEST_CASE("metrics and health are served over HTTP", "[integration]") {
  TempDir dir;
  Ringd node({dir.Sub("n")});
  auto c = Connect(node.address());
  REQUIRE(c->Put("m", "1").ok());
  auto [code, body] = HttpGet(node.metrics_address(), "/metrics");
  REQUIRE(code == 200);
  CHECK(body.find("ringd_requests_total{kind=\"put\"} 1") != std::string::npos);
  CHECK(body.find("ringd_raft_fsyncs_total") != std::string::npos);
  CHECK(body.find("ringd_shard_is_leader{shard=\"0\"} 1") != std::string::npos);
  auto [hcode, hbody] = HttpGet(node.metrics_address(), "/health");
  CHECK(hcode == 200);
  CHECK(hbody == "ok\n");
  CHECK(HttpGet(node.metrics_address(), "/nope").first == 404);
}

TEST_CASE("bad configuration stops ringd before it serves, with a clear message", "[integration]") {
  TempDir dir;
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), Bin("ringd"));
    return RunCommand(args, "", 20s);
  };
  auto r = run({"--listen", "nonsense"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--listen") != std::string::npos);
  r = run({"--sync-policy", "sometimes"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("sync_policy") != std::string::npos);
  r = run({"--max-connections", "0", "--data-dir", dir.Sub("x")});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("max_connections") != std::string::npos);
  r = run({"--frobnicate"});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("frobnicate") != std::string::npos);

  std::string cfg = dir.Sub("bad.toml");
  std::ofstream(cfg) << "listen = \"127.0.0.1:0\"\nshard_count = \"many\"\n";
  r = run({"--config", cfg});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("bad.toml:2") != std::string::npos);
  CHECK(r.err.find("shard_count must be an integer") != std::string::npos);

  std::ofstream(cfg) << "colour = \"blue\"\n";
  r = run({"--config", cfg});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("unknown setting \"colour\"") != std::string::npos);

  r = run({"--config", dir.Sub("missing.toml")});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("cannot read config file") != std::string::npos);

  // A data directory that is a regular file.
  std::ofstream(dir.Sub("file")) << "x";
  r = run({"--data-dir", dir.Sub("file"), "--listen", "127.0.0.1:0", "--metrics-listen", "off"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("cannot start") != std::string::npos);

  // Two nodes on one data directory: the second refuses, naming the lock.
  Ringd first({dir.Sub("shared")});
  r = run({"--data-dir", dir.Sub("shared"), "--listen", "127.0.0.1:0", "--metrics-listen", "off"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("in use") != std::string::npos);

  // A port already in use is named.
  r = run({"--data-dir", dir.Sub("other"), "--listen", first.address(), "--metrics-listen", "off"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(first.address()) != std::string::npos);

  r = run({"--help"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("--data-dir") != std::string::npos);
}

TEST_CASE("a config file is read and flags override it", "[integration]") {
  TempDir dir;
  std::string cfg = dir.Sub("ringd.toml");
  std::ofstream(cfg) << "# a node\nsync_policy = \"async\"\nshard_count = 16\nmetrics_listen = \"off\"\n";
  Ringd node({dir.Sub("n"), {"--config", cfg, "--shard-count", "8"}});
  auto c = Connect(node.address());
  NodeInfo info;
  REQUIRE(c->NodeStatus("", &info).ok());
  CHECK(info.sync_policy == "async");
  CHECK(info.shard_count == 8);
}

}  // namespace
}  // namespace ring::test
