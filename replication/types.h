// replication/types.h: the values that flow in and out of the replication core
// (replication/raft_core.h): log entries, persistent state, configurations, snapshots and
// peer messages.
//
// These are plain values with no behaviour beyond encoding and printing. The wire format
// (proto/) and the on-disk format (storage/) are the driver's business; the core only
// ever sees these structs.
//
// Thread-safety: plain values; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ring::replication {

// A replica's id within its group. Ids are assigned by the cluster map and never reused
// for another replica of the same group; 0 means "nobody".
using NodeId = uint64_t;
inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  // Application data. An entry with empty data is the no-op a new leader appends to
  // commit everything before it (Raft §8); the application skips it.
  kNormal = 0,
  // A membership change: data is an encoded ConfChangeEntry (EncodeConfChangeEntry).
  kConfChange = 1,
  // Several application commands, proposed together: the driver puts all of a cycle's
  // proposals to one group in one entry, so the log, the peers and the disk handle one
  // entry where they would handle many. data is their AppendToBatch encoding. The core
  // treats it exactly like kNormal.
  kBatch = 2,
};

// An entry's data: immutable, and shared by every copy of the entry. An entry is copied
// on its way through a node (the core's unstable log, a Ready, the log's staging and
// cache, committed entries, peer messages); this makes each copy a reference count.
class Payload {
 public:
  Payload() = default;
  Payload(std::string s)  // NOLINT: implicit, so an Entry is built from a string
      : p_(s.empty() ? nullptr : std::make_shared<const std::string>(std::move(s))) {}
  Payload(std::string_view s) : Payload(std::string(s)) {}  // NOLINT
  Payload(const char* s) : Payload(std::string(s)) {}       // NOLINT

  std::string_view view() const { return p_ ? std::string_view(*p_) : std::string_view(); }
  std::string str() const { return std::string(view()); }
  operator std::string_view() const { return view(); }  // NOLINT
  const char* data() const { return view().data(); }
  size_t size() const { return p_ ? p_->size() : 0; }
  bool empty() const { return size() == 0; }
  char operator[](size_t i) const { return (*p_)[i]; }
  friend bool operator==(const Payload& a, const Payload& b) { return a.view() == b.view(); }

 private:
  std::shared_ptr<const std::string> p_;
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  Payload data;

  // Approximate size, used for the per-message and per-Ready byte caps.
  uint64_t ByteSize() const { return data.size() + 24; }
  friend bool operator==(const Entry&, const Entry&) = default;
};

// The state that must be on stable storage before the core's messages are sent: the
// current term, the vote cast in it, and the commit index (persisting the commit index
// is not needed for safety, but it lets a restarted node re-apply without a round trip).
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;
  friend bool operator==(const HardState&, const HardState&) = default;
};

// A group's membership. Voters elect the leader and form commit quorums; learners only
// receive the log. Both lists are sorted and disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  bool IsMember(NodeId id) const { return IsVoter(id) || IsLearner(id); }
  friend bool operator==(const ConfState&, const ConfState&) = default;
};

// A membership change, applied one server at a time (see raft_core.h for why).
enum class ConfChangeType : uint8_t {
  kAddVoter = 0,    // add a new voter, or promote an existing learner
  kAddLearner = 1,  // add a new learner (a voter cannot be demoted in one step)
  kRemoveNode = 2,  // remove a voter or a learner, possibly the leader itself
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node = kNoNode;
  friend bool operator==(const ConfChange&, const ConfChange&) = default;
};

// What a kConfChange entry carries: the change and the whole configuration that results.
// Carrying the full result means any replica can learn the configuration from the newest
// configuration entry in its log alone, even one that joined after earlier changes were
// compacted or one that never saw the group's bootstrap configuration.
struct ConfChangeEntry {
  ConfChange change;
  ConfState result;
  friend bool operator==(const ConfChangeEntry&, const ConfChangeEntry&) = default;
};

// A kBatch entry's data: each command as a frame (common/frame.h: a 4-byte big-endian
// length, then the bytes).
void AppendToBatch(std::string* batch, std::string_view command);
// The commands of a kBatch entry's data, as views into it; Corruption if it is malformed.
Result<std::vector<std::string_view>> DecodeBatch(std::string_view data);

std::string EncodeConfChangeEntry(const ConfChangeEntry& cc);
// Corruption if `data` is not a well-formed encoding.
Result<ConfChangeEntry> DecodeConfChangeEntry(std::string_view data);

// Returns the configuration after `cc`, or InvalidArgument if the change makes no sense
// for `conf` (adding an existing voter, removing a non-member, demoting a voter, removing
// the last voter).
Result<ConfState> ApplyConfChange(const ConfState& conf, const ConfChange& cc);

struct SnapshotMeta {
  uint64_t index = 0;  // the last log index the snapshot covers
  uint64_t term = 0;   // that entry's term
  ConfState conf;      // the configuration as of `index`
  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

struct Snapshot {
  SnapshotMeta meta;
  // The state machine's image: opaque to the core (for ringd, a description of the SST
  // files of the shard's range plus the dedup table).
  std::string data;

  bool empty() const { return meta.index == 0; }
};

enum class MessageType : uint8_t {
  kPreVote = 0,       // "would you vote for me at term `term`?" (does not change terms)
  kPreVoteResp = 1,
  kVote = 2,          // RequestVote
  kVoteResp = 3,
  kAppend = 4,        // AppendEntries with entries after (index, log_term)
  kAppendResp = 5,
  kHeartbeat = 6,     // AppendEntries without entries or a consistency check
  kHeartbeatResp = 7,
  kSnapshot = 8,      // InstallSnapshot
  kTimeoutNow = 9,    // leadership transfer: "campaign now, ignoring your election timer"
};

const char* MessageTypeName(MessageType type);

// One peer message. Fields that a type does not use stay at their defaults.
struct Message {
  MessageType type = MessageType::kHeartbeat;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  uint64_t term = 0;

  // kAppend: the entry preceding `entries`. k(Pre)Vote: the candidate's last entry.
  // kAppendResp: the highest index known to match (accept) or the rejected `index`.
  uint64_t log_term = 0;
  uint64_t index = 0;
  std::vector<Entry> entries;
  // kAppend/kHeartbeat: the leader's commit index (for heartbeats, capped at what the
  // follower is known to have).
  uint64_t commit = 0;

  // Responses: the request was refused.
  bool reject = false;
  // kAppendResp rejections: the follower's best guess of where the logs may match
  // (an index no later than `index` whose term is at most the leader's `log_term`),
  // with its term in `log_term`. Lets the leader skip a whole term per round trip.
  uint64_t reject_hint = 0;

  std::shared_ptr<const Snapshot> snapshot;  // kSnapshot

  // kAppend/kHeartbeat: the leader's logical clock when it sent the message, echoed in
  // the response. The leader dates a follower's acknowledgement by when the request was
  // sent, never by when the reply arrived, which is what makes the read lease safe.
  uint64_t tick = 0;
  // kHeartbeat: the newest ReadIndex request the leader had registered when it sent
  // this heartbeat, echoed in the response (see RaftCore::ReadIndex).
  uint64_t read_seq = 0;
  // kVote/kPreVote: a campaign started by a leadership transfer (kTimeoutNow), which
  // voters honour even while they still hear from the current leader.
  bool transfer = false;
  // kAppend/kHeartbeat: every replica of the configuration the leader knew when it
  // computed this had its log up to here, so a follower need not keep those entries for
  // anyone (log compaction). Set and read by the driver, not by RaftCore; unset = the
  // leader does not know (0 is a floor: keep everything).
  std::optional<uint64_t> compact_floor;
};

// One-line renderings for traces and test expectations, e.g.
// "1->2 Append t3 [i5 t2] commit=4 entries=[6/3 7/3]".
std::string EntryToString(const Entry& e);
std::string MessageToString(const Message& m);
std::string ConfStateToString(const ConfState& c);

}  // namespace ring::replication
