// Replica placement: rendezvous hashing with bounded loads, and leader spreading.
#include "sharding/placement.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <set>

namespace ring::sharding {
namespace {

std::vector<ShardId> Shards(uint32_t n) {
  std::vector<ShardId> s(n);
  std::iota(s.begin(), s.end(), 0);
  return s;
}

std::vector<Candidate> Nodes(NodeId first, NodeId last) {
  std::vector<Candidate> out;
  for (NodeId id = first; id <= last; ++id) out.push_back(Candidate{id, 1.0});
  return out;
}

std::map<NodeId, size_t> Load(const std::map<ShardId, std::vector<NodeId>>& p) {
  std::map<NodeId, size_t> load;
  for (const auto& [s, reps] : p) {
    for (NodeId n : reps) ++load[n];
  }
  return load;
}

TEST_CASE("every shard gets RF distinct replicas, deterministically", "[sharding]") {
  auto nodes = Nodes(1, 7);
  auto p = PlaceReplicas(Shards(64), nodes);
  REQUIRE(p.size() == 64);
  for (const auto& [s, reps] : p) {
    CHECK(reps.size() == 3);
    CHECK(std::set<NodeId>(reps.begin(), reps.end()).size() == 3);
  }
  // The candidates' order does not matter.
  std::reverse(nodes.begin(), nodes.end());
  CHECK(PlaceReplicas(Shards(64), nodes) == p);
  // Fewer nodes than RF: every node holds every shard.
  auto two = PlaceReplicas(Shards(8), Nodes(1, 2));
  for (const auto& [s, reps] : two) CHECK(reps.size() == 2);
  // No candidates (or only weightless ones): shards with no replicas, not a crash.
  auto none = PlaceReplicas(Shards(4), {Candidate{9, 0.0}});
  for (const auto& [s, reps] : none) CHECK(reps.empty());
}

TEST_CASE("per-node replica counts stay within 25% of the mean", "[sharding]") {
  for (uint32_t shards : {64u, 256u}) {
    for (NodeId n = 3; n <= 16; ++n) {
      auto load = Load(PlaceReplicas(Shards(shards), Nodes(1, n)));
      const double mean = 3.0 * shards / static_cast<double>(n);
      size_t lo = SIZE_MAX, hi = 0;
      for (const auto& [node, count] : load) {
        lo = std::min(lo, count);
        hi = std::max(hi, count);
      }
      INFO(shards << " shards on " << n << " nodes: mean " << mean << ", min " << lo << ", max " << hi);
      CHECK(load.size() == n);
      CHECK(static_cast<double>(hi) <= std::ceil(1.25 * mean));
      CHECK(static_cast<double>(lo) >= std::floor(0.75 * mean));
    }
  }
}

TEST_CASE("adding a node moves close to the minimum number of replicas", "[sharding]") {
  // The minimum: the new node's fair share, RF*S/(N+1); nothing else has to move.
  double worst = 0, total_moved = 0, total_min = 0;
  for (uint32_t shards : {64u, 256u}) {
    for (NodeId n = 3; n <= 15; ++n) {
      auto before = PlaceReplicas(Shards(shards), Nodes(1, n));
      auto after = PlaceReplicas(Shards(shards), Nodes(1, n + 1));
      const double minimum = 3.0 * shards / static_cast<double>(n + 1);
      const double moved = static_cast<double>(ReplicasMoved(before, after));
      INFO(shards << " shards, " << n << " -> " << n + 1 << " nodes: moved " << moved << ", minimum " << minimum);
      CHECK(moved <= 1.5 * minimum);
      worst = std::max(worst, moved / minimum);
      total_moved += moved;
      total_min += minimum;
    }
  }
  INFO("worst ratio " << worst << ", overall " << total_moved / total_min);
  CHECK(total_moved <= 1.2 * total_min);
  // The case the benchmark measures: a 4th node joins a 3-node cluster of 64 shards.
  auto three = PlaceReplicas(Shards(64), Nodes(1, 3));
  auto four = PlaceReplicas(Shards(64), Nodes(1, 4));
  CHECK(static_cast<double>(ReplicasMoved(three, four)) <= 1.2 * 48);
}

TEST_CASE("removing a node moves little more than what it held", "[sharding]") {
  for (NodeId n = 4; n <= 12; ++n) {
    auto before = PlaceReplicas(Shards(256), Nodes(1, n));
    auto after = PlaceReplicas(Shards(256), Nodes(1, n - 1));  // node n leaves
    const double held = static_cast<double>(Load(before)[n]);
    INFO(n << " -> " << n - 1 << " nodes: node " << n << " held " << held);
    CHECK(static_cast<double>(ReplicasMoved(before, after)) <= 1.5 * held);
  }
}

TEST_CASE("a node with twice the weight holds about twice the replicas", "[sharding]") {
  auto nodes = Nodes(1, 6);
  nodes[0].weight = 2.0;
  auto load = Load(PlaceReplicas(Shards(256), nodes));
  const double unit = 3.0 * 256 / 7.0;  // six nodes, one counting double
  CHECK(static_cast<double>(load[1]) >= 1.6 * unit);
  CHECK(static_cast<double>(load[1]) <= std::ceil(1.25 * 2 * unit));
  for (NodeId id = 2; id <= 6; ++id) CHECK(static_cast<double>(load[id]) <= std::ceil(1.25 * unit));
}

TEST_CASE("preferred leaders are spread evenly over the nodes", "[sharding]") {
  for (NodeId n = 3; n <= 12; ++n) {
    auto replicas = PlaceReplicas(Shards(64), Nodes(1, n));
    auto leaders = PreferredLeaders(replicas);
    REQUIRE(leaders.size() == 64);
    std::map<NodeId, size_t> count;
    for (const auto& [s, leader] : leaders) {
      const auto& reps = replicas[s];
      CHECK(std::find(reps.begin(), reps.end(), leader) != reps.end());
      ++count[leader];
    }
    size_t lo = SIZE_MAX, hi = 0;
    for (NodeId id = 1; id <= n; ++id) {
      lo = std::min(lo, count[id]);
      hi = std::max(hi, count[id]);
    }
    INFO(n << " nodes: leaders per node from " << lo << " to " << hi);
    CHECK(hi - lo <= 2);
  }
}

}  // namespace
}  // namespace ring::sharding
