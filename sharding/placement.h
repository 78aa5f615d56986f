// sharding/placement.h: which nodes hold each shard, and which of them should lead it.
//
// Replicas are placed by weighted rendezvous hashing (highest random weight; Thaler &
// Ravishankar): every (shard, node) pair gets a pseudo-random score scaled by the node's
// weight, and a shard lives on its top-scoring nodes. A node's arrival or departure only
// changes the shards whose top set it enters or leaves, so about RF*S/(N+1) replicas move
// when an (N+1)th node joins, the minimum possible.
//
// Plain rendezvous hashing leaves the per-node load binomially spread (with a dozen
// replicas per node, some nodes get half the mean). Placement therefore bounds it on both
// sides:
//   - a cap of ceil(load_factor * fair share) replicas per node ("consistent hashing with
//     bounded loads", Mirrokni, Thorup & Zadimoghaddam): shards are placed in id order,
//     each on its highest-scoring nodes that still have room;
//   - a floor of floor(floor_factor * fair share): a node below it takes over replicas
//     from nodes above their fair share, on the shards it scores best on.
// With the defaults (1.25, 0.75) every node holds within 25% of its weighted mean. The
// tests also check that joining a node still moves close to the minimum, RF*S/(N+1)
// (about 1.01x over 3..16 nodes, at worst 1.44x for one small case).
//
// Leaders are a preference, not a placement: PreferredLeaders spreads them evenly over the
// nodes (within 2 of each other for equal weights), and the controller transfers
// leadership toward the preference.
//
// Everything here is a pure function of its inputs: every node computes the same answer.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "common/keyspace.h"
#include "replication/types.h"

namespace ring::sharding {

using replication::NodeId;

// A node that may hold replicas. Weight scales its share (1.0 = an average node).
struct Candidate {
  NodeId id = replication::kNoNode;
  double weight = 1.0;
};

struct PlacementOptions {
  size_t replication_factor = 3;
  double load_factor = 1.25;  // a node holds at most ceil(load_factor * fair share)
  double floor_factor = 0.75;  // and at least floor(floor_factor * fair share)
};

// The rendezvous score of `node` for `shard`, before weighting: uniform in (0, 1).
double RendezvousHash(ShardId shard, NodeId node);

// Shard -> its replicas, best first. Every shard in `shards` gets min(RF, candidates)
// distinct nodes. Candidates with a weight <= 0 get nothing. Deterministic in the inputs
// (the order of `candidates` does not matter).
std::map<ShardId, std::vector<NodeId>> PlaceReplicas(const std::vector<ShardId>& shards,
                                                     const std::vector<Candidate>& candidates,
                                                     const PlacementOptions& options = {});

// Shard -> the replica that should lead it, spreading leaders evenly: shards in id order
// each pick, among their replicas, the node leading the fewest shards so far (ties go to
// the better-placed replica).
std::map<ShardId, NodeId> PreferredLeaders(const std::map<ShardId, std::vector<NodeId>>& replicas);

// How many replica slots differ between two placements: the replicas a move must create.
size_t ReplicasMoved(const std::map<ShardId, std::vector<NodeId>>& before,
                     const std::map<ShardId, std::vector<NodeId>>& after);

}  // namespace ring::sharding
