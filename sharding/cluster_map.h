// sharding/cluster_map.h: the versioned cluster map, and the changes that move it forward.
//
// The map says which nodes are members (and in what state), how the hash space is cut into
// shards, and which nodes hold each shard at which epoch. It will live in the metadata
// log: every change is one committed entry, applied by every node with Apply(), so all
// nodes walk through the same sequence of versions. Nothing here does I/O; it is the pure
// state machine of that log, and the place where a bad change is refused.
//
// Versions and epochs:
//   - `version` counts applied changes: every successful Apply() adds one.
//   - A shard's `epoch` changes whenever what the shard is changes: its replica set or its
//     range (a split). A request routed with an older epoch is fenced off (StaleEpoch), so
//     an old owner can never apply a write once a new epoch is committed. Epochs only
//     grow; a split gives both halves the parent's epoch plus one.
//
// Invariants (Validate() checks them; Apply() never produces a map that breaks them):
//   - shard ranges are contiguous, sorted, non-overlapping and cover [0, 2^64);
//   - every shard has at least one voter; voters and learners are distinct members that
//     are not removed;
//   - member ids are non-zero, addresses are HOST:PORT and unique among live members.
//
// Thread-safety: a value type; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/keyspace.h"
#include "common/status.h"
#include "replication/types.h"

namespace ring::pb {
class ClusterMap;
}

namespace ring::sharding {

using replication::NodeId;

enum class MemberState : uint8_t {
  kJoining = 0,   // asked to join; holds nothing yet
  kUp = 1,        // a full member: placement may put replicas on it
  kDraining = 2,  // its replicas and leaderships are being moved away
  kDown = 3,      // silent past the failure timeout; re-replicated after a further delay
  kRemoved = 4,   // retired for good; its id is never reused
};
const char* MemberStateName(MemberState s);

struct Member {
  NodeId id = replication::kNoNode;
  std::string address;  // HOST:PORT for clients and peers
  MemberState state = MemberState::kJoining;
  double weight = 1.0;
  uint64_t join_token = 0;  // the token of the JOIN that added it; 0 for a founder
  friend bool operator==(const Member&, const Member&) = default;
};

struct ShardInfo {
  ShardId id = 0;
  uint64_t start = 0;  // the range is [start, end); end == 0 means 2^64
  uint64_t end = 0;
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  uint64_t epoch = 1;
  NodeId leader_hint = replication::kNoNode;  // last reported leader, for routing only
  std::optional<ShardId> parent;  // the shard it was split from; none for a shard made at init
  friend bool operator==(const ShardInfo&, const ShardInfo&) = default;
};

struct ClusterMap {
  uint64_t cluster_id = 0;  // random, chosen at init; a node never joins another cluster
  uint64_t version = 0;     // 0: not initialised
  uint32_t replication_factor = 3;
  std::map<NodeId, Member> members;
  std::map<ShardId, ShardInfo> shards;  // by id; ranges sorted by start (see ShardOf)
  ShardId next_shard_id = 0;
  bool moves_paused = false;  // operators paused replica moves (the controller plans none)
  uint32_t initial_shards = 0;  // shards made at init, with uniform ranges (ids 0..n-1)

  bool initialized() const { return version > 0; }
  // Where shard `id` started out: its uniform range if init made it, else nullopt (a split
  // child's range is in its own state). Never changes, so replicas agree on it.
  std::optional<std::pair<uint64_t, uint64_t>> InitialRange(ShardId id) const;
  // The shard whose range holds `hash`; nullopt only for an uninitialised map.
  std::optional<ShardId> ShardOf(uint64_t hash) const;
  const Member* FindMember(NodeId id) const;
  // The member (not removed) that serves on `address`, or null.
  const Member* FindLiveMember(std::string_view address) const;
  // The id a new member gets: one above every id ever used (removed ids are never reused).
  NodeId NextMemberId() const { return members.empty() ? 1 : members.rbegin()->first + 1; }
  // Checks every invariant above; InvalidArgument naming the first broken one.
  Status Validate() const;
  friend bool operator==(const ClusterMap&, const ClusterMap&) = default;
};

// One change to the map: the payload of one metadata log entry.
struct MapChange {
  enum class Kind : uint8_t {
    kInit = 0,            // cluster_id, shard_count, replication_factor, members (the founders)
    kAddMember = 1,       // member (id, address, weight): joins as kJoining
    kSetMemberState = 2,  // node, state
    kSetReplicas = 3,     // shard, expected_epoch, voters, learners: a new epoch
    kSplitShard = 4,      // shard, expected_epoch: the upper half becomes next_shard_id
    kSetLeaderHint = 5,   // shard, node: routing hint only; no new epoch
    kSetMovesPaused = 6,  // paused: stop (or resume) planning replica moves
  };
  Kind kind = Kind::kInit;
  uint64_t cluster_id = 0;
  uint32_t shard_count = 0;
  uint32_t replication_factor = 0;
  std::vector<Member> members;
  NodeId node = replication::kNoNode;
  MemberState state = MemberState::kJoining;
  ShardId shard = 0;
  uint64_t expected_epoch = 0;
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  bool paused = false;
};

// Limits on what a map may hold, so a hostile or corrupt entry cannot blow up memory.
inline constexpr uint32_t kMaxShards = 65536;
inline constexpr size_t kMaxMembers = 1024;
inline constexpr uint32_t kMaxReplicationFactor = 7;

// The map after `change`, with version + 1. The input is unchanged. Refusals:
//   InvalidArgument  the change is malformed, would break an invariant, initialises an
//                    initialised map, or comes before init;
//   StaleEpoch       expected_epoch is not the shard's epoch (the plan is out of date).
// Deterministic: every node applying the same change to the same map gets the same map.
Result<ClusterMap> Apply(const ClusterMap& map, const MapChange& change);

// How `map` cuts the hash space (an initialised map), for routing.
ShardRanges ShardRangesOf(const ClusterMap& map);

// Wire encodings (Protobuf). Decode validates: a map that breaks an invariant, or a
// change that is malformed, is Corruption, never a crash.
std::string EncodeMap(const ClusterMap& map);
// The map as its Protobuf message (what EncodeMap serializes), e.g. to embed in a reply.
void MapToProto(const ClusterMap& map, pb::ClusterMap* out);
Result<ClusterMap> DecodeMap(std::string_view bytes);
std::string EncodeChange(const MapChange& change);
Result<MapChange> DecodeChange(std::string_view bytes);

}  // namespace ring::sharding
