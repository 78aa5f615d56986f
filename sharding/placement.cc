#include "sharding/placement.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <xxhash.h>

namespace ring::sharding {

double RendezvousHash(ShardId shard, NodeId node) {
  unsigned char in[12];
  for (int i = 0; i < 4; ++i) in[i] = static_cast<unsigned char>(shard >> (8 * i));
  for (int i = 0; i < 8; ++i) in[4 + i] = static_cast<unsigned char>(node >> (8 * i));
  uint64_t h = XXH3_64bits(in, sizeof in);
  // The top 53 bits, centred in their cell: strictly inside (0, 1).
  return (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;
}

namespace {

// Weighted rendezvous (the "logarithmic method"): score = -weight / ln(u). A node with
// twice the weight wins twice as many shards, and scores of different nodes compare
// without any normalisation.
double Score(ShardId shard, const Candidate& c) { return -c.weight / std::log(RendezvousHash(shard, c.id)); }

}  // namespace

std::map<ShardId, std::vector<NodeId>> PlaceReplicas(const std::vector<ShardId>& shards,
                                                     const std::vector<Candidate>& candidates,
                                                     const PlacementOptions& options) {
  std::vector<Candidate> nodes;
  std::set<NodeId> seen;
  for (const Candidate& c : candidates) {
    if (c.weight > 0 && seen.insert(c.id).second) nodes.push_back(c);
  }
  std::sort(nodes.begin(), nodes.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  std::vector<ShardId> order(shards);
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());

  std::map<ShardId, std::vector<NodeId>> out;
  const size_t rf = std::min(options.replication_factor, nodes.size());
  if (rf == 0) {
    for (ShardId s : order) out[s];
    return out;
  }
  // Each node's cap: its weighted fair share of all replicas, times the load factor.
  double total_weight = 0;
  for (const Candidate& c : nodes) total_weight += c.weight;
  const double slots = static_cast<double>(rf * order.size());
  std::vector<size_t> cap(nodes.size()), load(nodes.size(), 0);
  std::vector<double> fair(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) fair[i] = slots * nodes[i].weight / total_weight;
  for (size_t i = 0; i < nodes.size(); ++i) {
    cap[i] = static_cast<size_t>(std::ceil(std::max(1.0, options.load_factor) * fair[i]));
  }

  std::vector<std::pair<double, size_t>> ranked(nodes.size());
  for (ShardId s : order) {
    for (size_t i = 0; i < nodes.size(); ++i) ranked[i] = {Score(s, nodes[i]), i};
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<NodeId>& reps = out[s];
    // Best nodes with room first; if the caps leave too few (only with extreme weights),
    // the best remaining nodes regardless of load.
    for (int pass = 0; pass < 2 && reps.size() < rf; ++pass) {
      for (const auto& [score, i] : ranked) {
        if (reps.size() == rf) break;
        if (std::find(reps.begin(), reps.end(), nodes[i].id) != reps.end()) continue;
        if (pass == 0 && load[i] >= cap[i]) continue;
        reps.push_back(nodes[i].id);
        ++load[i];
      }
    }
  }

  // The caps bound the top; lift the bottom too. A node below its floor takes over, from
  // the shards it scores best on, a replica held by a node above its fair share, so
  // the result stays close to what rendezvous hashing alone would pick.
  std::map<NodeId, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) index[nodes[i].id] = i;
  for (size_t u = 0; u < nodes.size(); ++u) {
    const auto floor_u = static_cast<size_t>(std::floor(std::min(1.0, options.floor_factor) * fair[u]));
    if (load[u] >= floor_u) continue;
    std::vector<std::pair<double, ShardId>> prefer;
    for (ShardId s : order) prefer.emplace_back(Score(s, nodes[u]), s);
    std::sort(prefer.begin(), prefer.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [score, s] : prefer) {
      if (load[u] >= floor_u) break;
      std::vector<NodeId>& reps = out[s];
      if (std::find(reps.begin(), reps.end(), nodes[u].id) != reps.end()) continue;
      // The most overloaded replica holder of s, if any is above its fair share.
      size_t victim = reps.size();
      double excess = 0;
      for (size_t k = 0; k < reps.size(); ++k) {
        size_t v = index[reps[k]];
        double e = static_cast<double>(load[v]) - fair[v];
        if (e > excess) {
          excess = e;
          victim = k;
        }
      }
      if (victim == reps.size()) continue;
      --load[index[reps[victim]]];
      reps[victim] = nodes[u].id;
      ++load[u];
    }
  }
  return out;
}

std::map<ShardId, NodeId> PreferredLeaders(const std::map<ShardId, std::vector<NodeId>>& replicas) {
  std::map<NodeId, size_t> leading;
  std::map<ShardId, NodeId> out;
  for (const auto& [shard, reps] : replicas) {
    if (reps.empty()) continue;
    NodeId best = reps.front();
    for (NodeId n : reps) {
      if (leading[n] < leading[best]) best = n;
    }
    ++leading[best];
    out[shard] = best;
  }
  return out;
}

size_t ReplicasMoved(const std::map<ShardId, std::vector<NodeId>>& before,
                     const std::map<ShardId, std::vector<NodeId>>& after) {
  size_t moved = 0;
  for (const auto& [shard, reps] : after) {
    auto it = before.find(shard);
    for (NodeId n : reps) {
      if (it == before.end() || std::find(it->second.begin(), it->second.end(), n) == it->second.end()) ++moved;
    }
  }
  return moved;
}

}  // namespace ring::sharding
