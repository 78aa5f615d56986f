// replication/driver.h: the Driver, which runs every replication group of one node.
//
// One driver thread owns all of the node's RaftCores (one per shard) and their logs. Each
// cycle it:
//   1. takes the inputs queued since the last cycle: peer messages (Deliver), proposals
//      (Propose), and the ticks that fell due on the monotonic clock; a group's proposals
//      of one cycle become one kBatch log entry (DriverOptions::max_batch_bytes), so a busy group
//      costs one entry per cycle, not one per request;
//   2. collects the Ready of every group that has one and stages ALL of them into ONE
//      storage WriteBatch: snapshots, log entries, hard states, the state machine's
//      effects of the committed entries, and each group's applied index;
//   3. sends the leaders' appends (Ready::early_messages), then writes that batch once,
//      with ONE fsync (when any group needs one and the sync policy is `sync`): group
//      commit across shards and clients, overlapping the followers' fsyncs;
//   4. only then sends the rest of the cycle's messages, one Transport::Send per
//      destination node;
//   5. completes the proposals whose entries were applied, and Advance()s every core.
//
// THE PERSISTENCE RULE (see raft_core.h): no message except a leader's append leaves
// before the write that makes its entries and hard state durable has returned OK. If the
// write fails, nothing more is sent, nothing is advanced, and the same Readys are staged
// again on the next attempt (the disk may be full); their effects are deterministic, so
// staging twice is harmless.
//
// Applied entries and the applied index are written in the same batch as the log, so
// after a crash a group resumes exactly where its state machine is. The hard state is
// written only when its term or vote changes: the commit index is not needed for safety,
// and a restarted core takes it from the applied index.
//
// Reads: the driver publishes, per group, until when this node may serve reads locally
// (leader, read lease held, and its own term's first entry applied); ReadLeaseValid() is
// a lock-free check callers on other threads make per request.
//
// Snapshots: a leader asks the state machine for an image when a follower needs one; the
// image may take a while (StateMachine::Snapshot is asynchronous), and until it is ready
// Raft is told "unavailable" and retries. A follower that receives an image which refers
// to data elsewhere (NeedsFetch) has the state machine Fetch it first, and steps the
// snapshot into Raft only once it is local. Installing it: the image is recorded durably
// (a restore record), then Restore runs, then the log's snapshot mark, the applied index
// and the record's deletion are written together. A restore record found at start means a
// crash came in between: the restore is run again before the group starts.
//
// Groups: the static groups 0..group_count-1 exist from Start; AddGroup and RemoveGroup
// change the set while the driver runs (a shard moving to or away from this node, the
// metadata group). Each group has its own state machine. Lock-free readers (ReadLeaseValid,
// LeaderOf, HasGroup) look groups up in a table that is swapped whole when the set changes.
//
// Thread-safety: Deliver, Propose, ReadIndex, ReadLeaseValid, LeaderOf, HasGroup, AddGroup,
// RemoveGroup and Stop may be called from any thread. Callbacks run on the driver thread
// and must only hand off.
#pragma once

#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "replication/applied_table.h"
#include "replication/raft_core.h"
#include "replication/rocks_log_storage.h"
#include "replication/transport.h"
#include "storage/engine.h"

namespace ring::replication {

// One proposal's data as the state machine applies it: a kNormal entry's, or one of the
// commands of a kBatch entry (the proposals of one cycle to one group, in the order they
// were made).
struct Command {
  uint64_t index = 0;     // the entry's log index
  uint32_t position = 0;  // within a kBatch entry; 0 otherwise
  std::string_view data;  // never empty; valid during the Apply call
};

// The application side of a group: turns committed entries into storage writes.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies `commands` (committed, in log order) of `group`, adding their effects to
  // *batch; (*results)[i] is handed to the proposer of commands[i]. Deterministic: every
  // replica computes the same effects. Driver thread.
  virtual void Apply(uint64_t group, const std::vector<Command>& commands, storage::WriteBatch* batch,
                     std::vector<std::any>* results) = 0;
  // Makes an image of `group`'s state as of everything applied so far, for a follower
  // behind our compaction point, and passes it to `done` (any thread, possibly before
  // returning; Unavailable if it cannot be made now). Called on the driver thread, which
  // must capture the state before returning: the image is labelled with the applied index
  // of the moment of the call.
  virtual void Snapshot(uint64_t group, std::function<void(Result<std::string>)> done) = 0;
  // Whether a leader's `image` refers to data held elsewhere, which Fetch must bring here
  // before Raft may see the snapshot. Driver thread.
  virtual bool NeedsFetch(std::string_view /*image*/) const { return false; }
  // Brings the data of leader `image` here; done(local image) on any thread.
  virtual void Fetch(uint64_t /*group*/, std::string image, std::function<void(Result<std::string>)> done) {
    done(std::move(image));
  }
  // Replaces `group`'s state with `image` (Snapshot's, after Fetch). Effects go into *batch
  // or, when they cannot (ingesting files), happen at once: Restore must then be
  // repeatable with the same image, because the driver records the image durably before
  // calling it and calls it again on the next start if a crash came before the batch was
  // written. On failure nothing may have changed; Corruption if the image is malformed.
  virtual Status Restore(uint64_t group, std::string_view image, storage::WriteBatch* batch) = 0;
  // The batch holding a Restore of `image` is durable; what only the restore needed may go.
  virtual void Restored(uint64_t /*group*/, std::string_view /*image*/) {}
  // The batch holding the effects of the last Apply/Restore calls was not written; they
  // will be made again. A state machine that caches what it staged must forget it.
  virtual void OnWriteFailed() {}
};

// A group to host: its id, its state machine and, for a brand-new group, its founders.
struct GroupSpec {
  uint64_t id = 0;
  StateMachine* state_machine = nullptr;  // must outlive the group
  // The founding voters, used only when the group's log is empty: every founder
  // bootstraps the same configuration. Empty for a replica that joins an existing group;
  // it learns the configuration from the leader (a snapshot).
  std::vector<NodeId> founders;
  // With founders: the index their identical starting state stands for. 0 for an empty
  // group; 1 for a split's child, whose founders start from data that is in no log entry,
  // so a replica added later must take a snapshot rather than replay the log.
  uint64_t bootstrap_index = 0;
  // With founders, for one founder of a brand-new group (a cluster's first shards, a
  // split's child): campaign at once, and again on each tick until a leader is known (for
  // at most one election timeout), rather than after a randomized timeout, so the group
  // serves within a few round trips of its founders hosting it. One founder only: two
  // would split the vote.
  bool campaign = false;
};

struct DriverOptions {
  NodeId node_id = kNoNode;
  std::vector<NodeId> voters;  // the founding voters of every group (static membership)
  uint64_t group_count = 1;    // groups 0 .. group_count-1, founded by `voters`; more via AddGroup
  bool sync = true;            // fsync each cycle's write when a Ready needs it
  std::chrono::milliseconds tick_interval{50};
  int election_tick = 10;  // election timeout: 10..19 ticks
  int heartbeat_tick = 1;
  uint64_t seed = 0;  // mixed with node and group ids for election jitter
  // Log compaction. A log is kept only as long as some replica may still need it:
  //  - every time compact_bytes of entries were appended, a group's log is compacted up to
  //    what every replica has. A leader knows it (the lowest match of its followers, and
  //    its own applied index) and tells its followers in every append and heartbeat
  //    (Message::compact_floor), so that a new leader still has what the others lack. A
  //    follower that has not heard it keeps a tail of `tail` entries instead. In steady
  //    state a log is then at most about 2 x compact_bytes, dropped before its memtable
  //    is flushed, so the raftlog column family is rarely written to SST files.
  //  - once a log holds more than compact_after applied entries anyway (a follower is
  //    down or far behind), everything but the newest `retain` applied entries is
  //    dropped. A follower further behind than that catches up from a snapshot of the
  //    state machine instead.
  // While a snapshot is being sent (handed out within snapshot_hold), the log is not
  // compacted past it, so a follower that takes long to fetch a big one can continue from
  // the log.
  uint64_t compact_bytes = 64 << 10;
  uint64_t tail = 64;
  uint64_t compact_after = 20000;
  uint64_t retain = 10000;
  std::chrono::milliseconds snapshot_hold{60000};
  // An image is handed out for at most this long after it was made, then a fresh one is
  // made: a state machine may delete old images' data (SnapshotStore keeps an export at
  // least 10 minutes, and as long as it is being read).
  std::chrono::milliseconds snapshot_reuse{300000};
  // A cycle's proposals to one group share a kBatch entry of up to this many bytes of
  // data; a bigger proposal gets an entry of its own. 0 = one entry per proposal.
  uint64_t max_batch_bytes = 256 << 10;
};

// Counters for the metrics endpoint. Updated by the driver thread.
struct DriverStats {
  std::atomic<uint64_t> cycles{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> write_failures{0};
  std::atomic<uint64_t> entries_persisted{0};
  std::atomic<uint64_t> entries_applied{0};
  std::atomic<uint64_t> messages_sent{0};
  std::atomic<uint64_t> leader_changes{0};
  std::atomic<uint64_t> write_nanos{0};  // time spent in Engine::Write
  std::atomic<uint64_t> compactions{0};
  std::atomic<uint64_t> snapshots_sent{0};       // handed to Raft for a follower
  std::atomic<uint64_t> snapshots_made{0};       // images the state machines made
  std::atomic<uint64_t> snapshots_fetched{0};    // leader images made local (Fetch)
  std::atomic<uint64_t> snapshots_installed{0};
};

// A group's state for status pages, copied under the driver's lock.
struct GroupStatus {
  uint64_t group = 0;
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  uint64_t term = 0;
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t first_index = 0;        // the log's first entry (everything before is compacted)
  uint64_t last_index = 0;
  ConfState conf;                  // the configuration in force (newest in the log)
  std::vector<PeerStatus> peers;   // the leader's view of every other replica; empty on followers
};

// The images of restores a crash interrupted (see "Snapshots" above), for cleanup code
// that must keep what they refer to.
Result<std::vector<std::string>> PendingRestoreImages(storage::Engine* engine);

class Driver {
 public:
  using ProposeDone = std::function<void(Status, std::any result)>;

  // Opens (or bootstraps, on first start) every group's log from `engine` and starts the
  // driver thread. `engine`, `transport` and `state_machine` must outlive the driver.
  static Result<std::unique_ptr<Driver>> Start(const DriverOptions& options, storage::Engine* engine,
                                               Transport* transport, StateMachine* state_machine);
  ~Driver();  // Stop()

  // Queues messages received from node `from`.
  void Deliver(std::vector<GroupMessage> msgs);

  // Proposes `data` to `group`. `done` runs once on the driver thread: OK with the state
  // machine's result once applied; NotLeader (message names the leader id, see LeaderOf)
  // if this node does not lead the group or loses leadership before the entry commits;
  // Busy during a leadership transfer; Unavailable once stopped.
  void Propose(uint64_t group, std::string data, ProposeDone done);

  // Proposes one membership change of `group` (see raft_core.h: one server at a time).
  // `done` runs on the driver thread: OK once the change is applied; NotLeader, Busy
  // (a previous change is uncommitted, or a transfer runs) or InvalidArgument (it does
  // not apply to the current configuration) as RaftCore::ProposeConfChange says.
  void ProposeConfChange(uint64_t group, ConfChange change, ProposeDone done);

  // True if a read of `group` may be served from this node's state right now.
  bool ReadLeaseValid(uint64_t group) const;

  // The fallback when the lease is not held: confirms leadership with a heartbeat round
  // (ReadIndex) and runs `done` (driver thread) once this node has applied everything
  // committed before the call, so a read of local state made in `done` is linearizable.
  // NotLeader if this node does not lead `group` or loses leadership first.
  void ReadIndex(uint64_t group, std::function<void(Status)> done);
  // The leader this node last heard of for `group` (kNoNode if unknown).
  NodeId LeaderOf(uint64_t group) const;

  // Asks the group's leader (if it is this node) to hand leadership to `target`.
  void TransferLeadership(uint64_t group, NodeId target);

  // Hosts another group from the next cycle on. `done` runs on the driver thread: OK;
  // InvalidArgument if the id is taken or the spec has no state machine; or the storage
  // error that kept its log from opening.
  void AddGroup(GroupSpec spec, std::function<void(Status)> done);
  // Stops hosting `group`: its pending proposals and reads fail with Unavailable, and its
  // log (entries, hard state, snapshot record, applied index) is deleted. The state
  // machine's data is the caller's to delete. `done` as for AddGroup (InvalidArgument if
  // the group is not hosted).
  void RemoveGroup(uint64_t group, std::function<void(Status)> done);
  // Whether `group` is hosted here (thread-safe).
  bool HasGroup(uint64_t group) const { return Lookup(group) != nullptr; }

  // Every hosted group's state, as of the last tick (or change of the group set).
  std::vector<GroupStatus> Groups() const;

  // Waits until every hosted group has a leader this node knows of, up to `timeout`; with
  // `local_reads`, until this node can serve every group's reads itself. True if so.
  bool WaitForLeaders(std::chrono::milliseconds timeout, bool local_reads = false) const;
  const DriverStats& stats() const { return stats_; }

  // Fails pending proposals with Unavailable and joins the thread. Idempotent.
  void Stop();

 private:
  struct Group;
  struct Proposal {
    uint64_t group = 0;
    std::string data;
    ProposeDone done;
    std::optional<ConfChange> conf_change;  // a membership change instead of data
  };
  Driver(const DriverOptions& options, storage::Engine* engine, Transport* transport, StateMachine* sm);
  void Loop();
  // Queues a proposal for the driver thread (or fails it: group not hosted, stopping).
  void Enqueue(Proposal p);
  // Moves *item onto `queue` for the driver thread; false (item untouched) once stopping.
  template <typename T>
  bool Queue(std::vector<T>* queue, T* item);
  // One pass over every group (see above). True if a group it advanced has committed
  // entries left to apply (nothing else would wake the driver for them).
  bool Cycle(std::vector<GroupMessage>* inbox, std::vector<Proposal>* proposals, int ticks);
  void StartReads(std::vector<std::pair<uint64_t, std::function<void(Status)>>>* reads);
  void PublishLeases(std::chrono::steady_clock::time_point tick_time);
  void PublishStatus();
  void Send(std::map<NodeId, std::vector<GroupMessage>>* outbox);
  // Proposes the cycle's data proposals to `g`, batched (see step 1 above).
  void ProposeBatched(Group& g, std::vector<Proposal*>* props);
  // Records `g`'s committed entries (of its held Ready) as applied, answering their
  // proposers with `results` (the state machine's, for the commands in `applied`).
  void CompleteApplied(Group& g, const std::vector<Command>& applied, std::vector<std::any>* results);
  // Opens a group's log, staging a bootstrap into *batch when it is brand new; the core
  // is created by StartGroup once that batch is written.
  // The group's applied index, if opening changes it, goes into *applied (staged with batch).
  Result<std::unique_ptr<Group>> OpenGroup(const GroupSpec& spec, storage::WriteBatch* batch,
                                           AppliedTable::Changes* applied);
  Status StartGroup(Group& g);
  // GroupSpec::campaign: campaigns while the group has no leader and ticks are left.
  void CampaignEagerly(Group& g);
  // Where the log of `g` may be compacted to now (DriverOptions, "Log compaction"), or 0.
  // A leader raises the floor it tells followers here, so only as often as it compacts.
  uint64_t CompactionPoint(Group& g);
  void AddGroups(std::vector<std::pair<GroupSpec, std::function<void(Status)>>>* adds);
  // The snapshot a follower of `g` needs: the ready image, or Unavailable while one is made.
  Result<Snapshot> SnapshotFor(Group& g);
  // Hands a leader snapshot message to the state machine's Fetch; false if it needs none.
  bool MaybeFetch(Group& g, const Message& m);
  struct SnapshotMade {
    uint64_t group = 0;
    SnapshotMeta meta;
    Result<std::string> image;
  };
  struct SnapshotFetched {
    uint64_t group = 0;
    StateMachine* sm = nullptr;
    std::string remote;  // the leader's image
    Message msg;         // the leader's message, stepped once the image is local
    Result<std::string> local;
  };
  void TakeSnapshots(std::vector<SnapshotMade>* made, std::vector<SnapshotFetched>* fetched);
  void RemoveGroups(std::vector<std::pair<uint64_t, std::function<void(Status)>>>* removes);

  // What other threads may read about a group without a lock.
  struct Published {
    std::atomic<int64_t> lease_deadline_ns{0};  // steady ns; 0 = no lease
    std::atomic<NodeId> leader{kNoNode};
  };
  using PublishedTable = std::unordered_map<uint64_t, std::shared_ptr<Published>>;
  std::shared_ptr<Published> Lookup(uint64_t group) const;
  // Replaces the published table after groups were added or removed (driver thread).
  void Republish();

  // Constant after construction.
  const DriverOptions options_;
  storage::Engine* const engine_;
  Transport* const transport_;
  StateMachine* const state_machine_;  // of the static groups

  // Driver thread only (and Start, before the thread runs).
  std::map<uint64_t, std::unique_ptr<Group>> groups_;
  AppliedTable applied_;  // every group's durable applied index
  std::chrono::steady_clock::time_point last_tick_time_;
  std::chrono::steady_clock::time_point last_failure_log_{};
  uint64_t next_read_ctx_ = 1;

  // Swapped whole when the set of groups changes; each entry is updated in place.
  std::atomic<std::shared_ptr<const PublishedTable>> published_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GroupMessage> inbox_;   // guarded by mu_
  std::vector<Proposal> proposals_;   // guarded by mu_
  std::vector<std::pair<uint64_t, NodeId>> transfers_;  // guarded by mu_
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> reads_;  // guarded by mu_
  std::vector<std::pair<GroupSpec, std::function<void(Status)>>> adds_;  // guarded by mu_
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> removes_;  // guarded by mu_
  std::vector<SnapshotMade> snapshots_made_;        // guarded by mu_
  std::vector<SnapshotFetched> snapshots_fetched_;  // guarded by mu_
  std::vector<GroupStatus> status_;   // guarded by mu_, refreshed each tick
  bool stopping_ = false;             // guarded by mu_

  DriverStats stats_;
  std::thread thread_;
};

}  // namespace ring::replication
