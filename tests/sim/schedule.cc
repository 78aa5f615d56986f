#include "tests/sim/schedule.h"

#include <algorithm>
#include <set>

#include "tests/sim/rng.h"

namespace ring::sim {

using replication::ConfChange;
using replication::ConfChangeType;
using replication::MessageType;
using replication::Role;

namespace {

// What a seed chose.
struct Profile {
  ClusterOptions cluster;
  int steps = 1500;
  int drop_pct = 5;      // per delivered message
  int dup_pct = 2;
  int reorder_pct = 20;  // deliver a random message instead of the oldest
  int delay_pct = 10;    // in a delivery round, leave a message in flight
  int ready_pct = 85;    // per replica per step: run a Ready cycle
  bool membership = true;
  bool compaction = true;
  bool fig8 = false;
  bool lease = false;

  std::string Describe() const {
    const ClusterOptions& c = cluster;
    return "voters=" + std::to_string(c.voters) + " prevote=" + (c.pre_vote ? "on" : "off") +
           " checkquorum=" + (c.check_quorum ? "on" : "off") + (c.brand_new_first_start ? " brandnew" : "") +
           " election=" + std::to_string(c.election_tick) +
           " heartbeat=" + std::to_string(c.heartbeat_tick) +
           " maxmsg=" + (c.max_size_per_msg == 1 ? std::string("1entry") : std::string("1MiB")) +
           " inflight=" + std::to_string(c.max_inflight_msgs) +
           " drift=" + std::to_string(c.max_drift_permille) + "permille steps=" + std::to_string(steps) +
           " drop=" + std::to_string(drop_pct) + "% dup=" + std::to_string(dup_pct) +
           "% reorder=" + std::to_string(reorder_pct) + "% ready=" + std::to_string(ready_pct) +
           "% membership=" + (membership ? "on" : "off") +
           " compaction=" + (compaction ? "on" : "off") + (fig8 ? " fig8" : "") +
           (lease ? " lease" : "");
  }
};

Profile ChooseProfile(Rng& rng, const RunOptions& ro) {
  Profile p;
  p.fig8 = ro.force_fig8 || rng.Percent(25);
  p.lease = !p.fig8 && (ro.force_lease || rng.Percent(25));
  ClusterOptions& c = p.cluster;
  c.voters = p.fig8 ? (rng.Percent(70) ? 5 : 3) : (rng.Percent(50) ? 3 : 5);
  c.pre_vote = rng.Percent(85);
  c.check_quorum = p.lease || rng.Percent(85);
  c.brand_new_first_start = true;  // as the driver starts a new group's founders
  c.election_tick = rng.Range(6, 12);
  c.heartbeat_tick = rng.Range(1, 2);
  c.lease_margin_ticks = rng.Range(1, 2);
  c.max_size_per_msg = (p.fig8 || rng.Percent(35)) ? 1 : (1u << 20);
  const size_t inflight[] = {1, 2, 4, 256};
  c.max_inflight_msgs = inflight[rng.Uniform(4)];
  c.snapshot_retry_ticks = rng.Range(2, 4) * c.election_tick;
  // Clocks drift by less than the lease margin over a lease: safe by construction.
  c.max_drift_permille = ro.max_drift_permille >= 0
                             ? ro.max_drift_permille
                             : (c.lease_margin_ticks * 1000 - 1) / (c.election_tick * 2);
  p.steps = ro.steps > 0 ? ro.steps : rng.Range(1000, 3000);
  p.drop_pct = rng.Range(0, 15);
  p.dup_pct = rng.Range(0, 5);
  p.reorder_pct = rng.Range(0, 40);
  p.delay_pct = rng.Range(0, 30);
  p.ready_pct = rng.Range(50, 100);
  p.membership = !p.fig8 && rng.Percent(60);
  p.compaction = rng.Percent(65);
  return p;
}

class Scheduler {
 public:
  Scheduler(uint64_t seed, Trace* trace, const RunOptions& ro)
      : seed_(seed), rng_(seed), profile_(ChooseProfile(rng_, ro)), trace_(trace) {
    ClusterOptions c = profile_.cluster;
    c.seed = seed;
    cluster_ = std::make_unique<SimCluster>(c, trace);
  }

  ScheduleResult Run() {
    ScheduleResult r;
    r.seed = seed_;
    r.profile = profile_.Describe();
    trace_->Line("seed " + std::to_string(seed_) + ": " + r.profile);
    int step = 0;
    for (; step < profile_.steps && !cluster_->failed(); step++) {
      Step(step);
      cluster_->stats().steps++;
    }
    if (!cluster_->failed()) Liveness(&r);
    r.stats = cluster_->stats();
    r.stats.acked = cluster_->checker().acked_count();
    if (cluster_->failed()) {
      r.ok = false;
      r.invariant = cluster_->checker().invariant();
      r.detail = cluster_->checker().detail();
      r.failed_step = static_cast<uint64_t>(step);
      trace_->Line("VIOLATION of " + r.invariant + ": " + r.detail);
    }
    return r;
  }

 private:
  SimCluster& C() { return *cluster_; }

  void Step(int step) {
    if (trace_->on()) trace_->Line("step " + std::to_string(step) + ":");
    const uint64_t roll = rng_.Uniform(1000);
    // Cumulative weights, per mille.
    if (roll < 380) {
      DeliverOne();
    } else if (roll < 470) {
      DeliverRound();
    } else if (roll < 640) {
      Tick();
    } else if (roll < 730) {
      Propose();
    } else if (roll < 750) {
      if (profile_.lease) {
        LeaseFault();
      } else {
        Partition();
      }
    } else if (roll < 770) {
      // Lease faults need an election timeout or two to play out.
      if (!profile_.lease || rng_.Percent(20)) Heal();
    } else if (roll < 790) {
      if (profile_.lease) {
        LeaseFault();
      } else {
        Crash();
      }
    } else if (roll < 830) {
      Restart();
    } else if (roll < 840) {
      Transfer();
    } else if (roll < 865) {
      if (profile_.membership) Membership();
    } else if (roll < 885) {
      if (profile_.compaction) Compact();
    } else if (roll < 915) {
      Read();
    } else if (roll < 945) {
      LeaseFault();
    } else if (roll < 975) {
      if (profile_.fig8) {
        Restart();
      } else {
        Tick();
      }
    } else if (roll < 990) {
      DelaySome();
    } else if (roll < 995) {
      const NodeId id = PickAlive();
      if (id != 0) {
        C().Stall(id, static_cast<uint64_t>(rng_.Range(1, profile_.cluster.election_tick)),
                  rng_.Percent(50));
      }
    } else {
      Tick();
    }
    for (NodeId id : C().AliveIds()) {
      if (C().failed()) return;
      if (!rng_.Percent(profile_.ready_pct)) continue;
      SimCluster::Node* n = C().node(id);
      if (profile_.fig8 && n->core->role() == Role::kLeader &&
          n->soft.role != Role::kLeader && rng_.Percent(60)) {
        Fig8MinorityThenCrash(id);
      } else {
        C().ProcessReady(id);
      }
    }
    PollLeaders();
    LeaseRead();
  }

  // Leaders are also reported through Ready; polling catches one that lost its role
  // before its Ready was processed.
  void PollLeaders() {
    for (const auto& [id, n] : C().nodes()) {
      if (n->alive() && n->core->role() == Role::kLeader) {
        C().checker().OnLeader(id, n->core->term(), *n->core);
      }
    }
  }

  NodeId PickAlive() {
    std::vector<NodeId> alive = C().AliveIds();
    if (alive.empty()) return 0;
    return alive[rng_.Uniform(alive.size())];
  }

  // The current leader if any (mostly), otherwise a random live replica.
  NodeId PickTarget() {
    NodeId leader = C().Leader();
    if (leader != 0 && rng_.Percent(85)) return leader;
    return PickAlive();
  }

  void DeliverAt(size_t pos) {
    if (rng_.Percent(profile_.drop_pct)) {
      C().Drop(pos);
      return;
    }
    const bool dup = rng_.Percent(profile_.dup_pct);
    const Message m = C().net()[pos].msg;
    C().Deliver(pos, dup);
    if (profile_.fig8) MaybeCrashAfterOldTermAck(m);
  }

  void DeliverOne() {
    auto& net = C().net();
    if (net.empty()) {
      Tick();
      return;
    }
    size_t pos = rng_.Percent(profile_.reorder_pct) ? rng_.Uniform(net.size()) : 0;
    if (!C().Due(pos)) {
      pos = 0;
      while (pos < net.size() && !C().Due(pos)) pos++;
      if (pos == net.size()) {
        Tick();
        return;
      }
    }
    DeliverAt(pos);
  }

  void DeliverRound() {
    if (trace_->on()) trace_->Line("  network round");
    // Every message in flight now is delivered, dropped, duplicated or left for later;
    // replies sent during the round wait for the next one.
    size_t n = C().net().size();
    size_t pos = 0;
    while (n-- > 0 && pos < C().net().size() && !C().failed()) {
      if (!C().Due(pos) || rng_.Percent(profile_.delay_pct)) {
        pos++;
        continue;
      }
      const size_t before = C().net().size();
      DeliverAt(pos);
      // A duplicate stays at pos; skip past it.
      if (C().net().size() >= before) pos++;
    }
  }

  // The setting in which a lease bug shows: the leader's messages stop reaching the
  // others (a one-way cut), while everything they send it, starting with their last
  // acknowledgements, takes one to two election timeouts to arrive. The others elect a
  // new leader and commit; then the old acknowledgements reach the old leader, before
  // news of the new term does. They must not renew its lease: they are dated by when the
  // leader sent what they acknowledge, not by when they arrive.
  void LeaseFault() {
    const NodeId leader = C().Leader();
    if (leader == 0 || !C().node(leader)->core->HasReadLease()) return;
    trace_->Line("  lease fault: the others hear " + std::to_string(leader) +
                 " one last time, then its outgoing links fail and their replies are held up");
    // Everyone hears from the leader now (a heartbeat round)...
    C().node(leader)->core->Tick();
    C().ProcessReady(leader);
    auto& net = C().net();
    for (size_t i = 0; i < net.size();) {
      if (net[i].msg.from == leader && C().Due(i)) {
        C().Deliver(i);
      } else {
        i++;
      }
    }
    for (NodeId id : C().AliveIds()) {
      if (id != leader) C().ProcessReady(id);
    }
    // ...their acknowledgements, and everything after them, crawl to the leader over
    // links one to two election timeouts slow...
    const int et = profile_.cluster.election_tick;
    for (const auto& [id, n] : C().nodes()) {
      if (id == leader) continue;
      const uint64_t latency = static_cast<uint64_t>(rng_.Range(et, 2 * et));
      C().SetLatency(id, leader, latency);
      for (size_t i = 0; i < net.size(); i++) {
        if (net[i].msg.from == id && net[i].msg.to == leader) C().Delay(i, latency);
      }
    }
    // ...and nothing the leader sends gets through any more.
    for (const auto& [id, n] : C().nodes()) {
      if (id != leader) C().Cut(leader, id);
    }
  }

  // Network delay, up to two election timeouts: long enough for a reply to arrive after
  // its sender has moved on to a new leader.
  void DelaySome() {
    auto& net = C().net();
    if (net.empty()) return;
    const int n = rng_.Range(1, 4);
    for (int i = 0; i < n; i++) {
      C().Delay(rng_.Uniform(net.size()),
                static_cast<uint64_t>(rng_.Range(1, 2 * profile_.cluster.election_tick)));
    }
  }

  void Tick() {
    if (trace_->on()) trace_->Line("  tick");
    C().TickAll();
  }

  void Propose() {
    NodeId id = PickTarget();
    if (id != 0) (void)C().Propose(id);
  }

  void Read() {
    NodeId id = PickTarget();
    if (id != 0) (void)C().ReadIndex(id);
  }

  // Every replica that believes it leads tries a lease read: a deposed leader that still
  // thinks it holds a lease is exactly what this must catch.
  void LeaseRead() {
    for (const auto& [id, n] : C().nodes()) {
      if (n->alive() && n->core->role() == Role::kLeader) C().LeaseRead(id);
    }
  }

  std::vector<NodeId> AllIds() {
    std::vector<NodeId> ids;
    for (const auto& [id, n] : C().nodes()) ids.push_back(id);
    return ids;
  }

  void Partition() {
    std::vector<NodeId> ids = AllIds();
    if (ids.size() < 2) return;
    const uint64_t kind = rng_.Uniform(4);
    std::string what;
    if (kind == 0) {
      const NodeId x = ids[rng_.Uniform(ids.size())];
      for (NodeId y : ids) {
        if (y != x) C().CutBoth(x, y);
      }
      what = "isolate " + std::to_string(x);
    } else if (kind == 1) {
      std::vector<NodeId> a, b;
      for (NodeId y : ids) (rng_.Percent(50) ? a : b).push_back(y);
      for (NodeId x : a) {
        for (NodeId y : b) C().CutBoth(x, y);
      }
      what = "split " + Ids(a) + " | " + Ids(b);
    } else if (kind == 2) {
      const NodeId x = ids[rng_.Uniform(ids.size())];
      NodeId y = ids[rng_.Uniform(ids.size())];
      if (x == y) return;
      C().Cut(x, y);
      what = "one-way cut " + std::to_string(x) + "->" + std::to_string(y);
    } else {
      const NodeId bridge = ids[rng_.Uniform(ids.size())];
      std::vector<NodeId> a, b;
      for (NodeId y : ids) {
        if (y != bridge) (rng_.Percent(50) ? a : b).push_back(y);
      }
      for (NodeId x : a) {
        for (NodeId y : b) C().CutBoth(x, y);
      }
      what = "bridge " + Ids(a) + " <" + std::to_string(bridge) + "> " + Ids(b);
    }
    trace_->Line("  partition: " + what);
  }

  static std::string Ids(const std::vector<NodeId>& ids) {
    std::string s = "{";
    for (size_t i = 0; i < ids.size(); i++) s += (i ? "," : "") + std::to_string(ids[i]);
    return s + "}";
  }

  void Heal() {
    if (C().healthy()) return;
    trace_->Line("  heal all links");
    C().HealAll();
  }

  void Crash() {
    NodeId id = PickAlive();
    if (id == 0) return;
    // Mostly keep a majority up, so that schedules make progress between faults.
    if (rng_.Percent(80) && C().AliveIds().size() * 2 <= C().nodes().size() + 1) return;
    C().Crash(id);
  }

  void Restart() {
    std::vector<NodeId> down;
    for (const auto& [id, n] : C().nodes()) {
      if (!n->alive() && retired_.count(id) == 0) down.push_back(id);
    }
    if (down.empty()) return;
    (void)C().Restart(down[rng_.Uniform(down.size())]);
  }

  void Transfer() {
    NodeId leader = C().Leader();
    if (leader == 0) return;
    const auto& voters = C().node(leader)->core->conf().voters;
    if (voters.empty()) return;
    NodeId target = voters[rng_.Uniform(voters.size())];
    Status s = C().node(leader)->core->TransferLeadership(target);
    trace_->Line("  transfer leadership " + std::to_string(leader) + " -> " +
                 std::to_string(target) + ": " + s.ToString());
    if (s.ok()) C().stats().transfers++;
  }

  void Membership() {
    NodeId leader = C().Leader();
    if (leader == 0) return;
    RaftCore& core = *C().node(leader)->core;
    const replication::ConfState& conf = core.conf();
    RetireRemoved(core);
    ConfChange cc;
    NodeId created = 0;
    const uint64_t roll = rng_.Uniform(100);
    const size_t members = conf.voters.size() + conf.learners.size();
    if (roll < 30 && members < 6 && C().nodes().size() < 9) {
      created = C().CreateNode();
      cc = ConfChange{ConfChangeType::kAddLearner, created};
    } else if (roll < 55 && !conf.learners.empty()) {
      cc = ConfChange{ConfChangeType::kAddVoter, conf.learners[rng_.Uniform(conf.learners.size())]};
    } else if (roll < 65 && members < 6 && C().nodes().size() < 9) {
      created = C().CreateNode();
      cc = ConfChange{ConfChangeType::kAddVoter, created};
    } else if (roll < 90 && (conf.voters.size() >= 3 ||
                             (conf.voters.size() == 2 && rng_.Percent(25)))) {
      cc = ConfChange{ConfChangeType::kRemoveNode, conf.voters[rng_.Uniform(conf.voters.size())]};
    } else if (!conf.learners.empty()) {
      cc = ConfChange{ConfChangeType::kRemoveNode, conf.learners[rng_.Uniform(conf.learners.size())]};
    } else {
      return;
    }
    Result<replication::LogPosition> pos = core.ProposeConfChange(cc);
    if (trace_->on()) {
      static const char* kNames[] = {"add-voter", "add-learner", "remove"};
      trace_->Line("  conf change on node " + std::to_string(leader) + ": " +
                   kNames[static_cast<int>(cc.type)] + " " + std::to_string(cc.node) + ": " +
                   (pos.ok() ? "at " + std::to_string(pos->index) : pos.status().ToString()));
    }
    if (!pos.ok() && created != 0) C().DestroyNode(created);
  }

  // Replicas removed by a committed configuration are shut down for good (a real
  // cluster deletes them), so that they neither count as members nor disturb the group.
  void RetireRemoved(const RaftCore& leader) {
    // Only a leader that committed an entry of its own term knows that no configuration
    // entry of an earlier term (say, one adding the replica) may still commit.
    Result<uint64_t> commit_term = leader.Term(leader.committed());
    if (!commit_term.ok() || *commit_term != leader.term()) return;
    // And only if no replica, crashed ones included, ever saw a later term: a leader of a
    // later term may have appended a configuration this one has never heard of.
    for (const auto& [id, n] : C().nodes()) {
      if (n->disk.hard_state().term > leader.term()) return;
      if (n->alive() && n->core->term() > leader.term()) return;
    }
    Result<replication::ConfState> committed = leader.ConfStateAt(leader.committed());
    if (!committed.ok()) return;
    std::vector<NodeId> retire;
    for (const auto& [id, n] : C().nodes()) {
      if (retired_.count(id) != 0 || committed->IsMember(id) || leader.conf().IsMember(id)) continue;
      retire.push_back(id);
    }
    for (NodeId id : retire) {
      C().Crash(id);
      retired_.insert(id);
      trace_->Line("  node " + std::to_string(id) + " retired");
    }
  }

  void Compact() {
    NodeId id = PickAlive();
    if (id == 0) return;
    Status s = C().Compact(id, rng_.Uniform(4));
    if (!s.ok()) C().checker().Fail("driver", "compact node " + std::to_string(id) + ": " + s.ToString());
  }

  // Figure 8 (a)/(b): a new leader's first entries (its no-op, and maybe a proposal)
  // reach at most one follower, then the leader dies: entries of different terms now
  // sit at the same index on different replicas.
  void Fig8MinorityThenCrash(NodeId leader) {
    trace_->Line("  figure-8 fault: new leader " + std::to_string(leader) +
                 " replicates to at most one follower, then crashes");
    if (rng_.Percent(50)) (void)C().Propose(leader);
    C().ProcessReady(leader);
    auto& net = C().net();
    std::vector<NodeId> followers;
    for (const auto& env : net) {
      if (env.msg.from == leader && env.msg.type == MessageType::kAppend &&
          std::find(followers.begin(), followers.end(), env.msg.to) == followers.end()) {
        followers.push_back(env.msg.to);
      }
    }
    const NodeId lucky = followers.empty() ? 0 : followers[rng_.Uniform(followers.size())];
    for (size_t i = 0; i < net.size();) {
      const Message& m = net[i].msg;
      if (m.from != leader) {
        i++;
      } else if (m.to == lucky && m.type == MessageType::kAppend) {
        C().Deliver(i);
      } else {
        C().Drop(i, "figure-8 drop");
      }
    }
    if (lucky != 0) C().ProcessReady(lucky);
    C().Crash(leader);
  }

  // Drops everything `id` has in flight (it died before the network carried it).
  void DropAllFrom(NodeId id) {
    auto& net = C().net();
    for (size_t i = 0; i < net.size();) {
      if (net[i].msg.from == id) {
        C().Drop(i, "figure-8 drop");
      } else {
        i++;
      }
    }
  }

  // Figure 8 (c)/(d): a leader that just learned a follower holds an entry of an earlier
  // term dies right away. A core that wrongly counted that entry as committed has
  // already applied it; the next leader may overwrite it.
  void MaybeCrashAfterOldTermAck(const Message& m) {
    if (m.type != MessageType::kAppendResp || m.reject || m.index == 0) return;
    SimCluster::Node* n = C().node(m.to);
    if (n == nullptr || !n->alive() || n->core->role() != Role::kLeader) return;
    Result<uint64_t> t = n->core->Term(m.index);
    if (!t.ok() || *t >= n->core->term() || !rng_.Percent(90)) return;
    trace_->Line("  figure-8 fault: crash leader " + std::to_string(m.to) +
                 " right after an old-term entry was acknowledged");
    C().ProcessReady(m.to);
    DropAllFrom(m.to);
    C().Crash(m.to);
  }

  void Liveness(ScheduleResult* r) {
    trace_->Line("liveness: heal everything, restart every member");
    C().HealAll();
    C().ClearStalls();
    for (const auto& [id, n] : C().nodes()) {
      if (!n->alive() && retired_.count(id) == 0) (void)C().Restart(id);
    }
    // Thirty election timeouts of the slowest clock.
    const int limit = 30 * profile_.cluster.election_tick * 1000 /
                      (1000 - profile_.cluster.max_drift_permille);
    std::string final_cmd;
    NodeId proposer = 0;
    uint64_t proposer_term = 0;
    int t = 0;
    bool committed = false;
    for (; t < limit && !C().failed(); t++) {
      C().TickAll();
      C().Stabilize();
      PollLeaders();
      if (!final_cmd.empty() && C().checker().IsAcked(final_cmd)) {
        committed = true;
        break;
      }
      const NodeId leader = C().Leader();
      if (leader == 0) continue;
      RaftCore& core = *C().node(leader)->core;
      if (final_cmd.empty() || proposer != leader || proposer_term != core.term()) {
        Result<std::string> cmd = C().Propose(leader);
        if (cmd.ok()) {
          final_cmd = *cmd;
          proposer = leader;
          proposer_term = core.term();
        }
      }
    }
    if (C().failed()) return;
    r->recovery_ticks = static_cast<uint64_t>(t);
    if (!committed) {
      DumpNodes();
      C().checker().Fail("liveness", "no leader committed a new proposal within " +
                                         std::to_string(limit) + " ticks of healing");
      return;
    }
    // Convergence: every member of the leader's configuration applies everything.
    for (int i = 0; i < limit && !C().failed(); i++) {
      const NodeId leader = C().Leader();
      if (leader == 0) {
        C().TickAll();
        C().Stabilize();
        continue;
      }
      const RaftCore& core = *C().node(leader)->core;
      bool done = true;
      for (const auto& [id, n] : C().nodes()) {
        if (!core.conf().IsMember(id) && id != leader) continue;
        if (!n->alive() || n->sm.applied_index() < core.committed()) done = false;
      }
      if (done) {
        for (const auto& [id, n] : C().nodes()) {
          if (core.conf().IsMember(id)) C().checker().CheckAcked(id, n->sm);
        }
        trace_->Line("liveness: every member applied through " + std::to_string(core.committed()));
        return;
      }
      C().TickAll();
      C().Stabilize();
    }
    if (!C().failed()) {
      DumpNodes();
      C().checker().Fail("liveness", "members did not converge within " + std::to_string(limit) +
                                         " ticks after the first commit");
    }
  }

  void DumpNodes() {
    if (!trace_->on()) return;
    for (const auto& [id, n] : C().nodes()) {
      std::string line = "  node " + std::to_string(id) + ": ";
      if (!n->alive()) {
        trace_->Line(line + (retired_.count(id) != 0 ? "retired" : "down"));
        continue;
      }
      const RaftCore& c = *n->core;
      trace_->Line(line + replication::RoleName(c.role()) + " term " + std::to_string(c.term()) +
                   " vote " + std::to_string(c.vote()) + " leader " + std::to_string(c.leader()) +
                   " log " + std::to_string(c.FirstIndex()) + ".." + std::to_string(c.LastIndex()) +
                   " last term " + std::to_string(c.Term(c.LastIndex()).ok() ? *c.Term(c.LastIndex()) : 0) +
                   " commit " + std::to_string(c.committed()) + " applied " +
                   std::to_string(n->sm.applied_index()) + " " +
                   replication::ConfStateToString(c.conf()));
    }
  }

  const uint64_t seed_;
  Rng rng_;
  const Profile profile_;
  Trace* const trace_;
  std::unique_ptr<SimCluster> cluster_;
  std::set<NodeId> retired_;
};

}  // namespace

ScheduleResult RunSchedule(uint64_t seed, Trace* trace, const RunOptions& options) {
  Scheduler s(seed, trace, options);
  return s.Run();
}

}  // namespace ring::sim
