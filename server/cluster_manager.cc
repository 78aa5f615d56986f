#include "server/cluster_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "server/peer_transport.h"
#include "server/replicated_kv.h"
#include "server/service.h"

namespace ring::server {

using replication::ConfChange;
using replication::ConfChangeType;
using replication::GroupStatus;
using replication::NodeId;
using replication::Role;
using sharding::ClusterMap;
using sharding::kMetaGroup;
using sharding::MapChange;

namespace {

bool Contains(const std::vector<NodeId>& v, NodeId x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string Ids(const std::vector<NodeId>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

// The next single-server step that moves a shard's Raft configuration toward the map's
// replica set: learners first, then promotions, then removals (so a step never lowers
// the number of voters before the replacement is one).
std::optional<ConfChange> NextConfStep(const replication::ConfState& conf, const sharding::ShardInfo& want) {
  for (NodeId l : want.learners) {
    if (!conf.IsMember(l)) return ConfChange{ConfChangeType::kAddLearner, l};
  }
  for (NodeId v : want.voters) {
    if (conf.IsLearner(v)) return ConfChange{ConfChangeType::kAddVoter, v};
    if (!conf.IsMember(v)) return ConfChange{ConfChangeType::kAddLearner, v};  // catch up before voting
  }
  for (const auto* list : {&conf.learners, &conf.voters}) {
    for (NodeId n : *list) {
      if (!Contains(want.voters, n) && !Contains(want.learners, n)) return ConfChange{ConfChangeType::kRemoveNode, n};
    }
  }
  // A voter that should only learn (a draining metadata voter) cannot be demoted in one
  // step: remove it; the first loop adds it back as a learner.
  for (NodeId n : conf.voters) {
    if (Contains(want.learners, n)) return ConfChange{ConfChangeType::kRemoveNode, n};
  }
  return std::nullopt;
}

// What INIT and JOIN answer: the cluster, its map version, and the member id of `node`.
void DescribeCluster(const ClusterMap& map, NodeId node, pb::ClusterAdminResponse* r) {
  r->set_map_version(map.version);
  r->set_cluster_id(map.cluster_id);
  r->set_node_id(node);
}

const char* ConfChangeName(ConfChangeType t) {
  switch (t) {
    case ConfChangeType::kAddVoter: return "promote";
    case ConfChangeType::kAddLearner: return "add learner";
    case ConfChangeType::kRemoveNode: return "remove";
  }
  return "?";
}

}  // namespace

ClusterManager::ClusterManager(asio::io_context& io, const Config& config, NodeId self,
                               std::optional<MapChange> bootstrap, replication::Driver* driver,
                               sharding::MetaStateMachine* meta, ReplicatedKv* kv, PeerTransport* transport,
                               storage::Engine* engine, ClusterManagerOptions options)
    : io_(io),
      config_(config),
      driver_(driver),
      meta_(meta),
      kv_(kv),
      transport_(transport),
      engine_(engine),
      options_(std::move(options)),
      self_(self),
      timer_(io),
      bootstrap_(std::move(bootstrap)) {}

ClusterManager::~ClusterManager() { *alive_ = false; }

std::vector<NodeId> ClusterManager::MetaVoters(const Config& config) {
  std::vector<NodeId> voters;
  const uint64_t n = config.peers.empty() ? 1 : config.peers.size();
  for (NodeId id = 1; id <= std::min<uint64_t>(n, sharding::kMaxMetaVoters); ++id) voters.push_back(id);
  return voters;
}

MapChange ClusterManager::NewCluster(std::vector<sharding::Member> founders, uint32_t shard_count,
                                     uint32_t replication_factor) {
  MapChange init;
  init.kind = MapChange::Kind::kInit;
  std::random_device rd;
  init.cluster_id = (uint64_t{rd()} << 32 | rd()) | 1;
  init.shard_count = shard_count;
  init.replication_factor = replication_factor;
  init.members = std::move(founders);
  return init;
}

MapChange ClusterManager::StaticBootstrap(const Config& config) {
  const uint64_t n = config.peers.empty() ? 1 : config.peers.size();
  std::vector<sharding::Member> founders;
  for (NodeId id = 1; id <= n; ++id) {
    founders.push_back(sharding::Member{id, ReplicaAddress(config, id), sharding::MemberState::kUp, 1.0, 0});
  }
  return NewCluster(std::move(founders), config.shard_count,
                    static_cast<uint32_t>(std::min<uint64_t>(config.replication_factor, n)));
}

void ClusterManager::ProposeChange(const MapChange& change, std::function<void(Status, uint64_t)> done) {
  driver_->Propose(kMetaGroup, sharding::EncodeChange(change), [done = std::move(done)](Status s, std::any r) {
    uint64_t version = 0;
    if (s.ok() && r.has_value()) {
      auto result = std::any_cast<sharding::MetaResult>(r);
      s = result.status;
      version = result.version;
    }
    done(std::move(s), version);
  });
}

sharding::ShardInfo ClusterManager::MetaReplicas(const ClusterMap& map) {
  sharding::ShardInfo want;
  for (const auto& [id, m] : map.members) {
    const bool eligible = m.state == sharding::MemberState::kUp || m.state == sharding::MemberState::kDown;
    if (eligible && want.voters.size() < sharding::kMaxMetaVoters) want.voters.push_back(id);
    else if (m.state != sharding::MemberState::kRemoved) want.learners.push_back(id);
  }
  return want;
}

std::string ClusterManager::AddressOf(NodeId id) const { return MemberAddress(meta_->Map().get(), config_, id); }

void ClusterManager::Start() {
  if (started_) return;
  started_ = true;
  Schedule();
}

void ClusterManager::Schedule() {
  timer_.expires_after(options_.interval);
  timer_.async_wait([this, alive = alive_](asio::error_code ec) {
    if (ec || !*alive) return;
    Tick();
    Schedule();
  });
}

void ClusterManager::Stop() {
  *alive_ = false;
  timer_.cancel();
}

void ClusterManager::Post(std::function<void()> fn) {
  asio::post(io_, [alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

void ClusterManager::Tick() {
  ++ticks_;
  auto map = meta_->Map();
  const bool leader = driver_->LeaderOf(kMetaGroup) == self_;
  if (leader && !meta_leader_) leader_since_ = Clock::now();
  meta_leader_ = leader;
  if (!map->initialized()) {
    if (leader) InitMap(*map);
    return;
  }
  if (map->version != seen_version_) {
    seen_version_ = map->version;
    if (on_map_) on_map_(*map);
    for (auto& [id, reply] : init_waiters_) {
      pb::Response out;
      out.set_id(id);
      DescribeCluster(*map, self_, out.mutable_cluster_admin());
      reply(std::move(out));
    }
    init_waiters_.clear();
  }
  auto groups = driver_->Groups();
  SyncGroups(*map, groups);
  Reconcile(*map, groups);
  if (ticks_ % options_.report_every == 0) Report(groups);
  if (leader && ticks_ % options_.control_every == 0) Control(*map);
}

void ClusterManager::InitMap(const ClusterMap& map) {
  if (init_in_flight_ || init_refused_ || !bootstrap_) return;
  // Propose only what the map would accept: a refused entry would be refused forever.
  if (auto checked = sharding::Apply(map, *bootstrap_); !checked.ok()) {
    spdlog::error("cannot initialise the cluster map: {}", checked.status().ToString());
    init_refused_ = true;
    return;
  }
  init_in_flight_ = true;
  const uint32_t shards = bootstrap_->shard_count;
  ProposeChange(*bootstrap_, [this, shards](Status s, uint64_t) {
    Post([this, s, shards] {
      init_in_flight_ = false;
      if (s.ok()) spdlog::info("cluster map initialised: {} shards", shards);
      else spdlog::info("cluster map init not applied ({}); will retry", s.ToString());
    });
  });
}

void ClusterManager::SyncGroups(const ClusterMap& map, const std::vector<GroupStatus>& groups) {
  // Host every shard the map gives this node.
  std::map<ShardId, NodeId> preferred;  // computed when a new shard needs it
  for (const auto& [id, shard] : map.shards) {
    if (!Contains(shard.voters, self_) && !Contains(shard.learners, self_)) continue;
    unlisted_since_.erase(id);
    if (driver_->HasGroup(id) || adding_.count(id) || removing_.count(id)) continue;
    // The founders of a shard (epoch 1: its replicas never changed) bootstrap its
    // configuration; so do the replicas of a split's child that applied the split (with
    // the founders its log entry named). Anyone else starts empty and learns the shard
    // from its leader. A child whose parent here has not applied the split yet waits:
    // until then the parent may still write the child's keys.
    replication::GroupSpec spec{id, kv_, {}, 0};
    if (shard.epoch == 1) {
      spec.founders = shard.voters;
    } else if (auto split = kv_->SplitFounders(id)) {
      spec.founders = *split;
      spec.bootstrap_index = 1;  // its data is in no log entry: later replicas take a snapshot
    } else if (shard.parent && driver_->HasGroup(*shard.parent) && ParentHoldsRange(*shard.parent, shard.start)) {
      continue;
    }
    // A new shard's preferred leader does not wait out an election timeout to lead it.
    if (!spec.founders.empty()) {
      if (preferred.empty()) preferred = sharding::PreferredLeadersOf(map);
      auto p = preferred.find(id);
      spec.campaign = p != preferred.end() && p->second == self_ && Contains(spec.founders, self_);
    }
    adding_.insert(id);
    driver_->AddGroup(std::move(spec), [this, id](Status s) {
      Post([this, id, s] {
        adding_.erase(id);
        if (!s.ok()) spdlog::error("shard {}: cannot host it: {}", id, s.ToString());
        else spdlog::debug("shard {}: hosting a replica", id);
      });
    });
  }
  // Drop the replicas the map no longer lists, once Raft has let go of them too.
  const auto now = Clock::now();
  for (const GroupStatus& g : groups) {
    if (g.group == kMetaGroup || removing_.count(g.group) || adding_.count(g.group)) continue;
    auto it = map.shards.find(static_cast<ShardId>(g.group));
    if (it != map.shards.end() && (Contains(it->second.voters, self_) || Contains(it->second.learners, self_))) continue;
    auto [since, fresh] = unlisted_since_.emplace(g.group, now);
    if (g.role == Role::kLeader) continue;  // it removes itself from the configuration first
    if (g.conf.IsMember(self_) && now - since->second < options_.remove_grace) continue;
    removing_.insert(g.group);
    const uint64_t id = g.group;
    driver_->RemoveGroup(id, [this, id](Status s) {
      // Driver thread: the group is gone, so nothing applies to its range any more.
      if (s.ok()) {
        storage::WriteBatch batch;
        s = kv_->Drop(id, &batch);
        if (s.ok()) s = engine_->Write(batch, false);
        s = s.WithContext("deleting the data of shard " + std::to_string(id));
      }
      Post([this, id, s] {
        removing_.erase(id);
        unlisted_since_.erase(id);
        if (s.ok()) spdlog::info("shard {}: replica removed from this node and its data deleted", id);
        else spdlog::error("shard {}: removing its replica: {}", id, s.ToString());
      });
    });
  }
}

bool ClusterManager::ParentHoldsRange(uint64_t parent, uint64_t start) const {
  auto r = kv_->DurableRange(parent);
  return r && start > r->start && (r->end == 0 || start < r->end);
}

void ClusterManager::ProposeSplit(const ClusterMap& map, const GroupStatus& g, const sharding::ShardInfo* child) {
  // The map split this shard; its own log has not yet (its durable range still reaches
  // past the map's end). Propose the split entry: every replica applies it at the same
  // index. Only with a settled configuration, so the child's founders are the voters.
  // `child` is the map's shard split from this one that starts where this one now ends.
  auto it = map.shards.find(static_cast<ShardId>(g.group));
  if (it == map.shards.end() || !g.conf.learners.empty() || changing_.count(g.group)) return;
  const uint64_t mid = it->second.end;
  auto local = kv_->DurableRange(g.group);
  if (!local || mid == 0 || mid <= local->start || (local->end != 0 && mid >= local->end)) return;
  auto& last = last_split_[g.group];
  const auto now = Clock::now();
  if (now - last < std::chrono::seconds(2)) return;
  last = now;
  pb::Request req;
  auto* split = req.mutable_split();
  split->set_child(child->id);
  split->set_mid(mid);
  for (NodeId v : g.conf.voters) split->add_founders(v);
  const uint64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
  spdlog::info("shard {}: splitting at {:016x}; the upper half becomes shard {}", g.group, mid, child->id);
  const uint64_t id = g.group;
  driver_->Propose(id, EncodeCommand(req, now_ms), [this, id](Status s, std::any) {
    Post([this, id, s] {
      if (!s.ok()) spdlog::info("shard {}: split entry not applied ({}); will retry", id, s.ToString());
    });
  });
}

void ClusterManager::Reconcile(const ClusterMap& map, const std::vector<GroupStatus>& groups) {
  const sharding::ShardInfo meta_want = MetaReplicas(map);
  const sharding::Member* me = map.FindMember(self_);
  const bool leaving = me && (me->state == sharding::MemberState::kDraining || me->state == sharding::MemberState::kRemoved);
  const auto now = Clock::now();
  const std::map<ShardId, NodeId> preferred = sharding::PreferredLeadersOf(map);
  // Shards split from each shard: (parent, the child's first hash) -> child. Only a
  // parent that the map split may still owe its log a split entry.
  std::map<std::pair<ShardId, uint64_t>, const sharding::ShardInfo*> children;
  for (const auto& [id, sh] : map.shards) {
    if (sh.parent) children.emplace(std::make_pair(*sh.parent, sh.start), &sh);
  }
  int balancing = 0;  // leaderships handed over this tick for balance (not for a drain)
  for (const GroupStatus& g : groups) {
    if (g.role != Role::kLeader) continue;
    if (g.group != kMetaGroup) {
      auto self = map.shards.find(static_cast<ShardId>(g.group));
      if (self != map.shards.end()) {
        auto child = children.find({self->first, self->second.end});
        if (child != children.end()) ProposeSplit(map, g, child->second);
      }
    }
    HandOver(map, g, preferred, leaving, now, &balancing);
    if (changing_.count(g.group)) continue;
    const sharding::ShardInfo* want = &meta_want;
    if (g.group != kMetaGroup) {
      auto it = map.shards.find(static_cast<ShardId>(g.group));
      if (it == map.shards.end()) continue;
      want = &it->second;
    } else if (want->voters.empty()) {
      continue;  // nobody eligible: keep what there is
    }
    auto step = NextConfStep(g.conf, *want);
    if (!step) continue;
    const uint64_t id = g.group;
    changing_.insert(id);
    spdlog::info("{}: {} node {} (wanted: voters {} learners {})",
                 id == kMetaGroup ? std::string("metadata log") : "shard " + std::to_string(id),
                 ConfChangeName(step->type), step->node, Ids(want->voters), Ids(want->learners));
    driver_->ProposeConfChange(id, *step, [this, id](Status s, std::any) {
      Post([this, id, s] {
        changing_.erase(id);
        if (!s.ok()) spdlog::info("shard {}: configuration change not applied: {}", id, s.ToString());
      });
    });
  }
}

void ClusterManager::HandOver(const ClusterMap& map, const GroupStatus& g, const std::map<ShardId, NodeId>& preferred,
                              bool leaving, Clock::time_point now, int* balancing) {
  const bool meta = g.group == kMetaGroup;
  NodeId to = replication::kNoNode;
  if (!meta) {
    auto p = preferred.find(static_cast<ShardId>(g.group));
    if (p != preferred.end() && p->second != self_) to = p->second;
  }
  auto usable = [&](NodeId id, bool caught_up) {
    for (const auto& peer : g.peers) {
      if (peer.id != id) continue;
      return !peer.learner && peer.recent_active && g.conf.IsVoter(id) && (!caught_up || peer.match >= g.last_index);
    }
    return false;
  };
  auto& last = last_transfer_[g.group];
  auto what = [&] { return meta ? std::string("metadata log") : "shard " + std::to_string(g.group); };
  if (leaving && g.conf.voters.size() > 1) {
    // A draining node hands its leaderships away first, so clients stop coming here
    // before its replicas go: to the preferred leader if it can take it, else to any
    // active voter (at most one attempt per group per second).
    if (now - last < std::chrono::seconds(1)) return;
    if (to == replication::kNoNode || !usable(to, false)) {
      to = replication::kNoNode;
      for (const auto& peer : g.peers) {
        if (usable(peer.id, false)) {
          to = peer.id;
          break;
        }
      }
    }
    if (to == replication::kNoNode) return;
    spdlog::info("{}: handing leadership to node {} (this node is draining)", what(), to);
    driver_->TransferLeadership(g.group, to);
    last = now;
    return;
  }
  // Balance: hand a shard to its preferred leader once that node has caught up, while no
  // move is under way, a few shards per tick, each at most every 10 s (a refused or lost
  // transfer is simply tried again).
  if (to == replication::kNoNode || *balancing >= 2 || now - last < std::chrono::seconds(10)) return;
  auto it = map.shards.find(static_cast<ShardId>(g.group));
  if (it == map.shards.end() || !it->second.learners.empty() || changing_.count(g.group) || !usable(to, true)) return;
  spdlog::debug("{}: handing leadership to node {}, its preferred leader", what(), to);
  driver_->TransferLeadership(g.group, to);
  last = now;
  ++*balancing;
}

void ClusterManager::Report(const std::vector<GroupStatus>& groups) {
  pb::NodeReport report;
  report.set_node(self_);
  for (const GroupStatus& g : groups) {
    if (g.group == kMetaGroup || g.role != Role::kLeader) continue;
    auto* p = report.add_shards();
    p->set_shard(static_cast<uint32_t>(g.group));
    p->set_term(g.term);
    p->set_commit(g.commit);
    for (NodeId v : g.conf.voters) p->add_voters(v);
    for (NodeId l : g.conf.learners) p->add_learners(l);
    p->add_match_node(self_);
    p->add_match_index(g.last_index);
    for (const auto& peer : g.peers) {
      p->add_match_node(peer.id);
      p->add_match_index(peer.match);
    }
  }
  // To the metadata leader, which every node knows: every member hosts the metadata log.
  const NodeId leader = driver_->LeaderOf(kMetaGroup);
  if (leader == self_) OnReport(self_, report);
  else if (leader != replication::kNoNode) transport_->SendReport(leader, report.SerializeAsString());
}

bool ClusterManager::Reported(ShardId shard) const {
  for (const auto& [node, last] : reports_) {
    for (const auto& p : last.report->shards()) {
      if (p.shard() == shard && p.commit() > 0) return true;
    }
  }
  return false;
}

void ClusterManager::OnReport(NodeId from, const pb::NodeReport& report) {
  if (from == replication::kNoNode || report.node() != from) return;
  reports_[from] = LastReport{Clock::now(), std::make_shared<const pb::NodeReport>(report)};
}

void ClusterManager::Control(const ClusterMap& map) {
  if (controller_in_flight_ > 0) return;
  const auto now = Clock::now();
  sharding::ClusterView view;
  std::map<ShardId, uint64_t> best_term;
  for (const auto& [id, member] : map.members) {
    auto it = reports_.find(id);
    Clock::time_point heard = it == reports_.end() ? leader_since_ : std::max(it->second.at, leader_since_);
    if (id == self_) heard = now;
    view.silent_ms[id] = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now - heard).count());
    if (it == reports_.end()) continue;
    for (const auto& p : it->second.report->shards()) {
      auto [bt, fresh] = best_term.emplace(p.shard(), p.term());
      if (!fresh && bt->second > p.term()) continue;  // a deposed leader's stale view
      bt->second = p.term();
      sharding::ClusterView::Progress progress;
      progress.commit = p.commit();
      for (int i = 0; i < p.match_node_size() && i < p.match_index_size(); ++i) {
        progress.match[p.match_node(i)] = p.match_index(i);
      }
      view.shards[p.shard()] = std::move(progress);
    }
  }
  sharding::ControllerOptions copts = options_.controller;
  copts.paused = copts.paused || map.moves_paused;
  copts.max_concurrent_moves = config_.max_concurrent_moves;
  copts.down_after_ms = uint64_t{config_.down_after_s} * 1000;
  copts.rereplicate_after_ms = uint64_t{config_.rereplicate_after_s} * 1000;
  sharding::PlanResult plan = sharding::Plan(map, view, copts);
  for (const MapChange& change : plan.changes) {
    if (change.kind == MapChange::Kind::kSetReplicas) {
      spdlog::info("controller: shard {} at epoch {} -> voters {} learners {}", change.shard, change.expected_epoch,
                   Ids(change.voters), Ids(change.learners));
    } else if (change.kind == MapChange::Kind::kSetMemberState) {
      spdlog::info("controller: node {} -> {}", change.node, sharding::MemberStateName(change.state));
    }
    ++controller_in_flight_;
    ProposeChange(change, [this](Status s, uint64_t) {
      Post([this, s] {
        --controller_in_flight_;
        if (!s.ok()) spdlog::info("controller: change not applied: {}", s.ToString());
      });
    });
  }
}

bool ClusterManager::HandleAdmin(const pb::Request& req, pb::Response* resp,
                                 const std::function<void(pb::Response&&)>& later) {
  auto map = meta_->Map();
  const auto& a = req.cluster_admin();
  auto fail = [resp](const Status& s) {
    SetResponseStatus(s, resp);
    return true;
  };
  if (a.op() == pb::ClusterAdminRequest::INIT) {
    if (map->initialized()) {
      DescribeCluster(*map, self_, resp->mutable_cluster_admin());
      resp->mutable_cluster_admin()->set_already_initialized(true);
      return true;
    }
    if (!bootstrap_) return fail(Status::Unavailable("this node is joining a cluster; it cannot create one"));
    init_waiters_.emplace_back(req.id(), later);  // answered once the bootstrap commits
    return false;
  }
  if (!map->initialized()) return fail(Status::Unavailable("the cluster map is not initialised yet; retry"));
  NodeId leader = driver_->HasGroup(kMetaGroup) ? driver_->LeaderOf(kMetaGroup) : replication::kNoNode;
  if (leader != self_) {
    // Send the caller to the metadata leader, or at least to a metadata voter.
    std::string address = leader == replication::kNoNode ? "" : AddressOf(leader);
    fail(Status::NotLeader("cluster changes are made by the metadata leader" +
                           (address.empty() ? std::string(", which is not known yet") : "; it is " + address)));
    if (!address.empty()) resp->mutable_redirect()->set_leader(address);
    resp->mutable_redirect()->set_map_version(map->version);
    return true;
  }
  if (a.op() == pb::ClusterAdminRequest::JOIN) return HandleJoin(*map, req, resp, later);
  MapChange change;
  change.kind = MapChange::Kind::kSetMemberState;
  change.node = a.node();
  if (a.op() == pb::ClusterAdminRequest::SPLIT) {
    auto it = map->shards.find(a.shard());
    if (it == map->shards.end()) return fail(Status::InvalidArgument("shard " + std::to_string(a.shard()) + " does not exist"));
    // One split at a time per shard: the last one must have reached the shard's log and
    // its new shard must be serving (its leader reports) before this shard splits again.
    for (const auto& [id, sh] : map->shards) {
      const bool related = id == a.shard() ? sh.parent.has_value() : sh.parent == a.shard();
      if (related && !Reported(id)) {
        return fail(Status::Unavailable("shard " + std::to_string(id) + ", from an earlier split of shard " +
                                        std::to_string(id == a.shard() ? *sh.parent : a.shard()) +
                                        ", is not serving yet; retry in a moment"));
      }
    }
    change.kind = MapChange::Kind::kSplitShard;
    change.shard = a.shard();
    change.expected_epoch = it->second.epoch;
  }
  switch (a.op()) {
    case pb::ClusterAdminRequest::DRAIN: change.state = sharding::MemberState::kDraining; break;
    case pb::ClusterAdminRequest::UNDRAIN: change.state = sharding::MemberState::kUp; break;
    case pb::ClusterAdminRequest::REMOVE: change.state = sharding::MemberState::kRemoved; break;
    case pb::ClusterAdminRequest::PAUSE_MOVES:
    case pb::ClusterAdminRequest::RESUME_MOVES:
      change.kind = MapChange::Kind::kSetMovesPaused;
      change.paused = a.op() == pb::ClusterAdminRequest::PAUSE_MOVES;
      break;
    case pb::ClusterAdminRequest::SPLIT: break;
    default: return fail(Status::InvalidArgument("unknown cluster admin operation " + std::to_string(a.op())));
  }
  // Already so: idempotent.
  if (change.kind == MapChange::Kind::kSplitShard) {
    // Not idempotent by nature (each split halves again); nothing to check here.
  } else if (change.kind == MapChange::Kind::kSetMovesPaused) {
    if (map->moves_paused == change.paused) {
      resp->mutable_cluster_admin()->set_map_version(map->version);
      return true;
    }
  } else {
    const sharding::Member* member = map->FindMember(a.node());
    if (!member) return fail(Status::InvalidArgument("node " + std::to_string(a.node()) + " is not a member"));
    if (member->state == change.state) {
      resp->mutable_cluster_admin()->set_map_version(map->version);
      return true;
    }
  }
  if (auto checked = sharding::Apply(*map, change); !checked.ok()) return fail(checked.status());
  const uint64_t id = req.id();
  ProposeChange(change, [id, later](Status s, uint64_t version) {
    pb::Response out;
    out.set_id(id);
    if (s.ok()) out.mutable_cluster_admin()->set_map_version(version);
    else SetResponseStatus(s, &out);
    later(std::move(out));
  });
  return false;
}

bool ClusterManager::HandleJoin(const ClusterMap& map, const pb::Request& req, pb::Response* resp,
                                const std::function<void(pb::Response&&)>& later) {
  const auto& a = req.cluster_admin();
  auto fail = [resp](const Status& s) {
    SetResponseStatus(s, resp);
    return true;
  };
  auto endpoint = ParseEndpoint(a.address());
  if (!endpoint.ok()) return fail(endpoint.status().WithContext("join: address"));
  if (!endpoint->Reachable()) {
    return fail(Status::InvalidArgument("join: " + a.address() + " is not an address other nodes can reach"));
  }
  if (a.join_token() == 0) return fail(Status::InvalidArgument("join: a join_token (non-zero) is required"));
  const std::string address = endpoint->ToString();
  // The JOIN answer carries the map, so the new node can reach its peers at once.
  auto answer = [](const ClusterMap& m, NodeId id, pb::ClusterAdminResponse* r) {
    DescribeCluster(m, id, r);
    sharding::MapToProto(m, r->mutable_map());
  };
  if (const sharding::Member* m = map.FindLiveMember(address)) {
    if (m->join_token == a.join_token()) {  // a retry: the node did not hear the first answer
      answer(map, m->id, resp->mutable_cluster_admin());
      return true;
    }
    return fail(Status::InvalidArgument(
        "join: " + address + " is already member " + std::to_string(m->id) +
        " (with other data); a node that lost its data joins under a new address, or after that member is "
        "drained and removed"));
  }
  MapChange change;
  change.kind = MapChange::Kind::kAddMember;
  change.members.push_back(
      sharding::Member{map.NextMemberId(), address, sharding::MemberState::kJoining, 1.0, a.join_token()});
  if (auto checked = sharding::Apply(map, change); !checked.ok()) return fail(checked.status().WithContext("join"));
  spdlog::info("node {} asks to join; it becomes member {}", address, change.members.front().id);
  const uint64_t id = req.id();
  const NodeId node = change.members.front().id;
  sharding::MetaStateMachine* meta = meta_;
  ProposeChange(change, [id, node, meta, later, answer](Status s, uint64_t) {
    pb::Response out;
    out.set_id(id);
    if (s.ok()) {
      answer(*meta->Map(), node, out.mutable_cluster_admin());
    } else {
      SetResponseStatus(s.WithContext("join"), &out);
    }
    later(std::move(out));
  });
  return false;
}

}  // namespace ring::server
