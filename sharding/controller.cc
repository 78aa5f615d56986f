#include "sharding/controller.h"

#include <algorithm>
#include <set>

namespace ring::sharding {

namespace {

uint64_t Silent(const ClusterView& view, NodeId n) {
  auto it = view.silent_ms.find(n);
  return it == view.silent_ms.end() ? UINT64_MAX : it->second;
}

bool Contains(const std::vector<NodeId>& v, NodeId n) { return std::find(v.begin(), v.end(), n) != v.end(); }

MapChange SetReplicas(const ShardInfo& s, std::vector<NodeId> voters, std::vector<NodeId> learners) {
  MapChange c;
  c.kind = MapChange::Kind::kSetReplicas;
  c.shard = s.id;
  c.expected_epoch = s.epoch;
  c.voters = std::move(voters);
  c.learners = std::move(learners);
  return c;
}

}  // namespace

std::map<ShardId, std::vector<NodeId>> TargetPlacement(const ClusterMap& map, const ClusterView& view,
                                                       const ControllerOptions& options) {
  std::vector<Candidate> candidates;
  for (const auto& [id, m] : map.members) {
    const bool holds = m.state == MemberState::kUp ||
                       (m.state == MemberState::kDown && Silent(view, id) < options.rereplicate_after_ms);
    if (holds) candidates.push_back(Candidate{id, m.weight});
  }
  std::vector<ShardId> shards;
  for (const auto& [id, s] : map.shards) shards.push_back(id);
  PlacementOptions placement = options.placement;
  placement.replication_factor = map.replication_factor;
  return PlaceReplicas(shards, candidates, placement);
}

PlanResult Plan(const ClusterMap& map, const ClusterView& view, const ControllerOptions& options) {
  PlanResult r;
  if (!map.initialized()) return r;
  auto healthy = [&](NodeId n) {
    const Member* m = map.FindMember(n);
    return m != nullptr && m->state != MemberState::kRemoved && Silent(view, n) < options.down_after_ms;
  };
  auto safe = [&](const std::vector<NodeId>& voters) {
    size_t up = static_cast<size_t>(std::count_if(voters.begin(), voters.end(), healthy));
    return up >= voters.size() / 2 + 1;
  };

  // 1. Member states. Placement depends on them, so a round that changes any plans no moves.
  for (const auto& [id, m] : map.members) {
    const bool alive = Silent(view, id) < options.down_after_ms;
    MemberState next = m.state;
    if ((m.state == MemberState::kJoining || m.state == MemberState::kDown) && alive) next = MemberState::kUp;
    if (m.state == MemberState::kUp && !alive) next = MemberState::kDown;
    if (next != m.state) {
      MapChange c;
      c.kind = MapChange::Kind::kSetMemberState;
      c.node = id;
      c.state = next;
      r.changes.push_back(c);
    }
  }
  if (!r.changes.empty()) return r;

  // 2. Replicas, one step per shard.
  const auto target = TargetPlacement(map, view, options);
  for (const auto& [id, s] : map.shards) r.moves_in_flight += !s.learners.empty();

  for (const auto& [id, s] : map.shards) {
    const std::vector<NodeId>& want = target.at(id);
    const std::vector<NodeId>& voters = s.voters;
    if (!s.learners.empty()) {
      if (options.paused) continue;
      const NodeId learner = s.learners.front();
      std::vector<NodeId> rest(s.learners.begin() + 1, s.learners.end());
      if (!healthy(learner) || !Contains(want, learner)) {
        r.changes.push_back(SetReplicas(s, voters, rest));  // roll back
        --r.moves_in_flight;
        continue;
      }
      auto p = view.shards.find(id);
      if (p == view.shards.end() || p->second.commit == 0) continue;  // no progress report yet
      auto m = p->second.match.find(learner);
      if (m == p->second.match.end() || m->second + options.catch_up_entries < p->second.commit) continue;
      std::vector<NodeId> grown = voters;
      grown.push_back(learner);
      if (!safe(grown)) continue;
      r.changes.push_back(SetReplicas(s, grown, rest));
      --r.moves_in_flight;
      continue;
    }

    std::vector<NodeId> extra, missing;
    for (NodeId n : voters) {
      if (!Contains(want, n)) extra.push_back(n);
    }
    for (NodeId n : want) {
      if (!Contains(voters, n)) missing.push_back(n);
    }
    if (extra.empty() && missing.empty()) continue;
    ++r.moves_waiting;
    if (options.paused) continue;
    // Shrink first when there are more voters than wanted (after a promotion, or when
    // fewer candidates exist than the replication factor): the unhealthy ones go first.
    if (!extra.empty() && (voters.size() > want.size() || missing.empty())) {
      std::stable_partition(extra.begin(), extra.end(), [&](NodeId n) { return !healthy(n); });
      std::vector<NodeId> shrunk;
      for (NodeId n : voters) {
        if (n != extra.front()) shrunk.push_back(n);
      }
      if (!shrunk.empty() && safe(shrunk)) r.changes.push_back(SetReplicas(s, shrunk, {}));
      continue;
    }
    if (!missing.empty() && r.moves_in_flight < options.max_concurrent_moves) {
      auto next = std::find_if(missing.begin(), missing.end(), healthy);
      if (next == missing.end()) continue;
      r.changes.push_back(SetReplicas(s, voters, {*next}));
      ++r.moves_in_flight;
    }
  }
  return r;
}

std::map<ShardId, NodeId> PreferredLeadersOf(const ClusterMap& map) {
  std::map<ShardId, std::vector<NodeId>> voters;
  for (const auto& [id, s] : map.shards) {
    std::vector<NodeId> up;
    for (NodeId n : s.voters) {
      const Member* m = map.FindMember(n);
      if (m != nullptr && m->state == MemberState::kUp) up.push_back(n);
    }
    if (!up.empty()) voters.emplace(id, std::move(up));
  }
  return PreferredLeaders(voters);
}

}  // namespace ring::sharding
