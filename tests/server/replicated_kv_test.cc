// The replicated state machine's snapshot image: round trip and hostile input.
#include "server/replicated_kv.h"

#include <catch2/catch.hpp>

#include "harness.h"
#include "proto/ring.pb.h"

namespace ring::server {
namespace {

using Db = test::ScratchEngine;

replication::Entry PutEntry(uint64_t index, const std::string& k, const std::string& v, uint64_t client, uint64_t seq) {
  pb::Request r;
  r.mutable_put()->set_key(k);
  r.mutable_put()->set_value(v);
  r.set_client_id(client);
  r.set_seq(seq);
  return replication::Entry{1, index, replication::EntryType::kNormal, EncodeCommand(r, 1000)};
}

TEST_CASE("a shard snapshot carries its keys and dedup table to another node", "[replicated_kv]") {
  Db a, b;
  ReplicatedKv kv_a(a.get(), 1), kv_b(b.get(), 1);
  auto e1 = PutEntry(1, "k1", "v1", 7, 1);
  auto e2 = PutEntry(2, "k2", "v2", 7, 2);
  storage::WriteBatch batch;
  std::vector<std::any> results;
  kv_a.Apply(0, {&e1, &e2}, &batch, &results);
  REQUIRE(a->Write(batch, false).ok());

  auto image = kv_a.Snapshot(0);
  REQUIRE(image.ok());
  storage::WriteBatch restore;
  REQUIRE(kv_b.Restore(0, *image, &restore).ok());
  REQUIRE(b->Write(restore, false).ok());
  std::string v;
  REQUIRE(b->Get(storage::Cf::kData, DataKey("k2"), &v).ok());
  CHECK(v == "v2");
  // A retry of seq 2 on the new node is answered from the dedup table, not re-applied.
  auto retry = PutEntry(3, "k2", "changed", 7, 2);
  storage::WriteBatch again;
  kv_b.Apply(0, {&retry}, &again, &results);
  REQUIRE(b->Write(again, false).ok());
  REQUIRE(b->Get(storage::Cf::kData, DataKey("k2"), &v).ok());
  CHECK(v == "v2");
}

TEST_CASE("a batch that was never written leaves no trace in the dedup table", "[replicated_kv]") {
  Db db;
  ReplicatedKv kv(db.get(), 1);
  auto e1 = PutEntry(1, "k1", "v1", 7, 1);
  std::vector<std::any> results;
  storage::WriteBatch lost;
  kv.Apply(0, {&e1}, &lost, &results);
  kv.OnWriteFailed();  // the driver's write failed: the same entry comes again
  storage::WriteBatch batch;
  kv.Apply(0, {&e1}, &batch, &results);
  REQUIRE(db->Write(batch, false).ok());
  std::string v;
  REQUIRE(db->Get(storage::Cf::kData, DataKey("k1"), &v).ok());
  CHECK(v == "v1");
}

TEST_CASE("a restored snapshot replaces the dedup records a node had cached", "[replicated_kv]") {
  Db a, b;
  ReplicatedKv kv_a(a.get(), 1), kv_b(b.get(), 1);
  std::vector<std::any> results;
  // b applied seq 2 on its own (a divergent, uncommitted history a snapshot overrides).
  auto b2 = PutEntry(1, "k", "b-only", 7, 2);
  storage::WriteBatch wb;
  kv_b.Apply(0, {&b2}, &wb, &results);
  REQUIRE(b->Write(wb, false).ok());
  // a's state knows nothing of seq 2; b installs it, then seq 2 arrives through the log.
  auto image = kv_a.Snapshot(0);
  REQUIRE(image.ok());
  storage::WriteBatch restore;
  REQUIRE(kv_b.Restore(0, *image, &restore).ok());
  REQUIRE(b->Write(restore, false).ok());
  auto a2 = PutEntry(2, "k", "from-log", 7, 2);
  storage::WriteBatch next;
  kv_b.Apply(0, {&a2}, &next, &results);
  REQUIRE(b->Write(next, false).ok());
  std::string v;
  REQUIRE(b->Get(storage::Cf::kData, DataKey("k"), &v).ok());
  CHECK(v == "from-log");
}

TEST_CASE("a malformed snapshot image is refused and changes nothing", "[replicated_kv]") {
  Db db;
  ReplicatedKv kv(db.get(), 1);
  for (std::string bad : {std::string(""), std::string(7, '\0'), std::string("\0\0\0\0\0\0\0\x01\x05", 9),
                          std::string("\0\0\0\0\0\0\0\x01\0\xff\xff\xff\xff\xff\xff\xff\xff", 17)}) {
    storage::WriteBatch batch;
    Status s = kv.Restore(0, bad, &batch);
    CHECK(s.code() == StatusCode::kCorruption);
    CHECK(batch.count() == 0);
  }
}

}  // namespace
}  // namespace ring::server
