// replication/raft_core.h: RaftCore, the pure state machine at the heart of a shard's
// replicated log.
//
// RaftCore implements Raft (Ongaro & Ousterhout; Ongaro's thesis for PreVote, leadership
// transfer, membership changes and leases). It does no I/O at all: no threads, sockets,
// clocks or disk. Inputs are method calls:
//   Tick()                    one unit of logical time passed (the driver maps ticks to a
//                             monotonic clock, e.g. one tick per 100 ms)
//   Step(message)             a message from a peer arrived
//   Propose / ProposeConfChange / TransferLeadership / ReadIndex / Campaign
//                             requests from the application
// Outputs are collected into a Ready, which the driver fetches, carries out, and
// acknowledges with Advance(). The driver loop (one group shown; ringd batches many):
//
//   while (running) {
//     feed inputs: Tick(), Step(m), Propose(...)
//     if (!core.HasReady()) continue;
//     Ready rd = core.GetReady();
//     1. persist, atomically and durably (fsync when rd.must_sync):
//          rd.snapshot (replaces the log), then rd.entries (an entry at an index already
//          stored replaces it and everything after it), then rd.hard_state;
//     2. send rd.messages;                          <-- never before step 1 is durable
//        (rd.early_messages may go out before step 1 even starts; see below)
//     3. install rd.snapshot into the state machine, then apply rd.committed_entries in
//        order; then serve rd.read_states;
//     4. core.Advance();
//   }
//
// THE PERSISTENCE RULE: the messages of a Ready may be sent only after the entries, hard
// state and snapshot of the same Ready (and of every earlier Ready) are durable. A vote
// or an append acknowledgement is a promise about what is on disk; sending it early lets
// a crash break Raft's safety. Committed entries may be applied in the same pass because
// they never go beyond what step 1 made durable.
//
// The one exception (thesis §10.2.1): a leader's appends, heartbeats and snapshots, which
// the core puts in rd.early_messages, may be sent while the leader's own entries are being
// written, so the leader's fsync overlaps its followers'. This is safe because the leader
// counts its own log toward a commit only after Advance(), and because the core files a
// message there only when the Ready changes no term or vote: everything such a message
// vouches for is already durable.
//
// Between GetReady() and Advance() the driver may keep calling Step, Tick and the request
// methods (for example while an fsync is in flight); their effects go into the next Ready.
// It must not call GetReady() again before Advance().
//
// Membership changes: one server at a time (thesis §4.1, "single-server changes"), not
// joint consensus. A configuration entry takes effect on every replica as soon as it is
// appended to that replica's log, committed or not; a replica whose log is truncated falls
// back to the newest configuration still in its log. The leader accepts a change only
// when (a) the previous one is committed and (b) it has committed an entry of its own term,
// which closes the hole Ongaro reported in 2015 (two overlapping changes from different
// leaders). Why not joint consensus: replicas move in ringstore as "add learner, catch up,
// promote, remove old", a sequence of single steps anyway; any old and new majority of a
// single-server change overlap, so there is no intermediate joint state to persist, test
// or get stuck in. A configuration entry carries the whole resulting configuration
// (types.h), so a replica needs only the newest one in its log. Removing the leader works:
// it keeps replicating but no longer counts itself in quorums, steps down once its removal
// is committed, and hands leadership to the most up-to-date voter with TimeoutNow. A
// replica whose removal is in its log but not known to be committed still campaigns
// (thesis §4.2.2), without counting its own vote: it may be the only one able to finish
// committing its removal.
//
// Linearizable reads:
//   - ReadIndex(ctx): the leader records its commit index, confirms it is still leader by
//     a heartbeat round acknowledged by a quorum, and returns a ReadState once that index
//     is applied. A new leader first commits its no-op (its commit index is not known to
//     be current before that); requests queue until then. Followers get NotLeader.
//   - HasReadLease(): true while a quorum of voters acknowledged messages that the leader
//     sent less than (election_tick - lease_margin_ticks) ticks ago. Why this is safe: a
//     follower that received any message from the leader refuses (pre)votes for an
//     election timeout (leader stickiness, on whenever check_quorum is), and so does a
//     freshly restarted replica, so no other leader can be elected while a quorum's
//     timers still protect this one. Acknowledgements are dated by the leader's send
//     time (Message::tick), never by arrival, and the margin absorbs clock-rate drift
//     between replicas. A leadership transfer bypasses stickiness, so once a transfer
//     starts the leader holds no lease for the rest of its term; ReadIndex still works.
//     While the lease holds, the application serves a read once it has applied up to
//     committed() as of the read's arrival.
//
// Flow control: each follower is in one of three states. Probe: one append at a time
// until the leader finds where the logs match (with a conflict hint that skips a whole
// term per round trip). Replicate: appends are pipelined, at most max_inflight_msgs per
// follower, each at most max_size_per_msg bytes. Snapshot: the follower's next entry is
// compacted, a snapshot is on its way, and nothing else is sent until it is acknowledged,
// reported (ReportSnapshot) or times out (snapshot_retry_ticks).
//
// Errors: every request returns a Status. NotLeader names the leader when it is known;
// Busy means "retry later" (a transfer or a configuration change is in progress). If the
// storage fails with anything but Compacted/Unavailable, or a peer's message would
// overwrite a committed entry, the core stops and returns that error from every call.
//
// Thread-safety: none. One driver thread owns a RaftCore and its LogStorage reads.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/log_storage.h"
#include "replication/types.h"

namespace ring::replication {

enum class Role : uint8_t { kFollower = 0, kPreCandidate = 1, kCandidate = 2, kLeader = 3 };
const char* RoleName(Role role);

struct Config {
  NodeId id = kNoNode;
  // Not owned; must outlive the core. Holds whatever the driver persisted.
  const LogStorage* storage = nullptr;
  // Seeds the randomized election timeout. Give every replica (and every restart) its own
  // seed; tests pass a fixed one to replay exactly.
  uint64_t seed = 0;

  // A follower campaigns after a random timeout in [election_tick, 2*election_tick-1]
  // ticks without hearing from a leader. The leader sends heartbeats every heartbeat_tick.
  int election_tick = 10;
  int heartbeat_tick = 1;
  // A candidate first asks whether it could win (PreVote) before bumping its term, so a
  // replica returning from a partition does not depose a healthy leader.
  bool pre_vote = true;
  // The leader steps down if it did not hear from a quorum during an election timeout,
  // and followers ignore (pre)votes while they hear from a leader. Required for leases.
  bool check_quorum = true;
  // The read lease lasts election_tick - lease_margin_ticks ticks; the margin covers
  // clock-rate differences. 1 <= margin < election_tick.
  int lease_margin_ticks = 2;

  uint64_t max_size_per_msg = 1 << 20;             // bytes of entries per append (>= 1 entry)
  size_t max_inflight_msgs = 256;                  // appends in flight per follower
  uint64_t max_committed_size_per_ready = 64 << 20;  // bytes of committed entries per Ready
  // A follower in snapshot state goes back to probing after this many ticks without an
  // acknowledgement (the snapshot or its reply may be lost). 0: wait for ReportSnapshot.
  int snapshot_retry_ticks = 50;

  // The application's applied index when restarting (at least the snapshot's index, at
  // most the stored commit index); committed entries after it are handed out again.
  // 0 means "the snapshot's index" (StoredState::conf_index).
  uint64_t applied = 0;

  // The group's configuration was bootstrapped just now and nothing else is stored: no
  // leader can count this replica toward a lease, so it grants (pre)votes at once instead
  // of first waiting out an election timeout as a restarted replica must. Lets a new group
  // elect its first leader within a round trip of its founders hosting it.
  bool brand_new = false;

  Status Validate() const;
};

struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// A confirmed linearizable read: serve it from a state that has applied at least `index`.
struct ReadState {
  uint64_t index = 0;
  std::string context;  // as passed to ReadIndex
};

// Everything the driver must do, in the order given in the header comment.
struct Ready {
  std::optional<SoftState> soft_state;  // set when the leader or role changed
  std::optional<HardState> hard_state;  // set when it changed; persist with the entries
  std::optional<Snapshot> snapshot;     // persist (replacing the log) and install
  std::vector<Entry> entries;           // persist, truncating any conflicting suffix
  std::vector<Message> messages;        // send only after the above are durable
  std::vector<Message> early_messages;  // a leader's appends: may be sent at once
  std::vector<Entry> committed_entries;  // apply in order (after `snapshot`)
  std::vector<ReadState> read_states;    // serve after applying committed_entries
  // Whether step 1 needs an fsync: false when only the commit index changed.
  bool must_sync = false;
};

// Where a proposal landed. The proposal succeeded if the entry applied at `index` has
// `term`; if another entry shows up there, it was lost to a leader change.
struct LogPosition {
  uint64_t index = 0;
  uint64_t term = 0;
};

enum class ProgressState : uint8_t { kProbe = 0, kReplicate = 1, kSnapshot = 2 };
const char* ProgressStateName(ProgressState s);

// The leader's view of one follower, for status pages and tests.
struct PeerStatus {
  NodeId id = kNoNode;
  bool learner = false;
  ProgressState state = ProgressState::kProbe;
  uint64_t match = 0;
  uint64_t next = 0;
  size_t inflight = 0;
  bool recent_active = false;
};

class RaftCore {
 private:
  // The leader's bookkeeping for one follower (etcd calls this Progress as well).
  struct Progress {
    uint64_t match = 0;  // highest index known to be on the follower's disk
    uint64_t next = 1;   // next index to send
    ProgressState state = ProgressState::kProbe;
    bool learner = false;
    bool probe_sent = false;        // kProbe: an append is outstanding; wait for a reply
    uint64_t pending_snapshot = 0;  // kSnapshot: the index of the snapshot sent
    int snapshot_elapsed = 0;       // kSnapshot: ticks since it was sent
    std::deque<uint64_t> inflight;  // kReplicate: last index of each unacknowledged append
    bool recent_active = false;     // heard from since the last CheckQuorum round
    uint64_t acked_tick = 0;        // newest leader send time the follower acknowledged
    uint64_t acked_read_seq = 0;    // newest ReadIndex heartbeat it acknowledged
  };

 public:
  // Reads the persisted state from config.storage and starts as a follower.
  // InvalidArgument for a bad config; the storage's error if it cannot be read.
  static Result<std::unique_ptr<RaftCore>> Create(const Config& config);

  RaftCore(const RaftCore&) = delete;
  RaftCore& operator=(const RaftCore&) = delete;
  ~RaftCore();

  // --- inputs --------------------------------------------------------------------------

  // Advances logical time by one tick: election timeouts, heartbeats, CheckQuorum,
  // transfer and snapshot timeouts.
  void Tick();

  // Handles a message from a peer. OK also when the message was stale and ignored.
  // InvalidArgument (and no effect) if it is not addressed to this replica or is
  // malformed, e.g. non-consecutive entries; the fatal error once stopped.
  Status Step(const Message& m);

  // Appends `data` to the log, as an entry of `type` (kNormal or kBatch). NotLeader
  // (naming the leader if known) on a non-leader; Busy during a leadership transfer;
  // InvalidArgument for empty data (reserved for the leader's no-op) or another type. OK
  // means appended locally, not committed: watch the position.
  Result<LogPosition> Propose(std::string data, EntryType type = EntryType::kNormal);

  // Proposes one membership change. NotLeader as for Propose; Busy while a previous change
  // is uncommitted, during a transfer, or before the leader committed an entry of its
  // term; InvalidArgument if the change does not apply to the current configuration.
  Result<LogPosition> ProposeConfChange(const ConfChange& cc);

  // Hands leadership to voter `target`: it is caught up, then told to campaign at once.
  // Proposals get Busy until the transfer ends; it is abandoned after an election
  // timeout. OK if already leader and target is self or the transfer is under way;
  // NotLeader on a non-leader; InvalidArgument if target is not a voter.
  Status TransferLeadership(NodeId target);

  // Requests a linearizable read; the ReadState with `context` appears in a later Ready
  // if leadership is confirmed. Requests are dropped silently if leadership is lost
  // first, so callers need a timeout. NotLeader on a non-leader.
  Status ReadIndex(std::string context);

  // Starts an election now, as if the election timeout had passed (PreVote first when
  // configured). OK and no-op on a leader; InvalidArgument if this replica is not a voter.
  Status Campaign();

  // Transport feedback: `id` could not be reached (go back to probing), or a snapshot
  // send to `id` finished (ok) or failed.
  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool ok);

  // --- outputs -------------------------------------------------------------------------

  bool HasReady() const;
  Ready GetReady();
  // The last Ready was persisted, sent and applied.
  void Advance();

  // See the header comment. False on a non-leader.
  bool HasReadLease() const;
  // How many more ticks (counting from now(), inclusive) the read lease lasts; 0 if none.
  // The driver turns this into a monotonic-clock deadline: tick k of the lease ends when
  // tick now()+k would start.
  uint64_t ReadLeaseTicks() const;

  // --- introspection -------------------------------------------------------------------

  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId leader() const { return lead_; }
  Role role() const { return role_; }
  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  // The term at `index` in this replica's log (including its unpersisted tail), with the
  // LogStorage error contract.
  Result<uint64_t> Term(uint64_t index) const;
  const ConfState& conf() const { return conf_; }
  // The configuration in force at `index` (for snapshots the application takes at its
  // applied index). Compacted below the latest snapshot, including one received from the
  // leader but not yet installed (a snapshot at `index` would be obsolete anyway);
  // Unavailable past LastIndex().
  Result<ConfState> ConfStateAt(uint64_t index) const;
  // Empty unless leader.
  std::vector<PeerStatus> Peers() const;
  NodeId transferee() const { return transferee_; }
  // This replica's logical clock (1 at start, +1 per Tick); the leader stamps it on messages.
  uint64_t now() const { return now_; }
  // The error that stopped the core, or OK.
  const Status& fatal() const { return fatal_; }

 private:
  struct PendingRead {
    uint64_t seq = 0;
    uint64_t index = 0;
    std::string context;
  };

  explicit RaftCore(const Config& config);
  Status Init();

  // Log access across storage and the unstable tail.
  uint64_t LastTerm() const;
  uint64_t TermOrZero(uint64_t index) const;
  bool MatchTerm(uint64_t index, uint64_t term) const;
  bool IsUpToDate(uint64_t last_term, uint64_t last_index) const;
  Result<std::vector<Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  uint64_t FindConflictByTerm(uint64_t index, uint64_t term) const;
  void TruncateAndAppend(std::vector<Entry> entries);
  void StableTo(uint64_t index, uint64_t term);
  uint64_t StableLastIndex() const;
  void CommitTo(uint64_t index);
  bool Restore(const Snapshot& snap);
  // Stops the core; const because a read path (TermOrZero) may discover a broken storage.
  void Fail(Status s) const;

  // Configuration tracking.
  void OnEntriesAppended(const std::vector<Entry>& entries);
  void RecomputeConf();
  void ApplyConfToProgress();
  uint64_t LastConfIndex() const;
  bool Promotable() const;

  // Role transitions.
  void Reset(uint64_t term);
  void BecomeFollower(uint64_t term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Hup(bool transfer);
  void CampaignFor(bool pre, bool transfer);
  enum class VoteResult { kPending, kWon, kLost };
  VoteResult Poll(NodeId from, bool granted);

  // Message handling.
  void Send(Message m);
  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);
  Status ValidateMessage(const Message& m) const;
  void HandleVoteRequest(const Message& m);
  void HandleAppend(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResp(const Message& m, Progress& pr);
  void HandleHeartbeatResp(const Message& m, Progress& pr);

  // Leader replication.
  bool SendAppend(NodeId to, bool send_if_empty);
  void SendSnapshot(NodeId to);
  void SendHeartbeat(NodeId to);
  void SendTimeoutNow(NodeId to);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  bool MaybeCommit();
  void OnCommitAdvanced();
  bool QuorumActive();
  // The largest v such that a majority of the voters have value_of(voter) >= v.
  template <typename ValueOf>
  uint64_t QuorumValue(ValueOf value_of) const;
  void AppendLocal(Entry e);
  bool CommittedInTerm() const;
  void AbortTransfer();
  void AdvanceReads();
  void StartRead(std::string context);
  Status NotLeaderError() const;

  // Constant after construction.
  const NodeId id_;
  const LogStorage* const storage_;
  const int election_tick_;
  const int heartbeat_tick_;
  const bool pre_vote_;
  const bool check_quorum_;
  const int lease_ticks_;
  const uint64_t max_size_per_msg_;
  const size_t max_inflight_msgs_;
  const uint64_t max_committed_size_per_ready_;
  const int snapshot_retry_ticks_;
  const uint64_t initial_applied_;
  const bool brand_new_;
  uint64_t rng_state_;

  // Persistent state (mirrored by HardState once the driver persists it).
  uint64_t term_ = 0;
  NodeId vote_ = kNoNode;

  // The log: storage holds [storage first, unstable_offset_-1] (unless a snapshot is
  // pending); unstable_ holds what the driver has not persisted yet, from unstable_offset_.
  std::optional<Snapshot> unstable_snapshot_;
  std::vector<Entry> unstable_;
  uint64_t unstable_offset_ = 1;
  uint64_t committed_ = 0;
  uint64_t applying_ = 0;  // highest index handed out in committed_entries
  uint64_t applied_ = 0;   // highest index the driver reported applied (Advance)

  // Configuration: base_conf_ is in force at base_index_ (the snapshot); conf_history_
  // holds the configuration entries after it that are still in the log.
  ConfState base_conf_;
  uint64_t base_index_ = 0;
  std::map<uint64_t, ConfState> conf_history_;
  ConfState conf_;

  // Volatile state.
  Role role_ = Role::kFollower;
  NodeId lead_ = kNoNode;
  uint64_t now_ = 1;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  // Ticks since this replica last heard from a leader of its term (or started). Votes
  // are refused while it is below election_tick_ (stickiness, see HasReadLease).
  int ticks_since_leader_ = 0;
  std::map<NodeId, bool> votes_;

  // Leader state.
  std::map<NodeId, Progress> progress_;  // every member except self
  uint64_t self_match_ = 0;               // the leader's own durable last index
  NodeId transferee_ = kNoNode;
  int transfer_elapsed_ = 0;
  bool lease_disabled_ = false;  // a transfer was started in this term
  uint64_t read_seq_ = 0;
  std::deque<PendingRead> reads_waiting_commit_;  // before the first commit in the term
  std::deque<PendingRead> reads_unconfirmed_;     // waiting for a heartbeat quorum
  std::deque<PendingRead> reads_confirmed_;       // waiting for apply

  // Outputs not yet handed to the driver.
  std::vector<Message> msgs_;
  SoftState prev_soft_;
  HardState prev_hard_;

  // What the outstanding Ready handed out, for Advance().
  bool ready_outstanding_ = false;
  uint64_t handed_last_index_ = 0;
  uint64_t handed_last_term_ = 0;
  uint64_t handed_snapshot_index_ = 0;
  uint64_t handed_applying_ = 0;

  mutable Status fatal_;
};

}  // namespace ring::replication
