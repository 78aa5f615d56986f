// The multi-group Driver over real engines: three in-process nodes joined by an in-memory
// transport. Time is real here (ticks of a few ms), so every wait is bounded.
#include "replication/driver.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "common/keyspace.h"
#include "harness.h"

namespace ring::replication {
namespace {

using namespace std::chrono_literals;

// Records every applied command as data key "a/<group>/<index>[/<position>]" = data
// (the position only within a batch); result = (index, position).
// It also keeps a count of applied entries per group ("a/<group>n"), which is not
// idempotent: an entry applied twice shows as a count above the number of records.
class RecordingMachine : public StateMachine {
 public:
  void Apply(uint64_t group, const std::vector<Command>& commands, storage::WriteBatch* batch,
             std::vector<std::any>* results) override {
    for (const Command& c : commands) {
      if (on_apply) on_apply();
      batch->Put(storage::Cf::kData, RecordKey(group, c.index, c.position), c.data);
      results->push_back(std::pair<uint64_t, uint32_t>(c.index, c.position));
    }
    batch->Put(storage::Cf::kData, CountKey(group), std::to_string(Count(group) + commands.size()));
  }
  static std::string RecordKey(uint64_t group, uint64_t index, uint32_t position) {
    return "a/" + HashPrefix(group) + HashPrefix(index) + (position ? HashPrefix(position) : "");
  }
  static std::string CountKey(uint64_t group) { return "a/" + HashPrefix(group) + "n"; }
  uint64_t Count(uint64_t group) const {
    std::string v;
    return engine->Get(storage::Cf::kData, CountKey(group), &v).ok() ? std::stoull(v) : 0;
  }
  uint64_t Records(uint64_t group) const {
    uint64_t n = 0;
    engine->Scan(storage::Cf::kData, "a/" + HashPrefix(group), "a/" + HashPrefix(group + 1),
                 [&](std::string_view k, std::string_view) {
                   n += k != CountKey(group);
                   return true;
                 }).ok();
    return n;
  }
  // Image: the group's records, each as be64(key size) key be64(value size) value.
  // With `remote`, images name data "elsewhere" (a prefix) that Fetch must bring first.
  void Snapshot(uint64_t group, std::function<void(Result<std::string>)> done) override {
    auto image = Image(group);
    if (image.ok() && remote) *image = "remote:" + *image;
    done(std::move(image));
  }
  bool NeedsFetch(std::string_view image) const override { return image.starts_with("remote:"); }
  void Fetch(uint64_t, std::string image, std::function<void(Result<std::string>)> done) override {
    ++fetches;
    done(image.substr(7));
  }
  void Restored(uint64_t, std::string_view) override { ++restores_durable; }
  Result<std::string> Image(uint64_t group) {
    std::string image;
    RETURN_IF_ERROR(engine->Scan(storage::Cf::kData, "a/" + HashPrefix(group), "a/" + HashPrefix(group + 1),
                                 [&](std::string_view k, std::string_view v) {
                                   image += HashPrefix(k.size()) + std::string(k) + HashPrefix(v.size()) + std::string(v);
                                   return true;
                                 }));
    return image;
  }
  Status Restore(uint64_t group, std::string_view image, storage::WriteBatch* batch) override {
    if (NeedsFetch(image)) return Status::InvalidArgument("restore of an image that was not fetched");
    if (on_restore) on_restore();
    batch->DeleteRange(storage::Cf::kData, "a/" + HashPrefix(group), "a/" + HashPrefix(group + 1));
    auto u64 = [&](size_t at) {
      uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(image[at + i]);
      return v;
    };
    for (size_t pos = 0; pos < image.size();) {
      uint64_t kl = u64(pos);
      std::string_view k = image.substr(pos + 8, kl);
      pos += 8 + kl;
      uint64_t vl = u64(pos);
      batch->Put(storage::Cf::kData, k, image.substr(pos + 8, vl));
      pos += 8 + vl;
      ++restored;
    }
    return Status::OK();
  }
  storage::Engine* engine = nullptr;
  int restored = 0;
  bool remote = false;
  int fetches = 0;
  int restores_durable = 0;
  std::function<void()> on_restore;
  std::function<void()> on_apply;  // runs on the driver thread, before each command
};

class Net : public Transport {
 public:
  struct Link : Transport {
    Net* net;
    NodeId from;
    void Send(NodeId to, std::vector<GroupMessage> msgs) override { net->Deliver(from, to, std::move(msgs)); }
  };
  void Deliver(NodeId from, NodeId to, std::vector<GroupMessage> msgs) {
    std::lock_guard lock(mu);
    if (down.count(from) || down.count(to)) return;
    auto it = nodes.find(to);
    if (it != nodes.end()) it->second->Deliver(std::move(msgs));
  }
  void Send(NodeId, std::vector<GroupMessage>) override {}
  std::mutex mu;
  std::map<NodeId, Driver*> nodes;
  std::set<NodeId> down;
};

// DriverOptions' log compaction settings.
struct Compaction {
  uint64_t after = 20000;
  uint64_t retain = 10000;
  uint64_t bytes = 64 << 10;
  uint64_t tail = 64;
};

struct Node {
  Node(NodeId id, Net* net, const std::string& dir, Compaction compaction = {})
      : id(id), dir(dir), compaction(compaction) {
    link.net = net;
    link.from = id;
    Open(net);
  }
  void Open(Net* net) {
    storage::EngineOptions o;
    o.dir = dir;
    o.reserve_disk_bytes = 0;
    o.faults = faults;
    auto e = storage::Engine::Open(o);
    REQUIRE(e.ok());
    engine = std::move(e).value();
    DriverOptions d;
    d.node_id = id;
    d.voters = {1, 2, 3};
    d.group_count = 4;
    d.tick_interval = 5ms;
    d.election_tick = 10;
    d.seed = 7;
    d.compact_after = compaction.after;
    d.retain = compaction.retain;
    d.compact_bytes = compaction.bytes;
    d.tail = compaction.tail;
    sm.engine = engine.get();
    auto drv = Driver::Start(d, engine.get(), &link, &sm);
    REQUIRE(drv.ok());
    driver = std::move(drv).value();
    std::lock_guard lock(net->mu);
    net->nodes[id] = driver.get();
  }
  void Crash(Net* net) {
    {
      std::lock_guard lock(net->mu);
      net->nodes.erase(id);
    }
    driver.reset();
    engine.reset();
  }
  std::optional<std::string> Applied(uint64_t group, uint64_t index, uint32_t position = 0) {
    std::string v;
    if (!engine->Get(storage::Cf::kData, RecordingMachine::RecordKey(group, index, position), &v).ok()) {
      return std::nullopt;
    }
    return v;
  }
  NodeId id;
  std::string dir;
  Compaction compaction;
  Net::Link link;
  RecordingMachine sm;
  std::shared_ptr<storage::DiskFaults> faults = std::make_shared<storage::DiskFaults>();
  std::unique_ptr<storage::Engine> engine;
  std::unique_ptr<Driver> driver;
};

// Runs `start(done)` and waits (bounded) for `done`'s Status: for AddGroup/RemoveGroup.
template <typename Start>
Status Call(Start&& start) {
  auto p = std::make_shared<std::promise<Status>>();
  start([p](Status s) { p->set_value(s); });
  auto f = p->get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  return f.get();
}

struct Cluster {
  explicit Cluster(Compaction compaction = {}) {
    char tmpl[] = "/tmp/ringdrv-XXXXXX";
    root = mkdtemp(tmpl);
    for (NodeId id = 1; id <= 3; ++id) {
      nodes.push_back(std::make_unique<Node>(id, &net, root + "/n" + std::to_string(id), compaction));
    }
  }
  ~Cluster() {
    for (auto& n : nodes) n->Crash(&net);
    std::filesystem::remove_all(root);
  }
  // Proposes through whichever node accepts, until the deadline. Returns the applied index.
  uint64_t Propose(uint64_t group, const std::string& data) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& n : nodes) {
        if (!n->driver) continue;
        // Shared: a proposal to a cut-off leader completes (NotLeader) long after we stop
        // waiting for it.
        auto p = std::make_shared<std::promise<std::pair<Status, uint64_t>>>();
        n->driver->Propose(group, data, [p](Status s, std::any r) {
          p->set_value({s, s.ok() ? std::any_cast<std::pair<uint64_t, uint32_t>>(r).first : 0});
        });
        auto f = p->get_future();
        if (f.wait_for(1s) != std::future_status::ready) continue;
        auto [s, index] = f.get();
        if (s.ok()) return index;
      }
      std::this_thread::sleep_for(10ms);
    }
    FAIL("no node accepted a proposal to group " << group);
    return 0;
  }
  bool AllApplied(uint64_t group, uint64_t index, const std::string& data, uint32_t position = 0) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      bool all = true;
      for (auto& n : nodes) {
        if (n->driver && n->Applied(group, index, position) != std::optional<std::string>(data)) all = false;
      }
      if (all) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  std::string root;
  Net net;
  std::vector<std::unique_ptr<Node>> nodes;
};

TEST_CASE("every group elects a leader and replicates proposals to all nodes", "[replication][driver]") {
  Cluster c;
  for (uint64_t g = 0; g < 4; ++g) {
    for (int i = 0; i < 5; ++i) {
      std::string data = "g" + std::to_string(g) + "-" + std::to_string(i);
      uint64_t index = c.Propose(g, data);
      CHECK(c.AllApplied(g, index, data));
    }
  }
  // Group commit: far fewer writes than entries once proposals arrive together.
  std::vector<std::future<void>> fs;
  std::atomic<int> ok{0};
  for (int i = 0; i < 200; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      if (c.Propose(static_cast<uint64_t>(i % 4), "burst" + std::to_string(i)) > 0) ok++;
    }));
  }
  for (auto& f : fs) f.wait();
  CHECK(ok.load() == 200);
}

TEST_CASE("a cycle's proposals to one group share one log entry, and each proposer gets its own command's result",
          "[replication][driver]") {
  Cluster c;
  c.Propose(0, "warm");
  Node* leader = nullptr;
  for (auto& n : c.nodes) {
    if (n->driver->LeaderOf(0) == n->id) leader = n.get();
  }
  REQUIRE(leader != nullptr);
  // The leader's driver thread is held inside Apply while the proposals queue, so its next
  // cycle takes them all at once.
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> hold{true};
  leader->sm.on_apply = [&] {
    if (hold.exchange(false)) {
      entered.set_value();
      released.wait();
    }
  };
  struct Outcome {
    Status status;
    std::pair<uint64_t, uint32_t> at;
  };
  auto propose = [&](const std::string& data) {
    auto p = std::make_shared<std::promise<Outcome>>();
    leader->driver->Propose(0, data, [p](Status s, std::any r) {
      p->set_value({s, s.ok() ? std::any_cast<std::pair<uint64_t, uint32_t>>(r) : std::pair<uint64_t, uint32_t>()});
    });
    return p->get_future();
  };
  auto blocker = propose("blocker");
  entered.get_future().wait();
  // 40 small proposals, then three of 100 KiB: the batch cap (256 KiB) cuts the run into
  // [40 small + 2 big] and [1 big].
  std::vector<std::string> data;
  std::vector<std::future<Outcome>> outcomes;
  for (int i = 0; i < 40; ++i) data.push_back("b" + std::to_string(i));
  for (int i = 0; i < 3; ++i) data.push_back(std::string(100 << 10, static_cast<char>('x' + i)));
  for (const auto& d : data) outcomes.push_back(propose(d));
  release.set_value();
  REQUIRE(blocker.get().status.ok());
  std::map<uint64_t, std::vector<uint32_t>> positions;  // entry index -> positions answered
  for (size_t i = 0; i < data.size(); ++i) {
    Outcome o = outcomes[i].get();
    REQUIRE(o.status.ok());
    positions[o.at.first].push_back(o.at.second);
    CHECK(c.AllApplied(0, o.at.first, data[i], o.at.second));
  }
  REQUIRE(positions.size() == 2);
  std::vector<uint32_t> first_run(42);
  std::iota(first_run.begin(), first_run.end(), 0u);
  CHECK(positions.begin()->second == first_run);
  CHECK(positions.rbegin()->second == std::vector<uint32_t>{0});
  CHECK(positions.rbegin()->first == positions.begin()->first + 1);
  // Every replica applied each command once.
  for (auto& n : c.nodes) CHECK(n->sm.Count(0) == n->sm.Records(0));
}

TEST_CASE("a crashed node restarts from its log and catches up on what it missed", "[replication][driver]") {
  Cluster c;
  uint64_t first = c.Propose(0, "before");
  REQUIRE(c.AllApplied(0, first, "before"));
  c.nodes[2]->Crash(&c.net);
  std::vector<std::pair<uint64_t, std::string>> missed;
  for (int i = 0; i < 20; ++i) {
    std::string d = "missed" + std::to_string(i);
    missed.emplace_back(c.Propose(0, d), d);
  }
  c.nodes[2]->Open(&c.net);
  for (auto& [index, d] : missed) CHECK(c.AllApplied(0, index, d));
  CHECK(c.nodes[2]->Applied(0, first) == std::optional<std::string>("before"));
}

TEST_CASE("a log is compacted as far as every replica has it, and no further while one is down",
          "[replication][driver]") {
  Cluster c(Compaction{.bytes = 256, .tail = 2});
  auto status = [](Node& n) {
    for (const GroupStatus& s : n.driver->Groups()) {
      if (s.group == 0) return s;
    }
    FAIL("group 0 is not hosted on node " << n.id);
    return GroupStatus{};
  };
  auto data = [](const std::string& prefix, int i) { return prefix + std::to_string(i) + std::string(60, '.'); };
  std::map<std::string, uint64_t> index_of;  // data -> its entry
  auto propose = [&](const std::string& prefix, int n) {
    uint64_t last = 0;
    for (int i = 0; i < n; ++i) index_of[data(prefix, i)] = last = c.Propose(0, data(prefix, i));
    REQUIRE(c.AllApplied(0, last, data(prefix, n - 1)));
    return last;
  };
  auto wait_for = [](auto&& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return done();
  };

  // Steady state: every replica keeps only a short tail behind what it applied (the old
  // rule alone, 20,000 entries, would keep all of them).
  uint64_t last = propose("steady", 40);
  for (auto& n : c.nodes) {
    CHECK(wait_for([&] { return status(*n).first_index > last - 20; }));
    GroupStatus s = status(*n);
    CHECK(s.first_index - 1 <= s.applied);
  }

  // A follower goes down. The leader keeps every entry after the last it had, and tells
  // the other follower to keep them too.
  Node* leader = nullptr;
  for (auto& n : c.nodes) {
    if (n->driver->LeaderOf(0) == n->id) leader = n.get();
  }
  REQUIRE(leader != nullptr);
  Node* down = c.nodes[0].get() == leader ? c.nodes[1].get() : c.nodes[0].get();
  Node* up = nullptr;
  for (auto& n : c.nodes) {
    if (n.get() != leader && n.get() != down) up = n.get();
  }
  REQUIRE(wait_for([&] { return status(*down).applied >= last; }));  // its status is current
  const uint64_t down_last = status(*down).last_index;
  down->Crash(&c.net);
  propose("missed", 20);
  CHECK(status(*leader).first_index <= down_last + 1);
  CHECK(status(*up).first_index <= down_last + 1);
  // The other two restart in turn, forgetting what they were told and what they knew of
  // the straggler (a new leader's view of its progress is 0): still nothing past it goes.
  for (Node* n : {up, leader}) {
    n->Crash(&c.net);
    n->Open(&c.net);
    propose("restarted" + std::to_string(n->id) + "-", 10);
  }
  propose("missed-again", 20);
  CHECK(status(*leader).first_index <= down_last + 1);
  CHECK(status(*up).first_index <= down_last + 1);

  // Whichever leads now fails as the straggler returns: the other leads, and the
  // straggler catches up from its log, not from a snapshot.
  Node* now_leading = nullptr;
  REQUIRE(wait_for([&] {
    for (Node* n : {leader, up}) {
      if (n->driver->LeaderOf(0) == n->id) now_leading = n;
    }
    return now_leading != nullptr;
  }));
  now_leading->Crash(&c.net);
  down->Open(&c.net);
  last = propose("after", 5);
  for (const auto& [d, index] : index_of) CHECK(c.AllApplied(0, index, d));
  CHECK(down->driver->stats().snapshots_installed.load() == 0);
  // With everyone caught up, the logs are compacted again.
  now_leading->Open(&c.net);
  last = propose("later", 20);
  for (auto& n : c.nodes) CHECK(wait_for([&] { return status(*n).first_index > last - 20; }));
}

TEST_CASE("a node behind the leaders' compacted logs catches up from a state snapshot", "[replication][driver]") {
  Cluster c(Compaction{.after = 20, .retain = 5});
  uint64_t first = c.Propose(0, "before");
  REQUIRE(c.AllApplied(0, first, "before"));
  c.nodes[2]->Crash(&c.net);
  std::vector<std::pair<uint64_t, std::string>> missed;
  for (int i = 0; i < 80; ++i) {
    std::string d = "missed" + std::to_string(i);
    missed.emplace_back(c.Propose(0, d), d);
  }
  // The survivors compacted far past where node 3 stopped.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (c.nodes[0]->driver->stats().compactions.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(c.nodes[0]->driver->stats().compactions.load() > 0);
  c.nodes[2]->Open(&c.net);
  for (auto& [index, d] : missed) CHECK(c.AllApplied(0, index, d));
  CHECK(c.nodes[2]->Applied(0, first) == std::optional<std::string>("before"));
  CHECK(c.nodes[2]->driver->stats().snapshots_installed.load() >= 1);
  CHECK(c.nodes[2]->sm.restored > 0);
  // And it keeps replicating normally afterwards.
  uint64_t after = c.Propose(0, "after");
  CHECK(c.AllApplied(0, after, "after"));
}

TEST_CASE("a snapshot whose data lives elsewhere is fetched before Raft installs it, and a crash mid-install is redone",
          "[replication][driver]") {
  Cluster c(Compaction{.after = 20, .retain = 5});
  for (auto& n : c.nodes) n->sm.remote = true;
  uint64_t first = c.Propose(0, "before");
  REQUIRE(c.AllApplied(0, first, "before"));
  c.nodes[2]->Crash(&c.net);
  std::vector<std::pair<uint64_t, std::string>> missed;
  for (int i = 0; i < 80; ++i) missed.emplace_back(c.Propose(0, "m" + std::to_string(i)), "m" + std::to_string(i));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (c.nodes[0]->driver->stats().compactions.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(c.nodes[0]->driver->stats().compactions.load() > 0);
  // Node 3 comes back; its disk fails right after the restore ran (the restore record is
  // durable, the batch finishing the install is not), and it crashes like that.
  Node& n3 = *c.nodes[2];
  std::atomic<bool> failed{false};
  n3.sm.on_restore = [&] {
    n3.faults->fail_writes_errno = ENOSPC;
    failed = true;
  };
  n3.Open(&c.net);
  deadline = std::chrono::steady_clock::now() + 10s;
  while (!failed && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  REQUIRE(failed);
  CHECK(n3.sm.fetches >= 1);
  CHECK(n3.sm.restores_durable == 0);
  n3.Crash(&c.net);
  n3.faults->fail_writes_errno = 0;
  n3.sm.on_restore = nullptr;
  int restored_before = n3.sm.restored;
  n3.Open(&c.net);
  // The install was finished at start, from the record, before the group ran.
  CHECK(n3.sm.restored > restored_before);
  CHECK(n3.sm.restores_durable >= 1);
  for (auto& [index, d] : missed) CHECK(c.AllApplied(0, index, d));
  uint64_t after = c.Propose(0, "after");
  CHECK(c.AllApplied(0, after, "after"));
  CHECK(n3.sm.Count(0) == n3.sm.Records(0));  // nothing applied twice
}

TEST_CASE("writes that fail on one node's disk are retried: nothing lost, nothing applied twice",
          "[replication][driver]") {
  Cluster c;
  for (uint64_t g = 0; g < 4; ++g) REQUIRE(c.Propose(g, "warm") > 0);
  // Node 1 leads some groups and follows others; its disk refuses every write for a while,
  // under a steady stream of proposals, then recovers.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> acked;  // group, index, data
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) {
        uint64_t g = static_cast<uint64_t>(w);
        std::string d = "w" + std::to_string(w) + "-" + std::to_string(i);
        uint64_t index = c.Propose(g, d);
        std::lock_guard lock(mu);
        acked.emplace_back(g, index, d);
      }
    });
  }
  std::this_thread::sleep_for(100ms);
  c.nodes[0]->faults->fail_writes_errno = ENOSPC;
  std::this_thread::sleep_for(300ms);
  c.nodes[0]->faults->fail_writes_errno = 0;
  std::this_thread::sleep_for(200ms);
  stop = true;
  for (auto& t : writers) t.join();
  CHECK(c.nodes[0]->faults->injected.load() > 0);
  // Every acknowledged proposal is applied at its index on every node, and no two
  // acknowledgements share an index (an entry applied twice would be acked twice).
  std::set<std::pair<uint64_t, uint64_t>> seen;
  for (auto& [g, index, d] : acked) {
    CHECK(seen.emplace(g, index).second);
    CHECK(c.AllApplied(g, index, d));
  }
  CHECK(acked.size() > 20);
  for (auto& n : c.nodes) {
    for (uint64_t g = 0; g < 4; ++g) CHECK(n->sm.Count(g) == n->sm.Records(g));
  }
}

TEST_CASE("groups can be added and removed while the driver runs", "[replication][driver]") {
  Cluster c;
  constexpr uint64_t kNew = 1000;  // an id far from the static groups 0..3
  std::vector<std::unique_ptr<RecordingMachine>> machines;
  for (auto& n : c.nodes) {
    CHECK_FALSE(n->driver->HasGroup(kNew));
    machines.push_back(std::make_unique<RecordingMachine>());
    machines.back()->engine = n->engine.get();
    GroupSpec spec{kNew, machines.back().get(), {1, 2, 3}};
    CHECK(Call([&](auto done) { n->driver->AddGroup(spec, done); }).ok());
    CHECK(n->driver->HasGroup(kNew));
    // Twice is refused; so is a spec without a state machine.
    CHECK(Call([&](auto done) { n->driver->AddGroup(spec, done); }).IsInvalidArgument());
    CHECK(Call([&](auto done) { n->driver->AddGroup(GroupSpec{kNew + 1, nullptr, {1}}, done); }).IsInvalidArgument());
  }
  uint64_t index = c.Propose(kNew, "dynamic");
  CHECK(c.AllApplied(kNew, index, "dynamic"));
  CHECK(machines[0]->Records(kNew) == 1);
  // The static groups are undisturbed.
  uint64_t s0 = c.Propose(0, "static");
  CHECK(c.AllApplied(0, s0, "static"));

  for (auto& n : c.nodes) {
    CHECK(Call([&](auto done) { n->driver->RemoveGroup(kNew, done); }).ok());
    CHECK_FALSE(n->driver->HasGroup(kNew));
    CHECK(Call([&](auto done) { n->driver->RemoveGroup(kNew, done); }).IsInvalidArgument());
    // Its log is gone from the engine.
    bool any = false;
    n->engine->Scan(storage::Cf::kRaftLog, HashPrefix(kNew), HashPrefix(kNew + 1),
                    [&](std::string_view, std::string_view) { return !(any = true); }).ok();
    CHECK_FALSE(any);
  }
  auto p = std::make_shared<std::promise<Status>>();
  c.nodes[0]->driver->Propose(kNew, "gone", [p](Status s, std::any) { p->set_value(s); });
  CHECK(p->get_future().get().IsInvalidArgument());
  CHECK_FALSE(c.nodes[0]->driver->ReadLeaseValid(kNew));
  CHECK(c.nodes[0]->driver->LeaderOf(kNew) == kNoNode);
}

TEST_CASE("a new group's designated founder leads it without waiting out an election timeout",
          "[replication][driver]") {
  Cluster c;
  // Left to their randomized timeouts (the seeds follow from the group id), node 1 would
  // lead this group: checked by running the test without the campaign flag.
  constexpr uint64_t kNew = 2002;
  std::vector<std::unique_ptr<RecordingMachine>> machines;
  // Node 2 is told to campaign and is added last; nodes 1 and 3 campaign only after an
  // election timeout (10 ticks or more) without a leader, by then long since found.
  for (size_t i : {0, 2, 1}) {
    auto& n = c.nodes[i];
    machines.push_back(std::make_unique<RecordingMachine>());
    machines.back()->engine = n->engine.get();
    GroupSpec spec{kNew, machines.back().get(), {1, 2, 3}};
    spec.campaign = n->id == 2;
    REQUIRE(Call([&](auto done) { n->driver->AddGroup(spec, done); }).ok());
  }
  auto deadline = std::chrono::steady_clock::now() + 5s;
  auto led = [&] {
    for (auto& n : c.nodes) {
      if (n->driver->LeaderOf(kNew) != 2) return false;
    }
    return true;
  };
  while (!led() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  CHECK(led());
  uint64_t index = c.Propose(kNew, "first");
  CHECK(c.AllApplied(kNew, index, "first"));
}

TEST_CASE("a replica moves by learner, promotion and removal while the group serves", "[replication][driver]") {
  Cluster c;
  constexpr uint64_t kMoving = 2000;
  std::vector<std::unique_ptr<RecordingMachine>> machines;
  auto add = [&](Node& n, std::vector<NodeId> founders) {
    machines.push_back(std::make_unique<RecordingMachine>());
    machines.back()->engine = n.engine.get();
    CHECK(Call([&](auto done) { n.driver->AddGroup(GroupSpec{kMoving, machines.back().get(), founders}, done); }).ok());
  };
  // Proposes a membership change through whichever node leads, until it is applied.
  auto change = [&](ConfChangeType type, NodeId node) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& n : c.nodes) {
        if (n->driver->LeaderOf(kMoving) != n->id) continue;
        auto p = std::make_shared<std::promise<Status>>();
        n->driver->ProposeConfChange(kMoving, ConfChange{type, node}, [p](Status s, std::any) { p->set_value(s); });
        auto f = p->get_future();
        if (f.wait_for(2s) == std::future_status::ready && f.get().ok()) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  // The leader's view of `node`, once it reports one.
  auto leader_view = [&](NodeId node) -> std::optional<PeerStatus> {
    for (auto& n : c.nodes) {
      for (const auto& g : n->driver->Groups()) {
        if (g.group != kMoving || g.role != Role::kLeader) continue;
        for (const auto& peer : g.peers) {
          if (peer.id == node) return peer;
        }
      }
    }
    return std::nullopt;
  };

  add(*c.nodes[0], {1, 2});
  add(*c.nodes[1], {1, 2});
  uint64_t before = 0;
  for (int i = 0; i < 20; ++i) before = c.Propose(kMoving, "before" + std::to_string(i));
  // Node 3 joins empty, learns everything as a learner, then becomes a voter.
  add(*c.nodes[2], {});
  REQUIRE(change(ConfChangeType::kAddLearner, 3));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto v = leader_view(3);
    if (v && v->learner && v->match >= before) break;
    std::this_thread::sleep_for(10ms);
  }
  auto learner = leader_view(3);
  REQUIRE(learner);
  CHECK(learner->learner);
  CHECK(learner->match >= before);
  REQUIRE(c.nodes[2]->Applied(kMoving, before) == std::optional<std::string>("before19"));
  REQUIRE(change(ConfChangeType::kAddVoter, 3));
  // Node 1 leaves; the group goes on with 2 and 3, even with node 1 gone entirely.
  REQUIRE(change(ConfChangeType::kRemoveNode, 1));
  CHECK(Call([&](auto done) { c.nodes[0]->driver->RemoveGroup(kMoving, done); }).ok());
  uint64_t after = c.Propose(kMoving, "after");
  deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline &&
         (c.nodes[1]->Applied(kMoving, after) != std::optional<std::string>("after") ||
          c.nodes[2]->Applied(kMoving, after) != std::optional<std::string>("after"))) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(c.nodes[1]->Applied(kMoving, after) == std::optional<std::string>("after"));
  CHECK(c.nodes[2]->Applied(kMoving, after) == std::optional<std::string>("after"));
  // Status is refreshed every tick, so wait for one.
  auto voters_of = [&](int i) {
    for (const auto& g : c.nodes[i]->driver->Groups()) {
      if (g.group == kMoving) return g.conf.voters;
    }
    return std::vector<NodeId>{};
  };
  deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline && (voters_of(1) != std::vector<NodeId>{2, 3} ||
                                                         voters_of(2) != std::vector<NodeId>{2, 3})) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(voters_of(1) == std::vector<NodeId>{2, 3});
  CHECK(voters_of(2) == std::vector<NodeId>{2, 3});
  // A change that makes no sense for the configuration is refused, not applied.
  bool refused = false;
  for (auto& n : c.nodes) {
    if (n->driver->LeaderOf(kMoving) != n->id) continue;
    auto p = std::make_shared<std::promise<Status>>();
    n->driver->ProposeConfChange(kMoving, ConfChange{ConfChangeType::kRemoveNode, 7}, [p](Status s, std::any) { p->set_value(s); });
    refused = p->get_future().get().IsInvalidArgument();
  }
  CHECK(refused);
}

TEST_CASE("ReadIndex confirms leadership on the leader and refuses on followers", "[replication][driver]") {
  Cluster c;
  uint64_t idx = c.Propose(2, "r");
  REQUIRE(c.AllApplied(2, idx, "r"));
  int ok = 0, not_leader = 0;
  for (auto& n : c.nodes) {
    auto p = std::make_shared<std::promise<Status>>();
    n->driver->ReadIndex(2, [p](Status s) { p->set_value(s); });
    auto f = p->get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    Status s = f.get();
    if (s.ok()) ++ok;
    else if (s.code() == StatusCode::kNotLeader) ++not_leader;
  }
  CHECK(ok == 1);
  CHECK(not_leader == 2);
}

TEST_CASE("a leader cut off from its peers loses its read lease and its proposals fail over", "[replication][driver]") {
  Cluster c;
  uint64_t idx = c.Propose(1, "x");
  REQUIRE(c.AllApplied(1, idx, "x"));
  // Find the leader of group 1 and isolate it.
  NodeId leader = kNoNode;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (leader == kNoNode && std::chrono::steady_clock::now() < deadline) {
    for (auto& n : c.nodes) {
      if (n->driver->ReadLeaseValid(1)) leader = n->id;
    }
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(leader != kNoNode);
  {
    std::lock_guard lock(c.net.mu);
    c.net.down.insert(leader);
  }
  // Within a few election timeouts the old leader stops claiming a lease...
  deadline = std::chrono::steady_clock::now() + 5s;
  while (c.nodes[leader - 1]->driver->ReadLeaseValid(1) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK_FALSE(c.nodes[leader - 1]->driver->ReadLeaseValid(1));
  // ...and the others elect a new leader that accepts writes.
  uint64_t after = c.Propose(1, "after");
  CHECK(after > idx);
  {
    std::lock_guard lock(c.net.mu);
    c.net.down.clear();
  }
  CHECK(c.AllApplied(1, after, "after"));
}

}  // namespace
}  // namespace ring::replication

namespace ring::replication {
namespace {

// A one-node driver: node 1 the only voter of `groups` groups.
struct LoneVoter {
  LoneVoter(uint64_t groups, std::chrono::milliseconds tick) {
    link.net = &net;
    link.from = 1;
    sm.engine = engine.get();
    DriverOptions d;
    d.node_id = 1;
    d.voters = {1};
    d.group_count = groups;
    d.tick_interval = tick;
    auto started = Driver::Start(d, engine.get(), &link, &sm);
    REQUIRE(started.ok());
    driver = std::move(started).value();
  }
  test::ScratchEngine engine;
  Net net;
  Net::Link link;
  RecordingMachine sm;
  std::unique_ptr<Driver> driver;
};

TEST_CASE("a lone voter elects itself at once and holds its read lease", "[replication][driver]") {
  LoneVoter n(4, 20ms);
  REQUIRE(n.driver->WaitForLeaders(2s));
  auto deadline = std::chrono::steady_clock::now() + 2s;
  bool all = false;
  while (!all && std::chrono::steady_clock::now() < deadline) {
    all = true;
    for (uint64_t g = 0; g < 4; ++g) all = all && n.driver->ReadLeaseValid(g);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(all);
  // Once held, the lease stays valid across ticks while nothing else happens.
  int lapses = 0;
  for (int i = 0; i < 300; ++i) {
    if (!n.driver->ReadLeaseValid(0)) ++lapses;
    std::this_thread::sleep_for(1ms);
  }
  CHECK(lapses == 0);
}

TEST_CASE("a lone voter answers a write as soon as it is durable, not at the next tick", "[replication][driver]") {
  LoneVoter n(1, 1000ms);  // a write that waited for a tick would take up to a second
  REQUIRE(n.driver->WaitForLeaders(5s));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    n.driver->Propose(0, "w" + std::to_string(i), [p](Status s, std::any) { p->set_value(s); });
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    REQUIRE(f.get().ok());
  }
  // Five ticks' worth if each write waited for one; a few milliseconds if not.
  CHECK(std::chrono::steady_clock::now() - start < 2500ms);
}

}  // namespace
}  // namespace ring::replication
