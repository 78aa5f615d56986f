#include "sharding/cluster_map.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <set>

#include "common/endpoint.h"
#include "proto/ring.pb.h"

namespace ring::sharding {

const char* MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kJoining: return "joining";
    case MemberState::kUp: return "up";
    case MemberState::kDraining: return "draining";
    case MemberState::kDown: return "down";
    case MemberState::kRemoved: return "removed";
  }
  return "unknown";
}

std::optional<ShardId> ClusterMap::ShardOf(uint64_t hash) const {
  // Linear: after splits, id order is not range order. Request routing builds its own
  // sorted index from the map; this is for tools and tests.
  for (const auto& [id, s] : shards) {
    if (hash >= s.start && (s.end == 0 || hash < s.end)) return id;
  }
  return std::nullopt;
}

const Member* ClusterMap::FindMember(NodeId id) const {
  auto it = members.find(id);
  return it == members.end() ? nullptr : &it->second;
}

std::optional<std::pair<uint64_t, uint64_t>> ClusterMap::InitialRange(ShardId id) const {
  // Maps written before splits existed have no count: every shard then is an initial one.
  const uint32_t n = initial_shards > 0 ? initial_shards : static_cast<uint32_t>(shards.size());
  if (n == 0 || id >= n) return std::nullopt;
  return std::make_pair(ShardRanges::UniformStart(id, n), id + 1 < n ? ShardRanges::UniformStart(id + 1, n) : uint64_t{0});
}

ShardRanges ShardRangesOf(const ClusterMap& map) {
  std::vector<std::pair<uint64_t, ShardId>> starts;
  for (const auto& [id, s] : map.shards) starts.emplace_back(s.start, id);
  auto r = ShardRanges::FromStarts(std::move(starts));
  assert(r.ok());  // Validate() holds for every map Apply or Decode produced
  return r.ok() ? std::move(r).value() : ShardRanges::Uniform(1);
}

const Member* ClusterMap::FindLiveMember(std::string_view address) const {
  for (const auto& [id, m] : members) {
    if (m.state != MemberState::kRemoved && m.address == address) return &m;
  }
  return nullptr;
}

namespace {

Status Invalid(const std::string& what) { return Status::InvalidArgument("cluster map: " + what); }

std::string Shard(ShardId id) { return "shard " + std::to_string(id); }

Status CheckMember(const Member& m) {
  if (m.id == replication::kNoNode) return Invalid("member id 0 is reserved");
  if (!std::isfinite(m.weight) || m.weight < 0 || m.weight > 1000) {
    return Invalid("member " + std::to_string(m.id) + ": weight must be within [0, 1000]");
  }
  auto ep = ParseEndpoint(m.address);
  if (!ep.ok()) return Invalid("member " + std::to_string(m.id) + ": " + ep.status().message());
  if (static_cast<uint8_t>(m.state) > static_cast<uint8_t>(MemberState::kRemoved)) {
    return Invalid("member " + std::to_string(m.id) + ": unknown state");
  }
  return Status::OK();
}

// Voters and learners: non-empty voters, no duplicates, every one a live member.
Status CheckReplicas(const ClusterMap& map, ShardId id, const std::vector<NodeId>& voters,
                     const std::vector<NodeId>& learners) {
  if (voters.empty()) return Invalid(Shard(id) + " has no voters");
  if (voters.size() + learners.size() > 2 * kMaxReplicationFactor) {
    return Invalid(Shard(id) + " has more than " + std::to_string(2 * kMaxReplicationFactor) + " replicas");
  }
  std::set<NodeId> seen;
  for (const auto* list : {&voters, &learners}) {
    for (NodeId n : *list) {
      if (!seen.insert(n).second) return Invalid(Shard(id) + " lists node " + std::to_string(n) + " twice");
      const Member* m = map.FindMember(n);
      if (m == nullptr) return Invalid(Shard(id) + ": node " + std::to_string(n) + " is not a member");
      if (m->state == MemberState::kRemoved) {
        return Invalid(Shard(id) + ": node " + std::to_string(n) + " was removed");
      }
    }
  }
  return Status::OK();
}

}  // namespace

Status ClusterMap::Validate() const {
  if (!initialized()) {
    if (!members.empty() || !shards.empty()) return Invalid("an uninitialised map holds members or shards");
    return Status::OK();
  }
  if (replication_factor == 0 || replication_factor > kMaxReplicationFactor) {
    return Invalid("replication factor must be 1.." + std::to_string(kMaxReplicationFactor));
  }
  if (members.size() > kMaxMembers) return Invalid("more than " + std::to_string(kMaxMembers) + " members");
  if (shards.empty() || shards.size() > kMaxShards) return Invalid("shard count must be 1.." + std::to_string(kMaxShards));
  std::set<std::string> addresses;
  for (const auto& [id, m] : members) {
    if (id != m.id) return Invalid("member " + std::to_string(id) + " is filed under another id");
    RETURN_IF_ERROR(CheckMember(m));
    if (m.state != MemberState::kRemoved && !addresses.insert(m.address).second) {
      return Invalid("two members share the address " + m.address);
    }
  }
  // Ranges: sorted by start they must tile [0, 2^64).
  std::vector<const ShardInfo*> by_start;
  for (const auto& [id, s] : shards) {
    if (id != s.id) return Invalid(Shard(id) + " is filed under another id");
    if (id >= next_shard_id) return Invalid(Shard(id) + " is not below next_shard_id");
    if (s.epoch == 0) return Invalid(Shard(id) + " has epoch 0");
    if (s.end != 0 && s.end <= s.start) return Invalid(Shard(id) + " has an empty range");
    RETURN_IF_ERROR(CheckReplicas(*this, id, s.voters, s.learners));
    by_start.push_back(&s);
  }
  std::sort(by_start.begin(), by_start.end(), [](auto* a, auto* b) { return a->start < b->start; });
  if (by_start.front()->start != 0) return Invalid("no shard starts at hash 0");
  for (size_t i = 0; i + 1 < by_start.size(); ++i) {
    if (by_start[i]->end != by_start[i + 1]->start) {
      return Invalid(Shard(by_start[i]->id) + " and " + Shard(by_start[i + 1]->id) + " leave a gap or overlap");
    }
  }
  if (by_start.back()->end != 0) return Invalid("no shard reaches the end of the hash space");
  return Status::OK();
}

Result<ClusterMap> Apply(const ClusterMap& map, const MapChange& c) {
  using Kind = MapChange::Kind;
  if (c.kind != Kind::kInit && !map.initialized()) return Invalid("the cluster is not initialised");
  ClusterMap next = map;
  switch (c.kind) {
    case Kind::kInit: {
      if (map.initialized()) return Invalid("the cluster is already initialised");
      if (c.cluster_id == 0) return Invalid("cluster id 0 is reserved");
      if (c.shard_count == 0 || c.shard_count > kMaxShards) {
        return Invalid("shard count must be 1.." + std::to_string(kMaxShards));
      }
      if (c.replication_factor == 0 || c.replication_factor > kMaxReplicationFactor) {
        return Invalid("replication factor must be 1.." + std::to_string(kMaxReplicationFactor));
      }
      if (c.members.empty()) return Invalid("init needs at least one member");
      if (c.members.size() > kMaxMembers) return Invalid("more than " + std::to_string(kMaxMembers) + " members");
      next.cluster_id = c.cluster_id;
      next.replication_factor = c.replication_factor;
      for (Member m : c.members) {
        m.state = MemberState::kUp;
        if (!next.members.emplace(m.id, m).second) return Invalid("member " + std::to_string(m.id) + " listed twice");
      }
      // Placement is the controller's job; init puts every shard on the first
      // min(RF, members) founders (by id) and the controller spreads them from there.
      std::vector<NodeId> founders;
      for (const auto& [id, m] : next.members) {
        if (founders.size() < c.replication_factor) founders.push_back(id);
      }
      ShardRanges ranges = ShardRanges::Uniform(c.shard_count);
      for (ShardId s = 0; s < c.shard_count; ++s) {
        ShardInfo info;
        info.id = s;
        info.start = ranges.Start(s);
        info.end = s + 1 < c.shard_count ? ranges.Start(s + 1) : 0;
        info.voters = founders;
        next.shards.emplace(s, std::move(info));
      }
      next.next_shard_id = c.shard_count;
      next.initial_shards = c.shard_count;
      break;
    }
    case Kind::kAddMember: {
      if (c.members.size() != 1) return Invalid("add-member carries exactly one member");
      Member m = c.members.front();
      m.state = MemberState::kJoining;
      if (next.members.count(m.id)) return Invalid("node " + std::to_string(m.id) + " is already a member");
      if (m.id < next.NextMemberId()) return Invalid("node id " + std::to_string(m.id) + " is below ids already used");
      if (next.members.size() >= kMaxMembers) return Invalid("the cluster has " + std::to_string(kMaxMembers) + " members");
      next.members.emplace(m.id, m);
      break;
    }
    case Kind::kSetMemberState: {
      auto it = next.members.find(c.node);
      if (it == next.members.end()) return Invalid("node " + std::to_string(c.node) + " is not a member");
      if (static_cast<uint8_t>(c.state) > static_cast<uint8_t>(MemberState::kRemoved)) return Invalid("unknown member state");
      if (it->second.state == MemberState::kRemoved) return Invalid("node " + std::to_string(c.node) + " was removed");
      if (c.state == MemberState::kRemoved) {
        for (const auto& [id, s] : next.shards) {
          auto holds = [&](const std::vector<NodeId>& v) { return std::find(v.begin(), v.end(), c.node) != v.end(); };
          if (holds(s.voters) || holds(s.learners)) {
            return Invalid("node " + std::to_string(c.node) + " still holds " + Shard(id) + "; drain it first");
          }
        }
      }
      it->second.state = c.state;
      break;
    }
    case Kind::kSetReplicas: {
      auto it = next.shards.find(c.shard);
      if (it == next.shards.end()) return Invalid(Shard(c.shard) + " does not exist");
      if (c.expected_epoch != it->second.epoch) {
        return Status::StaleEpoch(Shard(c.shard) + " is at epoch " + std::to_string(it->second.epoch) +
                                  ", not " + std::to_string(c.expected_epoch));
      }
      RETURN_IF_ERROR(CheckReplicas(next, c.shard, c.voters, c.learners));
      it->second.voters = c.voters;
      it->second.learners = c.learners;
      ++it->second.epoch;
      if (std::find(c.voters.begin(), c.voters.end(), it->second.leader_hint) == c.voters.end()) {
        it->second.leader_hint = replication::kNoNode;
      }
      break;
    }
    case Kind::kSplitShard: {
      auto it = next.shards.find(c.shard);
      if (it == next.shards.end()) return Invalid(Shard(c.shard) + " does not exist");
      ShardInfo& lower = it->second;
      if (c.expected_epoch != lower.epoch) {
        return Status::StaleEpoch(Shard(c.shard) + " is at epoch " + std::to_string(lower.epoch) + ", not " +
                                  std::to_string(c.expected_epoch));
      }
      if (next.shards.size() >= kMaxShards) return Invalid("the cluster has " + std::to_string(kMaxShards) + " shards");
      if (!lower.learners.empty()) return Invalid(Shard(c.shard) + " has a replica move in progress; split it after");
      // The midpoint of [start, end), with end == 0 meaning 2^64.
      const uint64_t width_minus_one = lower.end - lower.start - 1;  // wraps correctly for end == 0
      if (width_minus_one == 0) return Invalid(Shard(c.shard) + " covers a single hash and cannot split");
      const uint64_t mid = lower.start + width_minus_one / 2 + 1;
      ShardInfo upper = lower;
      if (next.initial_shards == 0) next.initial_shards = static_cast<uint32_t>(next.shards.size());  // an older map
      upper.id = next.next_shard_id++;
      upper.parent = lower.id;
      upper.start = mid;
      lower.end = mid;
      ++lower.epoch;
      upper.epoch = lower.epoch;
      next.shards.emplace(upper.id, std::move(upper));
      break;
    }
    case Kind::kSetLeaderHint: {
      auto it = next.shards.find(c.shard);
      if (it == next.shards.end()) return Invalid(Shard(c.shard) + " does not exist");
      const auto& v = it->second.voters;
      if (c.node != replication::kNoNode && std::find(v.begin(), v.end(), c.node) == v.end()) {
        return Invalid("node " + std::to_string(c.node) + " is not a voter of " + Shard(c.shard));
      }
      it->second.leader_hint = c.node;
      break;
    }
    case Kind::kSetMovesPaused:
      next.moves_paused = c.paused;
      break;
    default:
      return Invalid("unknown change kind " + std::to_string(static_cast<int>(c.kind)));
  }
  ++next.version;
  RETURN_IF_ERROR(next.Validate());
  return next;
}

// ---------------------------------------------------------------------------------------
// Encodings

namespace {

void ToProto(const Member& m, pb::MapMember* out) {
  out->set_id(m.id);
  out->set_address(m.address);
  out->set_state(static_cast<uint32_t>(m.state));
  out->set_weight(m.weight);
  out->set_join_token(m.join_token);
}

Member FromProto(const pb::MapMember& p) {
  Member m;
  m.id = p.id();
  m.address = p.address();
  m.state = static_cast<MemberState>(std::min<uint32_t>(p.state(), 255));
  m.weight = p.weight();
  m.join_token = p.join_token();
  return m;
}

bool ParseBounded(std::string_view bytes, google::protobuf::MessageLite* msg) {
  return bytes.size() <= (64u << 20) && msg->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace

std::string EncodeMap(const ClusterMap& map) {
  pb::ClusterMap p;
  MapToProto(map, &p);
  return p.SerializeAsString();
}

void MapToProto(const ClusterMap& map, pb::ClusterMap* out_map) {
  pb::ClusterMap& p = *out_map;
  p.set_cluster_id(map.cluster_id);
  p.set_version(map.version);
  p.set_replication_factor(map.replication_factor);
  p.set_next_shard_id(map.next_shard_id);
  p.set_moves_paused(map.moves_paused);
  p.set_initial_shards(map.initial_shards);
  for (const auto& [id, m] : map.members) ToProto(m, p.add_members());
  for (const auto& [id, s] : map.shards) {
    pb::MapShard* out = p.add_shards();
    out->set_id(s.id);
    out->set_start(s.start);
    out->set_end(s.end);
    for (NodeId n : s.voters) out->add_voters(n);
    for (NodeId n : s.learners) out->add_learners(n);
    out->set_epoch(s.epoch);
    out->set_leader_hint(s.leader_hint);
    if (s.parent) out->set_parent(*s.parent + 1);
  }
}

Result<ClusterMap> DecodeMap(std::string_view bytes) {
  pb::ClusterMap p;
  if (!ParseBounded(bytes, &p)) return Status::Corruption("cluster map: not a valid encoding");
  if (p.members_size() > static_cast<int>(kMaxMembers) || p.shards_size() > static_cast<int>(kMaxShards)) {
    return Status::Corruption("cluster map: too many members or shards");
  }
  ClusterMap map;
  map.cluster_id = p.cluster_id();
  map.version = p.version();
  map.replication_factor = p.replication_factor();
  map.next_shard_id = p.next_shard_id();
  map.moves_paused = p.moves_paused();
  map.initial_shards = p.initial_shards();
  for (const auto& pm : p.members()) {
    if (!map.members.emplace(pm.id(), FromProto(pm)).second) {
      return Status::Corruption("cluster map: member " + std::to_string(pm.id()) + " appears twice");
    }
  }
  for (const auto& ps : p.shards()) {
    ShardInfo s;
    s.id = ps.id();
    s.start = ps.start();
    s.end = ps.end();
    s.voters.assign(ps.voters().begin(), ps.voters().end());
    s.learners.assign(ps.learners().begin(), ps.learners().end());
    s.epoch = ps.epoch();
    s.leader_hint = ps.leader_hint();
    if (ps.parent() > 0) s.parent = ps.parent() - 1;
    if (!map.shards.emplace(s.id, std::move(s)).second) {
      return Status::Corruption("cluster map: " + Shard(ps.id()) + " appears twice");
    }
  }
  Status v = map.Validate();
  if (!v.ok()) return Status::Corruption(v.message());
  return map;
}

std::string EncodeChange(const MapChange& c) {
  pb::MapChange p;
  p.set_kind(static_cast<uint32_t>(c.kind));
  p.set_cluster_id(c.cluster_id);
  p.set_shard_count(c.shard_count);
  p.set_replication_factor(c.replication_factor);
  for (const Member& m : c.members) ToProto(m, p.add_members());
  p.set_node(c.node);
  p.set_state(static_cast<uint32_t>(c.state));
  p.set_shard(c.shard);
  p.set_expected_epoch(c.expected_epoch);
  for (NodeId n : c.voters) p.add_voters(n);
  for (NodeId n : c.learners) p.add_learners(n);
  p.set_paused(c.paused);
  return p.SerializeAsString();
}

Result<MapChange> DecodeChange(std::string_view bytes) {
  pb::MapChange p;
  if (!ParseBounded(bytes, &p)) return Status::Corruption("cluster map change: not a valid encoding");
  if (p.kind() > static_cast<uint32_t>(MapChange::Kind::kSetMovesPaused)) {
    return Status::Corruption("cluster map change: unknown kind " + std::to_string(p.kind()));
  }
  if (p.state() > static_cast<uint32_t>(MemberState::kRemoved)) {
    return Status::Corruption("cluster map change: unknown member state " + std::to_string(p.state()));
  }
  if (p.members_size() > static_cast<int>(kMaxMembers) || p.voters_size() > static_cast<int>(2 * kMaxReplicationFactor) ||
      p.learners_size() > static_cast<int>(2 * kMaxReplicationFactor)) {
    return Status::Corruption("cluster map change: too many members or replicas");
  }
  MapChange c;
  c.kind = static_cast<MapChange::Kind>(p.kind());
  c.cluster_id = p.cluster_id();
  c.shard_count = p.shard_count();
  c.replication_factor = p.replication_factor();
  for (const auto& pm : p.members()) {
    Member m = FromProto(pm);
    Status s = CheckMember(m);
    if (!s.ok()) return Status::Corruption("cluster map change: " + s.message());
    c.members.push_back(std::move(m));
  }
  c.node = p.node();
  c.state = static_cast<MemberState>(p.state());
  c.shard = p.shard();
  c.expected_epoch = p.expected_epoch();
  c.voters.assign(p.voters().begin(), p.voters().end());
  c.learners.assign(p.learners().begin(), p.learners().end());
  c.paused = p.paused();
  return c;
}

}  // namespace ring::sharding
