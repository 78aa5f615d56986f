// sharding/controller.h: the planning half of the controller, which moves the cluster's
// actual placement toward the target placement one safe step at a time.
//
// The controller runs on the metadata leader. Each round it looks at the committed map and
// at what it has observed (which nodes are silent, how far each learner has caught up),
// calls Plan(), and proposes the returned changes to the metadata log. Plan() is a pure
// function of its inputs and keeps no state between rounds: everything a move needs to
// resume lives in the map itself (a learner in a shard's replica set IS a move in
// progress). So when the metadata leader dies at any step, its successor computes the same
// next step from the same map, and a move either completes or is rolled back; never half
// done.
//
// A replica moves in single-server steps (see replication/raft_core.h):
//   1. add the new node as a learner   (SetReplicas: voters V, learners {L})
//   2. the learner catches up from a snapshot and the log (observed, not planned)
//   3. promote it                      (voters V + L)
//   4. remove the replica it replaces  (voters V + L - O); O then deletes the range
// A learner on a node that died or left the target is removed again (rollback).
//
// Safety: a step that would leave a shard with fewer healthy voters than a majority of its
// new voter set is not taken; it waits until health returns. At most
// `max_concurrent_moves` shards have a move in flight, and `paused` stops every move step.
//
// Members: a joining node that is alive becomes up (a placement candidate). An up node
// silent for `down_after_ms` is marked down; it keeps its replicas (a restart is cheaper
// than a copy) until it has been silent for `rereplicate_after_ms`, when placement stops
// counting it and its replicas are re-created elsewhere. A down node that is heard from
// again is up again. A draining node is not a candidate, so its replicas move away.
//
// Leaders: PreferredLeadersOf spreads them over the up voters of each shard; each shard's
// leader transfers leadership to its preferred node once that node is caught up.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "sharding/cluster_map.h"
#include "sharding/placement.h"

namespace ring::sharding {

struct ControllerOptions {
  PlacementOptions placement;
  uint64_t down_after_ms = 10'000;
  uint64_t rereplicate_after_ms = 60'000;
  size_t max_concurrent_moves = 2;
  uint64_t catch_up_entries = 64;  // a learner within this many entries of the commit is caught up
  bool paused = false;
};

// What the controller observed since the map was committed.
struct ClusterView {
  // How long each member has been silent; a member missing here counts as silent forever.
  std::map<NodeId, uint64_t> silent_ms;
  // Per shard, from its leader: the commit index and each replica's match index.
  struct Progress {
    uint64_t commit = 0;
    std::map<NodeId, uint64_t> match;
  };
  std::map<ShardId, Progress> shards;
};

struct PlanResult {
  std::vector<MapChange> changes;               // at most one per shard; member changes first
  size_t moves_in_flight = 0;                    // shards with a learner after these changes
  size_t moves_waiting = 0;                      // shards still away from their target
};

// The target placement for `map`: rendezvous placement over the nodes that may hold
// replicas (up, or down for less than rereplicate_after_ms).
std::map<ShardId, std::vector<NodeId>> TargetPlacement(const ClusterMap& map, const ClusterView& view,
                                                       const ControllerOptions& options);

PlanResult Plan(const ClusterMap& map, const ClusterView& view, const ControllerOptions& options);

// Shard -> the voter that should lead it: leaders spread evenly (PreferredLeaders) over
// each shard's voters that are up. A shard with no such voter is absent. A pure function
// of the map, so every shard leader computes the same answer and hands leadership over
// on its own (server/cluster_manager); nothing is proposed for it.
std::map<ShardId, NodeId> PreferredLeadersOf(const ClusterMap& map);

}  // namespace ring::sharding
