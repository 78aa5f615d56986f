// tests/sim/cluster.h: a simulated replication group for deterministic tests.
//
// SimCluster hosts RaftCore replicas with everything around them simulated:
//   - a disk per replica (a MemStorage): the simulated driver persists each Ready's
//     snapshot, entries and hard state into it before sending the Ready's messages, and
//     it is the only thing that survives a crash;
//   - a state machine per replica (SimStateMachine): an append-only list of applied
//     commands, snapshotted into the disk on compaction and rebuilt from it on restart;
//   - a network: an ordered list of in-flight messages that the caller delivers, drops,
//     duplicates or reorders, plus directed link cuts for partitions;
//   - clients: proposals whose acknowledgement is recorded when the proposing replica
//     applies them, and reads checked against every acknowledged write.
// Time is logical (Tick), there is no thread and no real clock, and the only randomness
// is the caller's: a schedule replays exactly from its seed.
//
// Every state change is reported to an InvariantChecker (checker.h); the first violation
// is kept and the caller stops.
//
// Ownership: the cluster owns its replicas, disks, network and checker. Thread-safety:
// none; one test thread drives a cluster.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "replication/mem_storage.h"
#include "replication/raft_core.h"
#include "tests/sim/checker.h"
#include "tests/sim/state_machine.h"

namespace ring::sim {

using replication::ConfState;
using replication::Entry;
using replication::HardState;
using replication::MemStorage;
using replication::Message;
using replication::NodeId;
using replication::RaftCore;

// Where a schedule's trace goes: nowhere (the fast path), a string, and/or a FILE*.
class Trace {
 public:
  Trace() = default;
  explicit Trace(std::FILE* echo) : on_(true), echo_(echo) {}
  static Trace Collecting() {
    Trace t;
    t.on_ = true;
    return t;
  }

  bool on() const { return on_; }
  void Line(const std::string& s) {
    if (!on_) return;
    if (echo_ != nullptr) {
      std::fputs(s.c_str(), echo_);
      std::fputc('\n', echo_);
    } else {
      text_ += s;
      text_ += '\n';
    }
  }
  std::string Take() { return std::exchange(text_, std::string()); }

 private:
  bool on_ = false;
  std::FILE* echo_ = nullptr;
  std::string text_;
};

struct ClusterOptions {
  int voters = 3;  // founding voters, ids 1..voters
  uint64_t seed = 1;
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = true;
  bool check_quorum = true;
  // A node's first start is Config::brand_new (it may vote at once); restarts never are.
  bool brand_new_first_start = false;
  int lease_margin_ticks = 2;
  uint64_t max_size_per_msg = 1 << 20;
  size_t max_inflight_msgs = 256;
  int snapshot_retry_ticks = 30;
  // Clock drift: each replica's clock runs at a rate drawn from [1000 - max_drift_permille,
  // 1000] per mille of the simulation's time, so that in the longest lease (election_tick
  // ticks) two clocks drift apart by at most election_tick * max_drift / 1000 ticks. The
  // core's lease margin must cover that (see Config::lease_margin_ticks).
  int max_drift_permille = 0;
};

struct ClusterStats {
  uint64_t steps = 0;
  uint64_t ticks = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  uint64_t duplicated = 0;
  uint64_t proposals = 0;
  uint64_t acked = 0;
  uint64_t crashes = 0;
  uint64_t restarts = 0;
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_installed = 0;
  uint64_t compactions = 0;
  uint64_t conf_changes = 0;  // committed membership changes
  uint64_t transfers = 0;
  uint64_t leader_changes = 0;
  uint64_t reads = 0;
  uint64_t lease_reads = 0;

  void Add(const ClusterStats& o);
};

class SimCluster {
 public:
  struct Node {
    NodeId id = 0;
    MemStorage disk;                  // survives crashes
    std::unique_ptr<RaftCore> core;   // null while crashed
    SimStateMachine sm;               // rebuilt from the disk on restart
    int incarnation = 0;
    // A slow disk: no Ready cycle runs before this tick. A Ready taken before the stall
    // is held, unpersisted, while the core keeps receiving messages.
    uint64_t stalled_until = 0;
    std::optional<replication::Ready> held;
    uint64_t held_term = 0;  // the core's term when `held` was taken
    int clock_rate = 1000;  // per mille of simulated time
    int clock_debt = 0;     // accumulated fraction of a tick
    replication::SoftState soft;      // as last reported in a Ready
    bool alive() const { return core != nullptr; }
  };
  struct Envelope {
    uint64_t seq = 0;  // send order, for traces
    Message msg;
    uint64_t due_tick = 0;  // a delayed message cannot arrive before this tick
  };

  SimCluster(const ClusterOptions& options, Trace* trace);

  const ClusterOptions& options() const { return options_; }
  InvariantChecker& checker() { return checker_; }
  const InvariantChecker& checker() const { return checker_; }
  ClusterStats& stats() { return stats_; }
  Trace& trace() { return *trace_; }
  bool failed() const { return checker_.failed(); }

  // --- replicas ----------------------------------------------------------------------
  Node* node(NodeId id);
  const std::map<NodeId, std::unique_ptr<Node>>& nodes() const { return nodes_; }
  std::vector<NodeId> AliveIds() const;
  // A new replica with an empty disk and no configuration, to be added to the group.
  NodeId CreateNode();
  // Forgets a replica for good (never started, or retired after its removal).
  void DestroyNode(NodeId id);
  // Discards the core, the state machine and anything the driver had not persisted;
  // the replica's in-flight messages stay on the wire.
  void Crash(NodeId id);
  // Rebuilds the core and state machine from the disk.
  Status Restart(NodeId id);
  // Replaces a stopped replica's disk (scenario setup).
  void SetDisk(NodeId id, MemStorage disk);

  // The live leader with the highest term, or 0.
  NodeId Leader() const;

  // --- the simulated driver ----------------------------------------------------------
  // Runs one Ready cycle for `id` (persist, send, apply, Advance). False if there was none
  // or the replica's disk is stalled.
  bool ProcessReady(NodeId id);
  // Stalls `id`'s disk for `ticks` ticks; with hold_ready, the driver has already taken
  // the next Ready and is waiting for the disk (the core keeps running meanwhile).
  void Stall(NodeId id, uint64_t ticks, bool hold_ready);
  void ClearStalls();
  void Tick(NodeId id);
  void TickAll();
  // Takes a snapshot of the state machine at its applied index and compacts the disk
  // up to `keep` entries before it.
  Status Compact(NodeId id, uint64_t keep);

  // --- the network -------------------------------------------------------------------
  std::deque<Envelope>& net() { return net_; }
  // Delivers net()[pos]: steps it into its recipient if the recipient is alive and the
  // link is up, otherwise drops it. keep_copy leaves a duplicate in flight.
  void Deliver(size_t pos, bool keep_copy = false);
  void Drop(size_t pos, const char* why = "dropped");
  // Network delay: net()[pos] cannot be delivered for `ticks` more ticks (Stabilize
  // ignores delays).
  void Delay(size_t pos, uint64_t ticks);
  bool Due(size_t pos) const { return net_[pos].due_tick <= stats_.ticks; }
  bool LinkUp(NodeId from, NodeId to) const { return cuts_.count({from, to}) == 0; }
  void Cut(NodeId from, NodeId to) { cuts_.insert({from, to}); }
  void CutBoth(NodeId a, NodeId b) {
    Cut(a, b);
    Cut(b, a);
  }
  // A slow link: messages sent on it from now on arrive `ticks` ticks later at the earliest.
  void SetLatency(NodeId from, NodeId to, uint64_t ticks) { latency_[{from, to}] = ticks; }
  void HealAll() {
    cuts_.clear();
    latency_.clear();
  }
  bool healthy() const { return cuts_.empty() && latency_.empty(); }

  // Processes Readies and delivers every in-flight message (in order, none lost) until
  // nothing is left or max_rounds passes. Crashed recipients still lose theirs.
  void Stabilize(int max_rounds = 1000);

  // --- clients -----------------------------------------------------------------------
  // Proposes a command on `id`: `data`, or a fresh "c<n>" if empty. Returns the command
  // when the core accepted it. Commands must be unique within a schedule.
  Result<std::string> Propose(NodeId id, std::string data = "");
  // Asks `id` for a ReadIndex read; checked when served.
  Status ReadIndex(NodeId id);
  // Serves a lease read on `id` if it holds a lease; checked at once. True if served.
  bool LeaseRead(NodeId id);

 private:
  // `term` is the core's term when the Ready was taken (its soft state refers to it).
  void ApplyReady(Node& n, replication::Ready& rd, uint64_t term);
  // Puts `msgs` on the network (and empties it).
  void Send(Node& n, std::vector<replication::Message>* msgs);
  int ClockRate(NodeId id) const;
  Status StartCore(Node& n);

  const ClusterOptions options_;
  Trace* const trace_;
  InvariantChecker checker_;
  ClusterStats stats_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  NodeId next_id_ = 1;
  std::deque<Envelope> net_;
  uint64_t next_seq_ = 1;
  std::set<std::pair<NodeId, NodeId>> cuts_;
  std::map<std::pair<NodeId, NodeId>, uint64_t> latency_;
  uint64_t next_command_ = 1;
  uint64_t next_read_ = 1;
};

}  // namespace ring::sim
