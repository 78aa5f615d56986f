#include "replication/raft_core.h"

#include <algorithm>
#include <array>
#include <climits>
#include <utility>

namespace ring::replication {

namespace {

// splitmix64: tiny, fast and fully specified, so a seed replays the same timeouts on
// every platform (std:: distributions are implementation-defined).
uint64_t NextRandom(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kConfScanBytes = 4 << 20;

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "unknown";
}

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe: return "probe";
    case ProgressState::kReplicate: return "replicate";
    case ProgressState::kSnapshot: return "snapshot";
  }
  return "unknown";
}

Status Config::Validate() const {
  if (id == kNoNode) return Status::InvalidArgument("raft config: replica id 0 is reserved");
  if (storage == nullptr) return Status::InvalidArgument("raft config: no storage");
  if (heartbeat_tick < 1) return Status::InvalidArgument("raft config: heartbeat_tick < 1");
  if (election_tick <= heartbeat_tick) {
    return Status::InvalidArgument("raft config: election_tick must exceed heartbeat_tick");
  }
  if (lease_margin_ticks < 1 || lease_margin_ticks >= election_tick) {
    return Status::InvalidArgument(
        "raft config: lease_margin_ticks must be in [1, election_tick)");
  }
  if (max_inflight_msgs < 1) return Status::InvalidArgument("raft config: max_inflight_msgs < 1");
  if (snapshot_retry_ticks < 0) {
    return Status::InvalidArgument("raft config: snapshot_retry_ticks < 0");
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------------------
// Construction

RaftCore::RaftCore(const Config& c)
    : id_(c.id),
      storage_(c.storage),
      election_tick_(c.election_tick),
      heartbeat_tick_(c.heartbeat_tick),
      pre_vote_(c.pre_vote),
      check_quorum_(c.check_quorum),
      lease_ticks_(c.election_tick - c.lease_margin_ticks),
      max_size_per_msg_(c.max_size_per_msg),
      max_inflight_msgs_(c.max_inflight_msgs),
      max_committed_size_per_ready_(c.max_committed_size_per_ready),
      snapshot_retry_ticks_(c.snapshot_retry_ticks),
      initial_applied_(c.applied),
      brand_new_(c.brand_new),
      rng_state_(c.seed ^ (c.id * 0xD6E8FEB86659FD93ull)) {}

RaftCore::~RaftCore() = default;

Result<std::unique_ptr<RaftCore>> RaftCore::Create(const Config& config) {
  RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<RaftCore> core(new RaftCore(config));
  RETURN_IF_ERROR(core->Init());
  return Result<std::unique_ptr<RaftCore>>(std::move(core));
}

Status RaftCore::Init() {
  ASSIGN_OR_RETURN(StoredState st, storage_->InitialState());
  const uint64_t first = storage_->FirstIndex();
  const uint64_t last = storage_->LastIndex();
  base_index_ = st.conf_index == 0 ? first - 1 : st.conf_index;
  if (base_index_ + 1 < first || base_index_ > last) {
    return Status::Corruption("raft: stored configuration index " + std::to_string(base_index_) +
                              " is outside the log [" + std::to_string(first) + ", " +
                              std::to_string(last) + "]");
  }
  base_conf_ = st.conf;
  // Rebuild the configuration history from the configuration entries after the snapshot.
  for (uint64_t lo = base_index_ + 1; lo <= last;) {
    ASSIGN_OR_RETURN(std::vector<Entry> ents, storage_->Entries(lo, last + 1, kConfScanBytes));
    for (const Entry& e : ents) {
      if (e.type != EntryType::kConfChange) continue;
      ASSIGN_OR_RETURN(ConfChangeEntry cc, DecodeConfChangeEntry(e.data));
      conf_history_[e.index] = std::move(cc.result);
    }
    lo += ents.size();
  }
  conf_ = conf_history_.empty() ? base_conf_ : conf_history_.rbegin()->second;

  const HardState& hs = st.hard_state;
  if (hs.commit > last) {
    return Status::Corruption("raft: stored commit index " + std::to_string(hs.commit) +
                              " is past the last stored index " + std::to_string(last));
  }
  term_ = hs.term;
  vote_ = hs.vote;
  unstable_offset_ = last + 1;
  const uint64_t applied = initial_applied_ == 0 ? base_index_ : initial_applied_;
  if (applied < base_index_ || applied > last) {
    return Status::InvalidArgument("raft config: applied index " + std::to_string(applied) +
                                   " is outside the stored log [" + std::to_string(base_index_) + ", " +
                                   std::to_string(last) + "]");
  }
  // Only committed entries are ever applied, so the applied index is a commit index too:
  // a driver may persist the commit index lazily (it is not needed for safety).
  committed_ = std::max({hs.commit, base_index_, applied});
  applied_ = applying_ = applied;
  prev_hard_ = hs;
  BecomeFollower(term_, kNoNode);
  // A restarted replica may have acknowledged a leader just before it went down, and that
  // leader may be counting on it for its lease: behave as if it just heard from a leader.
  // A brand-new replica never acknowledged one.
  ticks_since_leader_ = brand_new_ ? election_tick_ : 0;
  return Status::OK();
}

// ---------------------------------------------------------------------------------------
// The log: storage plus the unstable tail

uint64_t RaftCore::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->meta.index + 1;
  return storage_->FirstIndex();
}

uint64_t RaftCore::LastIndex() const {
  if (!unstable_.empty()) return unstable_offset_ + unstable_.size() - 1;
  return unstable_offset_ - 1;
}

Result<uint64_t> RaftCore::Term(uint64_t index) const {
  const uint64_t last = LastIndex();
  if (index > last) {
    return Status::Unavailable("term of " + std::to_string(index) + " requested, last index is " +
                               std::to_string(last));
  }
  if (!unstable_.empty() && index >= unstable_offset_) return unstable_[index - unstable_offset_].term;
  if (unstable_snapshot_) {
    const SnapshotMeta& meta = unstable_snapshot_->meta;
    if (index == meta.index) return meta.term;
    return CompactedError(index, meta.index + 1);
  }
  return storage_->Term(index);
}

uint64_t RaftCore::TermOrZero(uint64_t index) const {
  Result<uint64_t> t = Term(index);
  if (t.ok()) return *t;
  if (!IsCompacted(t.status()) && !IsUnavailable(t.status())) {
    Fail(t.status());
  }
  return 0;
}

uint64_t RaftCore::LastTerm() const { return TermOrZero(LastIndex()); }

bool RaftCore::MatchTerm(uint64_t index, uint64_t term) const {
  Result<uint64_t> t = Term(index);
  return t.ok() && *t == term;
}

// Raft §5.4.1: a candidate's log is at least as up-to-date as ours if its last term is
// higher, or equal with a last index at least ours.
bool RaftCore::IsUpToDate(uint64_t last_term, uint64_t last_index) const {
  const uint64_t my_term = LastTerm();
  return last_term > my_term || (last_term == my_term && last_index >= LastIndex());
}

Result<std::vector<Entry>> RaftCore::Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  if (lo < FirstIndex()) return CompactedError(lo, FirstIndex());
  if (hi > LastIndex() + 1) {
    return Status::Unavailable("slice up to " + std::to_string(hi - 1) + " past last index " +
                               std::to_string(LastIndex()));
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  if (lo < unstable_offset_) {
    const uint64_t stable_hi = std::min(hi, unstable_offset_);
    ASSIGN_OR_RETURN(out, storage_->Entries(lo, stable_hi, max_bytes));
    for (const Entry& e : out) bytes += e.ByteSize();
    if (out.size() < stable_hi - lo) return out;  // the byte cap stopped the storage read
  }
  for (uint64_t i = std::max(lo, unstable_offset_); i < hi; i++) {
    const Entry& e = unstable_[i - unstable_offset_];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

// The largest index <= `index` whose term is <= `term` (or where our log stops being
// readable). Used on both sides of a rejected append to skip whole terms at once.
uint64_t RaftCore::FindConflictByTerm(uint64_t index, uint64_t term) const {
  if (index > LastIndex()) return index;
  while (true) {
    Result<uint64_t> t = Term(index);
    if (!t.ok() || *t <= term || index == 0) return index;
    index--;
  }
}

void RaftCore::TruncateAndAppend(std::vector<Entry> entries) {
  if (entries.empty()) return;
  const uint64_t first = entries.front().index;
  const uint64_t end = unstable_offset_ + unstable_.size();
  if (first == end) {
    unstable_.insert(unstable_.end(), entries.begin(), entries.end());
  } else if (first <= unstable_offset_) {
    // Replaces part of the persisted log; the driver's append truncates it there.
    unstable_offset_ = first;
    unstable_ = entries;
  } else {
    unstable_.resize(first - unstable_offset_);
    unstable_.insert(unstable_.end(), entries.begin(), entries.end());
  }
  OnEntriesAppended(entries);
}

void RaftCore::StableTo(uint64_t index, uint64_t term) {
  if (unstable_.empty() || index < unstable_offset_ || index > LastIndex()) return;
  // If the entry was replaced after the Ready was handed out, the replacement is still
  // unpersisted and goes out in the next Ready.
  if (unstable_[index - unstable_offset_].term != term) return;
  unstable_.erase(unstable_.begin(),
                  unstable_.begin() + static_cast<std::ptrdiff_t>(index - unstable_offset_ + 1));
  unstable_offset_ = index + 1;
}

uint64_t RaftCore::StableLastIndex() const {
  if (unstable_snapshot_) return 0;
  return unstable_offset_ - 1;
}

void RaftCore::CommitTo(uint64_t index) {
  if (index > committed_) committed_ = std::min(index, LastIndex());
}

bool RaftCore::Restore(const Snapshot& snap) {
  const SnapshotMeta& meta = snap.meta;
  if (meta.index <= committed_) return false;
  if (MatchTerm(meta.index, meta.term)) {
    // We already hold the snapshot's last entry: just learn that it is committed.
    CommitTo(meta.index);
    return false;
  }
  unstable_snapshot_ = snap;
  unstable_.clear();
  unstable_offset_ = meta.index + 1;
  committed_ = meta.index;
  applying_ = std::max(applying_, meta.index);
  base_index_ = meta.index;
  base_conf_ = meta.conf;
  conf_history_.clear();
  RecomputeConf();
  return true;
}

void RaftCore::Fail(Status s) const {
  if (fatal_.ok()) fatal_ = s.WithContext("raft node " + std::to_string(id_) + " stopped");
}

// ---------------------------------------------------------------------------------------
// Configuration

void RaftCore::OnEntriesAppended(const std::vector<Entry>& entries) {
  const uint64_t first = entries.front().index;
  bool changed = conf_history_.lower_bound(first) != conf_history_.end();
  conf_history_.erase(conf_history_.lower_bound(first), conf_history_.end());
  for (const Entry& e : entries) {
    if (e.type != EntryType::kConfChange) continue;
    Result<ConfChangeEntry> cc = DecodeConfChangeEntry(e.data);
    if (!cc.ok()) {
      Fail(cc.status().WithContext("entry " + std::to_string(e.index)));
      return;
    }
    conf_history_[e.index] = std::move(cc->result);
    changed = true;
  }
  if (changed) RecomputeConf();
}

void RaftCore::RecomputeConf() {
  conf_ = conf_history_.empty() ? base_conf_ : conf_history_.rbegin()->second;
  if (role_ == Role::kLeader) ApplyConfToProgress();
}

void RaftCore::ApplyConfToProgress() {
  auto track = [&](NodeId id, bool learner) {
    if (id == id_) return;
    auto [it, inserted] = progress_.try_emplace(id);
    Progress& pr = it->second;
    if (inserted) {
      pr.next = std::max<uint64_t>(LastIndex(), 1);
      pr.recent_active = true;  // give a new member a full timeout before CheckQuorum
    }
    pr.learner = learner;
  };
  for (NodeId v : conf_.voters) track(v, false);
  for (NodeId l : conf_.learners) track(l, true);
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = conf_.IsMember(it->first) ? std::next(it) : progress_.erase(it);
  }
  if (transferee_ != kNoNode && !conf_.IsVoter(transferee_)) AbortTransfer();
}

uint64_t RaftCore::LastConfIndex() const {
  return conf_history_.empty() ? 0 : conf_history_.rbegin()->first;
}

// A voter of the newest configuration may campaign, and so may a replica whose removal
// is not known to be committed (thesis §4.2.2): until the removal commits it may still be
// needed, e.g. when it is the only one holding that removal and the remaining voters
// cannot win without its vote. It never counts its own vote (Poll only counts voters of
// the newest configuration), and if it wins it leads only until the removal commits.
bool RaftCore::Promotable() const {
  if (!fatal_.ok()) return false;
  if (conf_.IsVoter(id_)) return true;
  if (LastConfIndex() <= committed_) return false;
  Result<ConfState> at_commit = ConfStateAt(committed_);
  return at_commit.ok() && at_commit->IsVoter(id_);
}

Result<ConfState> RaftCore::ConfStateAt(uint64_t index) const {
  if (index < base_index_) return CompactedError(index, base_index_ + 1);
  if (index > LastIndex()) {
    return Status::Unavailable("configuration at " + std::to_string(index) +
                               " requested, last index is " + std::to_string(LastIndex()));
  }
  auto it = conf_history_.upper_bound(index);
  if (it == conf_history_.begin()) return base_conf_;
  return std::prev(it)->second;
}

// ---------------------------------------------------------------------------------------
// Roles

void RaftCore::Reset(uint64_t term) {
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  randomized_election_timeout_ =
      election_tick_ + static_cast<int>(NextRandom(&rng_state_) % static_cast<uint64_t>(election_tick_));
  votes_.clear();
  progress_.clear();
  transferee_ = kNoNode;
  transfer_elapsed_ = 0;
  lease_disabled_ = false;
  // Unconfirmed reads die with the leadership; confirmed ones stay valid and are still
  // released once applied.
  reads_waiting_commit_.clear();
  reads_unconfirmed_.clear();
}

void RaftCore::BecomeFollower(uint64_t term, NodeId lead) {
  const bool was_leader = role_ == Role::kLeader;
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
  // A deposed leader is nobody's lease holder; let it vote right away.
  if (was_leader) ticks_since_leader_ = election_tick_;
}

void RaftCore::BecomePreCandidate() {
  // PreVote does not touch the term or the vote: a failed pre-campaign leaves no trace.
  role_ = Role::kPreCandidate;
  lead_ = kNoNode;
  votes_.clear();
  election_elapsed_ = 0;
  randomized_election_timeout_ =
      election_tick_ + static_cast<int>(NextRandom(&rng_state_) % static_cast<uint64_t>(election_tick_));
}

void RaftCore::BecomeCandidate() {
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void RaftCore::BecomeLeader() {
  Reset(term_);
  role_ = Role::kLeader;
  lead_ = id_;
  ticks_since_leader_ = 0;
  self_match_ = StableLastIndex();
  ApplyConfToProgress();
  for (auto& [id, pr] : progress_) {
    pr.next = LastIndex() + 1;
    pr.recent_active = false;
  }
  // Raft §8: a leader commits entries of earlier terms only through an entry of its own
  // term, so it appends an empty one right away.
  AppendLocal(Entry{});
}

void RaftCore::Hup(bool transfer) {
  if (role_ == Role::kLeader || !Promotable()) return;
  CampaignFor(pre_vote_ && !transfer, transfer);
}

void RaftCore::CampaignFor(bool pre, bool transfer) {
  uint64_t vote_term;
  if (pre) {
    BecomePreCandidate();
    vote_term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // A single voter wins at once.
    if (pre) {
      CampaignFor(false, transfer);
    } else {
      BecomeLeader();
      BroadcastAppend();
    }
    return;
  }
  const uint64_t last_index = LastIndex();
  const uint64_t last_term = LastTerm();
  for (NodeId v : conf_.voters) {
    if (v == id_) continue;
    Message m;
    m.type = pre ? MessageType::kPreVote : MessageType::kVote;
    m.to = v;
    m.term = vote_term;
    m.index = last_index;
    m.log_term = last_term;
    m.transfer = transfer;
    Send(std::move(m));
  }
}

RaftCore::VoteResult RaftCore::Poll(NodeId from, bool granted) {
  votes_.try_emplace(from, granted);
  size_t yes = 0, no = 0;
  for (NodeId v : conf_.voters) {
    auto it = votes_.find(v);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  const size_t n = conf_.voters.size();
  const size_t quorum = n / 2 + 1;
  if (yes >= quorum) return VoteResult::kWon;
  if (n - no < quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

// ---------------------------------------------------------------------------------------
// Inputs

void RaftCore::Tick() {
  if (!fatal_.ok()) return;
  now_++;
  if (role_ != Role::kLeader) {
    election_elapsed_++;
    if (ticks_since_leader_ < INT_MAX) ticks_since_leader_++;
    if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
      election_elapsed_ = 0;
      Hup(false);
    }
    return;
  }

  heartbeat_elapsed_++;
  election_elapsed_++;
  ticks_since_leader_ = 0;
  for (auto& [id, pr] : progress_) {
    if (pr.state != ProgressState::kSnapshot || snapshot_retry_ticks_ == 0) continue;
    if (++pr.snapshot_elapsed >= snapshot_retry_ticks_) {
      // Neither the snapshot nor a reply arrived in time: probe again, which resends it
      // if the follower still needs it.
      pr.state = ProgressState::kProbe;
      pr.next = pr.match + 1;
      pr.probe_sent = false;
      pr.pending_snapshot = 0;
    }
  }
  if (transferee_ != kNoNode && ++transfer_elapsed_ >= election_tick_) AbortTransfer();
  if (election_elapsed_ >= election_tick_) {
    election_elapsed_ = 0;
    if (check_quorum_ && !QuorumActive()) {
      BecomeFollower(term_, kNoNode);
      return;
    }
  }
  if (heartbeat_elapsed_ >= heartbeat_tick_) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

Status RaftCore::Step(const Message& m) {
  if (!fatal_.ok()) return fatal_;
  if (m.to != id_) {
    return Status::InvalidArgument("raft node " + std::to_string(id_) +
                                   " got a message for node " + std::to_string(m.to));
  }
  if (m.from == kNoNode || m.from == id_) {
    return Status::InvalidArgument("raft node " + std::to_string(id_) +
                                   " got a message from node " + std::to_string(m.from));
  }
  RETURN_IF_ERROR(ValidateMessage(m));

  if (m.term > term_) {
    if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
      // Leader stickiness (thesis §4.2.3): while we hear from a leader, a campaign is
      // from a replica that merely lost touch with it; ignoring it keeps the leader's
      // lease valid. A transfer's campaign was asked for by the leader itself.
      const bool in_lease = check_quorum_ && !m.transfer &&
                            (role_ == Role::kLeader || ticks_since_leader_ < election_tick_);
      if (in_lease) return Status::OK();
    }
    if (m.type == MessageType::kPreVote) {
      // Never change terms for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the term we would campaign in, not a newer leader's.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (e.g. back from a partition) would otherwise never learn that it
      // was replaced, because PreVote keeps our term from reaching it through votes.
      Message r;
      r.type = MessageType::kAppendResp;
      r.to = m.from;
      Send(std::move(r));
    } else if (m.type == MessageType::kPreVote || m.type == MessageType::kVote) {
      // Reject with our term (Raft §5.1), so that the candidate catches up. Without it a
      // voter with a stale configuration and a higher term, which never sends to the
      // candidate, could keep it from ever learning the term it needs.
      Message r;
      r.type = m.type == MessageType::kPreVote ? MessageType::kPreVoteResp : MessageType::kVoteResp;
      r.to = m.from;
      r.reject = true;
      Send(std::move(r));
    }
    return Status::OK();
  }

  if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
    HandleVoteRequest(m);
    return fatal_;
  }
  switch (role_) {
    case Role::kLeader: StepLeader(m); break;
    case Role::kPreCandidate:
    case Role::kCandidate: StepCandidate(m); break;
    case Role::kFollower: StepFollower(m); break;
  }
  return fatal_;
}

// Messages come off the network: a malformed one is refused before it can break the
// log's invariants (consecutive indexes, terms that never decrease).
Status RaftCore::ValidateMessage(const Message& m) const {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("raft node " + std::to_string(id_) + ": " +
                                   MessageTypeName(m.type) + " from " + std::to_string(m.from) +
                                   ": " + why);
  };
  if (m.type == MessageType::kAppend) {
    if (m.log_term > m.term) return bad("previous entry's term is after the message's term");
    uint64_t index = m.index;
    uint64_t term = m.log_term;
    for (const Entry& e : m.entries) {
      if (e.index != index + 1) return bad("entries are not consecutive after the previous one");
      if (e.term < term || e.term > m.term) return bad("entry terms out of order");
      index = e.index;
      term = e.term;
    }
  } else if (m.type == MessageType::kSnapshot) {
    if (!m.snapshot) return bad("no snapshot");
    if (m.snapshot->meta.term > m.term) return bad("snapshot from a later term");
  } else if (!m.entries.empty()) {
    return bad("unexpected entries");
  }
  return Status::OK();
}

void RaftCore::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // We may vote again for whom we voted; vote fresh if we have no vote and no leader in
  // this term; and a pre-vote for a later term commits us to nothing.
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                        (pre && m.term > term_);
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  if (can_vote && IsUpToDate(m.log_term, m.index)) {
    r.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  Send(std::move(r));
}

void RaftCore::StepLeader(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  if (m.type == MessageType::kAppendResp) {
    HandleAppendResp(m, it->second);
  } else if (m.type == MessageType::kHeartbeatResp) {
    HandleHeartbeatResp(m, it->second);
  }
}

void RaftCore::StepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      BecomeFollower(term_, m.from);
      HandleAppend(m);
      return;
    case MessageType::kHeartbeat:
      BecomeFollower(term_, m.from);
      HandleHeartbeat(m);
      return;
    case MessageType::kSnapshot:
      BecomeFollower(term_, m.from);
      HandleSnapshot(m);
      return;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      const bool pre = role_ == Role::kPreCandidate;
      if (pre != (m.type == MessageType::kPreVoteResp)) return;  // from an older campaign
      switch (Poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (pre) {
            CampaignFor(false, false);
          } else {
            BecomeLeader();
            BroadcastAppend();
          }
          return;
        case VoteResult::kLost:
          BecomeFollower(term_, kNoNode);
          return;
        case VoteResult::kPending:
          return;
      }
      return;
    }
    default:
      return;
  }
}

void RaftCore::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
    case MessageType::kHeartbeat:
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      ticks_since_leader_ = 0;
      lead_ = m.from;
      if (m.type == MessageType::kAppend) {
        HandleAppend(m);
      } else if (m.type == MessageType::kHeartbeat) {
        HandleHeartbeat(m);
      } else {
        HandleSnapshot(m);
      }
      return;
    case MessageType::kTimeoutNow:
      // Leadership transfer (thesis §3.10): campaign at once, skipping PreVote.
      Hup(true);
      return;
    default:
      return;
  }
}

void RaftCore::HandleAppend(const Message& m) {
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  r.tick = m.tick;
  if (m.index < committed_) {
    // Everything up to our commit index already matches; tell the leader where to resume.
    r.index = committed_;
    Send(std::move(r));
    return;
  }
  if (MatchTerm(m.index, m.log_term)) {
    const uint64_t last_new = m.index + m.entries.size();
    size_t k = 0;
    while (k < m.entries.size() && MatchTerm(m.entries[k].index, m.entries[k].term)) k++;
    if (k < m.entries.size()) {
      if (m.entries[k].index <= committed_) {
        Fail(Status::Corruption("append from " + std::to_string(m.from) + " conflicts with committed entry " +
                                std::to_string(m.entries[k].index)));
        return;
      }
      TruncateAndAppend(std::vector<Entry>(m.entries.begin() + static_cast<std::ptrdiff_t>(k),
                                           m.entries.end()));
    }
    // Only entries known to match the leader's log may be committed (§5.3).
    CommitTo(std::min(m.commit, last_new));
    r.index = last_new;
    Send(std::move(r));
    return;
  }
  // Reject, with a hint: the last index (no later than the leader's probe) whose term is
  // at most the leader's term there. Everything after it surely conflicts.
  const uint64_t hint = FindConflictByTerm(std::min(m.index, LastIndex()), m.log_term);
  r.reject = true;
  r.index = m.index;
  r.reject_hint = hint;
  r.log_term = TermOrZero(hint);
  Send(std::move(r));
}

void RaftCore::HandleHeartbeat(const Message& m) {
  // The leader caps the commit index at what it knows we have.
  CommitTo(m.commit);
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.tick = m.tick;
  r.read_seq = m.read_seq;
  Send(std::move(r));
}

void RaftCore::HandleSnapshot(const Message& m) {
  if (!m.snapshot) return;
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  r.tick = m.tick;
  r.index = Restore(*m.snapshot) ? LastIndex() : committed_;
  Send(std::move(r));
}

void RaftCore::HandleAppendResp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.acked_tick = std::max(pr.acked_tick, m.tick);
  if (m.reject) {
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = FindConflictByTerm(m.reject_hint, m.log_term);
    bool decreased = false;
    if (pr.state == ProgressState::kReplicate) {
      if (m.index > pr.match) {  // otherwise a stale rejection
        pr.state = ProgressState::kProbe;
        pr.next = pr.match + 1;
        pr.probe_sent = false;
        pr.inflight.clear();
        decreased = true;
      }
    } else if (pr.state == ProgressState::kProbe && pr.next - 1 == m.index) {
      // A reply to the latest probe (older ones are stale): continue where the hint says
      // the logs may match.
      pr.next = std::max(std::min(m.index, next_probe + 1), pr.match + 1);
      pr.probe_sent = false;
      decreased = true;
    }
    if (decreased) SendAppend(m.from, true);
    return;
  }

  if (m.index <= pr.match) return;  // stale or duplicated
  const bool was_paused = (pr.state == ProgressState::kProbe && pr.probe_sent) ||
                          (pr.state == ProgressState::kReplicate &&
                           pr.inflight.size() >= max_inflight_msgs_) ||
                          pr.state == ProgressState::kSnapshot;
  pr.match = m.index;
  pr.next = std::max(pr.next, m.index + 1);
  pr.probe_sent = false;
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.state = ProgressState::kReplicate;
      pr.next = pr.match + 1;
      pr.inflight.clear();
      break;
    case ProgressState::kSnapshot:
      if (pr.match + 1 >= FirstIndex()) {
        pr.state = ProgressState::kReplicate;
        pr.next = pr.match + 1;
        pr.pending_snapshot = 0;
        pr.inflight.clear();
      }
      break;
    case ProgressState::kReplicate:
      while (!pr.inflight.empty() && pr.inflight.front() <= m.index) pr.inflight.pop_front();
      break;
  }
  const NodeId from = m.from;
  if (MaybeCommit()) {
    OnCommitAdvanced();
  } else if (was_paused) {
    // The commit broadcast may have skipped this follower while it was paused; make sure
    // it learns the commit index even if there is nothing new to send.
    SendAppend(from, true);
  }
  if (role_ != Role::kLeader) return;  // the commit removed us
  auto it = progress_.find(from);
  if (it == progress_.end()) return;
  while (SendAppend(from, false)) {
  }
  if (from == transferee_ && it->second.match == LastIndex()) SendTimeoutNow(from);
}

void RaftCore::HandleHeartbeatResp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.acked_tick = std::max(pr.acked_tick, m.tick);
  pr.acked_read_seq = std::max(pr.acked_read_seq, m.read_seq);
  pr.probe_sent = false;
  // A full pipeline may mean lost appends: free a slot so that the follower gets an
  // append it can reject, which puts it back into probing.
  if (pr.state == ProgressState::kReplicate && pr.inflight.size() >= max_inflight_msgs_) {
    pr.inflight.pop_front();
  }
  if (pr.match < LastIndex()) SendAppend(m.from, true);
  if (m.read_seq != 0) AdvanceReads();
}

// ---------------------------------------------------------------------------------------
// Leader replication

bool RaftCore::SendAppend(NodeId to, bool send_if_empty) {
  auto it = progress_.find(to);
  if (it == progress_.end()) return false;
  Progress& pr = it->second;
  switch (pr.state) {
    case ProgressState::kProbe:
      if (pr.probe_sent) return false;
      break;
    case ProgressState::kReplicate:
      if (pr.inflight.size() >= max_inflight_msgs_) return false;
      break;
    case ProgressState::kSnapshot:
      return false;
  }
  const uint64_t prev = pr.next - 1;
  Result<uint64_t> prev_term = Term(prev);
  Result<std::vector<Entry>> ents = std::vector<Entry>{};
  if (prev_term.ok() && pr.next <= LastIndex()) {
    ents = Slice(pr.next, LastIndex() + 1, max_size_per_msg_);
  }
  if (!prev_term.ok() || !ents.ok()) {
    const Status& s = !prev_term.ok() ? prev_term.status() : ents.status();
    if (IsCompacted(s)) {
      SendSnapshot(to);
      return false;
    }
    if (!IsUnavailable(s)) Fail(s);
    return false;
  }
  if (ents->empty() && !send_if_empty) return false;

  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = committed_;
  m.tick = now_;
  m.entries = std::move(*ents);
  if (pr.state == ProgressState::kReplicate) {
    if (!m.entries.empty()) {
      // Optimistic: assume it arrives, and keep the pipeline full.
      pr.next = m.entries.back().index + 1;
      pr.inflight.push_back(m.entries.back().index);
    }
  } else {
    pr.probe_sent = true;
  }
  Send(std::move(m));
  return true;
}

void RaftCore::SendSnapshot(NodeId to) {
  auto it = progress_.find(to);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  Result<Snapshot> snap = storage_->Snapshot();
  if (!snap.ok()) {
    if (!IsUnavailable(snap.status())) Fail(snap.status());
    return;  // try again on a later heartbeat response
  }
  if (snap->empty()) return;
  pr.state = ProgressState::kSnapshot;
  pr.pending_snapshot = snap->meta.index;
  pr.snapshot_elapsed = 0;
  pr.inflight.clear();
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.tick = now_;
  m.snapshot = std::make_shared<const Snapshot>(std::move(snap).value());
  Send(std::move(m));
}

void RaftCore::SendHeartbeat(NodeId to) {
  const Progress& pr = progress_.at(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // The follower may not have our log beyond pr.match, so it must not commit past it.
  m.commit = std::min(pr.match, committed_);
  m.tick = now_;
  m.read_seq = read_seq_;
  Send(std::move(m));
}

void RaftCore::SendTimeoutNow(NodeId to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

void RaftCore::BroadcastAppend() {
  for (auto& [id, pr] : progress_) SendAppend(id, true);
}

void RaftCore::BroadcastHeartbeat() {
  for (auto& [id, pr] : progress_) SendHeartbeat(id);
}

void RaftCore::Send(Message m) {
  m.from = id_;
  if (m.term == 0) m.term = term_;
  msgs_.push_back(std::move(m));
}

template <typename ValueOf>
uint64_t RaftCore::QuorumValue(ValueOf value_of) const {
  // Runs on every commit check, read confirmation and lease publication: groups of up to
  // kInline voters need no allocation.
  constexpr size_t kInline = 9;
  std::array<uint64_t, kInline> inline_values{};
  std::vector<uint64_t> heap_values;
  const size_t n = conf_.voters.size();
  uint64_t* v = inline_values.data();
  if (n > kInline) {
    heap_values.resize(n);
    v = heap_values.data();
  }
  for (size_t i = 0; i < n; ++i) v[i] = value_of(conf_.voters[i]);
  // The median from the top: what sorting in descending order would put at n / 2.
  std::nth_element(v, v + n / 2, v + n, std::greater<uint64_t>());
  return v[n / 2];
}

bool RaftCore::MaybeCommit() {
  if (conf_.voters.empty()) return false;
  const uint64_t index = QuorumValue([&](NodeId v) {
    if (v == id_) return self_match_;
    auto it = progress_.find(v);
    return it == progress_.end() ? uint64_t{0} : it->second.match;
  });
  // Raft §5.4.2: only an entry of the current term is committed by counting replicas;
  // earlier entries are committed indirectly, by the Log Matching Property (Figure 8).
  if (index > committed_ && TermOrZero(index) == term_) {
    committed_ = index;
    return true;
  }
  return false;
}

void RaftCore::OnCommitAdvanced() {
  if (CommittedInTerm()) {
    while (!reads_waiting_commit_.empty()) {
      StartRead(std::move(reads_waiting_commit_.front().context));
      reads_waiting_commit_.pop_front();
    }
  }
  BroadcastAppend();  // spread the new commit index
  if (!conf_.IsVoter(id_) && LastConfIndex() <= committed_) {
    // Our own removal is committed: step down, and let the most up-to-date voter take
    // over at once instead of waiting for an election timeout.
    NodeId successor = kNoNode;
    uint64_t best = 0;
    for (const auto& [id, pr] : progress_) {
      if (!pr.learner && pr.match > best) {
        best = pr.match;
        successor = id;
      }
    }
    BecomeFollower(term_, kNoNode);
    if (successor != kNoNode && best == LastIndex()) SendTimeoutNow(successor);
  }
}

bool RaftCore::QuorumActive() {
  size_t active = conf_.IsVoter(id_) ? 1 : 0;
  for (auto& [id, pr] : progress_) {
    if (!pr.learner && pr.recent_active) active++;
    pr.recent_active = false;
  }
  return active >= conf_.voters.size() / 2 + 1;
}

void RaftCore::AppendLocal(Entry e) {
  e.term = term_;
  e.index = LastIndex() + 1;
  std::vector<Entry> one;
  one.push_back(std::move(e));
  TruncateAndAppend(std::move(one));
}

bool RaftCore::CommittedInTerm() const { return TermOrZero(committed_) == term_; }

void RaftCore::AbortTransfer() {
  transferee_ = kNoNode;
  transfer_elapsed_ = 0;
}

void RaftCore::StartRead(std::string context) {
  PendingRead r{++read_seq_, committed_, std::move(context)};
  if (conf_.voters.size() == 1) {
    reads_confirmed_.push_back(std::move(r));  // we are the quorum
    return;
  }
  reads_unconfirmed_.push_back(std::move(r));
  BroadcastHeartbeat();
}

void RaftCore::AdvanceReads() {
  if (conf_.voters.empty()) return;
  const uint64_t confirmed = QuorumValue([&](NodeId v) {
    if (v == id_) return read_seq_;
    auto it = progress_.find(v);
    return it == progress_.end() ? uint64_t{0} : it->second.acked_read_seq;
  });
  while (!reads_unconfirmed_.empty() && reads_unconfirmed_.front().seq <= confirmed) {
    reads_confirmed_.push_back(std::move(reads_unconfirmed_.front()));
    reads_unconfirmed_.pop_front();
  }
}

Status RaftCore::NotLeaderError() const {
  std::string msg = "raft node " + std::to_string(id_) + " is not the leader (term " +
                    std::to_string(term_) + "); ";
  msg += lead_ == kNoNode ? "the leader is unknown" : "the leader is node " + std::to_string(lead_);
  return Status::NotLeader(std::move(msg));
}

// ---------------------------------------------------------------------------------------
// Requests

Result<LogPosition> RaftCore::Propose(std::string data, EntryType type) {
  if (!fatal_.ok()) return fatal_;
  if (role_ != Role::kLeader) return NotLeaderError();
  if (!conf_.IsVoter(id_)) {
    return Status::NotLeader("raft node " + std::to_string(id_) + " is being removed from the group");
  }
  if (transferee_ != kNoNode) {
    return Status::Busy("raft node " + std::to_string(id_) + " is transferring leadership to node " +
                        std::to_string(transferee_));
  }
  if (data.empty()) return Status::InvalidArgument("empty proposals are reserved for the leader's no-op");
  if (type != EntryType::kNormal && type != EntryType::kBatch) {
    return Status::InvalidArgument("only data entries may be proposed; membership changes use ProposeConfChange");
  }
  Entry e;
  e.type = type;
  e.data = std::move(data);
  AppendLocal(std::move(e));
  BroadcastAppend();
  return LogPosition{LastIndex(), term_};
}

Result<LogPosition> RaftCore::ProposeConfChange(const ConfChange& cc) {
  if (!fatal_.ok()) return fatal_;
  if (role_ != Role::kLeader) return NotLeaderError();
  if (!conf_.IsVoter(id_)) {
    return Status::NotLeader("raft node " + std::to_string(id_) + " is being removed from the group");
  }
  if (transferee_ != kNoNode) {
    return Status::Busy("raft node " + std::to_string(id_) + " is transferring leadership");
  }
  if (!CommittedInTerm()) {
    return Status::Busy("raft node " + std::to_string(id_) +
                        " has not committed an entry of its term yet");
  }
  if (LastConfIndex() > committed_) {
    return Status::Busy("the configuration change at index " + std::to_string(LastConfIndex()) +
                        " is not committed yet");
  }
  ASSIGN_OR_RETURN(ConfState next, ApplyConfChange(conf_, cc));
  Entry e;
  e.type = EntryType::kConfChange;
  e.data = EncodeConfChangeEntry(ConfChangeEntry{cc, std::move(next)});
  AppendLocal(std::move(e));
  BroadcastAppend();
  return LogPosition{LastIndex(), term_};
}

Status RaftCore::TransferLeadership(NodeId target) {
  if (!fatal_.ok()) return fatal_;
  if (role_ != Role::kLeader) return NotLeaderError();
  if (target == id_) return Status::OK();
  if (!conf_.IsVoter(target)) {
    return Status::InvalidArgument("node " + std::to_string(target) + " is not a voter");
  }
  if (transferee_ == target) return Status::OK();
  transferee_ = target;
  transfer_elapsed_ = 0;
  lease_disabled_ = true;  // the target's campaign will ignore stickiness
  const Progress& pr = progress_.at(target);
  if (pr.match == LastIndex()) {
    SendTimeoutNow(target);
  } else {
    SendAppend(target, true);
  }
  return Status::OK();
}

Status RaftCore::ReadIndex(std::string context) {
  if (!fatal_.ok()) return fatal_;
  if (role_ != Role::kLeader) return NotLeaderError();
  if (!conf_.IsVoter(id_)) {
    return Status::NotLeader("raft node " + std::to_string(id_) + " is being removed from the group");
  }
  if (!CommittedInTerm()) {
    // Until its no-op commits, a new leader's commit index may lag what earlier leaders
    // committed, so it cannot vouch for it yet (thesis §6.4).
    reads_waiting_commit_.push_back(PendingRead{0, 0, std::move(context)});
    return Status::OK();
  }
  StartRead(std::move(context));
  return Status::OK();
}

Status RaftCore::Campaign() {
  if (!fatal_.ok()) return fatal_;
  if (role_ == Role::kLeader) return Status::OK();
  if (!Promotable()) {
    return Status::InvalidArgument("raft node " + std::to_string(id_) + " is not a voter");
  }
  Hup(false);
  return Status::OK();
}

void RaftCore::ReportUnreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it == progress_.end() || it->second.state != ProgressState::kReplicate) return;
  Progress& pr = it->second;
  pr.state = ProgressState::kProbe;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflight.clear();
}

void RaftCore::ReportSnapshot(NodeId id, bool ok) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it == progress_.end() || it->second.state != ProgressState::kSnapshot) return;
  Progress& pr = it->second;
  pr.state = ProgressState::kProbe;
  pr.next = ok ? std::max(pr.match, pr.pending_snapshot) + 1 : pr.match + 1;
  pr.pending_snapshot = 0;
  // Wait for the follower's reply (or the next heartbeat) before probing.
  pr.probe_sent = true;
}

bool RaftCore::HasReadLease() const { return ReadLeaseTicks() > 0; }

uint64_t RaftCore::ReadLeaseTicks() const {
  if (role_ != Role::kLeader || !check_quorum_ || lease_disabled_ || transferee_ != kNoNode ||
      !conf_.IsVoter(id_) || !CommittedInTerm()) {
    return 0;
  }
  const uint64_t oldest = QuorumValue([&](NodeId v) {
    if (v == id_) return now_;
    auto it = progress_.find(v);
    return it == progress_.end() ? uint64_t{0} : it->second.acked_tick;
  });
  const uint64_t lease = static_cast<uint64_t>(lease_ticks_);
  if (oldest == 0 || now_ - oldest >= lease) return 0;
  return lease - (now_ - oldest);
}

// ---------------------------------------------------------------------------------------
// Outputs

bool RaftCore::HasReady() const {
  if (!fatal_.ok() || ready_outstanding_) return false;
  if (SoftState{lead_, role_} != prev_soft_) return true;
  if (HardState{term_, vote_, committed_} != prev_hard_) return true;
  if (unstable_snapshot_ || !unstable_.empty() || !msgs_.empty()) return true;
  if (committed_ > applying_) return true;
  return !reads_confirmed_.empty() && reads_confirmed_.front().index <= committed_;
}

Ready RaftCore::GetReady() {
  Ready rd;
  const SoftState ss{lead_, role_};
  if (ss != prev_soft_) {
    rd.soft_state = ss;
    prev_soft_ = ss;
  }
  const HardState hs{term_, vote_, committed_};
  const bool vote_durable = hs.term == prev_hard_.term && hs.vote == prev_hard_.vote;
  if (hs != prev_hard_) {
    rd.hard_state = hs;
    if (!vote_durable) rd.must_sync = true;
    prev_hard_ = hs;
  }
  if (unstable_snapshot_) {
    rd.snapshot = *unstable_snapshot_;
    handed_snapshot_index_ = unstable_snapshot_->meta.index;
    rd.must_sync = true;
  }
  if (!unstable_.empty()) {
    rd.entries = unstable_;
    handed_last_index_ = unstable_.back().index;
    handed_last_term_ = unstable_.back().term;
    rd.must_sync = true;
  }
  if (committed_ > applying_) {
    Result<std::vector<Entry>> ents = Slice(applying_ + 1, committed_ + 1, max_committed_size_per_ready_);
    if (ents.ok()) {
      rd.committed_entries = std::move(ents).value();
      if (!rd.committed_entries.empty()) applying_ = rd.committed_entries.back().index;
    } else {
      Fail(ents.status());
    }
  }
  for (Message& m : msgs_) {
    const bool leader_to_follower = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                                    m.type == MessageType::kSnapshot;
    (vote_durable && leader_to_follower ? rd.early_messages : rd.messages).push_back(std::move(m));
  }
  msgs_.clear();
  while (!reads_confirmed_.empty() && reads_confirmed_.front().index <= applying_) {
    rd.read_states.push_back(
        ReadState{reads_confirmed_.front().index, std::move(reads_confirmed_.front().context)});
    reads_confirmed_.pop_front();
  }
  handed_applying_ = applying_;
  ready_outstanding_ = true;
  return rd;
}

void RaftCore::Advance() {
  if (!ready_outstanding_) return;
  ready_outstanding_ = false;
  if (handed_snapshot_index_ != 0 && unstable_snapshot_ &&
      unstable_snapshot_->meta.index == handed_snapshot_index_) {
    unstable_snapshot_.reset();
  }
  handed_snapshot_index_ = 0;
  if (handed_last_index_ != 0) StableTo(handed_last_index_, handed_last_term_);
  handed_last_index_ = 0;
  applied_ = std::max(applied_, handed_applying_);

  // Forget configuration history the storage has compacted away, keeping the newest
  // such configuration as the base.
  if (!unstable_snapshot_) {
    const uint64_t compacted = storage_->FirstIndex() - 1;
    while (!conf_history_.empty() && conf_history_.begin()->first <= compacted) {
      base_conf_ = std::move(conf_history_.begin()->second);
      conf_history_.erase(conf_history_.begin());
    }
    base_index_ = std::max(base_index_, compacted);
  }

  if (role_ == Role::kLeader) {
    const uint64_t stable = StableLastIndex();
    if (stable > self_match_) {
      self_match_ = stable;
      if (MaybeCommit()) OnCommitAdvanced();
    }
  }
}

std::vector<PeerStatus> RaftCore::Peers() const {
  std::vector<PeerStatus> out;
  if (role_ != Role::kLeader) return out;
  for (const auto& [id, pr] : progress_) {
    out.push_back(PeerStatus{id, pr.learner, pr.state, pr.match, pr.next, pr.inflight.size(),
                             pr.recent_active});
  }
  return out;
}

}  // namespace ring::replication
