// The controller's planning, driven round by round against the pure cluster map: joins,
// drains, failures, rollbacks, pauses, and the safety rules that hold at every step.
#include "sharding/controller.h"

#include <catch2/catch.hpp>
#include <random>
#include <set>

namespace ring::sharding {
namespace {

Member M(NodeId id) { return Member{id, "127.0.0.1:" + std::to_string(7000 + id), MemberState::kUp, 1.0}; }

// A cluster under the controller: the committed map, what the controller observes, and
// counters the tests check. Learners catch up one round after they are added, unless
// their node is silent.
struct Harness {
  ClusterMap map;
  ClusterView view;
  ControllerOptions options;
  size_t learners_added = 0;
  size_t rounds = 0;

  explicit Harness(std::vector<NodeId> founders, uint32_t shards = 64) {
    MapChange init;
    init.kind = MapChange::Kind::kInit;
    init.cluster_id = 7;
    init.shard_count = shards;
    init.replication_factor = 3;
    for (NodeId n : founders) init.members.push_back(M(n));
    auto r = Apply(map, init);
    REQUIRE(r.ok());
    map = *r;
    for (NodeId n : founders) view.silent_ms[n] = 0;
  }
  bool Alive(NodeId n) const {
    auto it = view.silent_ms.find(n);
    return it != view.silent_ms.end() && it->second < options.down_after_ms;
  }
  void Join(NodeId n) {
    MapChange add;
    add.kind = MapChange::Kind::kAddMember;
    add.members = {M(n)};
    auto r = Apply(map, add);
    REQUIRE(r.ok());
    map = *r;
    view.silent_ms[n] = 0;
  }
  void SetState(NodeId n, MemberState st) {
    MapChange c;
    c.kind = MapChange::Kind::kSetMemberState;
    c.node = n;
    c.state = st;
    auto r = Apply(map, c);
    REQUIRE(r.ok());
    map = *r;
  }
  // Safety: every shard keeps a healthy majority of its voters, unless it had already
  // lost it before the step.
  void CheckSafe(const ClusterMap& before) {
    for (const auto& [id, s] : map.shards) {
      auto healthy = [&](const std::vector<NodeId>& v) {
        return static_cast<size_t>(std::count_if(v.begin(), v.end(), [&](NodeId n) { return Alive(n); }));
      };
      const auto& old = before.shards.at(id).voters;
      if (healthy(old) < old.size() / 2 + 1) continue;
      INFO("shard " << id << " at epoch " << s.epoch);
      CHECK(healthy(s.voters) >= s.voters.size() / 2 + 1);
    }
  }
  // One controller round: plan, apply every change, then learners report progress.
  size_t Round() {
    ++rounds;
    PlanResult plan = Plan(map, view, options);
    CHECK(plan.moves_in_flight <= options.max_concurrent_moves);
    for (const MapChange& c : plan.changes) {
      ClusterMap before = map;
      auto r = Apply(map, c);
      INFO(r.status().ToString());
      REQUIRE(r.ok());
      map = *r;
      if (c.kind == MapChange::Kind::kSetReplicas) {
        const auto& old = before.shards.at(c.shard);
        for (NodeId l : c.learners) learners_added += std::find(old.learners.begin(), old.learners.end(), l) == old.learners.end();
      }
      CheckSafe(before);
    }
    size_in_flight = 0;
    for (const auto& [id, s] : map.shards) {
      size_in_flight += !s.learners.empty();
      auto& p = view.shards[id];
      p.commit = 1000;
      for (NodeId n : s.voters) p.match[n] = 1000;
      for (NodeId n : s.learners) p.match[n] = Alive(n) ? 1000 : 0;
    }
    CHECK(size_in_flight <= options.max_concurrent_moves);
    return plan.changes.size();
  }
  // Until two rounds in a row change nothing (the first may only have refreshed the
  // progress reports a round with no change still needs).
  void RunUntilStable(size_t max_rounds = 2000) {
    size_t quiet = 0;
    for (size_t i = 0; i < max_rounds; ++i) {
      quiet = Round() == 0 ? quiet + 1 : 0;
      if (quiet == 2) return;
    }
    FAIL("the controller did not settle in " << max_rounds << " rounds");
  }
  bool AtTarget() const {
    auto target = TargetPlacement(map, view, options);
    for (const auto& [id, s] : map.shards) {
      if (!s.learners.empty()) return false;
      if (std::set<NodeId>(s.voters.begin(), s.voters.end()) !=
          std::set<NodeId>(target.at(id).begin(), target.at(id).end())) {
        return false;
      }
    }
    return true;
  }
  size_t Holds(NodeId n) const {
    size_t k = 0;
    for (const auto& [id, s] : map.shards) {
      k += std::count(s.voters.begin(), s.voters.end(), n) + std::count(s.learners.begin(), s.learners.end(), n);
    }
    return k;
  }
  size_t size_in_flight = 0;
};

TEST_CASE("a settled cluster plans nothing", "[sharding]") {
  Harness h({1, 2, 3});
  CHECK(Plan(h.map, h.view, h.options).changes.empty());
  CHECK(h.AtTarget());
}

TEST_CASE("a joining node becomes up and receives close to its fair share", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  PlanResult first = Plan(h.map, h.view, h.options);
  REQUIRE(first.changes.size() == 1);  // member states first; no moves in the same round
  CHECK(first.changes[0].kind == MapChange::Kind::kSetMemberState);
  h.RunUntilStable();
  CHECK(h.map.FindMember(4)->state == MemberState::kUp);
  CHECK(h.AtTarget());
  // The minimum is the new node's fair share: 3 * 64 / 4 = 48 replicas.
  INFO("learners added: " << h.learners_added);
  CHECK(h.learners_added <= 48 * 12 / 10);
  CHECK(h.Holds(4) >= 36);
}

TEST_CASE("grow to five nodes, then drain back to three", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  h.RunUntilStable();
  h.Join(5);
  h.RunUntilStable();
  CHECK(h.AtTarget());
  for (NodeId n = 1; n <= 5; ++n) CHECK(h.Holds(n) >= 28);  // 192 / 5 = 38.4, within 25%
  for (NodeId n : {4, 5}) {
    h.SetState(n, MemberState::kDraining);
    h.RunUntilStable();
    CHECK(h.Holds(n) == 0);
    h.SetState(n, MemberState::kRemoved);
  }
  CHECK(h.AtTarget());
  for (const auto& [id, s] : h.map.shards) CHECK(std::set<NodeId>(s.voters.begin(), s.voters.end()) == std::set<NodeId>{1, 2, 3});
}

TEST_CASE("preferred leaders are spread evenly over the up voters, never on a draining node", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  h.Join(5);
  h.RunUntilStable();
  auto count = [&](const std::map<ShardId, NodeId>& leaders) {
    std::map<NodeId, size_t> n;
    for (const auto& [shard, node] : leaders) {
      const auto& voters = h.map.shards.at(shard).voters;
      CHECK(std::find(voters.begin(), voters.end(), node) != voters.end());
      ++n[node];
    }
    return n;
  };
  auto leaders = PreferredLeadersOf(h.map);
  CHECK(leaders.size() == 64);
  auto per_node = count(leaders);
  for (NodeId n = 1; n <= 5; ++n) {
    INFO("node " << n);
    CHECK(per_node[n] >= 11);  // 64 / 5 = 12.8
    CHECK(per_node[n] <= 15);
  }
  CHECK(PreferredLeadersOf(h.map) == leaders);  // a pure function of the map
  // A draining (or down) node is nobody's preferred leader, before its replicas even move.
  h.SetState(5, MemberState::kDraining);
  h.SetState(4, MemberState::kDown);
  per_node = count(PreferredLeadersOf(h.map));
  CHECK(per_node.count(5) == 0);
  CHECK(per_node.count(4) == 0);
  for (NodeId n = 1; n <= 3; ++n) CHECK(per_node[n] >= 18);
}

TEST_CASE("a silent node is marked down, and only later re-replicated", "[sharding]") {
  Harness h({1, 2, 3, 4});
  h.RunUntilStable();  // init put every shard on 1, 2, 3; spread over all four first
  REQUIRE(h.Holds(3) > 0);
  h.learners_added = 0;
  h.view.silent_ms[3] = h.options.down_after_ms + 1;
  h.RunUntilStable();
  CHECK(h.map.FindMember(3)->state == MemberState::kDown);
  CHECK(h.learners_added == 0);  // a short outage moves nothing
  const size_t held = h.Holds(3);
  CHECK(held > 0);
  h.view.silent_ms[3] = h.options.rereplicate_after_ms + 1;
  h.RunUntilStable();
  CHECK(h.Holds(3) == 0);
  CHECK(h.learners_added == held);  // exactly its replicas were re-created
  // It comes back: up again, and placement gives it a share once more.
  h.view.silent_ms[3] = 0;
  h.RunUntilStable();
  CHECK(h.map.FindMember(3)->state == MemberState::kUp);
  CHECK(h.Holds(3) > 0);
  CHECK(h.AtTarget());
}

TEST_CASE("a learner on a node that dies is rolled back", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  h.Round();  // 4 becomes up
  h.Round();  // learners on 4 are added
  size_t learning = 0;
  for (const auto& [id, s] : h.map.shards) learning += !s.learners.empty();
  REQUIRE(learning > 0);
  h.view.silent_ms[4] = UINT64_MAX;  // dies before anything catches up
  for (auto& [id, p] : h.view.shards) p.match[4] = 0;
  h.RunUntilStable();
  for (const auto& [id, s] : h.map.shards) {
    CHECK(s.learners.empty());
    CHECK(std::set<NodeId>(s.voters.begin(), s.voters.end()) == std::set<NodeId>{1, 2, 3});
  }
}

TEST_CASE("moves respect the concurrency limit and can be paused", "[sharding]") {
  Harness h({1, 2, 3});
  h.options.max_concurrent_moves = 1;
  h.Join(4);
  h.Round();
  h.Round();
  h.options.paused = true;
  const ClusterMap frozen = h.map;
  for (int i = 0; i < 5; ++i) h.Round();
  CHECK(h.map == frozen);
  PlanResult p = Plan(h.map, h.view, h.options);
  CHECK(p.moves_waiting > 0);
  h.options.paused = false;
  h.RunUntilStable();
  CHECK(h.AtTarget());
}

TEST_CASE("a new controller resumes a move from the committed map alone", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  h.Round();
  h.Round();  // learners in flight
  // The metadata leader dies here; its successor sees the same map and view.
  PlanResult a = Plan(h.map, h.view, h.options);
  PlanResult b = Plan(h.map, h.view, h.options);
  REQUIRE(a.changes.size() == b.changes.size());
  for (size_t i = 0; i < a.changes.size(); ++i) {
    CHECK(EncodeChange(a.changes[i]) == EncodeChange(b.changes[i]));
  }
  h.RunUntilStable();
  CHECK(h.AtTarget());
}

TEST_CASE("no step is taken that would cost a shard its healthy majority", "[sharding]") {
  Harness h({1, 2, 3});
  h.Join(4);
  h.Round();  // 4 up
  // Two of the three founders go silent (not yet long enough to be re-replicated).
  h.view.silent_ms[2] = h.options.down_after_ms + 1;
  h.view.silent_ms[3] = h.options.down_after_ms + 1;
  for (int i = 0; i < 20; ++i) h.Round();  // CheckSafe runs on every step
  for (const auto& [id, s] : h.map.shards) CHECK(s.voters.size() >= 3);
}

// The controller under crashes, as a seeded simulation: nodes join, crash (briefly or for
// good), come back and drain, learners catch up at random speeds, and the metadata leader
// dies mid-round (only a prefix of its plan commits, and its successor starts without
// progress reports). After every committed change the map is valid and no shard lost a
// healthy majority it had; once everything heals, the controller reaches the target.
TEST_CASE("the controller's moves survive crashes of moving nodes and of the metadata leader", "[sharding][sim]") {
  size_t changes = 0, cut_short = 0, joins = 0, drains = 0;
  for (uint64_t seed = 1; seed <= 500; ++seed) {
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    Harness h({1, 2, 3}, 16);
    h.options.max_concurrent_moves = 1 + rng() % 4;
    NodeId next = 4;
    std::set<NodeId> draining;
    for (int round = 0; round < 60; ++round) {
      // Faults and operator actions.
      if (next <= 7 && chance(0.15)) {
        h.Join(next++);
        ++joins;
      }
      for (const auto& [id, m] : h.map.members) {
        if (m.state == MemberState::kRemoved) continue;
        if (chance(0.05)) h.view.silent_ms[id] = h.options.down_after_ms + 1;             // crash
        else if (chance(0.02)) h.view.silent_ms[id] = h.options.rereplicate_after_ms + 1;  // gone for long
        else if (h.view.silent_ms[id] > 0 && chance(0.3)) h.view.silent_ms[id] = 0;       // back
      }
      size_t up = 0;
      for (const auto& [id, m] : h.map.members) up += m.state == MemberState::kUp;
      if (up > 3 && chance(0.05)) {
        NodeId victim = 1 + rng() % (next - 1);
        const Member* m = h.map.FindMember(victim);
        if (m && m->state == MemberState::kUp) {
          h.SetState(victim, MemberState::kDraining);
          draining.insert(victim);
          ++drains;
        }
      }
      // One controller round; maybe the metadata leader dies after a prefix of it.
      PlanResult plan = Plan(h.map, h.view, h.options);
      size_t commit = plan.changes.size();
      const bool leader_dies = chance(0.1);
      if (leader_dies && commit > 0) commit = rng() % (commit + 1);
      cut_short += commit < plan.changes.size();
      changes += commit;
      for (size_t i = 0; i < commit; ++i) {
        ClusterMap before = h.map;
        auto r = Apply(h.map, plan.changes[i]);
        INFO(r.status().ToString());
        REQUIRE(r.ok());
        h.map = *r;
        REQUIRE(h.map.Validate().ok());
        h.CheckSafe(before);
      }
      size_t in_flight = 0;
      for (const auto& [id, sh] : h.map.shards) in_flight += !sh.learners.empty();
      CHECK(in_flight <= h.options.max_concurrent_moves);
      // Progress reports: a new leader has none yet; learners on live nodes catch up at
      // their own pace.
      if (leader_dies) {
        h.view.shards.clear();
        continue;
      }
      for (const auto& [id, sh] : h.map.shards) {
        auto& p = h.view.shards[id];
        p.commit = 1000;
        for (NodeId n : sh.voters) p.match[n] = 1000;
        for (NodeId n : sh.learners) {
          if (h.Alive(n) && chance(0.5)) p.match[n] = 1000;
          else p.match.emplace(n, 0);
        }
      }
    }
    // Heal: every node that is not removed comes back; the cluster settles on its target.
    for (auto& [id, silent] : h.view.silent_ms) silent = 0;
    h.RunUntilStable();
    CHECK(h.AtTarget());
    for (NodeId d : draining) CHECK(h.Holds(d) == 0);
    for (const auto& [id, sh] : h.map.shards) {
      CHECK(sh.voters.size() == 3);
      CHECK(sh.learners.empty());
    }
  }
  // The schedules did exercise what they claim to.
  CHECK(joins > 500);
  CHECK(drains > 100);
  CHECK(cut_short > 100);
  CHECK(changes > 10000);
}

}  // namespace
}  // namespace ring::sharding
