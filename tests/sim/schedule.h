// tests/sim/schedule.h: randomized fault schedules over a SimCluster.
//
// RunSchedule(seed) derives everything from the seed: the group size (3 or 5), the core's
// knobs (PreVote, CheckQuorum, message size and pipeline caps), fault intensities, and
// then a sequence of steps. Each step is one action:
//   deliver one message (oldest or a random one: reordering), possibly dropping or
//   duplicating it; or a round delivering the whole network with the same faults;
//   tick every replica; propose; ReadIndex; lease read;
//   partition (isolate one, split symmetric, cut one direction, or a bridge: two sides
//   that only talk through one replica) or heal;
//   crash or restart a replica;
//   transfer leadership;
//   change membership (add a learner, promote it, add or remove a voter, even the
//   leader; retire replicas whose removal is committed);
//   compact a replica's log (so that laggards and new replicas need snapshots);
//   in "figure 8" mode, the targeted faults below.
// After each step every live replica runs a Ready cycle with some probability (so work
// piles up in memory and a crash loses it), and the InvariantChecker has checked every
// persisted byte, election and application.
//
// Then the liveness phase: heal every link, restart every crashed member, and require
// that a leader commits a fresh proposal within a bounded number of ticks and that every
// live member converges and holds every acknowledged write.
//
// Lease mode targets read leases: the leader's outgoing links fail while everything sent
// to it is slowed by one to two election timeouts, so that old acknowledgements reach it
// after the others elected a new leader and committed (see LeaseFault). A core that
// dated acknowledgements by their arrival is caught within the CI seed budget.
//
// Figure 8 mode targets Raft §5.4.2: (a) a leader proposes, replicates the entry to a
// single follower and crashes; (b) a leader crashes right after a follower acknowledges
// an entry from an older term. Messages carry one entry each, so old-term entries and a
// new leader's no-op travel separately. A core that committed by counting old-term
// replicas is caught within the CI seed budget.
//
// Thread-safety: none; schedules are independent, so runners may run them in parallel.
#pragma once

#include <cstdint>
#include <string>

#include "tests/sim/cluster.h"

namespace ring::sim {

struct ScheduleResult {
  uint64_t seed = 0;
  bool ok = true;
  std::string invariant;  // which property broke, when !ok
  std::string detail;
  uint64_t failed_step = 0;
  std::string profile;  // the knobs the seed chose, one line
  ClusterStats stats;
  uint64_t recovery_ticks = 0;  // ticks from healing to the first fresh commit
};

struct RunOptions {
  int steps = 0;          // 0: chosen by the seed
  bool force_fig8 = false;   // always use figure 8 mode
  bool force_lease = false;  // always use lease mode (unless figure 8 mode is forced)
  // Clock drift bound; -1: chosen from the seed's lease margin so that leases stay safe.
  int max_drift_permille = -1;
};

ScheduleResult RunSchedule(uint64_t seed, Trace* trace, const RunOptions& options = {});

}  // namespace ring::sim
