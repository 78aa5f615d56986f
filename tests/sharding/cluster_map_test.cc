// The cluster map's state machine: init, members, replica changes, splits, fencing epochs,
// and hostile encodings.
#include "sharding/cluster_map.h"

#include <catch2/catch.hpp>

#include "proto/ring.pb.h"

namespace ring::sharding {
namespace {

Member M(NodeId id) { return Member{id, "127.0.0.1:" + std::to_string(7000 + id), MemberState::kUp, 1.0}; }

MapChange Init(uint32_t shards, std::vector<Member> members, uint32_t rf = 3) {
  MapChange c;
  c.kind = MapChange::Kind::kInit;
  c.cluster_id = 42;
  c.shard_count = shards;
  c.replication_factor = rf;
  c.members = std::move(members);
  return c;
}

ClusterMap Must(const Result<ClusterMap>& r) {
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}

MapChange SetReplicas(ShardId shard, uint64_t epoch, std::vector<NodeId> voters, std::vector<NodeId> learners = {}) {
  MapChange c;
  c.kind = MapChange::Kind::kSetReplicas;
  c.shard = shard;
  c.expected_epoch = epoch;
  c.voters = std::move(voters);
  c.learners = std::move(learners);
  return c;
}

TEST_CASE("init tiles the hash space and happens once", "[sharding]") {
  ClusterMap empty;
  CHECK(empty.Validate().ok());
  ClusterMap map = Must(Apply(empty, Init(64, {M(1), M(2), M(3)})));
  CHECK(map.version == 1);
  CHECK(map.shards.size() == 64);
  CHECK(map.next_shard_id == 64);
  CHECK(map.ShardOf(0) == ShardId{0});
  CHECK(map.ShardOf(UINT64_MAX) == ShardId{63});
  // Routing agrees with the keyspace's uniform ranges, which ringd and libring share.
  ShardRanges uniform = ShardRanges::Uniform(64);
  for (uint64_t h : {uint64_t{1}, uint64_t{1} << 58, (uint64_t{1} << 63) + 12345, UINT64_MAX - 7}) {
    CHECK(map.ShardOf(h) == uniform.ShardOf(h));
  }
  for (const auto& [id, s] : map.shards) CHECK(s.voters == std::vector<NodeId>{1, 2, 3});
  // A second init is refused, however it is phrased.
  CHECK(Apply(map, Init(64, {M(1), M(2), M(3)})).status().IsInvalidArgument());
  CHECK(Apply(map, Init(8, {M(9)})).status().IsInvalidArgument());
}

TEST_CASE("init refuses malformed parameters", "[sharding]") {
  ClusterMap empty;
  CHECK(Apply(empty, Init(0, {M(1)})).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(kMaxShards + 1, {M(1)})).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(8, {})).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(8, {M(1)}, 0)).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(8, {M(1)}, kMaxReplicationFactor + 1)).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(8, {M(1), M(1)})).status().IsInvalidArgument());
  CHECK(Apply(empty, Init(8, {M(0)})).status().IsInvalidArgument());
  Member bad = M(1);
  bad.address = "no-port";
  CHECK(Apply(empty, Init(8, {bad})).status().IsInvalidArgument());
  Member twin = M(2);
  twin.address = M(1).address;
  CHECK(Apply(empty, Init(8, {M(1), twin})).status().IsInvalidArgument());
  MapChange zero = Init(8, {M(1)});
  zero.cluster_id = 0;
  CHECK(Apply(empty, zero).status().IsInvalidArgument());
  // Nothing else applies before init.
  CHECK(Apply(empty, SetReplicas(0, 1, {1})).status().IsInvalidArgument());
}

TEST_CASE("members join, drain and are removed only once they hold nothing", "[sharding]") {
  ClusterMap map = Must(Apply(ClusterMap{}, Init(4, {M(1), M(2), M(3)})));
  MapChange add;
  add.kind = MapChange::Kind::kAddMember;
  add.members = {M(4)};
  map = Must(Apply(map, add));
  CHECK(map.FindMember(4)->state == MemberState::kJoining);
  CHECK(Apply(map, add).status().IsInvalidArgument());  // already a member

  MapChange state;
  state.kind = MapChange::Kind::kSetMemberState;
  state.node = 3;
  state.state = MemberState::kRemoved;
  CHECK(Apply(map, state).status().IsInvalidArgument());  // still holds shards
  // Move node 3's replicas to node 4, then it can go.
  for (ShardId s = 0; s < 4; ++s) map = Must(Apply(map, SetReplicas(s, map.shards[s].epoch, {1, 2, 4})));
  map = Must(Apply(map, state));
  CHECK(map.FindMember(3)->state == MemberState::kRemoved);
  state.state = MemberState::kUp;
  CHECK(Apply(map, state).status().IsInvalidArgument());  // removal is final
  CHECK(Apply(map, SetReplicas(0, map.shards[0].epoch, {1, 2, 3})).status().IsInvalidArgument());
  // A removed member's address may be reused by a new member.
  add.members = {M(5)};
  add.members[0].address = M(3).address;
  add.members[0].join_token = 77;
  CHECK(map.FindLiveMember(M(3).address) == nullptr);
  CHECK(map.NextMemberId() == 5);
  ClusterMap joined = Must(Apply(map, add));
  REQUIRE(joined.FindLiveMember(M(3).address) != nullptr);
  CHECK(joined.FindLiveMember(M(3).address)->id == 5);
  // The join token survives encoding (a retried JOIN is recognised by it).
  CHECK(Must(DecodeMap(EncodeMap(joined))).FindMember(5)->join_token == 77);
  // Ids are never reused, not even a removed one's.
  add.members = {M(3)};
  add.members[0].address = "127.0.0.1:9999";
  CHECK(Apply(joined, add).status().IsInvalidArgument());
  ClusterMap gap = Must(Apply(ClusterMap{}, Init(4, {M(1), M(2), M(5)})));
  CHECK(Apply(gap, add).status().message().find("below ids already used") != std::string::npos);
}

TEST_CASE("replica changes bump the shard's epoch and are fenced by it", "[sharding]") {
  ClusterMap map = Must(Apply(ClusterMap{}, Init(2, {M(1), M(2), M(3), M(4)})));
  const uint64_t e = map.shards[0].epoch;
  ClusterMap next = Must(Apply(map, SetReplicas(0, e, {1, 2, 3}, {4})));
  CHECK(next.shards[0].epoch == e + 1);
  CHECK(next.shards[0].learners == std::vector<NodeId>{4});
  CHECK(next.shards[1] == map.shards[1]);  // other shards untouched
  // A plan made against the old epoch is refused as stale.
  CHECK(Apply(next, SetReplicas(0, e, {1, 2, 4})).status().code() == StatusCode::kStaleEpoch);
  CHECK(Apply(next, SetReplicas(0, e + 1, {})).status().IsInvalidArgument());             // no voters
  CHECK(Apply(next, SetReplicas(0, e + 1, {1, 1})).status().IsInvalidArgument());         // twice
  CHECK(Apply(next, SetReplicas(0, e + 1, {1}, {1})).status().IsInvalidArgument());       // voter and learner
  CHECK(Apply(next, SetReplicas(0, e + 1, {1, 99})).status().IsInvalidArgument());        // not a member
  CHECK(Apply(next, SetReplicas(77, 1, {1})).status().IsInvalidArgument());               // no such shard
}

TEST_CASE("a split halves the range; both halves get a new epoch", "[sharding]") {
  ClusterMap map = Must(Apply(ClusterMap{}, Init(1, {M(1), M(2), M(3)})));
  MapChange split;
  split.kind = MapChange::Kind::kSplitShard;
  split.shard = 0;
  split.expected_epoch = map.shards[0].epoch;
  ClusterMap two = Must(Apply(map, split));
  REQUIRE(two.shards.size() == 2);
  CHECK(two.shards[0].start == 0);
  CHECK(two.shards[0].end == uint64_t{1} << 63);
  CHECK(two.shards[1].start == uint64_t{1} << 63);
  CHECK(two.shards[1].end == 0);
  CHECK(two.shards[0].epoch == map.shards[0].epoch + 1);
  CHECK(two.shards[1].epoch == two.shards[0].epoch);
  CHECK(two.shards[1].voters == two.shards[0].voters);
  CHECK(two.ShardOf(UINT64_MAX) == ShardId{1});
  CHECK(Apply(two, split).status().code() == StatusCode::kStaleEpoch);  // the same split again

  // Splitting down to single hashes, then no further.
  ClusterMap m = map;
  for (int i = 0; i < 70; ++i) {
    split.expected_epoch = m.shards[0].epoch;
    auto r = Apply(m, split);
    if (!r.ok()) {
      CHECK(r.status().IsInvalidArgument());
      CHECK(m.shards[0].end - m.shards[0].start == 1);
      break;
    }
    m = *r;
  }
  CHECK(m.shards[0].end == 1);
  CHECK(m.Validate().ok());
}

TEST_CASE("pausing moves is a versioned map change that survives encoding", "[sharding]") {
  ClusterMap map = Must(Apply(ClusterMap{}, Init(4, {M(1), M(2), M(3)})));
  MapChange pause;
  pause.kind = MapChange::Kind::kSetMovesPaused;
  pause.paused = true;
  ClusterMap paused = Must(Apply(map, pause));
  CHECK(paused.moves_paused);
  CHECK(paused.version == map.version + 1);
  auto back = DecodeMap(EncodeMap(paused));
  REQUIRE(back.ok());
  CHECK(back->moves_paused);
  auto c = DecodeChange(EncodeChange(pause));
  REQUIRE(c.ok());
  CHECK(c->kind == MapChange::Kind::kSetMovesPaused);
  CHECK(c->paused);
  pause.paused = false;
  CHECK_FALSE(Must(Apply(paused, pause)).moves_paused);
  // Not before init.
  CHECK(Apply(ClusterMap{}, pause).status().IsInvalidArgument());
}

TEST_CASE("maps and changes survive their encoding, and hostile bytes are refused", "[sharding]") {
  ClusterMap map = Must(Apply(ClusterMap{}, Init(16, {M(1), M(2), M(3)})));
  map = Must(Apply(map, SetReplicas(3, map.shards[3].epoch, {2, 3}, {1})));
  auto back = DecodeMap(EncodeMap(map));
  REQUIRE(back.ok());
  CHECK(*back == map);

  MapChange c = SetReplicas(5, 9, {1, 2}, {3});
  auto c2 = DecodeChange(EncodeChange(c));
  REQUIRE(c2.ok());
  CHECK(EncodeChange(*c2) == EncodeChange(c));

  CHECK(DecodeMap("\xff\xff\xff garbage").status().code() == StatusCode::kCorruption);
  CHECK(DecodeChange("\x08").status().code() == StatusCode::kCorruption);
  // Well-formed protobuf, broken map: a gap in the ranges.
  pb::ClusterMap p;
  REQUIRE(p.ParseFromString(EncodeMap(map)));
  p.mutable_shards(4)->set_start(p.shards(4).start() + 1);
  CHECK(DecodeMap(p.SerializeAsString()).status().code() == StatusCode::kCorruption);
  // A duplicated shard.
  REQUIRE(p.ParseFromString(EncodeMap(map)));
  *p.add_shards() = p.shards(0);
  CHECK(DecodeMap(p.SerializeAsString()).status().code() == StatusCode::kCorruption);
  // Unknown change kind and member state.
  pb::MapChange pc;
  pc.set_kind(99);
  CHECK(DecodeChange(pc.SerializeAsString()).status().code() == StatusCode::kCorruption);
  pc.set_kind(2);
  pc.set_state(17);
  CHECK(DecodeChange(pc.SerializeAsString()).status().code() == StatusCode::kCorruption);
  // Oversized replica lists.
  pb::MapChange big;
  big.set_kind(3);
  for (int i = 0; i < 100; ++i) big.add_voters(static_cast<uint64_t>(i + 1));
  CHECK(DecodeChange(big.SerializeAsString()).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace ring::sharding
