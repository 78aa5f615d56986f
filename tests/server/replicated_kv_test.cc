// The replicated state machine's snapshots: SST export, fetch over a real socket, ingest;
// exactly-once state travelling with them; hostile manifests and chunk requests.
#include "server/replicated_kv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "common/frame.h"
#include "harness.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "server/snapshot_store.h"

namespace ring::server {
namespace {

// The commands the driver hands the state machine for these (kNormal) entries.
std::vector<replication::Command> Commands(const std::vector<const replication::Entry*>& entries) {
  std::vector<replication::Command> out;
  for (const replication::Entry* e : entries) out.push_back(replication::Command{e->index, 0, e->data});
  return out;
}

using Db = test::ScratchEngine;
using namespace std::chrono_literals;

replication::Entry PutEntry(uint64_t index, const std::string& k, const std::string& v, uint64_t client, uint64_t seq) {
  pb::Request r;
  r.mutable_put()->set_key(k);
  r.mutable_put()->set_value(v);
  r.set_client_id(client);
  r.set_seq(seq);
  return replication::Entry{1, index, replication::EntryType::kNormal, EncodeCommand(r, 1000)};
}

// 64 KiB that do not compress, different for every n.
std::string Noise(int n) {
  std::mt19937_64 rng(static_cast<uint64_t>(n) + 1);
  std::string out(64 << 10, '\0');
  for (size_t i = 0; i < out.size(); i += 8) {
    uint64_t x = rng();
    std::memcpy(&out[i], &x, 8);
  }
  return out;
}

// Answers snapshot chunk requests on 127.0.0.1 from the store set with Serve(), one
// connection at a time, as ringd's service does; `tamper` may rewrite each reply. Bounded:
// stops on destruction.
class ChunkServer {
 public:
  explicit ChunkServer(std::function<void(pb::Response*)> tamper = {}) : tamper_(std::move(tamper)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(listen(fd_, 4) == 0);
    socklen_t len = sizeof sa;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
  }
  ~ChunkServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    int c = conn_.load();
    if (c >= 0) shutdown(c, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  void Serve(SnapshotStore* store) {
    store_ = store;
    thread_ = std::thread([this] { Loop(); });
  }
  const std::string& address() const { return address_; }

 private:
  void Loop() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      conn_ = c;
      FrameReader reader;
      char buf[65536];
      bool ok = true;
      while (ok) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        reader.Feed(std::string_view(buf, static_cast<size_t>(n)));
        for (;;) {
          auto next = reader.Next();
          if (!next.ok() || !next->has_value()) break;
          pb::Request req;
          req.ParseFromArray((*next)->data(), static_cast<int>((*next)->size()));
          pb::Response resp;
          resp.set_id(req.id());
          const auto& cr = req.snapshot_chunk();
          std::string data;
          Status s = store_->ReadChunk(cr.id(), cr.file(), cr.offset(), cr.max_bytes(), &data);
          if (s.ok()) *resp.mutable_snapshot_chunk()->mutable_data() = std::move(data);
          else SetResponseStatus(s, &resp);
          if (tamper_) tamper_(&resp);
          std::string frame;
          AppendResponseFrame(resp, &frame);
          ok = send(c, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size());
          if (!ok) break;
        }
      }
      conn_ = -1;
      close(c);
    }
  }
  SnapshotStore* store_ = nullptr;
  std::function<void(pb::Response*)> tamper_;
  int fd_ = -1;
  std::atomic<int> conn_{-1};
  std::atomic<bool> stop_{false};
  std::string address_;
  std::thread thread_;
};

// A node's engine, snapshot store and state machine (one shard covering the hash space).
struct Node {
  explicit Node(std::string advertise = "", uint64_t rate = 0, std::vector<std::string> keep = {}) {
    SnapshotStoreOptions o;
    o.dir = db.dir() + "/snapshots";
    o.advertise = std::move(advertise);
    o.fetch_bytes_per_sec = rate;
    o.io_timeout = 3s;
    auto s = SnapshotStore::Open(db.get(), o, keep);
    REQUIRE(s.ok());
    store = std::move(s).value();
    kv = std::make_unique<ReplicatedKv>(db.get(), ReplicatedKv::UniformRanges(1), store.get());
  }
  Result<std::string> Snapshot() {
    std::promise<Result<std::string>> p;
    kv->Snapshot(0, [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Result<std::string> Fetch(const std::string& image) {
    std::promise<Result<std::string>> p;
    kv->Fetch(0, image, [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  void Apply(const std::vector<const replication::Entry*>& entries) {
    storage::WriteBatch batch;
    std::vector<std::any> results;
    kv->Apply(0, Commands(entries), &batch, &results);
    REQUIRE(db->Write(batch, false).ok());
  }
  // Puts keys k0..k<n-1> with Noise(i) values (client 7, seqs 1..n).
  void ApplyNoise(int n) {
    std::vector<replication::Entry> entries;
    for (int i = 0; i < n; ++i) entries.push_back(PutEntry(i + 1, "k" + std::to_string(i), Noise(i), 7, i + 1));
    std::vector<const replication::Entry*> ptrs;
    for (auto& e : entries) ptrs.push_back(&e);
    Apply(ptrs);
  }
  // Fetches `image` from its source and installs it as the driver would.
  void Install(const std::string& image) {
    REQUIRE(kv->NeedsFetch(image));
    auto local = Fetch(image);
    REQUIRE(local.ok());
    CHECK_FALSE(kv->NeedsFetch(*local));
    storage::WriteBatch batch;
    REQUIRE(kv->Restore(0, *local, &batch).ok());
    REQUIRE(db->Write(batch, true).ok());
    kv->Restored(0, *local);
  }
  std::string Get(const std::string& k) {
    std::string v;
    Status s = db->Get(storage::Cf::kData, DataKey(k), &v);
    return s.ok() ? v : "<" + s.ToString() + ">";
  }
  size_t IncomingDirs() {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(db.dir() + "/snapshots/in")) n += e.is_directory();
    return n;
  }
  Db db;
  std::unique_ptr<SnapshotStore> store;
  std::unique_ptr<ReplicatedKv> kv;
};

// Node a serves its snapshots through a ChunkServer; node b fetches them.
struct Pair {
  explicit Pair(std::function<void(pb::Response*)> tamper = {}, uint64_t rate = 0)
      : server(std::move(tamper)), a(server.address()), b("", rate) {
    server.Serve(a.store.get());
  }
  ChunkServer server;
  Node a, b;
};

SnapshotStoreOptions Opts(const std::string& db_dir) {
  SnapshotStoreOptions o;
  o.dir = db_dir + "/snapshots";
  return o;
}

std::string Manifest(const pb::SnapshotManifest& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

TEST_CASE("a shard snapshot moves as SST files and carries its keys and dedup table", "[replicated_kv]") {
  Pair p;
  // More than one chunk, and more than the 7 MiB a single Raft message could carry.
  p.a.ApplyNoise(160);
  // b holds a key a never had: the snapshot replaces b's range, not merges into it.
  auto stale = PutEntry(1, "only-on-b", "x", 9, 1);
  p.b.Apply({&stale});

  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  CHECK(image->size() < 4096);  // Raft carries only the manifest
  p.b.Install(*image);
  CHECK(p.b.Get("k0") == Noise(0));
  CHECK(p.b.Get("k159") == Noise(159));
  CHECK(p.b.Get("only-on-b").find("NotFound") != std::string::npos);
  CHECK(p.b.IncomingDirs() == 0);  // released once durable
  CHECK(p.b.store->stats().fetch_bytes.load() > (8u << 20));
  // A retry of seq 2 on the new node is answered from the dedup table, not re-applied.
  auto retry = PutEntry(200, "k1", "changed", 7, 2);
  p.b.Apply({&retry});
  CHECK(p.b.Get("k1") == Noise(1));
  // The restore is repeatable (the driver redoes it after a crash) while its files exist.
  auto again = p.b.Fetch(*image);
  REQUIRE(again.ok());
  storage::WriteBatch batch;
  REQUIRE(p.b.kv->Restore(0, *again, &batch).ok());
  REQUIRE(p.b.kv->Restore(0, *again, &batch).ok());
  CHECK(p.b.Get("k1") == Noise(1));
}

// --- Splits -------------------------------------------------------------------------------

replication::Entry SplitEntry(uint64_t index, uint32_t child, uint64_t mid, std::vector<uint64_t> founders) {
  pb::Request r;
  r.mutable_split()->set_child(child);
  r.mutable_split()->set_mid(mid);
  for (uint64_t f : founders) r.mutable_split()->add_founders(f);
  return replication::Entry{1, index, replication::EntryType::kNormal, EncodeCommand(r, 1000)};
}

// A key whose hash is in the upper (or lower) half of the hash space.
std::string KeyInHalf(bool upper, int n) {
  for (int i = 0;; ++i) {
    std::string k = "h" + std::to_string(n) + "-" + std::to_string(i);
    if ((KeyHash(k) >= (uint64_t{1} << 63)) == upper) return k;
  }
}

// Applies `entries` to shard `group` of `node` and writes the batch; the results.
std::vector<KvResult> ApplyTo(Node& node, uint64_t group, std::vector<replication::Entry> entries) {
  std::vector<const replication::Entry*> ptrs;
  for (auto& e : entries) ptrs.push_back(&e);
  storage::WriteBatch batch;
  std::vector<std::any> results;
  node.kv->Apply(group, Commands(ptrs), &batch, &results);
  REQUIRE(node.db->Write(batch, false).ok());
  std::vector<KvResult> out;
  for (auto& r : results) out.push_back(std::any_cast<KvResult>(r));
  return out;
}

TEST_CASE("a split entry gives the upper half to the child, with the dedup records, and fences the parent",
          "[replicated_kv][split]") {
  Node n;
  const uint64_t mid = uint64_t{1} << 63;
  const std::string lo = KeyInHalf(false, 1), hi = KeyInHalf(true, 2), hi2 = KeyInHalf(true, 3);
  auto before = ApplyTo(n, 0, {PutEntry(1, lo, "lo1", 7, 1), PutEntry(2, hi, "hi1", 7, 2)});
  CHECK(before[1].status.ok());
  CHECK_FALSE(n.kv->SplitFounders(1).has_value());

  // One batch: the split, then a write for each half and a retry of a pre-split write.
  auto r = ApplyTo(n, 0, {SplitEntry(3, 1, mid, {1, 2, 3}), PutEntry(4, hi2, "refused", 7, 3),
                          PutEntry(5, lo, "lo2", 7, 4), PutEntry(6, hi, "retry", 7, 2)});
  CHECK(r[0].status.ok());
  CHECK(r[1].status.code() == StatusCode::kWrongShard);
  CHECK(r[1].status.message().find("after a split") != std::string::npos);
  CHECK(r[2].status.ok());
  CHECK(r[3].status.ok());  // the original result, not applied again
  CHECK(n.Get(hi) == "hi1");
  CHECK(n.Get(hi2).find("NotFound") != std::string::npos);
  CHECK(n.Get(lo) == "lo2");

  // Both ranges are recorded, durably; the child names its founders.
  REQUIRE(n.kv->DurableRange(0).has_value());
  CHECK(n.kv->DurableRange(0)->start == 0);
  CHECK(n.kv->DurableRange(0)->end == mid);
  REQUIRE(n.kv->DurableRange(1).has_value());
  CHECK(n.kv->DurableRange(1)->start == mid);
  CHECK(n.kv->DurableRange(1)->end == 0);
  CHECK(n.kv->SplitFounders(1) == std::vector<replication::NodeId>{1, 2, 3});
  CHECK_FALSE(n.kv->SplitFounders(0).has_value());

  // The child: serves its half, answers retries of the parent's writes from the copied
  // records, and refuses the other half.
  auto c = ApplyTo(n, 1, {PutEntry(1, hi, "again", 7, 2), PutEntry(2, hi2, "hi2", 7, 5), PutEntry(3, lo, "no", 7, 6)});
  CHECK(c[0].status.ok());
  CHECK(n.Get(hi) == "hi1");
  CHECK(c[1].status.ok());
  CHECK(n.Get(hi2) == "hi2");
  CHECK(c[2].status.code() == StatusCode::kWrongShard);
  CHECK(n.Get(lo) == "lo2");

  // A restart (a fresh state machine over the same engine) sees the same ranges.
  n.kv = std::make_unique<ReplicatedKv>(n.db.get(), ReplicatedKv::UniformRanges(1), n.store.get());
  auto after = ApplyTo(n, 0, {PutEntry(7, hi2, "still refused", 7, 7)});
  CHECK(after[0].status.code() == StatusCode::kWrongShard);
}

TEST_CASE("malformed split entries are refused and change nothing", "[replicated_kv][split]") {
  Node n;
  const uint64_t mid = uint64_t{1} << 63;
  auto r = ApplyTo(n, 0, {SplitEntry(1, 0, mid, {1}), SplitEntry(2, 1, 0, {1}), SplitEntry(3, 1, mid, {})});
  for (const auto& x : r) CHECK(x.status.IsInvalidArgument());
  CHECK(n.kv->DurableRange(0)->end == 0);
  CHECK_FALSE(n.kv->SplitFounders(1).has_value());
  // A second split of the same half must fall inside what is left.
  ApplyTo(n, 0, {SplitEntry(4, 1, mid, {1})});
  auto outside = ApplyTo(n, 0, {SplitEntry(5, 2, mid + 5, {1})});
  CHECK(outside[0].status.IsInvalidArgument());
  CHECK(n.kv->DurableRange(0)->end == mid);
}

TEST_CASE("a snapshot of a split parent replaces only its own range on the follower", "[replicated_kv][split]") {
  Pair p;
  const uint64_t mid = uint64_t{1} << 63;
  const std::string lo = KeyInHalf(false, 1), hi = KeyInHalf(true, 2);
  for (Node* node : {&p.a, &p.b}) {
    ApplyTo(*node, 0, {PutEntry(1, lo, "lo", 7, 1), PutEntry(2, hi, "hi", 7, 2), SplitEntry(3, 1, mid, {1, 2})});
  }
  // The child moves on, on b; the parent moves on, on a.
  ApplyTo(p.b, 1, {PutEntry(1, hi, "child-wrote", 8, 1)});
  ApplyTo(p.a, 0, {PutEntry(4, lo, "parent-wrote", 7, 3)});
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  pb::SnapshotManifest m;
  REQUIRE(m.ParseFromString(*image));
  CHECK(m.has_range());
  CHECK(m.range_end() == mid);
  p.b.Install(*image);
  CHECK(p.b.Get(lo) == "parent-wrote");
  CHECK(p.b.Get(hi) == "child-wrote");  // the child's half was not the parent's to replace
  CHECK(p.b.kv->DurableRange(0)->end == mid);
}

TEST_CASE("an empty shard's snapshot empties the follower's range", "[replicated_kv]") {
  Pair p;
  auto e = PutEntry(1, "k", "v", 7, 1);
  p.b.Apply({&e});
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  p.b.Install(*image);
  CHECK(p.b.Get("k").find("NotFound") != std::string::npos);
}

TEST_CASE("the commands of one batch entry are deduplicated one by one: a retry beside its original applies once",
          "[replicated_kv]") {
  Node n;
  auto cas = [](const std::string& k, const std::string& v, uint64_t seq, uint64_t first_incomplete) {
    pb::Request r;
    r.mutable_cas()->set_key(k);
    r.mutable_cas()->set_value(v);
    r.mutable_cas()->set_expect_absent(true);
    r.set_client_id(7);
    r.set_seq(seq);
    r.set_first_incomplete_seq(first_incomplete);
    return EncodeCommand(r, 1000);
  };
  auto apply = [&](const std::vector<replication::Command>& commands) {
    storage::WriteBatch batch;
    std::vector<std::any> results;
    n.kv->Apply(0, commands, &batch, &results);
    REQUIRE(n.db->Write(batch, false).ok());
    std::vector<KvResult> out;
    for (auto& r : results) out.push_back(std::any_cast<KvResult>(r));
    return out;
  };
  // One kBatch entry (index 5): seq 1, another key's seq 2, and a retry of seq 1. Applied
  // twice, the retry's "expect absent" would fail.
  const std::string c1 = cas("k", "first", 1, 1), c2 = cas("j", "other", 2, 1), retry = cas("k", "again", 1, 1);
  auto r = apply({{5, 0, c1}, {5, 1, c2}, {5, 2, retry}});
  REQUIRE(r.size() == 3);
  CHECK(r[0].swapped);
  CHECK(r[1].swapped);
  CHECK(r[2].swapped);  // seq 1's result, not a second compare
  CHECK(n.Get("k") == "first");
  // A later retry, in another entry, gets the original result from the dedup table; a
  // seq the client already saw answered is refused.
  const std::string late = cas("k", "late", 1, 1), stale = cas("k", "stale", 1, 3);
  r = apply({{6, 0, late}});
  CHECK(r[0].swapped);
  r = apply({{7, 0, stale}});
  CHECK(r[0].status.code() == StatusCode::kInvalidArgument);
  CHECK(n.Get("k") == "first");
}

TEST_CASE("dedup records written before the compact format still answer retries, and are rewritten compactly",
          "[replicated_kv]") {
  Node n;
  // Client 7's record in shard 0, in the first format (all be64): seq 1 swapped; seq 2
  // did not swap, and the current value was "cur".
  auto be = [](uint64_t v) { return HashPrefix(v); };
  const std::string swapped = std::string("\0\x02", 2) + be(0);
  const std::string not_swapped = std::string("\0\x04", 2) + be(0) + "cur";
  const std::string old = be(1000) + be(2) + be(1) + be(swapped.size()) + swapped + be(2) + be(not_swapped.size()) +
                          not_swapped;
  const std::string key = "x/" + HashPrefix(0) + HashPrefix(7);
  storage::WriteBatch seed;
  seed.Put(storage::Cf::kMeta, key, old);
  REQUIRE(n.db->Write(seed, false).ok());

  auto cas = [](uint64_t seq) {
    pb::Request r;
    r.mutable_cas()->set_key("k");
    r.mutable_cas()->set_value("new");
    r.mutable_cas()->set_expect_absent(true);
    r.set_client_id(7);
    r.set_seq(seq);
    r.set_first_incomplete_seq(1);
    return EncodeCommand(r, 2000);
  };
  const std::string c1 = cas(1), c2 = cas(2);
  storage::WriteBatch batch;
  std::vector<std::any> results;
  n.kv->Apply(0, {{10, 0, c1}, {10, 1, c2}}, &batch, &results);
  REQUIRE(n.db->Write(batch, false).ok());
  REQUIRE(results.size() == 2);
  auto r1 = std::any_cast<KvResult>(results[0]), r2 = std::any_cast<KvResult>(results[1]);
  CHECK(r1.status.ok());
  CHECK(r1.swapped);
  CHECK_FALSE(r2.swapped);
  CHECK(r2.current == std::optional<std::string>("cur"));
  CHECK(n.Get("k").rfind("<NotFound", 0) == 0);  // neither was applied again
  std::string now;
  REQUIRE(n.db->Get(storage::Cf::kMeta, key, &now).ok());
  CHECK(now[0] == '\x01');  // the compact format
  CHECK(now.size() < old.size() / 2);
}

TEST_CASE("a batch that was never written leaves no trace in the dedup table", "[replicated_kv]") {
  Node n;
  auto e1 = PutEntry(1, "k1", "v1", 7, 1);
  std::vector<std::any> results;
  storage::WriteBatch lost;
  n.kv->Apply(0, Commands({&e1}), &lost, &results);
  n.kv->OnWriteFailed();  // the driver's write failed: the same entry comes again
  n.Apply({&e1});
  CHECK(n.Get("k1") == "v1");
}

TEST_CASE("a restored snapshot replaces the dedup records a node had cached", "[replicated_kv]") {
  Pair p;
  // b applied seq 2 on its own (a divergent, uncommitted history a snapshot overrides).
  auto b2 = PutEntry(1, "k", "b-only", 7, 2);
  p.b.Apply({&b2});
  // a's state knows nothing of seq 2; b installs it, then seq 2 arrives through the log.
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  p.b.Install(*image);
  auto a2 = PutEntry(2, "k", "from-log", 7, 2);
  p.b.Apply({&a2});
  CHECK(p.b.Get("k") == "from-log");
}

TEST_CASE("malformed and hostile snapshot manifests are refused and change nothing", "[replicated_kv]") {
  Pair p;
  auto e = PutEntry(1, "k", "v", 7, 1);
  p.b.Apply({&e});
  auto good = p.a.Snapshot();
  REQUIRE(good.ok());
  pb::SnapshotManifest m;
  REQUIRE(m.ParseFromString(*good));

  std::vector<std::string> bad = {"", std::string(7, '\0'), "\xff\xff\xff"};
  auto with = [&](auto edit) {
    pb::SnapshotManifest x = m;
    edit(&x);
    return Manifest(x);
  };
  bad.push_back(with([](pb::SnapshotManifest* x) { x->set_id("../../etc"); }));
  bad.push_back(with([](pb::SnapshotManifest* x) {
    auto* f = x->add_files();
    f->set_name("../escape.sst");
    f->set_cf(0);
  }));
  bad.push_back(with([](pb::SnapshotManifest* x) {
    auto* f = x->add_files();
    f->set_name("raft.sst");
    f->set_cf(1);  // the Raft log's column family is never part of a snapshot
  }));
  bad.push_back(with([](pb::SnapshotManifest* x) { x->set_total_bytes(x->total_bytes() + 1); }));
  bad.push_back(with([](pb::SnapshotManifest* x) {
    for (int i = 0; i < 5000; ++i) {
      auto* f = x->add_files();
      f->set_name("f" + std::to_string(i));
    }
  }));
  bad.push_back(with([](pb::SnapshotManifest* x) { x->set_source("not an address"); }));
  for (const auto& image : bad) {
    auto r = p.b.Fetch(image);
    CHECK_FALSE(r.ok());
    storage::WriteBatch batch;
    CHECK_FALSE(p.b.kv->Restore(0, image, &batch).ok());
    CHECK(batch.count() == 0);
  }
  // A remote manifest cannot be restored before it is fetched.
  storage::WriteBatch batch;
  CHECK(p.b.kv->Restore(0, *good, &batch).IsInvalidArgument());
  CHECK(p.b.Get("k") == "v");
  CHECK(p.b.IncomingDirs() == 0);
}

TEST_CASE("hostile chunk requests get clear errors", "[replicated_kv]") {
  Pair p;
  auto e = PutEntry(1, "k", "v", 7, 1);
  p.a.Apply({&e});
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  pb::SnapshotManifest m;
  REQUIRE(m.ParseFromString(*image));
  REQUIRE(m.files_size() >= 1);
  std::string data;
  CHECK(p.a.store->ReadChunk("../x", 0, 0, 100, &data).IsInvalidArgument());
  CHECK(p.a.store->ReadChunk("no-such-export", 0, 0, 100, &data).IsNotFound());
  CHECK(p.a.store->ReadChunk(m.id(), 99, 0, 100, &data).IsInvalidArgument());
  CHECK(p.a.store->ReadChunk(m.id(), 0, m.files(0).size() + 1, 100, &data).IsInvalidArgument());
  REQUIRE(p.a.store->ReadChunk(m.id(), 0, 0, 0xffffffffu, &data).ok());  // capped, not refused
  CHECK(data.size() == std::min<uint64_t>(m.files(0).size(), kSnapshotChunkBytes));
  REQUIRE(p.a.store->ReadChunk(m.id(), 0, m.files(0).size(), 100, &data).ok());
  CHECK(data.empty());
}

TEST_CASE("a source that sends too much, too little or damaged data fails the fetch cleanly", "[replicated_kv]") {
  std::vector<std::function<void(pb::Response*)>> tampers = {
      [](pb::Response* r) { r->mutable_snapshot_chunk()->mutable_data()->append("extra"); },
      [](pb::Response* r) { r->mutable_snapshot_chunk()->mutable_data()->pop_back(); },
      [](pb::Response* r) {
        auto* d = r->mutable_snapshot_chunk()->mutable_data();
        if (d->size() > 5000) (*d)[4000] ^= 0x5a;  // same size, damaged block
      },
      [](pb::Response* r) { r->set_id(r->id() + 1000); },
  };
  for (auto& tamper : tampers) {
    Pair p(tamper);
    p.a.ApplyNoise(40);
    auto image = p.a.Snapshot();
    REQUIRE(image.ok());
    auto r = p.b.Fetch(*image);
    CHECK_FALSE(r.ok());
    CHECK(p.b.IncomingDirs() == 0);  // nothing half-fetched stays behind
  }
  // The source going away mid-way: the export was removed.
  Pair p;
  p.a.ApplyNoise(40);
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  p.a.store->Stop();
  p.a.store.reset();
  p.a.store = std::move(SnapshotStore::Open(p.a.db.get(), Opts(p.a.db.dir()), {})).value();
  auto r = p.b.Fetch(*image);
  CHECK_FALSE(r.ok());
}

TEST_CASE("snapshot fetches keep to the configured byte rate", "[replicated_kv]") {
  Pair p({}, /*rate=*/4u << 20);
  p.a.ApplyNoise(64);
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  pb::SnapshotManifest m;
  REQUIRE(m.ParseFromString(*image));
  REQUIRE(m.total_bytes() > (3u << 20));
  auto start = std::chrono::steady_clock::now();
  p.b.Install(*image);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A lower bound only: at 4 MiB/s, less the 0.8 MiB burst allowance, this cannot be faster.
  CHECK(secs >= (static_cast<double>(m.total_bytes()) - (0.8 * (1 << 20))) / (4 << 20) * 0.95);
  CHECK(p.b.Get("k63") == Noise(63));
}

TEST_CASE("a running fetch reports its bytes done and in all", "[replicated_kv]") {
  // Big enough (about 13 MiB at 16 MiB/s) that chunks arrive one by one after the first
  // pipeline of 4 fills, so the progress is seen between 0 and the total.
  Pair p({}, /*rate=*/16u << 20);
  p.a.ApplyNoise(256);
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  pb::SnapshotManifest m;
  REQUIRE(m.ParseFromString(*image));
  REQUIRE(m.total_bytes() > (8u << 20));
  std::atomic<bool> done{false};
  std::vector<SnapshotStore::FetchProgress> seen;
  std::thread watcher([&] {
    while (!done.load()) {
      auto f = p.b.store->Fetching();
      if (f.count(0)) seen.push_back(f[0]);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  p.b.Install(*image);
  done = true;
  watcher.join();
  CHECK(p.b.store->Fetching().empty());  // cleared once the fetch ends
  REQUIRE(!seen.empty());
  CHECK(seen.front().total == m.total_bytes());
  bool between = false;
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].done <= seen[i].total);
    if (i > 0) CHECK(seen[i].done >= seen[i - 1].done);
    between = between || (seen[i].done > 0 && seen[i].done < seen[i].total);
  }
  CHECK(between);
  CHECK(p.b.Get("k255") == Noise(255));
}

TEST_CASE("a restart removes leftover snapshot files except those a pending restore needs", "[replicated_kv]") {
  Pair p;
  auto e = PutEntry(1, "k", "v", 7, 1);
  p.a.Apply({&e});
  auto image = p.a.Snapshot();
  REQUIRE(image.ok());
  auto kept = p.b.Fetch(*image);
  auto dropped = p.b.Fetch(*image);
  REQUIRE(kept.ok());
  REQUIRE(dropped.ok());
  // The second fetch of a shard replaces the first unless a restore holds it.
  CHECK(p.b.IncomingDirs() == 1);
  auto third = p.b.Fetch(*image);
  REQUIRE(third.ok());
  SnapshotStoreOptions o = Opts(p.b.db.dir());
  p.b.kv.reset();
  p.b.store.reset();
  p.b.store = std::move(SnapshotStore::Open(p.b.db.get(), o, {*third})).value();
  CHECK(p.b.IncomingDirs() == 1);
  p.b.kv = std::make_unique<ReplicatedKv>(p.b.db.get(), ReplicatedKv::UniformRanges(1), p.b.store.get());
  storage::WriteBatch batch;
  REQUIRE(p.b.kv->Restore(0, *third, &batch).ok());
  CHECK(p.b.Get("k") == "v");
  p.b.kv->Restored(0, *third);
  CHECK(p.b.IncomingDirs() == 0);
}

}  // namespace
}  // namespace ring::server
