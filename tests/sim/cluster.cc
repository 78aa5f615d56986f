#include "tests/sim/cluster.h"

#include "tests/sim/rng.h"

namespace ring::sim {

using replication::ConfState;
using replication::Config;
using replication::MessageType;
using replication::Ready;
using replication::Role;

void ClusterStats::Add(const ClusterStats& o) {
  steps += o.steps;
  ticks += o.ticks;
  delivered += o.delivered;
  dropped += o.dropped;
  duplicated += o.duplicated;
  proposals += o.proposals;
  acked += o.acked;
  crashes += o.crashes;
  restarts += o.restarts;
  snapshots_sent += o.snapshots_sent;
  snapshots_installed += o.snapshots_installed;
  compactions += o.compactions;
  conf_changes += o.conf_changes;
  transfers += o.transfers;
  leader_changes += o.leader_changes;
  reads += o.reads;
  lease_reads += o.lease_reads;
}

SimCluster::SimCluster(const ClusterOptions& options, Trace* trace)
    : options_(options), trace_(trace) {
  ConfState founding;
  for (int i = 1; i <= options_.voters; i++) founding.voters.push_back(static_cast<NodeId>(i));
  for (int i = 1; i <= options_.voters; i++) {
    auto n = std::make_unique<Node>();
    n->id = static_cast<NodeId>(i);
    n->disk = MemStorage(founding);
    n->clock_rate = ClockRate(n->id);
    Status s = StartCore(*n);
    if (!s.ok()) checker_.Fail("setup", s.ToString());
    nodes_[n->id] = std::move(n);
  }
  next_id_ = static_cast<NodeId>(options_.voters + 1);
}

SimCluster::Node* SimCluster::node(NodeId id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

std::vector<NodeId> SimCluster::AliveIds() const {
  std::vector<NodeId> out;
  for (const auto& [id, n] : nodes_) {
    if (n->alive()) out.push_back(id);
  }
  return out;
}

NodeId SimCluster::CreateNode() {
  auto n = std::make_unique<Node>();
  n->id = next_id_++;
  n->clock_rate = ClockRate(n->id);
  Status s = StartCore(*n);
  if (!s.ok()) checker_.Fail("setup", s.ToString());
  const NodeId id = n->id;
  nodes_[id] = std::move(n);
  trace_->Line("  node " + std::to_string(id) + " created (empty disk)");
  return id;
}

int SimCluster::ClockRate(NodeId id) const {
  if (options_.max_drift_permille <= 0) return 1000;
  const uint64_t r = Rng::Mix(options_.seed ^ 0xC10C, id) % static_cast<uint64_t>(options_.max_drift_permille + 1);
  return 1000 - static_cast<int>(r);
}

void SimCluster::DestroyNode(NodeId id) {
  Node* n = node(id);
  if (n == nullptr) return;
  if (n->alive()) checker_.OnCrashed(id);
  nodes_.erase(id);
  trace_->Line("  node " + std::to_string(id) + " destroyed");
}

Status SimCluster::StartCore(Node& n) {
  Config c;
  c.id = n.id;
  c.storage = &n.disk;
  c.seed = Rng::Mix(Rng::Mix(options_.seed, n.id), static_cast<uint64_t>(n.incarnation));
  c.election_tick = options_.election_tick;
  c.heartbeat_tick = options_.heartbeat_tick;
  c.pre_vote = options_.pre_vote;
  c.check_quorum = options_.check_quorum;
  c.lease_margin_ticks = options_.lease_margin_ticks;
  c.max_size_per_msg = options_.max_size_per_msg;
  c.max_inflight_msgs = options_.max_inflight_msgs;
  c.snapshot_retry_ticks = options_.snapshot_retry_ticks;
  // A node's first start: it never acknowledged a leader, so it may vote at once; a
  // restart must not (the lease-read invariant checks both).
  c.brand_new = options_.brand_new_first_start && n.incarnation == 0;
  // The state machine restarts from the disk's snapshot, so the core re-delivers every
  // committed entry after it.
  n.sm = SimStateMachine();
  const replication::Snapshot& snap = n.disk.snapshot();
  if (snap.meta.index > 0) RETURN_IF_ERROR(n.sm.Restore(snap.meta.index, snap.data));
  c.applied = n.sm.applied_index();
  ASSIGN_OR_RETURN(n.core, RaftCore::Create(c));
  n.soft = replication::SoftState{};
  return Status::OK();
}

void SimCluster::Crash(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || !n->alive()) return;
  n->core.reset();
  n->held.reset();  // taken from the core but never persisted: lost
  n->stalled_until = 0;
  n->sm = SimStateMachine();
  n->soft = replication::SoftState{};
  checker_.OnCrashed(id);
  stats_.crashes++;
  trace_->Line("  node " + std::to_string(id) + " crashed");
}

Status SimCluster::Restart(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || n->alive()) return Status::OK();
  n->incarnation++;
  Status s = StartCore(*n);
  if (!s.ok()) {
    checker_.Fail("restart", "node " + std::to_string(id) + ": " + s.ToString());
    return s;
  }
  stats_.restarts++;
  if (trace_->on()) {
    const HardState& hs = n->disk.hard_state();
    trace_->Line("  node " + std::to_string(id) + " restarted: term " + std::to_string(hs.term) +
                 " vote " + std::to_string(hs.vote) + " commit " + std::to_string(hs.commit) +
                 ", log " + std::to_string(n->disk.FirstIndex()) + ".." +
                 std::to_string(n->disk.LastIndex()) + ", applied " +
                 std::to_string(n->sm.applied_index()));
  }
  return Status::OK();
}

void SimCluster::SetDisk(NodeId id, MemStorage disk) {
  Node* n = node(id);
  if (n == nullptr) return;
  n->disk = std::move(disk);
}

NodeId SimCluster::Leader() const {
  NodeId best = 0;
  uint64_t best_term = 0;
  for (const auto& [id, n] : nodes_) {
    if (n->alive() && n->core->role() == Role::kLeader && n->core->term() >= best_term) {
      best = id;
      best_term = n->core->term();
    }
  }
  return best;
}

bool SimCluster::ProcessReady(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || !n->alive() || stats_.ticks < n->stalled_until) return false;
  if (n->held) {
    ApplyReady(*n, *n->held, n->held_term);
    n->held.reset();
  } else {
    if (!n->core->HasReady()) return false;
    Ready rd = n->core->GetReady();
    ApplyReady(*n, rd, n->core->term());
  }
  n->core->Advance();
  if (!n->core->fatal().ok()) checker_.Fail("core error", n->core->fatal().ToString());
  return true;
}

void SimCluster::ApplyReady(Node& n, Ready& rd, uint64_t term) {
  const std::string who = "  node " + std::to_string(n.id) + ": ";
  RaftCore& core = *n.core;

  if (rd.soft_state) {
    if (rd.soft_state->role == Role::kLeader && n.soft.role != Role::kLeader) {
      stats_.leader_changes++;
      // The log check only makes sense while the core still leads that term; a Ready
      // held through a stall may report a leadership the core has since lost (the
      // election itself was checked when it happened, by polling).
      if (core.role() == Role::kLeader && core.term() == term) checker_.OnLeader(n.id, term, core);
    }
    if (trace_->on()) {
      trace_->Line(who + replication::RoleName(rd.soft_state->role) + " in term " +
                   std::to_string(term) + ", leader " + std::to_string(rd.soft_state->leader));
    }
    n.soft = *rd.soft_state;
  }

  // 0. A leader's appends may leave before its own write (sent already if the Ready was
  //    held through a disk stall).
  Send(n, &rd.early_messages);

  // 1. Persist: snapshot, entries, hard state. Only this survives a crash.
  if (rd.snapshot) {
    checker_.OnSnapshotPersisted(n.id, rd.snapshot->meta);
    Status s = n.disk.ApplySnapshot(*rd.snapshot);
    if (!s.ok()) checker_.Fail("driver", who + s.ToString());
    if (trace_->on()) {
      trace_->Line(who + "persist snapshot " + std::to_string(rd.snapshot->meta.index) + "/" +
                   std::to_string(rd.snapshot->meta.term) + " " +
                   replication::ConfStateToString(rd.snapshot->meta.conf));
    }
  }
  if (!rd.entries.empty()) {
    std::vector<uint64_t> replaced;
    for (const Entry& e : rd.entries) {
      if (e.index > n.disk.LastIndex()) break;
      Result<uint64_t> t = n.disk.Term(e.index);
      replaced.push_back(t.ok() ? *t : 0);
    }
    Status s = n.disk.Append(rd.entries);
    if (!s.ok()) checker_.Fail("driver", who + s.ToString());
    checker_.OnEntriesPersisted(n.id, n.disk, rd.entries, replaced);
    if (trace_->on()) {
      std::string line = who + "persist";
      for (const Entry& e : rd.entries) line += " [" + replication::EntryToString(e) + "]";
      trace_->Line(line);
    }
  }
  if (rd.hard_state) {
    checker_.OnHardStatePersisted(n.id, n.disk.hard_state(), *rd.hard_state);
    const uint64_t commit_before = n.disk.hard_state().commit;
    n.disk.SetHardState(*rd.hard_state);
    checker_.OnCommitPersisted(n.id, n.disk, commit_before, rd.hard_state->commit);
    if (trace_->on()) {
      trace_->Line(who + "persist term " + std::to_string(rd.hard_state->term) + " vote " +
                   std::to_string(rd.hard_state->vote) + " commit " +
                   std::to_string(rd.hard_state->commit));
    }
  }

  // 2. Send, now that the state the messages vouch for is durable.
  Send(n, &rd.messages);

  // 3. Apply.
  if (rd.snapshot) {
    Status s = n.sm.Restore(rd.snapshot->meta.index, rd.snapshot->data);
    if (!s.ok()) checker_.Fail("driver", who + s.ToString());
    checker_.OnSnapshotInstalled(n.id, rd.snapshot->meta.term, n.sm);
    stats_.snapshots_installed++;
  }
  for (const Entry& e : rd.committed_entries) {
    checker_.OnApplied(n.id, n.sm.applied_index(), e);
    n.sm.Apply(e);
    if (e.type == replication::EntryType::kConfChange && core.role() == Role::kLeader) {
      stats_.conf_changes++;
    }
    if (trace_->on()) trace_->Line(who + "apply " + replication::EntryToString(e));
  }
  for (const replication::ReadState& rs : rd.read_states) {
    checker_.OnReadServed(n.id, rs.context, rs.index, n.sm.applied_index());
    stats_.reads++;
    if (trace_->on()) {
      trace_->Line(who + "serve read " + rs.context + " at index " + std::to_string(rs.index));
    }
  }
}

void SimCluster::Send(Node& n, std::vector<Message>* msgs) {
  const std::string who = "  node " + std::to_string(n.id) + ": ";
  for (Message& m : *msgs) {
    if (m.type == MessageType::kSnapshot) stats_.snapshots_sent++;
    if (trace_->on()) trace_->Line(who + "send " + replication::MessageToString(m));
    auto slow = latency_.find({m.from, m.to});
    const uint64_t due = slow == latency_.end() ? 0 : stats_.ticks + slow->second;
    net_.push_back(Envelope{next_seq_++, std::move(m), due});
  }
  msgs->clear();
}

void SimCluster::Stall(NodeId id, uint64_t ticks, bool hold_ready) {
  Node* n = node(id);
  if (n == nullptr || !n->alive() || n->held) return;
  n->stalled_until = stats_.ticks + ticks;
  if (hold_ready && n->core->HasReady()) {
    n->held = n->core->GetReady();
    n->held_term = n->core->term();
    // The leader's appends go out now; a crash during the stall loses its own write.
    Send(*n, &n->held->early_messages);
  }
  if (trace_->on()) {
    trace_->Line("  node " + std::to_string(id) + ": disk stalls for " + std::to_string(ticks) +
                 " ticks" + (n->held ? " with a Ready in hand" : ""));
  }
}

void SimCluster::ClearStalls() {
  for (auto& [id, n] : nodes_) n->stalled_until = 0;
}

void SimCluster::Tick(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || !n->alive()) return;
  n->core->Tick();
}

void SimCluster::TickAll() {
  for (auto& [id, n] : nodes_) {
    if (!n->alive()) continue;
    // A slow clock skips a tick now and then; drift is deterministic, never random.
    n->clock_debt += n->clock_rate;
    if (n->clock_debt < 1000) continue;
    n->clock_debt -= 1000;
    n->core->Tick();
  }
  stats_.ticks++;
}

Status SimCluster::Compact(NodeId id, uint64_t keep) {
  Node* n = node(id);
  if (n == nullptr || !n->alive()) return Status::OK();
  const uint64_t applied = n->sm.applied_index();
  if (applied <= n->disk.snapshot().meta.index) return Status::OK();
  Result<ConfState> conf = n->core->ConfStateAt(applied);
  // The core may already hold a newer snapshot from the leader that the driver has not
  // installed yet; this one would be obsolete, so skip it.
  if (!conf.ok() && replication::IsCompacted(conf.status())) return Status::OK();
  if (!conf.ok()) return conf.status();
  RETURN_IF_ERROR(n->disk.CreateSnapshot(applied, std::move(conf).value(), n->sm.Serialize()));
  const uint64_t upto = applied > keep ? applied - keep : 0;
  RETURN_IF_ERROR(n->disk.Compact(upto));
  stats_.compactions++;
  if (trace_->on()) {
    trace_->Line("  node " + std::to_string(id) + ": snapshot at " + std::to_string(applied) +
                 ", log compacted through " + std::to_string(n->disk.FirstIndex() - 1));
  }
  return Status::OK();
}

void SimCluster::Deliver(size_t pos, bool keep_copy) {
  Envelope env = net_[pos];
  if (!keep_copy) {
    net_.erase(net_.begin() + static_cast<std::ptrdiff_t>(pos));
  } else {
    stats_.duplicated++;
  }
  const Message& m = env.msg;
  Node* to = node(m.to);
  if (to == nullptr || !to->alive() || !LinkUp(m.from, m.to)) {
    // A real transport notices a refused connection or a failed snapshot stream (a
    // message silently lost in the network, as in Drop, goes unnoticed).
    Node* from = node(m.from);
    if (from != nullptr && from->alive()) {
      from->core->ReportUnreachable(m.to);
      if (m.type == MessageType::kSnapshot) from->core->ReportSnapshot(m.to, false);
    }
    stats_.dropped++;
    if (trace_->on()) {
      trace_->Line("  lost #" + std::to_string(env.seq) + " " + replication::MessageToString(m) +
                   (to != nullptr && to->alive() ? " (link cut)" : " (recipient down)"));
    }
    return;
  }
  stats_.delivered++;
  if (trace_->on()) {
    trace_->Line(std::string("  deliver") + (keep_copy ? " (dup)" : "") + " #" +
                 std::to_string(env.seq) + " " + replication::MessageToString(m));
  }
  Status s = to->core->Step(m);
  if (!s.ok()) checker_.Fail("core error", "node " + std::to_string(m.to) + ": " + s.ToString());
  if (m.type == MessageType::kSnapshot) {
    Node* from = node(m.from);
    if (from != nullptr && from->alive()) from->core->ReportSnapshot(m.to, true);
  }
}

void SimCluster::Drop(size_t pos, const char* why) {
  if (trace_->on()) {
    trace_->Line(std::string("  ") + why + " #" + std::to_string(net_[pos].seq) + " " +
                 replication::MessageToString(net_[pos].msg));
  }
  net_.erase(net_.begin() + static_cast<std::ptrdiff_t>(pos));
  stats_.dropped++;
}

void SimCluster::Delay(size_t pos, uint64_t ticks) {
  net_[pos].due_tick = stats_.ticks + ticks;
  if (trace_->on()) {
    trace_->Line("  delay #" + std::to_string(net_[pos].seq) + " " +
                 replication::MessageToString(net_[pos].msg) + " by " + std::to_string(ticks) +
                 " ticks");
  }
}

void SimCluster::Stabilize(int max_rounds) {
  for (int round = 0; round < max_rounds && !failed(); round++) {
    bool any = false;
    for (auto& [id, n] : nodes_) {
      while (ProcessReady(id)) any = true;
    }
    while (!net_.empty() && !failed()) {
      Deliver(0);
      any = true;
    }
    if (!any) return;
  }
}

Result<std::string> SimCluster::Propose(NodeId id, std::string data) {
  Node* n = node(id);
  if (n == nullptr || !n->alive()) return Status::Unavailable("node down");
  std::string command = data.empty() ? "c" + std::to_string(next_command_) : std::move(data);
  Result<replication::LogPosition> pos = n->core->Propose(command);
  if (trace_->on()) {
    trace_->Line("  propose " + command + " on node " + std::to_string(id) + ": " +
                 (pos.ok() ? "at " + std::to_string(pos->index) + "/" + std::to_string(pos->term)
                           : pos.status().ToString()));
  }
  if (!pos.ok()) return pos.status();
  next_command_++;
  stats_.proposals++;
  checker_.OnProposed(id, command, *pos);
  return command;
}

Status SimCluster::ReadIndex(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || !n->alive()) return Status::Unavailable("node down");
  const std::string ctx = "r" + std::to_string(next_read_++);
  checker_.OnReadIssued(ctx);
  Status s = n->core->ReadIndex(ctx);
  if (trace_->on()) {
    trace_->Line("  read-index " + ctx + " on node " + std::to_string(id) + ": " + s.ToString());
  }
  return s;
}

bool SimCluster::LeaseRead(NodeId id) {
  Node* n = node(id);
  if (n == nullptr || !n->alive() || !n->core->HasReadLease()) return false;
  checker_.OnLeaseRead(id, n->core->committed());
  stats_.lease_reads++;
  if (trace_->on()) {
    trace_->Line("  lease read on node " + std::to_string(id) + " at commit " +
                 std::to_string(n->core->committed()));
  }
  return true;
}

}  // namespace ring::sim
