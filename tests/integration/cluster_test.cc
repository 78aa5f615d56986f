// Three real ringd processes on 127.0.0.1 forming one replicated cluster: failover,
// lease safety, catch-up and exactly-once retries.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/asio.h"
#include "common/keyspace.h"
#include "harness.h"
#include "integration/wire_util.h"
#include "ring/client.h"

namespace ring::test {
namespace {

using namespace std::chrono_literals;


struct Cluster {
  // `data_dirs` overrides where node i keeps its data (e.g. on a small filesystem).
  explicit Cluster(int n = 3, std::vector<std::string> extra = {}, std::map<int, std::string> data_dirs = {},
                   std::map<int, std::vector<std::string>> node_extra = {}) {
    for (int i = 0; i < n; ++i) addresses.push_back("127.0.0.1:" + std::to_string(FreePort()));
    std::string peers;
    for (auto& a : addresses) peers += (peers.empty() ? "" : ",") + a;
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> args = {"--listen", addresses[i], "--peers", peers, "--shard-count", "8"};
      args.insert(args.end(), extra.begin(), extra.end());
      args.insert(args.end(), node_extra[i].begin(), node_extra[i].end());
      std::string data = data_dirs.count(i) ? data_dirs[i] : dir.Sub("n" + std::to_string(i + 1));
      nodes.push_back(std::make_unique<Ringd>(RingdOptions{data, args}));
    }
  }
  std::unique_ptr<Client> Connect(std::chrono::milliseconds timeout = 10s) {
    return OpenClient(addresses, timeout);
  }
  // Index of the node leading `shard` (from /metrics), or -1.
  int LeaderOf(uint32_t shard, int skip = -1) {
    std::string want = "ringd_shard_is_leader{shard=\"" + std::to_string(shard) + "\"} 1";
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (static_cast<int>(i) == skip || !nodes[i]->process().running()) continue;
      auto [code, body] = HttpGet(nodes[i]->metrics_address(), "/metrics");
      if (code == 200 && body.find(want) != std::string::npos) return static_cast<int>(i);
    }
    return -1;
  }
  // Waits until every shard of a fresh 3-node cluster is led by its preferred leader
  // (shard i by node i % 3: every shard's voters are [1, 2, 3]), where leader balancing
  // leaves it; tests that pin a leader start from there, so it does not move under them.
  bool WaitPreferredLeaders(std::chrono::milliseconds limit = 30s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (uint32_t shard = 0; shard < 8 && all; ++shard) all = LeaderOf(shard) == static_cast<int>(shard % 3);
      if (all) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  int WaitLeader(uint32_t shard, int skip = -1, std::chrono::milliseconds limit = 15s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int l = LeaderOf(shard, skip);
      if (l >= 0) return l;
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }
  TempDir dir;
  std::vector<std::string> addresses;
  std::vector<std::unique_ptr<Ringd>> nodes;
};

// A key that lands in `shard` of 8.
std::string KeyIn(uint32_t shard, int n) {
  auto ranges = ShardRanges::Uniform(8);
  for (int i = 0;; ++i) {
    std::string k = "k" + std::to_string(n) + "-" + std::to_string(i);
    if (ranges.ShardOfKey(k) == shard) return k;
  }
}

// Writer threads that Put until stopped (or a bounded number of times), remembering the
// last acknowledged value of every key. Joined on destruction, even when a test fails.
struct WriteLoad {
  WriteLoad(Client* client, int threads, std::function<std::string(int thread, int i)> key) : client(client) {
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([this, t, key] {
        for (int i = 0; !stop.load() && i < 100000; ++i) {
          std::string k = key(t, i);
          std::string v = "v" + std::to_string(i);
          Status s = this->client->Put(k, v);
          std::lock_guard lock(mu);
          if (s.ok()) acked[k] = v;
          else if (errors++ == 0) first_error = s.ToString();
        }
      });
    }
  }
  ~WriteLoad() { Stop(); }
  // Waits (bounded) until `n` keys are acknowledged, so a check that the load ran does not
  // depend on how fast the topology change under it happened to finish.
  void WaitAcked(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mu);
        if (acked.size() >= n) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void Stop() {
    stop = true;
    for (auto& w : writers) {
      if (w.joinable()) w.join();
    }
  }
  // How many acknowledged keys do not read back with their acknowledged value (after Stop).
  size_t Unreadable() const {
    size_t bad = 0;
    for (const auto& [k, v] : acked) {
      std::string got;
      if (!client->Get(k, &got).ok() || got != v) ++bad;
    }
    return bad;
  }
  Client* client;
  std::mutex mu;
  std::map<std::string, std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::string first_error;
  std::vector<std::thread> writers;
};

TEST_CASE("a three-node cluster replicates every write and serves from any seed", "[integration][cluster]") {
  Cluster c;
  auto client = c.Connect();
  for (int i = 0; i < 200; ++i) REQUIRE(client->Put("key" + std::to_string(i), "v" + std::to_string(i)).ok());
  for (int i = 0; i < 200; ++i) {
    std::string v;
    REQUIRE(client->Get("key" + std::to_string(i), &v).ok());
    CHECK(v == "v" + std::to_string(i));
  }
  CasResult cas;
  REQUIRE(client->CompareAndSet("key1", std::string_view("v1"), "w1", &cas).ok());
  CHECK(cas.swapped);
  // Batches must stay in one shard; a tag makes that easy.
  REQUIRE(client->BatchPut({{"{u7}.a", "1"}, {"{u7}.b", "2"}}).ok());
  Status s = client->BatchPut({{KeyIn(0, 1), "1"}, {KeyIn(1, 1), "2"}});
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("use a {tag}") != std::string::npos);
  // Every node reports every shard's leader consistently.
  for (uint32_t shard = 0; shard < 8; ++shard) CHECK(c.WaitLeader(shard) >= 0);
  // A BatchGet over every shard (led by different nodes) is split by the client, from a
  // fresh client that has not learned the shard layout yet, and answers in key order.
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) keys.push_back(i % 50 == 7 ? "absent" + std::to_string(i) : "key" + std::to_string(i));
  for (int round = 0; round < 2; ++round) {
    auto fresh = c.Connect();
    std::vector<std::optional<std::string>> vals;
    REQUIRE(fresh->BatchGet(keys, &vals).ok());
    REQUIRE(vals.size() == keys.size());
    for (int i = 0; i < 200; ++i) {
      if (i % 50 == 7) CHECK_FALSE(vals[i].has_value());
      else CHECK(vals[i] == std::optional<std::string>(i == 1 ? "w1" : "v" + std::to_string(i)));
    }
  }
}

TEST_CASE("every node serves the same cluster map from the replicated metadata log", "[integration][cluster]") {
  Cluster c;
  auto client = c.Connect();
  // The metadata leader initialises the map once; every node applies the same version.
  auto deadline = std::chrono::steady_clock::now() + 15s;
  std::vector<NodeInfo> infos(c.addresses.size());
  bool all = false;
  while (!all && std::chrono::steady_clock::now() < deadline) {
    all = true;
    for (size_t i = 0; i < c.addresses.size(); ++i) {
      all = all && client->NodeStatus(c.addresses[i], &infos[i]).ok() && infos[i].cluster_map.version >= 1 &&
            infos[i].shards.size() == 8;
    }
    if (!all) std::this_thread::sleep_for(50ms);
  }
  REQUIRE(all);
  for (const auto& info : infos) {
    const ClusterMapInfo& m = info.cluster_map;
    CHECK(m.version == infos[0].cluster_map.version);
    CHECK(m.cluster_id == infos[0].cluster_map.cluster_id);
    CHECK(m.cluster_id != 0);
    CHECK(m.replication_factor == 3);
    REQUIRE(m.members.size() == 3);
    for (size_t i = 0; i < 3; ++i) {
      CHECK(m.members[i].id == i + 1);
      CHECK(m.members[i].address == c.addresses[i]);
      CHECK(m.members[i].state == "up");
    }
    REQUIRE(m.shards.size() == 8);
    uint64_t next = 0;
    for (const auto& sh : m.shards) {
      CHECK(sh.start == next);  // contiguous cover of the hash space
      next = sh.end;
      CHECK(sh.voters == std::vector<uint64_t>{1, 2, 3});
      CHECK(sh.learners.empty());
    }
    CHECK(next == 0);
    CHECK(info.shards.size() == 8);  // the metadata log is not reported as a shard
  }
  // The map survives a restart of every node (it is persisted with the applied index), and
  // the cluster does not initialise itself a second time.
  const uint64_t id = infos[0].cluster_map.cluster_id;
  const uint64_t version = infos[0].cluster_map.version;
  for (auto& n : c.nodes) n->Restart();
  NodeInfo after;
  deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline &&
         !(client->NodeStatus(c.addresses[1], &after).ok() && after.cluster_map.version >= 1)) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(after.cluster_map.cluster_id == id);
  CHECK(after.cluster_map.version == version);
}

// How many replica slots (voters and learners) of the map are on `node`.
size_t ReplicasOn(const ClusterMapInfo& map, uint64_t node) {
  size_t n = 0;
  for (const auto& sh : map.shards) {
    n += std::count(sh.voters.begin(), sh.voters.end(), node) + std::count(sh.learners.begin(), sh.learners.end(), node);
  }
  return n;
}

// How many shards of the map have `node` as a voter (a move has finished there).
size_t VotersOn(const ClusterMapInfo& map, uint64_t node) {
  size_t n = 0;
  for (const auto& sh : map.shards) n += std::count(sh.voters.begin(), sh.voters.end(), node);
  return n;
}

TEST_CASE("a fourth node gets its share of replicas, then drains and is removed under writes", "[integration][cluster]") {
  Cluster c(4);
  auto client = c.Connect(20s);
  // The map starts with every shard on nodes 1-3; the controller moves a fair share onto
  // node 4 (learner, catch-up, promotion, removal of the replaced replica).
  auto map_now = [&](ClusterMapInfo* out) {
    NodeInfo info;
    if (!client->NodeStatus("", &info).ok() || info.cluster_map.version == 0) return false;
    *out = info.cluster_map;
    return true;
  };
  ClusterMapInfo map;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline && !(map_now(&map) && VotersOn(map, 4) >= 4)) {
    std::this_thread::sleep_for(100ms);
  }
  // 8 shards x 3 replicas / 4 nodes = 6, within the floor; counted once the moves have
  // finished (a learner slot is only a move begun).
  REQUIRE(VotersOn(map, 4) >= 4);

  // Overwrites too: each writer cycles over 500 keys.
  WriteLoad load(client.get(), 3, [](int t, int i) { return "w" + std::to_string(t) + "-" + std::to_string(i % 500); });
  std::this_thread::sleep_for(500ms);
  // Bad requests are refused with reasons: an unknown node, removing a node with replicas.
  Status unknown = client->ChangeMember(99, Client::MemberChange::kDrain);
  CHECK(unknown.IsInvalidArgument());
  CHECK(unknown.message().find("not a member") != std::string::npos);
  Status busy = client->ChangeMember(4, Client::MemberChange::kRemove);
  CHECK(busy.IsInvalidArgument());
  CHECK(busy.message().find("drain it first") != std::string::npos);

  uint64_t version = 0;
  REQUIRE(client->ChangeMember(4, Client::MemberChange::kDrain, &version).ok());
  CHECK(version > map.version);
  CHECK(client->ChangeMember(4, Client::MemberChange::kDrain).ok());  // idempotent
  // Its leaderships go first, well before its replicas have all moved.
  auto leads_on_four = [&] {
    NodeInfo info;
    if (!client->NodeStatus(c.addresses[3], &info).ok()) return size_t{99};
    size_t n = 0;
    for (const auto& sh : info.shards) n += sh.role == "leader";
    return n;
  };
  deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && leads_on_four() != 0) std::this_thread::sleep_for(50ms);
  CHECK(leads_on_four() == 0);
  size_t min_voters = 3;
  deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (map_now(&map)) {
      for (const auto& sh : map.shards) min_voters = std::min(min_voters, sh.voters.size());
      if (ReplicasOn(map, 4) == 0) break;
    }
    std::this_thread::sleep_for(100ms);
  }
  CHECK(ReplicasOn(map, 4) == 0);
  CHECK(min_voters >= 3);  // a move adds before it removes: never below the replication factor
  std::this_thread::sleep_for(300ms);
  load.WaitAcked(101);
  load.Stop();
  INFO("first error: " << load.first_error);
  CHECK(load.errors.load() == 0);
  CHECK(load.acked.size() > 100);
  CHECK(load.Unreadable() == 0);

  // Node 4 let go of its replicas and their data, then is retired.
  deadline = std::chrono::steady_clock::now() + 20s;
  NodeInfo four;
  while (std::chrono::steady_clock::now() < deadline &&
         !(client->NodeStatus(c.addresses[3], &four).ok() && four.shards.empty())) {
    std::this_thread::sleep_for(100ms);
  }
  CHECK(four.shards.empty());
  REQUIRE(client->ChangeMember(4, Client::MemberChange::kRemove).ok());
  // The seed asked may be a metadata follower a moment behind the leader.
  deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline && !(map_now(&map) && map.members[3].state == "removed")) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(map.members[3].state == "removed");
  // The cluster goes on without it.
  c.nodes[3]->Kill9();
  REQUIRE(client->Put("after-remove", "x").ok());
}

TEST_CASE("kill -9 of a shard leader under write load loses no acknowledged write", "[integration][fault][cluster]") {
  Cluster c;
  auto client = c.Connect(20s);
  REQUIRE(client->Put(KeyIn(3, 0), "warm").ok());
  REQUIRE(c.WaitPreferredLeaders());
  int leader = c.WaitLeader(3);
  REQUIRE(leader >= 0);

  WriteLoad load(client.get(), 4, [](int t, int i) { return KeyIn(static_cast<uint32_t>(i % 8), t * 100000 + i); });
  std::this_thread::sleep_for(700ms);
  auto killed_at = std::chrono::steady_clock::now();
  c.nodes[leader]->Kill9();
  // A new leader for shard 3 appears among the survivors within a few election timeouts.
  int next = c.WaitLeader(3, leader, 10s);
  auto failover = std::chrono::steady_clock::now() - killed_at;
  CHECK(next >= 0);
  CHECK(next != leader);
  INFO("failover took " << std::chrono::duration_cast<std::chrono::milliseconds>(failover).count() << " ms");
  std::this_thread::sleep_for(700ms);
  load.WaitAcked(101);
  load.Stop();
  INFO("first error: " << load.first_error);
  CHECK(load.errors.load() == 0);  // the client hides the failover: retries, redirects

  // Every acknowledged write is readable with its value, from the survivors...
  CHECK(load.Unreadable() == 0);
  INFO("acknowledged writes: " << load.acked.size());
  CHECK(load.acked.size() > 100);
  // ...and after the killed node returns and catches up.
  c.nodes[leader]->Restart();
  std::this_thread::sleep_for(500ms);
  CHECK(load.Unreadable() == 0);
}

TEST_CASE("a stopped leader serves nothing stale after a new leader takes over", "[integration][fault][cluster]") {
  Cluster c;
  auto client = c.Connect();
  std::string key = KeyIn(5, 7);
  REQUIRE(client->Put(key, "old").ok());
  REQUIRE(c.WaitPreferredLeaders());
  int leader = c.WaitLeader(5);
  REQUIRE(leader >= 0);
  // Confirm the leader itself serves the key over a raw connection pinned to it.
  auto replies = ParseReplies(SendRaw(c.addresses[leader], Frame(GetReq(1, key)), 3s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  REQUIRE(replies[0].code() == pb::OK);

  c.nodes[leader]->process().Signal(SIGSTOP);
  // The others elect a new leader (its lease expired long before they may) and accept a
  // newer value.
  int next = c.WaitLeader(5, leader, 10s);
  REQUIRE(next >= 0);
  REQUIRE(client->Put(key, "new").ok());
  c.nodes[leader]->process().Signal(SIGCONT);

  // Pinned to the old leader: every answer is a redirect or the new value, never "old".
  auto deadline = std::chrono::steady_clock::now() + 2s;
  int answers = 0;
  bool acked_again = false;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = ParseReplies(SendRaw(c.addresses[leader], Frame(GetReq(2, key)), 2s, Replies(1)).bytes);
    if (r.size() != 1) continue;
    ++answers;
    if (r[0].code() == pb::OK) {
      CHECK(r[0].get().value() == "new");
    } else {
      CHECK((r[0].code() == pb::NOT_LEADER || r[0].code() == pb::UNAVAILABLE));
    }
    // A write pinned to it is never acknowledged by it as leader of the old term either.
    // (It may lead again in a new term, handed back by leader balancing: then the write
    // is acknowledged for real and must be the value read afterwards.)
    pb::Request put = PutReq(3, key, "second-write");
    auto w = ParseReplies(SendRaw(c.addresses[leader], Frame(put), 2s, Replies(1)).bytes);
    if (w.size() == 1 && w[0].code() == pb::OK) {
      acked_again = true;
      break;
    }
  }
  CHECK(answers > 0);
  std::string v;
  REQUIRE(client->Get(key, &v).ok());
  CHECK(v == (acked_again ? "second-write" : "new"));
}

TEST_CASE("a node that missed writes catches up from the log after a restart", "[integration][cluster]") {
  Cluster c;
  auto client = c.Connect();
  REQUIRE(client->Put("before", "1").ok());
  c.nodes[2]->Kill9();
  for (int i = 0; i < 300; ++i) REQUIRE(client->Put("missed" + std::to_string(i), std::to_string(i)).ok());
  c.nodes[2]->Restart();
  // Let it catch up, then take away another node: the returning node is now needed for
  // every quorum, so every read below proves it holds the data.
  std::this_thread::sleep_for(1500ms);
  c.nodes[0]->Kill9();
  for (int i = 0; i < 300; ++i) {
    std::string v;
    Status s = client->Get("missed" + std::to_string(i), &v);
    REQUIRE(s.ok());
    CHECK(v == std::to_string(i));
  }
}

TEST_CASE("a node behind the compacted logs catches up from a snapshot after a restart", "[integration][cluster]") {
  Cluster c(3, {"--log-compact-after", "40", "--log-retain", "10"});
  auto client = c.Connect();
  REQUIRE(client->Put("{s}before", "1").ok());
  c.nodes[2]->Kill9();
  // All in one shard (one tag), so that shard's log is compacted well past node 3, and
  // the shard holds more than one message could carry (its SST files are fetched).
  auto value = [](int i) {
    std::mt19937_64 rng(static_cast<uint64_t>(i) + 1);
    std::string v(64 << 10, '\0');
    for (auto& ch : v) ch = static_cast<char>(rng());
    return v;
  };
  const int kKeys = 160;  // 10 MiB that do not compress
  for (int i = 0; i < kKeys; ++i) REQUIRE(client->Put("{s}" + std::to_string(i), value(i)).ok());
  c.nodes[2]->Restart();
  auto metric = [&](const std::string& name) -> int64_t {
    auto [code, body] = HttpGet(c.nodes[2]->metrics_address(), "/metrics");
    auto at = body.find("\n" + name + " ");
    return code == 200 && at != std::string::npos ? std::stoll(body.substr(at + name.size() + 2)) : -1;
  };
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (metric("ringd_raft_snapshots_installed_total") < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(metric("ringd_raft_snapshots_installed_total") >= 1);
  CHECK(metric("ringd_snapshot_fetched_bytes_total") > (8 << 20));
  CHECK(metric("ringd_snapshot_fetch_bytes_left") == 0);
  // Take away another node: node 3 is now needed for every quorum.
  c.nodes[0]->Kill9();
  std::string v;
  REQUIRE(client->Get("{s}before", &v).ok());
  // Exactly-once state travelled too: the dedup table is part of the snapshot.
  REQUIRE(client->Put("{s}after", "x").ok());
  // Node 3's own copy holds every key: stop it (once a heartbeat told it the last commit)
  // and read its engine directly.
  std::this_thread::sleep_for(300ms);
  REQUIRE(c.nodes[2]->Stop() == 0);
  storage::EngineOptions eo;
  eo.dir = c.dir.Sub("n3");
  eo.create_if_missing = false;
  auto engine = storage::Engine::Open(eo);
  REQUIRE(engine.ok());
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    std::string got;
    wrong += !(*engine)->Get(storage::Cf::kData, DataKey("{s}" + std::to_string(i)), &got).ok() || got != value(i);
  }
  CHECK(wrong == 0);
  CHECK((*engine)->Get(storage::Cf::kData, DataKey("{s}after"), &v).ok());
}

TEST_CASE("a follower whose disk fills up is survived without client errors", "[integration][fault][cluster]") {
  // Node 3 keeps its data on a 48 MiB tmpfs and refuses writes below 40 MiB free, so it
  // fills up after a few MiB. (Mounting needs root; elsewhere the test is skipped.)
  TempDir mnt;
  if (std::system(("mount -t tmpfs -o size=48m tmpfs " + mnt.path() + " 2>/dev/null").c_str()) != 0) {
    WARN("cannot mount a tmpfs here (not root?); skipping the full-disk test");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { (void)std::system(("umount -l " + path + " 2>/dev/null").c_str()); }
  } unmount{mnt.path()};
  {
    Cluster c(3, {}, {{2, mnt.path() + "/n3"}}, {{2, {"--reserve-disk-mb", "40"}}});
    auto client = c.Connect();
    std::string value(1000, 'v');
    int errors = 0;
    for (int i = 0; i < 6000; ++i) {
      if (!client->Put("full" + std::to_string(i), value).ok()) ++errors;
    }
    CHECK(errors == 0);  // a majority (nodes 1 and 2) still commits every write
    // The full node says so, and keeps running.
    auto [code, body] = HttpGet(c.nodes[2]->metrics_address(), "/health");
    CHECK(code == 503);
    CHECK(body.find("No space left on device") != std::string::npos);
    CHECK(c.nodes[2]->process().running());
    std::string v;
    REQUIRE(client->Get("full5999", &v).ok());
    CHECK(v == value);
  }
}

// Forwards one client connection to a node; drops the reply to every `drop_every`-th
// request by closing both sides after the request was delivered, which forces the client
// to resend a mutation the cluster may already have applied.
class DroppingProxy {
 public:
  DroppingProxy(std::string target, int drop_every) : target_(std::move(target)), drop_every_(drop_every) {
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    address_ = "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
    thread_ = std::thread([this] { Run(); });
  }
  ~DroppingProxy() {
    stop_ = true;
    // A blocking accept() does not notice the acceptor closing; a connection wakes it.
    asio::error_code ec;
    asio::io_context io;
    asio::ip::tcp::socket wake(io);
    wake.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
    acceptor_.close(ec);
  }
  const std::string& address() const { return address_; }
  int dropped() const { return dropped_.load(); }

 private:
  void Run() {
    while (!stop_) {
      asio::error_code ec;
      asio::ip::tcp::socket client(io_);
      acceptor_.accept(client, ec);
      if (ec || stop_) return;
      std::thread([this, client = std::move(client)]() mutable { Serve(std::move(client)); }).detach();
    }
  }
  void Serve(asio::ip::tcp::socket client) {
    asio::io_context io;
    asio::ip::tcp::socket server(io);
    auto colon = target_.rfind(':');
    asio::error_code ec;
    server.connect({asio::ip::make_address(target_.substr(0, colon)),
                    static_cast<uint16_t>(std::stoi(target_.substr(colon + 1)))}, ec);
    if (ec) return;
    FrameReader from_client;
    std::array<char, 65536> buf;
    for (;;) {
      size_t n = client.read_some(asio::buffer(buf), ec);
      if (ec) return;
      from_client.Feed(std::string_view(buf.data(), n));
      for (;;) {
        auto f = from_client.Next();
        if (!f.ok() || !f->has_value()) break;
        std::string frame;
        AppendFrameHeader(&frame, static_cast<uint32_t>((*f)->size()));
        frame.append((*f)->data(), (*f)->size());
        asio::write(server, asio::buffer(frame), ec);
        if (ec) return;
        // Wait for the reply frame, then pass it on or drop it.
        FrameReader from_server;
        std::string reply;
        while (reply.empty()) {
          size_t m = server.read_some(asio::buffer(buf), ec);
          if (ec) return;
          from_server.Feed(std::string_view(buf.data(), m));
          auto r = from_server.Next();
          if (r.ok() && r->has_value()) {
            AppendFrameHeader(&reply, static_cast<uint32_t>((*r)->size()));
            reply.append((*r)->data(), (*r)->size());
          }
        }
        if (++count_ % drop_every_ == 0) {
          dropped_++;
          client.close(ec);
          server.close(ec);
          return;
        }
        asio::write(client, asio::buffer(reply), ec);
        if (ec) return;
      }
    }
  }
  std::string target_;
  int drop_every_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_{io_};
  std::string address_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> count_{0};
  std::atomic<int> dropped_{0};
};

TEST_CASE("compare-and-set increments are applied exactly once when replies are lost", "[integration][cluster]") {
  Cluster c(1);  // one replicated node: the dedup table is part of every shard's state
  DroppingProxy proxy(c.addresses[0], 4);
  ClientOptions o;
  o.seeds = {proxy.address()};
  o.connections_per_node = 1;
  o.default_timeout = 20s;
  std::unique_ptr<Client> client;
  REQUIRE(Client::Open(o, &client).ok());
  const int n = 60;
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    // Each increment is one CAS from i to i+1; a retry of an applied CAS must get the
    // original "swapped" answer, not a mismatch.
    CasResult r;
    Status s = client->CompareAndSet("counter", i == 0 ? std::nullopt : std::optional<std::string_view>(std::to_string(i)),
                                     std::to_string(i + 1), &r);
    REQUIRE(s.ok());
    if (!r.swapped) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(proxy.dropped() > 5);
  std::string v;
  REQUIRE(client->Get("counter", &v).ok());
  CHECK(v == std::to_string(n));
}


// --- Dynamic membership: ringd --join and ringctl cluster init ------------------------------

// Waits (bounded) until `pred(map)` holds for the map `address` serves; returns that map.
ClusterMapInfo WaitForMap(Client* client, const std::string& address, std::chrono::milliseconds limit,
                          const std::function<bool(const ClusterMapInfo&)>& pred) {
  ClusterMapInfo last;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    NodeInfo info;
    if (client->NodeStatus(address, &info).ok()) {
      last = info.cluster_map;
      if (pred(last)) break;
    }
    std::this_thread::sleep_for(100ms);
  }
  return last;
}

size_t UpMembers(const ClusterMapInfo& map) {
  return static_cast<size_t>(
      std::count_if(map.members.begin(), map.members.end(), [](const auto& m) { return m.state == "up"; }));
}

// A ClusterAdmin JOIN sent over a raw socket, as a joining node sends it; its reply.
pb::Response RawJoin(const std::string& to, const std::string& address, uint64_t token) {
  pb::Request req;
  req.set_id(7);
  auto* a = req.mutable_cluster_admin();
  a->set_op(pb::ClusterAdminRequest::JOIN);
  a->set_address(address);
  a->set_join_token(token);
  auto replies = ParseReplies(SendRaw(to, Frame(req), 5s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  return replies[0];
}

TEST_CASE("nodes started with --join wait for cluster init, then join the one cluster it creates",
          "[integration][cluster][membership]") {
  TempDir dir;
  std::vector<std::string> addresses;
  for (int i = 0; i < 3; ++i) addresses.push_back("127.0.0.1:" + std::to_string(FreePort()));
  std::string seeds = addresses[0] + "," + addresses[1] + "," + addresses[2];
  std::vector<std::unique_ptr<Ringd>> nodes;
  for (int i = 0; i < 3; ++i) {
    nodes.push_back(std::make_unique<Ringd>(RingdOptions{
        dir.Sub("n" + std::to_string(i + 1)),
        {"--listen", addresses[i], "--join", seeds, "--max-concurrent-moves", "8"}}));
  }
  auto client = OpenClient(addresses, 3s);

  // Before init: nobody serves data, and nobody made a cluster on its own.
  Status early = client->Put("k", "v");
  CHECK(early.IsUnavailable());
  std::this_thread::sleep_for(1500ms);
  for (const auto& a : addresses) {
    NodeInfo info;
    REQUIRE(client->NodeStatus(a, &info).ok());
    CHECK(info.cluster_map.version == 0);
  }
  // Bad init parameters are refused and change nothing.
  Client::InitResult r;
  CHECK(client->InitCluster(addresses[0], 70000, 3, &r).IsInvalidArgument());
  CHECK(client->InitCluster(addresses[0], 8, 9, &r).IsInvalidArgument());

  CallOptions slow;
  slow.timeout = 15s;
  REQUIRE(client->InitCluster(addresses[0], 8, 3, &r, slow).ok());
  CHECK_FALSE(r.already_initialized);
  CHECK(r.node_id == 1);
  const uint64_t cluster_id = r.cluster_id;
  CHECK(cluster_id != 0);
  // Idempotent on the node that made it; refused on a node that is joining it.
  Client::InitResult again;
  REQUIRE(client->InitCluster(addresses[0], 8, 3, &again).ok());
  CHECK(again.already_initialized);
  CHECK(again.cluster_id == cluster_id);
  Client::InitResult other;
  Status second = client->InitCluster(addresses[2], 8, 3, &other, slow);
  if (second.ok()) {
    CHECK(other.already_initialized);  // it had joined already
    CHECK(other.cluster_id == cluster_id);
  } else {
    CHECK(second.IsInvalidArgument());
    CHECK(second.message().find("already form a cluster") != std::string::npos);
  }

  // The others join, become up, and the controller spreads every shard to 3 replicas.
  ClusterMapInfo map = WaitForMap(client.get(), addresses[0], 60s, [](const ClusterMapInfo& m) {
    if (UpMembers(m) != 3 || m.shards.size() != 8) return false;
    for (const auto& sh : m.shards) {
      if (sh.voters.size() != 3 || !sh.learners.empty()) return false;
    }
    return true;
  });
  REQUIRE(UpMembers(map) == 3);
  CHECK(map.cluster_id == cluster_id);
  CHECK(map.members.size() == 3);
  for (const auto& sh : map.shards) CHECK(sh.voters.size() == 3);

  for (int i = 0; i < 50; ++i) REQUIRE(client->Put("j" + std::to_string(i), std::to_string(i)).ok());

  // Hostile joins: no token, an unreachable address, a live member's address under
  // another token. Sent to the metadata leader or redirected; either way refused.
  for (const auto& a : addresses) {
    pb::Response bad = RawJoin(a, "127.0.0.1:1", 0);
    CHECK(bad.code() != pb::OK);
    pb::Response wild = RawJoin(a, "0.0.0.0:7001", 42);
    CHECK(wild.code() != pb::OK);
    pb::Response garbage = RawJoin(a, std::string(5000, 'x'), 42);
    CHECK(garbage.code() != pb::OK);
    pb::Response taken = RawJoin(a, addresses[1], 42);
    CHECK(taken.code() != pb::OK);
    if (taken.code() == pb::INVALID_ARGUMENT) CHECK(taken.message().find("already member") != std::string::npos);
  }

  // A restarted member keeps its id: no second membership, and its data is served.
  REQUIRE(nodes[2]->Stop() == 0);
  nodes[2]->Restart();
  map = WaitForMap(client.get(), addresses[2], 20s, [](const ClusterMapInfo& m) { return UpMembers(m) == 3; });
  CHECK(map.members.size() == 3);
  for (int i = 0; i < 50; ++i) {
    std::string got;
    REQUIRE(client->Get("j" + std::to_string(i), &got).ok());
    CHECK(got == std::to_string(i));
  }
}

TEST_CASE("a node started with ringd --join joins a static cluster and takes its share", "[integration][cluster][membership]") {
  Cluster c(3, {"--max-concurrent-moves", "8"});
  auto client = c.Connect(10s);
  REQUIRE(client->Put("before", "1").ok());
  std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  Ringd fourth(RingdOptions{c.dir.Sub("n4"), {"--listen", addr, "--join", c.addresses[1], "--shard-count", "64"}});
  // It learns the cluster's 8 shards from the map (not its own shard_count of 64), becomes
  // member 4, and the controller moves a fair share of replicas onto it.
  ClusterMapInfo map = WaitForMap(client.get(), c.addresses[0], 60s,
                                  [](const ClusterMapInfo& m) { return UpMembers(m) == 4 && ReplicasOn(m, 4) >= 4; });
  REQUIRE(UpMembers(map) == 4);
  CHECK(map.members.back().address == addr);
  CHECK(ReplicasOn(map, 4) >= 4);
  NodeInfo info;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline && !(client->NodeStatus(addr, &info).ok() && info.shards.size() >= 4)) {
    std::this_thread::sleep_for(100ms);
  }
  CHECK(info.shard_count == 8);
  CHECK(info.shards.size() >= 4);
  // A client that only knows the new node is served through it.
  auto via_four = OpenClient({addr}, 10s);
  std::string got;
  REQUIRE(via_four->Get("before", &got).ok());
  CHECK(got == "1");
  REQUIRE(via_four->Put("after", "2").ok());
}

TEST_CASE("under writes, a cluster grows 3 -> 4 -> 5 with --join and drains back to 3, losing nothing",
          "[integration][cluster][membership]") {
  Cluster c(3, {"--max-concurrent-moves", "4"});
  std::vector<std::string> all = c.addresses;
  std::vector<std::string> joined;
  for (int i = 0; i < 2; ++i) joined.push_back("127.0.0.1:" + std::to_string(FreePort()));
  all.insert(all.end(), joined.begin(), joined.end());
  auto client = OpenClient(all, 20s);
  auto observer = OpenClient(all, 20s);  // a second client, so status polls never queue behind writes

  // Every map the test sees must keep every shard at full strength: a move adds a replica
  // before it removes one, and never takes a voter away from a shard that needs it.
  size_t min_voters = 3, samples = 0;
  auto sample = [&](const std::string& via, const std::function<bool(const ClusterMapInfo&)>& done,
                    std::chrono::milliseconds limit) {
    ClusterMapInfo map = WaitForMap(observer.get(), via, limit, [&](const ClusterMapInfo& m) {
      ++samples;
      for (const auto& sh : m.shards) min_voters = std::min(min_voters, sh.voters.size());
      return done(m);
    });
    return map;
  };

  WriteLoad load(client.get(), 3, [](int t, int i) { return "g" + std::to_string(t) + "-" + std::to_string(i % 400); });
  std::this_thread::sleep_for(500ms);

  // 3 -> 4 -> 5: each joins through a different seed and gets its share.
  std::vector<std::unique_ptr<Ringd>> extra;
  for (int i = 0; i < 2; ++i) {
    extra.push_back(std::make_unique<Ringd>(RingdOptions{
        c.dir.Sub("j" + std::to_string(i + 4)),
        {"--listen", joined[i], "--join", c.addresses[i], "--max-concurrent-moves", "4"}}));
    const size_t members = 4 + i;
    const uint64_t id = 4 + i;
    ClusterMapInfo map = sample(c.addresses[2], [&](const ClusterMapInfo& m) {
      if (UpMembers(m) != members || ReplicasOn(m, id) < 3) return false;
      for (const auto& sh : m.shards) {
        if (!sh.learners.empty()) return false;
      }
      return true;
    }, 60s);
    INFO("growing to " << members);
    REQUIRE(UpMembers(map) == members);
    CHECK(ReplicasOn(map, id) >= 3);  // 8 shards x 3 / 5 = 4.8; within the placement tolerance
  }

  // 5 -> 3: drain a founding node (a metadata voter) and a joined one, then remove them.
  for (uint64_t id : {uint64_t{1}, uint64_t{4}}) {
    REQUIRE(observer->ChangeMember(id, Client::MemberChange::kDrain).ok());
  }
  ClusterMapInfo map = sample(c.addresses[2], [](const ClusterMapInfo& m) {
    return ReplicasOn(m, 1) == 0 && ReplicasOn(m, 4) == 0;
  }, 90s);
  REQUIRE(ReplicasOn(map, 1) == 0);
  REQUIRE(ReplicasOn(map, 4) == 0);
  for (uint64_t id : {uint64_t{1}, uint64_t{4}}) {
    Status s;
    for (int i = 0; i < 100; ++i) {  // the drained node lets go of its data first
      s = observer->ChangeMember(id, Client::MemberChange::kRemove);
      if (s.ok()) break;
      std::this_thread::sleep_for(100ms);
    }
    INFO("removing node " << id << ": " << s.ToString());
    CHECK(s.ok());
  }
  std::this_thread::sleep_for(500ms);
  load.WaitAcked(101);
  load.Stop();
  c.nodes[0]->Kill9();  // retired: the cluster no longer needs it
  extra[0]->Kill9();

  INFO("first error: " << load.first_error << "; map samples " << samples);
  CHECK(load.errors.load() == 0);
  CHECK(load.acked.size() > 100);
  CHECK(min_voters >= 3);
  CHECK(samples > 10);
  CHECK(load.Unreadable() == 0);
  map = sample(c.addresses[2], [](const ClusterMapInfo& m) { return UpMembers(m) == 3; }, 10s);
  CHECK(UpMembers(map) == 3);
}

// How many shards each node leads, from every node's own status (-1: unreachable).
std::vector<int> LeadsPerNode(Client* client, const std::vector<std::string>& addresses) {
  std::vector<int> out;
  for (const auto& a : addresses) {
    NodeInfo info;
    if (!client->NodeStatus(a, &info).ok()) {
      out.push_back(-1);
      continue;
    }
    int n = 0;
    for (const auto& sh : info.shards) n += sh.role == "leader";
    out.push_back(n);
  }
  return out;
}

TEST_CASE("shard leaders spread evenly over the nodes, and come back after a node restarts",
          "[integration][cluster]") {
  Cluster c(3);
  auto client = c.Connect(10s);
  auto balanced = [&] {
    auto leads = LeadsPerNode(client.get(), c.addresses);
    int total = 0;
    for (int n : leads) {
      if (n < 2 || n > 3) return false;  // 8 shards over 3 nodes
      total += n;
    }
    return total == 8;
  };
  auto wait_balanced = [&](std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline && !balanced()) std::this_thread::sleep_for(200ms);
    return balanced();
  };
  CHECK(wait_balanced(30s));
  // Node 1 dies: its shards elect leaders elsewhere; it comes back and gets its share back.
  c.nodes[0]->Kill9();
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline && !client->Put("during", "x").ok()) std::this_thread::sleep_for(100ms);
  c.nodes[0]->Restart();
  CHECK(wait_balanced(45s));
  INFO("leaders per node: " << LeadsPerNode(client.get(), c.addresses)[0]);
  std::string got;
  REQUIRE(client->Get("during", &got).ok());
}

TEST_CASE("a killed node is marked down after down_after_s and its replicas re-created after rereplicate_after_s",
          "[integration][fault][cluster]") {
  Cluster c(4, {"--down-after-s", "2", "--rereplicate-after-s", "4", "--max-concurrent-moves", "8"});
  auto client = c.Connect(20s);
  ClusterMapInfo map = WaitForMap(client.get(), c.addresses[0], 30s, [](const ClusterMapInfo& m) {
    if (UpMembers(m) != 4 || ReplicasOn(m, 2) < 4) return false;
    for (const auto& sh : m.shards) {
      if (!sh.learners.empty()) return false;
    }
    return true;
  });
  REQUIRE(ReplicasOn(map, 2) >= 4);
  for (int i = 0; i < 40; ++i) REQUIRE(client->Put("r" + std::to_string(i), std::to_string(i)).ok());

  c.nodes[1]->Kill9();
  const auto killed = std::chrono::steady_clock::now();
  auto state_of_2 = [](const ClusterMapInfo& m) {
    for (const auto& mem : m.members) {
      if (mem.id == 2) return mem.state;
    }
    return std::string();
  };
  map = WaitForMap(client.get(), c.addresses[0], 15s, [&](const ClusterMapInfo& m) { return state_of_2(m) == "down"; });
  const auto down_after = std::chrono::steady_clock::now() - killed;
  CHECK(state_of_2(map) == "down");
  CHECK(down_after >= 1500ms);  // not before its timeout (reports come every 200 ms)
  CHECK(ReplicasOn(map, 2) > 0);  // a short outage moves nothing yet
  map = WaitForMap(client.get(), c.addresses[0], 60s, [](const ClusterMapInfo& m) {
    if (ReplicasOn(m, 2) != 0) return false;
    for (const auto& sh : m.shards) {
      if (sh.voters.size() != 3 || !sh.learners.empty()) return false;
    }
    return true;
  });
  CHECK(std::chrono::steady_clock::now() - killed >= 3500ms);
  REQUIRE(ReplicasOn(map, 2) == 0);
  for (const auto& sh : map.shards) CHECK(sh.voters.size() == 3);
  for (int i = 0; i < 40; ++i) {
    std::string got;
    REQUIRE(client->Get("r" + std::to_string(i), &got).ok());
    CHECK(got == std::to_string(i));
  }
}

TEST_CASE("a shard splits under writes into two with the same replicas, and no acknowledged write is lost",
          "[integration][cluster][split]") {
  Cluster c(3);
  auto client = c.Connect(20s);
  REQUIRE(c.WaitLeader(3) >= 0);
  // Writers on shard 3's keys only, overwriting 300 keys each, so both halves are busy.
  WriteLoad load(client.get(), 3, [](int t, int i) { return KeyIn(3, t * 1000 + i % 300); });
  std::this_thread::sleep_for(700ms);

  CHECK(client->SplitShard(99).IsInvalidArgument());  // no such shard
  uint64_t version = 0;
  REQUIRE(client->SplitShard(3, &version).ok());
  ClusterMapInfo map = WaitForMap(client.get(), c.addresses[0], 10s, [](const ClusterMapInfo& m) { return m.shards.size() == 9; });
  REQUIRE(map.shards.size() >= 9);
  const ClusterMapInfo::Shard *lower = nullptr, *upper = nullptr;
  for (const auto& sh : map.shards) {
    if (sh.id == 3) lower = &sh;
    if (sh.id == 8) upper = &sh;
  }
  REQUIRE(lower != nullptr);
  REQUIRE(upper != nullptr);
  CHECK(upper->start == lower->end);
  CHECK(upper->end == ShardRanges::Uniform(8).Start(4));
  CHECK(std::set<uint64_t>(upper->voters.begin(), upper->voters.end()) ==
        std::set<uint64_t>(lower->voters.begin(), lower->voters.end()));
  CHECK(upper->epoch == lower->epoch);

  // The new shard elects a leader on the replicas that applied the split, and serves.
  REQUIRE(c.WaitLeader(8, -1, 20s) >= 0);
  // Split the lower half again at once: refused until shard 8 serves (the client retries
  // that), then done the same way.
  REQUIRE(client->SplitShard(3).ok());
  REQUIRE(c.WaitLeader(9, -1, 20s) >= 0);
  std::this_thread::sleep_for(1s);
  load.WaitAcked(101);
  load.Stop();
  INFO("first error: " << load.first_error);
  CHECK(load.errors.load() == 0);  // the client re-routes by the newer map
  CHECK(load.acked.size() > 100);
  CHECK(load.Unreadable() == 0);
  size_t in_upper = 0;
  for (const auto& [k, v] : load.acked) in_upper += KeyHash(k) >= upper->start;
  CHECK(in_upper > 0);
  CHECK(in_upper < load.acked.size());

  // All three parts keep taking writes, and every node reports all three.
  for (int i = 0; i < 20; ++i) REQUIRE(client->Put(KeyIn(3, 50000 + i), "after").ok());
  for (const auto& a : c.addresses) {
    NodeInfo info;
    REQUIRE(client->NodeStatus(a, &info).ok());
    CHECK(info.shard_count == 10);
    std::set<uint32_t> hosted;
    for (const auto& sh : info.shards) hosted.insert(sh.shard);
    CHECK(hosted.count(3));
    CHECK(hosted.count(8));
    CHECK(hosted.count(9));
  }
  // A request routed with the map from before the splits is fenced: StaleEpoch, with the
  // node's map version; one naming a shard the node does not host is WrongShard.
  std::string moved;
  for (int i = 0; moved.empty(); ++i) {
    if (KeyHash(KeyIn(3, 70000 + i)) >= upper->start) moved = KeyIn(3, 70000 + i);
  }
  pb::Request stale = GetReq(1, moved);
  stale.set_shard(3 + 1);
  stale.set_map_version(1);
  auto replies = ParseReplies(SendRaw(c.addresses[0], Frame(stale), 5s, Replies(1)).bytes);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].code() == pb::STALE_EPOCH);
  CHECK(replies[0].redirect().map_version() > 1);
  CHECK(replies[0].redirect().shard_count() == 10);
  // Restarting a replica keeps the split (its ranges are in the shards' own state).
  REQUIRE(c.nodes[1]->Stop() == 0);
  c.nodes[1]->Restart();
  for (int i = 0; i < 20; ++i) {
    std::string got;
    REQUIRE(client->Get(KeyIn(3, 50000 + i), &got).ok());
    CHECK(got == "after");
  }
}

TEST_CASE("a split's new shard moves to a node that joins later, by snapshot, with all its keys",
          "[integration][cluster][split]") {
  Cluster c(3, {"--max-concurrent-moves", "8"});
  auto client = c.Connect(20s);
  std::map<std::string, std::string> written;
  for (int i = 0; i < 200; ++i) {
    std::string k = KeyIn(5, i);
    REQUIRE(client->Put(k, "v" + std::to_string(i)).ok());
    written[k] = "v" + std::to_string(i);
  }
  REQUIRE(client->SplitShard(5).ok());
  REQUIRE(c.WaitLeader(8, -1, 20s) >= 0);
  // More writes after the split, to both halves.
  for (int i = 200; i < 300; ++i) {
    std::string k = KeyIn(5, i);
    REQUIRE(client->Put(k, "v" + std::to_string(i)).ok());
    written[k] = "v" + std::to_string(i);
  }
  // A 4th node joins; the controller gives it a share, shard 8 included (its log does not
  // hold the keys it started with, so the new replica must take a snapshot).
  std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  Ringd fourth(RingdOptions{c.dir.Sub("n4"), {"--listen", addr, "--join", c.addresses[0], "--max-concurrent-moves", "8"}});
  auto holds_8 = [](const ClusterMapInfo& m) {
    for (const auto& sh : m.shards) {
      if (sh.id == 8) return std::count(sh.voters.begin(), sh.voters.end(), 4) == 1 && sh.learners.empty();
    }
    return false;
  };
  ClusterMapInfo map = WaitForMap(client.get(), c.addresses[0], 30s, [&](const ClusterMapInfo& m) {
    if (holds_8(m)) return true;
    if (UpMembers(m) != 4 || ReplicasOn(m, 4) < 5) return false;
    for (const auto& sh : m.shards) {
      if (!sh.learners.empty()) return false;
    }
    return true;  // settled without it
  });
  if (!holds_8(map)) {
    // Placement did not choose node 4 for shard 8: drain a node that holds it, so it must.
    for (const auto& sh : map.shards) {
      if (sh.id == 8) REQUIRE(client->ChangeMember(sh.voters.front(), Client::MemberChange::kDrain).ok());
    }
    map = WaitForMap(client.get(), c.addresses[0], 60s, holds_8);
  }
  REQUIRE(holds_8(map));
  // Its copy is complete: stop it once a heartbeat has told it the last commit, and read
  // its engine directly for every key of shard 8's range.
  NodeInfo info;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  uint64_t applied = 0;
  while (std::chrono::steady_clock::now() < deadline && applied == 0) {
    if (client->NodeStatus(addr, &info).ok()) {
      for (const auto& sh : info.shards) {
        if (sh.shard == 8) applied = sh.applied_index;
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  CHECK(applied > 1);  // past the bootstrap index: it installed a snapshot and caught up
  std::this_thread::sleep_for(500ms);
  REQUIRE(fourth.Stop() == 0);
  const ClusterMapInfo::Shard* eight = nullptr;
  for (const auto& sh : map.shards) {
    if (sh.id == 8) eight = &sh;
  }
  storage::EngineOptions eo;
  eo.dir = c.dir.Sub("n4");
  eo.create_if_missing = false;
  auto engine = storage::Engine::Open(eo);
  REQUIRE(engine.ok());
  int in_eight = 0, wrong = 0;
  for (const auto& [k, v] : written) {
    if (KeyHash(k) < eight->start || (eight->end != 0 && KeyHash(k) >= eight->end)) continue;
    ++in_eight;
    std::string got;
    wrong += !(*engine)->Get(storage::Cf::kData, DataKey(k), &got).ok() || got != v;
  }
  CHECK(in_eight > 50);
  CHECK(wrong == 0);
}

}  // namespace
}  // namespace ring::test
