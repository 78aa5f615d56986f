// The metadata log's state machine: changes applied in log order, refusals that leave the
// map alone, persistence, snapshots, and a failed write.
#include "sharding/meta_state_machine.h"

#include <catch2/catch.hpp>

#include "harness.h"

namespace ring::sharding {
namespace {

Member M(NodeId id) { return Member{id, "127.0.0.1:" + std::to_string(7000 + id), MemberState::kUp, 1.0}; }

replication::Entry E(uint64_t index, const MapChange& c) {
  return replication::Entry{1, index, replication::EntryType::kNormal, EncodeChange(c)};
}

MapChange InitChange() {
  MapChange c;
  c.kind = MapChange::Kind::kInit;
  c.cluster_id = 9;
  c.shard_count = 4;
  c.replication_factor = 3;
  c.members = {M(1), M(2), M(3)};
  return c;
}

MapChange Split(ShardId shard, uint64_t epoch) {
  MapChange c;
  c.kind = MapChange::Kind::kSplitShard;
  c.shard = shard;
  c.expected_epoch = epoch;
  return c;
}

std::vector<MetaResult> ApplyAll(MetaStateMachine& m, storage::Engine* engine,
                                 const std::vector<replication::Entry>& entries, bool write = true) {
  std::vector<replication::Command> commands;
  for (const auto& e : entries) commands.push_back(replication::Command{e.index, 0, e.data});
  storage::WriteBatch batch;
  std::vector<std::any> results;
  m.Apply(kMetaGroup, commands, &batch, &results);
  if (write) REQUIRE(engine->Write(batch, true).ok());
  std::vector<MetaResult> out;
  for (auto& r : results) out.push_back(std::any_cast<MetaResult>(r));
  return out;
}

TEST_CASE("metadata entries move the map forward; refused ones leave it alone", "[sharding]") {
  test::ScratchEngine db;
  auto m = MetaStateMachine::Open(db.get());
  REQUIRE(m.ok());
  CHECK_FALSE((*m)->Map()->initialized());

  auto results = ApplyAll(**m, db.get(),
                          {E(1, InitChange()), E(2, Split(0, 7)) /* stale epoch */, E(3, Split(0, 1)),
                           replication::Entry{1, 4, replication::EntryType::kNormal, "\xff garbage"},
                           E(5, InitChange()) /* a second init */});
  REQUIRE(results.size() == 5);
  CHECK(results[0].status.ok());
  CHECK(results[0].version == 1);
  CHECK(results[1].status.code() == StatusCode::kStaleEpoch);
  CHECK(results[1].version == 1);
  CHECK(results[2].status.ok());
  CHECK(results[2].version == 2);
  CHECK(results[3].status.code() == StatusCode::kCorruption);
  CHECK(results[4].status.IsInvalidArgument());
  auto map = (*m)->Map();
  CHECK(map->version == 2);
  CHECK(map->shards.size() == 5);

  // Persisted with the batch: a restart finds the same map.
  m->reset();
  db.Reopen();
  auto again = MetaStateMachine::Open(db.get());
  REQUIRE(again.ok());
  CHECK(*(*again)->Map() == *map);
}

TEST_CASE("the map travels as the metadata group's snapshot", "[sharding]") {
  test::ScratchEngine a, b;
  auto ma = MetaStateMachine::Open(a.get());
  auto mb = MetaStateMachine::Open(b.get());
  REQUIRE((ma.ok() && mb.ok()));
  ApplyAll(**ma, a.get(), {E(1, InitChange())});
  Result<std::string> image = Status::Unavailable("not called");
  (*ma)->Snapshot(kMetaGroup, [&](Result<std::string> r) { image = std::move(r); });
  REQUIRE(image.ok());
  storage::WriteBatch batch;
  REQUIRE((*mb)->Restore(kMetaGroup, *image, &batch).ok());
  REQUIRE(b->Write(batch, true).ok());
  CHECK(*(*mb)->Map() == *(*ma)->Map());
  // A malformed image is refused and changes nothing.
  storage::WriteBatch bad;
  CHECK((*mb)->Restore(kMetaGroup, "not a map", &bad).code() == StatusCode::kCorruption);
  CHECK(bad.count() == 0);
  CHECK(*(*mb)->Map() == *(*ma)->Map());
}

TEST_CASE("a failed write takes back what was applied in it", "[sharding]") {
  test::ScratchEngine db;
  auto m = MetaStateMachine::Open(db.get());
  REQUIRE(m.ok());
  ApplyAll(**m, db.get(), {E(1, InitChange())}, /*write=*/false);
  CHECK((*m)->Map()->version == 1);
  (*m)->OnWriteFailed();
  CHECK_FALSE((*m)->Map()->initialized());
  // The driver stages the same entry again, and this time it lands.
  ApplyAll(**m, db.get(), {E(1, InitChange())});
  CHECK((*m)->Map()->version == 1);
}

}  // namespace
}  // namespace ring::sharding
