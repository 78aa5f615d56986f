#include "replication/driver.h"

#include <spdlog/spdlog.h>

#include <set>

#include "common/keyspace.h"
#include "common/wakeups.h"

namespace ring::replication {

namespace {

using Clock = std::chrono::steady_clock;

// The restore record of a snapshot being installed (see driver.h, "Snapshots").
constexpr std::string_view kRestorePrefix = "rs/";
std::string RestoreKey(uint64_t group) { return std::string(kRestorePrefix) + HashPrefix(group); }

int64_t SteadyNanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// SplitMix64: spreads (seed, node, group) into independent election-jitter seeds.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

struct Driver::Group {
  uint64_t id = 0;
  StateMachine* sm = nullptr;
  std::shared_ptr<Published> pub = std::make_shared<Published>();
  std::unique_ptr<RocksLogStorage> log;
  std::unique_ptr<RaftCore> core;
  uint64_t applied = 0;
  // First index of the current leader term; reads are local only once it is applied.
  uint64_t term_start = UINT64_MAX;
  NodeId leader = kNoNode;
  struct Pending {
    uint64_t term = 0;
    std::vector<ProposeDone> done;  // one per command of the entry
  };
  std::map<uint64_t, Pending> pending;  // proposals by log index
  // Where the proposers of the entry proposed at `pos` wait for it.
  std::vector<ProposeDone>& Await(const LogPosition& pos) {
    Pending& p = pending[pos.index];
    p.term = pos.term;
    return p.done;
  }
  void FailPending(const Status& s) {
    for (auto& [index, p] : pending) {
      for (auto& done : p.done) done(s, {});
    }
    pending.clear();
  }
  std::optional<Ready> held;            // taken from the core, not yet durably handled
  // Leader: the image last made for followers, when it was last handed out, and whether
  // a new one is being made. Follower: the leader image being fetched ("" if none).
  std::optional<Snapshot> snapshot;
  Clock::time_point snapshot_made{}, snapshot_used{};
  bool snapshot_pending = false;
  std::string fetching;
  std::string restored;  // an image restored by OpenGroup, to report Restored once written
  uint64_t compact_to = 0;              // compaction staged into the next cycle's batch
  uint64_t appended_bytes = 0;          // entry bytes appended since the last compaction
  // How far every replica has the log (Message::compact_floor): the highest this node
  // computed while leading or heard from a leader. Each was true when it was said, and
  // replicas never lose committed entries, so it only rises. Unset = never heard.
  std::optional<uint64_t> floor;
  void RaiseFloor(uint64_t f) { floor = std::max(floor.value_or(0), f); }
  // Stamps the floor on a leader's appends and heartbeats.
  void StampFloor(Message& m) const {
    if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat) m.compact_floor = floor;
  }
  int eager_ticks = 0;                  // GroupSpec::campaign: ticks left to campaign on
  bool brand_new = false;               // bootstrapped by this open (Config::brand_new)
  // ReadIndex requests: by context until confirmed, then by index until applied.
  std::map<std::string, std::function<void(Status)>> reads_unconfirmed;
  std::multimap<uint64_t, std::function<void(Status)>> reads_confirmed;
  void FailReads(const Status& s) {
    for (auto& [ctx, done] : reads_unconfirmed) done(s);
    for (auto& [index, done] : reads_confirmed) done(s);
    reads_unconfirmed.clear();
    reads_confirmed.clear();
  }
};

Driver::Driver(const DriverOptions& options, storage::Engine* engine, Transport* transport, StateMachine* sm)
    : options_(options), engine_(engine), transport_(transport), state_machine_(sm), applied_(engine) {}

Result<std::unique_ptr<Driver>> Driver::Start(const DriverOptions& options, storage::Engine* engine,
                                              Transport* transport, StateMachine* state_machine) {
  if (options.node_id == kNoNode) return Status::InvalidArgument("driver: node id must be set");
  if (options.group_count > 0 && state_machine == nullptr) {
    return Status::InvalidArgument("driver: static groups need a state machine");
  }
  std::unique_ptr<Driver> d(new Driver(options, engine, transport, state_machine));
  storage::WriteBatch batch;
  AppliedTable::Changes applied;
  for (uint64_t g = 0; g < options.group_count; ++g) {
    ASSIGN_OR_RETURN(auto group, d->OpenGroup(GroupSpec{g, state_machine, options.voters}, &batch, &applied));
    d->groups_.emplace(g, std::move(group));
  }
  RETURN_IF_ERROR(d->applied_.Stage(applied, &batch));
  if (batch.count() > 0) {
    RETURN_IF_ERROR(engine->Write(batch, true).WithContext("bootstrapping replication groups"));
  }
  d->applied_.Commit(applied);
  for (auto& [id, group] : d->groups_) RETURN_IF_ERROR(d->StartGroup(*group));
  d->Republish();
  d->PublishStatus();
  d->last_tick_time_ = Clock::now();
  d->thread_ = std::thread([p = d.get()] { p->Loop(); });
  return d;
}

Result<std::unique_ptr<Driver::Group>> Driver::OpenGroup(const GroupSpec& spec, storage::WriteBatch* batch,
                                                         AppliedTable::Changes* applied) {
  const std::string ctx = "group " + std::to_string(spec.id);
  if (spec.state_machine == nullptr) return Status::InvalidArgument(ctx + ": no state machine");
  auto group = std::make_unique<Group>();
  group->id = spec.id;
  group->sm = spec.state_machine;
  ASSIGN_OR_RETURN(group->log, RocksLogStorage::Open(engine_, spec.id));
  ASSIGN_OR_RETURN(StoredState st, group->log->InitialState());
  if (!spec.founders.empty() && st.conf.voters.empty() && st.conf.learners.empty() && group->log->LastIndex() == 0) {
    // A brand-new group: every founding node bootstraps the same configuration, which is
    // equivalent to all of them having applied it.
    ConfState founding;
    founding.voters = spec.founders;
    std::sort(founding.voters.begin(), founding.voters.end());
    group->log->Bootstrap(founding, spec.bootstrap_index, batch);
    if (spec.bootstrap_index > 0) (*applied)[spec.id] = spec.bootstrap_index;
    group->brand_new = true;
    if (spec.campaign) group->eager_ticks = options_.election_tick;
  }
  ASSIGN_OR_RETURN(group->applied, applied_.Get(spec.id));
  // A restore interrupted by a crash: run it again, and finish it in this batch.
  std::string v;
  Status s = engine_->Get(storage::Cf::kMeta, RestoreKey(spec.id), &v);
  if (s.ok()) {
    ASSIGN_OR_RETURN(Snapshot snap, DecodeSnapshot(spec.id, v));
    spdlog::warn("{}: finishing the install of the snapshot at {} that a restart interrupted", ctx, snap.meta.index);
    RETURN_IF_ERROR(group->sm->Restore(spec.id, snap.data, batch).WithContext(ctx + ": redoing a snapshot restore"));
    Snapshot mark;
    mark.meta = snap.meta;
    group->log->ApplySnapshot(mark, batch);
    group->applied = std::max(group->applied, snap.meta.index);
    (*applied)[spec.id] = group->applied;
    batch->Delete(storage::Cf::kMeta, RestoreKey(spec.id));
    group->restored = std::move(snap.data);
  } else if (!s.IsNotFound()) {
    return s.WithContext(ctx + ": reading its restore record");
  }
  return group;
}

Status Driver::StartGroup(Group& group) {
  group.log->OnWritten();
  Config c;
  c.id = options_.node_id;
  c.storage = group.log.get();
  c.seed = Mix(options_.seed ^ Mix(options_.node_id) ^ Mix(group.id + 1));
  c.election_tick = options_.election_tick;
  c.heartbeat_tick = options_.heartbeat_tick;
  c.applied = group.applied;
  c.brand_new = group.brand_new;
  ASSIGN_OR_RETURN(group.core, RaftCore::Create(c));
  group.applied = std::max(group.applied, group.core->applied());
  Group* gp = &group;
  // A follower behind our compaction point gets the state machine as of what we applied.
  group.log->set_snapshot_source([this, gp]() { return SnapshotFor(*gp); });
  if (!group.restored.empty()) {
    group.sm->Restored(group.id, group.restored);
    group.restored.clear();
  }
  // The only voter has no one to wait for: campaign now instead of after a timeout.
  const ConfState& conf = group.core->conf();
  if (conf.voters.size() == 1 && conf.voters[0] == options_.node_id) {
    RETURN_IF_ERROR(group.core->Campaign().WithContext("group " + std::to_string(group.id)));
  }
  CampaignEagerly(group);
  return Status::OK();
}

void Driver::CampaignEagerly(Group& g) {
  if (g.eager_ticks <= 0) return;
  const RaftCore& c = *g.core;
  if (c.leader() != kNoNode || !c.conf().IsVoter(options_.node_id)) {
    g.eager_ticks = 0;  // done, or not ours to do
    return;
  }
  // A candidate's vote is under way; a pre-candidate whose PreVote found a founder that
  // did not host the group yet asks again.
  if (c.role() == Role::kFollower || c.role() == Role::kPreCandidate) g.core->Campaign().ok();
}

uint64_t Driver::CompactionPoint(Group& g) {
  const uint64_t log_start = g.log->FirstIndex() - 1;
  uint64_t to = 0;
  if (g.applied > log_start + options_.compact_after && g.applied > options_.retain) {
    to = g.applied - options_.retain;  // the log is long: drop it past any straggler
  }
  if (g.appended_bytes >= options_.compact_bytes) {
    uint64_t needed = g.applied;  // what no replica needs any more
    if (g.core->role() == Role::kLeader) {
      uint64_t every = g.applied;  // (a peer's match is 0 until it answers this leader)
      for (const PeerStatus& p : g.core->Peers()) every = std::min(every, p.match);
      g.RaiseFloor(every);  // for the followers too (StampFloor)
    }
    if (g.floor) {
      needed = std::min(needed, *g.floor);
    } else {
      // No leader has said what every replica has: keep a tail for a new leader's
      // stragglers.
      needed = needed > options_.tail ? needed - options_.tail : 0;
    }
    to = std::max(to, needed);
  }
  // Not past a snapshot a follower may still be fetching: it continues from the log.
  if (to > 0 && g.snapshot && Clock::now() - g.snapshot_used < options_.snapshot_hold) {
    to = std::min(to, g.snapshot->meta.index);
  }
  return to > log_start ? to : 0;
}

Result<Snapshot> Driver::SnapshotFor(Group& g) {
  // An image is good while the log continues from it: a follower that installs it can
  // then catch up from the log.
  if (g.snapshot && g.snapshot->meta.index + 1 >= g.log->FirstIndex() &&
      Clock::now() - g.snapshot_made < options_.snapshot_reuse) {
    g.snapshot_used = Clock::now();
    stats_.snapshots_sent.fetch_add(1, std::memory_order_relaxed);
    return *g.snapshot;
  }
  const std::string ctx = "group " + std::to_string(g.id);
  if (!g.snapshot_pending) {
    SnapshotMeta meta;
    meta.index = g.applied;
    ASSIGN_OR_RETURN(meta.term, g.core->Term(g.applied));
    ASSIGN_OR_RETURN(meta.conf, g.core->ConfStateAt(g.applied));
    g.snapshot_pending = true;
    g.sm->Snapshot(g.id, [this, id = g.id, meta](Result<std::string> image) {
      std::lock_guard lock(mu_);
      snapshots_made_.push_back(SnapshotMade{id, meta, std::move(image)});
      cv_.notify_one();
    });
  }
  return Status::Unavailable(ctx + ": a snapshot for a follower is being made");
}

bool Driver::MaybeFetch(Group& g, const Message& m) {
  if (m.type != MessageType::kSnapshot || !m.snapshot || !g.sm->NeedsFetch(m.snapshot->data)) return false;
  // Nothing to fetch for a snapshot we are already past: Raft just acknowledges it.
  if (m.snapshot->meta.index <= g.core->committed()) return false;
  if (g.fetching == m.snapshot->data) return true;  // a resend while we fetch it
  g.fetching = m.snapshot->data;
  g.sm->Fetch(g.id, g.fetching, [this, id = g.id, sm = g.sm, remote = g.fetching, msg = m](Result<std::string> local) {
    std::lock_guard lock(mu_);
    snapshots_fetched_.push_back(SnapshotFetched{id, sm, remote, msg, std::move(local)});
    cv_.notify_one();
  });
  return true;
}

void Driver::TakeSnapshots(std::vector<SnapshotMade>* made, std::vector<SnapshotFetched>* fetched) {
  for (auto& sm : *made) {
    auto it = groups_.find(sm.group);
    if (it == groups_.end()) continue;
    Group& g = *it->second;
    g.snapshot_pending = false;
    if (!sm.image.ok()) {
      spdlog::warn("group {}: making a snapshot for a follower: {}", sm.group, sm.image.status().ToString());
      continue;
    }
    stats_.snapshots_made.fetch_add(1, std::memory_order_relaxed);
    g.snapshot = Snapshot{sm.meta, std::move(sm.image).value()};
    g.snapshot_made = Clock::now();
  }
  made->clear();
  for (auto& f : *fetched) {
    auto it = groups_.find(f.group);
    Group* g = it == groups_.end() ? nullptr : it->second.get();
    if (g == nullptr || g->fetching != f.remote) {
      // The group left, or a newer snapshot replaced this one: its files are not needed.
      if (f.local.ok()) f.sm->Restored(f.group, *f.local);
      continue;
    }
    g->fetching.clear();
    if (!f.local.ok()) {
      spdlog::warn("group {}: fetching the leader's snapshot at {}: {}; waiting for it to be sent again", f.group,
                   f.msg.snapshot->meta.index, f.local.status().ToString());
      continue;
    }
    stats_.snapshots_fetched.fetch_add(1, std::memory_order_relaxed);
    auto snap = std::make_shared<Snapshot>(*f.msg.snapshot);
    snap->data = std::move(f.local).value();
    f.msg.snapshot = std::move(snap);
    Status s = g->core->Step(f.msg);
    if (!s.ok()) spdlog::debug("group {}: step {}: {}", f.group, MessageToString(f.msg), s.ToString());
  }
  fetched->clear();
}

Result<std::vector<std::string>> PendingRestoreImages(storage::Engine* engine) {
  std::vector<std::string> images;
  std::string end(kRestorePrefix);
  end.back() = static_cast<char>(end.back() + 1);
  RETURN_IF_ERROR(engine->Scan(storage::Cf::kMeta, kRestorePrefix, end, [&](std::string_view, std::string_view v) {
    auto snap = DecodeSnapshot(0, v);
    if (snap.ok()) images.push_back(std::move(snap->data));
    return true;
  }));
  return images;
}

void Driver::Republish() {
  auto table = std::make_shared<PublishedTable>();
  for (auto& [id, g] : groups_) table->emplace(id, g->pub);
  published_.store(std::move(table), std::memory_order_release);
}

std::shared_ptr<Driver::Published> Driver::Lookup(uint64_t group) const {
  std::shared_ptr<const PublishedTable> table = published_.load(std::memory_order_acquire);
  if (!table) return nullptr;
  auto it = table->find(group);
  return it == table->end() ? nullptr : it->second;
}

template <typename T>
bool Driver::Queue(std::vector<T>* queue, T* item) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  queue->push_back(std::move(*item));
  cv_.notify_one();
  return true;
}

void Driver::AddGroup(GroupSpec spec, std::function<void(Status)> done) {
  std::pair<GroupSpec, std::function<void(Status)>> item{std::move(spec), std::move(done)};
  if (!Queue(&adds_, &item)) item.second(Status::Unavailable("node is shutting down"));
}

void Driver::RemoveGroup(uint64_t group, std::function<void(Status)> done) {
  std::pair<uint64_t, std::function<void(Status)>> item{group, std::move(done)};
  if (!Queue(&removes_, &item)) item.second(Status::Unavailable("node is shutting down"));
}

void Driver::AddGroups(std::vector<std::pair<GroupSpec, std::function<void(Status)>>>* adds) {
  if (adds->empty()) return;
  storage::WriteBatch batch;
  AppliedTable::Changes applied;
  std::vector<std::pair<std::unique_ptr<Group>, std::function<void(Status)>>> opened;
  std::set<uint64_t> ids;
  for (auto& [spec, done] : *adds) {
    if (groups_.count(spec.id) || !ids.insert(spec.id).second) {
      done(Status::InvalidArgument("group " + std::to_string(spec.id) + " is already hosted"));
      continue;
    }
    auto g = OpenGroup(spec, &batch, &applied);
    if (!g.ok()) {
      done(g.status());
      continue;
    }
    opened.emplace_back(std::move(g).value(), std::move(done));
  }
  adds->clear();
  if (opened.empty()) return;
  Status s = applied_.Stage(applied, &batch);
  if (s.ok() && batch.count() > 0) s = engine_->Write(batch, true);
  if (s.ok()) applied_.Commit(applied);
  std::vector<std::pair<std::function<void(Status)>, Status>> results;
  for (auto& [g, done] : opened) {
    Status st = s.ok() ? StartGroup(*g) : s.WithContext("group " + std::to_string(g->id) + ": bootstrapping");
    if (st.ok()) groups_.emplace(g->id, std::move(g));
    results.emplace_back(std::move(done), st);
  }
  Republish();  // before anyone hears that the groups exist
  for (auto& [done, st] : results) done(st);
}

void Driver::RemoveGroups(std::vector<std::pair<uint64_t, std::function<void(Status)>>>* removes) {
  if (removes->empty()) return;
  std::vector<std::pair<std::function<void(Status)>, Status>> results;
  for (auto& [id, done] : *removes) {
    auto it = groups_.find(id);
    if (it == groups_.end()) {
      results.emplace_back(std::move(done), Status::InvalidArgument("group " + std::to_string(id) + " is not hosted here"));
      continue;
    }
    Group& g = *it->second;
    const Status gone = Status::Unavailable("shard " + std::to_string(id) + " moved away from this node; retry");
    g.FailPending(gone);
    g.FailReads(gone);
    storage::WriteBatch batch;
    g.log->Destroy(&batch);
    const AppliedTable::Changes forget{{id, std::nullopt}};
    Status s = applied_.Stage(forget, &batch);
    batch.Delete(storage::Cf::kMeta, AppliedTable::LegacyKey(id));
    if (s.ok()) s = engine_->Write(batch, true);
    if (s.ok()) applied_.Commit(forget);
    g.pub->lease_deadline_ns.store(0, std::memory_order_release);
    groups_.erase(it);
    results.emplace_back(std::move(done), s.WithContext("group " + std::to_string(id) + ": deleting its log"));
  }
  removes->clear();
  Republish();
  for (auto& [done, st] : results) done(st);
}

Driver::~Driver() { Stop(); }

void Driver::Stop() {
  std::vector<Proposal> queued;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    queued.swap(proposals_);
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  for (auto& p : queued) p.done(Status::Unavailable("node is shutting down"), {});
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> reads;
  {
    std::lock_guard lock(mu_);
    reads.swap(reads_);
  }
  for (auto& [group, done] : reads) done(Status::Unavailable("node is shutting down"));
  std::vector<std::pair<GroupSpec, std::function<void(Status)>>> adds;
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> removes;
  {
    std::lock_guard lock(mu_);
    adds.swap(adds_);
    removes.swap(removes_);
  }
  for (auto& [spec, done] : adds) done(Status::Unavailable("node is shutting down"));
  for (auto& [id, done] : removes) done(Status::Unavailable("node is shutting down"));
  for (auto& [id, g] : groups_) {
    g->FailPending(Status::Unavailable("node is shutting down"));
    g->FailReads(Status::Unavailable("node is shutting down"));
  }
}

void Driver::Deliver(std::vector<GroupMessage> msgs) {
  {
    std::lock_guard lock(mu_);
    if (inbox_.empty()) {
      inbox_ = std::move(msgs);
    } else {
      for (auto& m : msgs) inbox_.push_back(std::move(m));
    }
  }
  cv_.notify_one();
}

void Driver::Propose(uint64_t group, std::string data, ProposeDone done) {
  Enqueue(Proposal{group, std::move(data), std::move(done), std::nullopt});
}

void Driver::ProposeConfChange(uint64_t group, ConfChange change, ProposeDone done) {
  Enqueue(Proposal{group, {}, std::move(done), change});
}

void Driver::Enqueue(Proposal p) {
  if (!HasGroup(p.group)) {
    p.done(Status::InvalidArgument("no replication group " + std::to_string(p.group)), {});
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      proposals_.push_back(std::move(p));
      if (proposals_.size() == 1) cv_.notify_one();
      return;
    }
  }
  p.done(Status::Unavailable("node is shutting down"), {});
}

void Driver::ReadIndex(uint64_t group, std::function<void(Status)> done) {
  if (!HasGroup(group)) {
    done(Status::InvalidArgument("no replication group " + std::to_string(group)));
    return;
  }
  std::pair<uint64_t, std::function<void(Status)>> item{group, std::move(done)};
  if (!Queue(&reads_, &item)) item.second(Status::Unavailable("node is shutting down"));
}

void Driver::StartReads(std::vector<std::pair<uint64_t, std::function<void(Status)>>>* reads) {
  for (auto& [group, done] : *reads) {
    auto it = groups_.find(group);
    if (it == groups_.end()) {
      done(Status::Unavailable("shard " + std::to_string(group) + " moved away from this node; retry"));
      continue;
    }
    Group& g = *it->second;
    std::string ctx = std::to_string(next_read_ctx_++);
    Status s = g.core->ReadIndex(ctx);
    if (!s.ok()) {
      done(s.WithContext("shard " + std::to_string(group)));
      continue;
    }
    g.reads_unconfirmed.emplace(std::move(ctx), std::move(done));
  }
  reads->clear();
}

void Driver::TransferLeadership(uint64_t group, NodeId target) {
  {
    std::lock_guard lock(mu_);
    transfers_.emplace_back(group, target);
  }
  cv_.notify_one();
}

bool Driver::ReadLeaseValid(uint64_t group) const {
  auto pub = Lookup(group);
  return pub && SteadyNanos(Clock::now()) < pub->lease_deadline_ns.load(std::memory_order_acquire);
}

NodeId Driver::LeaderOf(uint64_t group) const {
  auto pub = Lookup(group);
  return pub ? pub->leader.load(std::memory_order_relaxed) : kNoNode;
}

std::vector<GroupStatus> Driver::Groups() const {
  std::lock_guard lock(mu_);
  return status_;
}

bool Driver::WaitForLeaders(std::chrono::milliseconds timeout, bool local_reads) const {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    bool all = true;
    std::shared_ptr<const PublishedTable> table = published_.load(std::memory_order_acquire);
    for (const auto& [id, pub] : *table) {
      all = all && (local_reads ? SteadyNanos(Clock::now()) < pub->lease_deadline_ns.load(std::memory_order_acquire)
                                : pub->leader.load(std::memory_order_relaxed) != kNoNode);
    }
    if (all) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void Driver::Loop() {
  std::vector<GroupMessage> inbox;
  std::vector<Proposal> proposals;
  std::vector<std::pair<uint64_t, NodeId>> transfers;
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> reads;
  std::vector<std::pair<GroupSpec, std::function<void(Status)>>> adds;
  std::vector<std::pair<uint64_t, std::function<void(Status)>>> removes;
  std::vector<SnapshotMade> made;
  std::vector<SnapshotFetched> fetched;
  bool more = false;  // the last cycle left committed entries to apply: run the next one at once
  for (;;) {
    int ticks = 0;
    {
      std::unique_lock lock(mu_);
      auto next_tick = last_tick_time_ + options_.tick_interval;
      cv_.wait_until(lock, next_tick, [&] {
        return more || stopping_ || !inbox_.empty() || !proposals_.empty() || !transfers_.empty() || !reads_.empty() ||
               !adds_.empty() || !removes_.empty() || !snapshots_made_.empty() || !snapshots_fetched_.empty();
      });
      if (stopping_) return;
      inbox.swap(inbox_);
      proposals.swap(proposals_);
      transfers.swap(transfers_);
      reads.swap(reads_);
      adds.swap(adds_);
      removes.swap(removes_);
      made.swap(snapshots_made_);
      fetched.swap(snapshots_fetched_);
    }
    WakeupBatch wakes;  // threads this cycle hands replies to are woken at its end
    const bool groups_changed = !adds.empty() || !removes.empty();
    AddGroups(&adds);
    RemoveGroups(&removes);
    auto now = Clock::now();
    while (now >= last_tick_time_ + options_.tick_interval) {
      last_tick_time_ += options_.tick_interval;
      ++ticks;
    }
    // A long stall (a slow fsync, a stopped process) is not allowed to replay hundreds of
    // ticks at once: time jumps, but elections still need full timeouts of real time.
    if (ticks > options_.election_tick) ticks = options_.election_tick;
    for (auto& [group, target] : transfers) {
      if (auto it = groups_.find(group); it != groups_.end()) {
        Status s = it->second->core->TransferLeadership(target);
        if (!s.ok()) spdlog::info("group {}: transfer to {}: {}", group, target, s.ToString());
      }
    }
    transfers.clear();
    TakeSnapshots(&made, &fetched);
    StartReads(&reads);
    more = Cycle(&inbox, &proposals, ticks);
    if (ticks > 0 || groups_changed) PublishStatus();
    inbox.clear();
    proposals.clear();
  }
}

bool Driver::Cycle(std::vector<GroupMessage>* inbox, std::vector<Proposal>* proposals, int ticks) {
  stats_.cycles.fetch_add(1, std::memory_order_relaxed);
  for (int t = 0; t < ticks; ++t) {
    for (auto& [id, g] : groups_) g->core->Tick();
  }
  if (ticks > 0) {
    for (auto& [id, g] : groups_) {
      if (g->eager_ticks <= 0) continue;
      g->eager_ticks -= ticks;
      CampaignEagerly(*g);
    }
  }
  for (NodeId peer : transport_->TakeUnreachable()) {
    for (auto& [id, g] : groups_) g->core->ReportUnreachable(peer);
  }
  for (auto& gm : *inbox) {
    auto it = groups_.find(gm.group);
    if (it == groups_.end()) continue;  // not (or no longer) hosted here
    if (MaybeFetch(*it->second, gm.msg)) continue;  // stepped once its data is here
    Group& g = *it->second;
    if (gm.msg.compact_floor && g.core->role() != Role::kLeader) g.RaiseFloor(*gm.msg.compact_floor);
    Status s = g.core->Step(gm.msg);
    if (!s.ok()) spdlog::debug("group {}: step {}: {}", gm.group, MessageToString(gm.msg), s.ToString());
  }
  // Membership changes are proposed in turn; data proposals are gathered per group and
  // proposed in batches after them (their relative order within a group is kept).
  std::map<Group*, std::vector<Proposal*>> data_proposals;
  for (auto& p : *proposals) {
    auto it = groups_.find(p.group);
    if (it == groups_.end()) {
      p.done(Status::Unavailable("shard " + std::to_string(p.group) + " moved away from this node; retry"), {});
      continue;
    }
    Group& g = *it->second;
    if (!p.conf_change) {
      data_proposals[&g].push_back(&p);
      continue;
    }
    auto pos = g.core->ProposeConfChange(*p.conf_change);
    if (!pos.ok()) {
      p.done(pos.status().WithContext("shard " + std::to_string(p.group)), {});
      continue;
    }
    g.Await(*pos).push_back(std::move(p.done));
  }
  for (auto& [g, props] : data_proposals) ProposeBatched(*g, &props);

  // Stage every group's Ready into one batch. Entries this node had already made durable
  // are applied in a separate batch written first, without an fsync: their proposers can
  // be answered without waiting for this cycle's fsync of newer entries.
  storage::WriteBatch batch;
  storage::WriteBatch apply_batch;
  AppliedTable::Changes batch_applied, ahead_applied;  // the applied indexes each batch moves
  bool must_sync = false;
  std::vector<Group*> ready;
  std::vector<std::vector<std::any>> results;
  std::vector<std::vector<Command>> applied_entries;
  std::vector<bool> applied_ahead;
  for (auto& [id, gp] : groups_) {
    Group& g = *gp;
    if (!g.held) {
      if (!g.core->HasReady()) continue;
      g.held = g.core->GetReady();
    }
    const Ready& rd = *g.held;
    uint64_t base_applied = g.applied;
    if (rd.snapshot) {
      // The leader's state replaces ours: log, state machine and applied index together.
      // Restore may act outside the batch (ingest files), so the image is recorded first
      // and a restart redoes it (OpenGroup). If it fails, the Ready is kept and retried.
      Snapshot record = *rd.snapshot;
      storage::WriteBatch rb;
      rb.Put(storage::Cf::kMeta, RestoreKey(g.id), EncodeSnapshot(record));
      Status rs = engine_->Write(rb, true);
      if (rs.ok()) rs = g.sm->Restore(g.id, rd.snapshot->data, &batch);
      if (!rs.ok()) {
        auto now = Clock::now();
        if (now - last_failure_log_ > std::chrono::seconds(10)) {
          spdlog::error("group {}: installing the snapshot at {}; retrying: {}", g.id, rd.snapshot->meta.index,
                        rs.ToString());
          last_failure_log_ = now;
        }
        continue;
      }
      Snapshot mark;  // the log keeps where it now starts; the image went to the state machine
      mark.meta = rd.snapshot->meta;
      g.log->ApplySnapshot(mark, &batch);
      base_applied = std::max(base_applied, rd.snapshot->meta.index);
      batch_applied[g.id] = base_applied;
      batch.Delete(storage::Cf::kMeta, RestoreKey(g.id));
    }
    Status s = g.log->Append(rd.entries, &batch);
    if (!s.ok()) spdlog::error("group {}: {}", g.id, s.ToString());
    // Term and vote must be durable before any message that depends on them goes out. The
    // commit index need not be (a restarted core takes it from the applied index and the
    // leader), so a Ready that only advanced it costs no write.
    if (rd.hard_state && (rd.hard_state->term != g.log->hard_state().term ||
                          rd.hard_state->vote != g.log->hard_state().vote)) {
      g.log->SetHardState(*rd.hard_state, &batch);
    }
    must_sync |= rd.must_sync;

    std::vector<Command> apply;
    uint64_t last_applied = base_applied;
    for (const Entry& e : rd.committed_entries) {
      if (e.index <= base_applied) continue;
      last_applied = e.index;
      if (e.type == EntryType::kNormal && !e.data.empty()) apply.push_back(Command{e.index, 0, e.data});
      if (e.type != EntryType::kBatch) continue;
      auto commands = DecodeBatch(e.data);
      if (!commands.ok()) {
        // Every replica holds the same bytes, so every one skips the same commands; the
        // proposers (if here) are told, by CompleteApplied.
        spdlog::error("group {}: entry {}: {}; its commands are skipped", g.id, e.index, commands.status().ToString());
        continue;
      }
      uint32_t position = 0;
      for (std::string_view c : *commands) apply.push_back(Command{e.index, position++, c});
    }
    // Committed entries are never truncated, so those within the durable log can be
    // applied ahead of it; a snapshot and its follow-ups go with the log write.
    const bool ahead = !rd.snapshot && last_applied <= g.log->LastIndex();
    storage::WriteBatch& into = ahead ? apply_batch : batch;
    results.emplace_back();
    if (!apply.empty()) g.sm->Apply(g.id, apply, &into, &results.back());
    if (last_applied != base_applied) (ahead ? ahead_applied : batch_applied)[g.id] = last_applied;
    applied_entries.push_back(std::move(apply));
    applied_ahead.push_back(ahead);
    ready.push_back(&g);
  }
  // Compactions decided last cycle ride in this cycle's batch.
  std::vector<Group*> compacted;
  for (auto& [id, gp] : groups_) {
    Group& g = *gp;
    if (g.compact_to == 0) continue;
    Snapshot mark;  // a compaction record: where the log now starts; the state is the data CF
    mark.meta.index = g.compact_to;
    auto term = g.core->Term(g.compact_to);
    auto conf = g.core->ConfStateAt(g.compact_to);
    g.compact_to = 0;
    if (!term.ok() || !conf.ok()) continue;
    mark.meta.term = *term;
    mark.meta.conf = *conf;
    if (g.log->Compact(mark, &batch).ok()) compacted.push_back(&g);
  }
  if (ready.empty() && compacted.empty()) {
    PublishLeases(last_tick_time_);
    return false;
  }

  // A leader's appends go out before its own write, so the fsyncs overlap (see
  // raft_core.h). Everything else waits for the write.
  std::map<NodeId, std::vector<GroupMessage>> early;
  for (Group* g : ready) {
    for (auto& m : g->held->early_messages) {
      g->StampFloor(m);
      early[m.to].push_back(GroupMessage{g->id, std::move(m)});
    }
    g->held->early_messages.clear();
  }
  Send(&early);

  auto write = [&](storage::WriteBatch& b, const AppliedTable::Changes& applied, bool sync) {
    Status s = applied_.Stage(applied, &b);
    if (s.ok() && b.count() == 0) return true;
    auto start = Clock::now();
    if (s.ok()) s = engine_->Write(b, sync);
    stats_.write_nanos.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count(),
                                 std::memory_order_relaxed);
    if (s.ok()) {
      applied_.Commit(applied);
      stats_.writes.fetch_add(1, std::memory_order_relaxed);
      if (sync) stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    // Nothing more of this cycle is durable: send nothing more, advance nothing, retry
    // later. Entries applied ahead stay applied (g.applied), so the retry skips them.
    stats_.write_failures.fetch_add(1, std::memory_order_relaxed);
    for (Group* g : ready) g->log->OnWriteFailed();
    for (Group* g : compacted) g->log->OnWriteFailed();
    std::set<StateMachine*> machines;
    for (Group* g : ready) machines.insert(g->sm);
    for (StateMachine* m : machines) m->OnWriteFailed();
    // Say it once, then at most every 10 s: a full disk fails every cycle until freed.
    auto now = Clock::now();
    if (now - last_failure_log_ > std::chrono::seconds(10)) {
      spdlog::error("replication write failed ({} groups; {} failures so far); retrying: {}", ready.size(),
                    stats_.write_failures.load(), s.ToString());
      last_failure_log_ = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return false;
  };
  if (!write(apply_batch, ahead_applied, false)) return false;
  for (size_t i = 0; i < ready.size(); ++i) {
    if (applied_ahead[i]) CompleteApplied(*ready[i], applied_entries[i], &results[i]);
  }
  // The replies to entries applied ahead go out during the fsync, not after it.
  if (options_.sync && must_sync) WakeupBatch::Flush();
  if (!write(batch, batch_applied, options_.sync && must_sync)) return false;

  // Durable: publish, send, complete, advance.
  for (Group* g : compacted) {
    if (std::find(ready.begin(), ready.end(), g) == ready.end()) g->log->OnWritten();
    g->appended_bytes = 0;
    stats_.compactions.fetch_add(1, std::memory_order_relaxed);
  }
  std::map<NodeId, std::vector<GroupMessage>> outbox;
  for (size_t i = 0; i < ready.size(); ++i) {
    Group& g = *ready[i];
    Ready& rd = *g.held;
    g.log->OnWritten();
    if (rd.snapshot) g.sm->Restored(g.id, rd.snapshot->data);
    if (rd.snapshot && rd.snapshot->meta.index > g.applied) {
      g.applied = rd.snapshot->meta.index;
      stats_.snapshots_installed.fetch_add(1, std::memory_order_relaxed);
      // Proposals the snapshot covers may or may not be in it; a retry is answered from
      // the dedup table that came with it, so say "retry", not "failed".
      for (auto it = g.pending.begin(); it != g.pending.end() && it->first <= g.applied;) {
        for (auto& done : it->second.done) {
          done(Status::Unavailable("shard " + std::to_string(g.id) + ": replaced by the leader's snapshot; retry"), {});
        }
        it = g.pending.erase(it);
      }
    }
    stats_.entries_persisted.fetch_add(rd.entries.size(), std::memory_order_relaxed);
    for (const Entry& e : rd.entries) g.appended_bytes += e.data.size();
    for (auto& m : rd.messages) {
      g.StampFloor(m);
      NodeId to = m.to;
      outbox[to].push_back(GroupMessage{g.id, std::move(m)});
    }
    if (rd.soft_state) {
      if (rd.soft_state->leader != g.leader) {
        g.leader = rd.soft_state->leader;
        g.pub->leader.store(g.leader, std::memory_order_relaxed);
        stats_.leader_changes.fetch_add(1, std::memory_order_relaxed);
      }
      if (rd.soft_state->role == Role::kLeader) {
        g.term_start = UINT64_MAX;
      }
    }
    if (g.core->role() == Role::kLeader && g.term_start == UINT64_MAX) {
      for (const Entry& e : rd.entries) {
        if (e.term == g.core->term()) {
          g.term_start = e.index;
          break;
        }
      }
    }
    CompleteApplied(g, applied_entries[i], &results[i]);
    for (const ReadState& rs : rd.read_states) {
      auto it = g.reads_unconfirmed.find(rs.context);
      if (it == g.reads_unconfirmed.end()) continue;
      g.reads_confirmed.emplace(rs.index, std::move(it->second));
      g.reads_unconfirmed.erase(it);
    }
    if (rd.soft_state && rd.soft_state->role != Role::kLeader) {
      g.FailReads(Status::NotLeader("shard " + std::to_string(g.id) + ": leadership was lost before the read was confirmed"));
    }
    while (!g.reads_confirmed.empty() && g.reads_confirmed.begin()->first <= g.applied) {
      auto done = std::move(g.reads_confirmed.begin()->second);
      g.reads_confirmed.erase(g.reads_confirmed.begin());
      done(Status::OK());
    }
    g.core->Advance();
    g.held.reset();
    g.compact_to = CompactionPoint(g);  // the next cycle's batch carries it
  }
  Send(&outbox);
  PublishLeases(last_tick_time_);
  // Advance() can commit entries without any input arriving: a lone voter's, once they
  // are durable (and a leader's whose followers acknowledged first). Waiting for the next
  // tick would add up to a tick to every such write. Only committed entries not yet
  // applied count: applying them is progress, so this never spins (any other Ready, such
  // as a retry of a snapshot still being made, waits for input or the tick).
  for (Group* g : ready) {
    if (g->core->committed() > g->applied) return true;
  }
  return false;
}

void Driver::ProposeBatched(Group& g, std::vector<Proposal*>* props) {
  const size_t n = props->size();
  for (size_t i = 0; i < n;) {
    // The longest run from i that fits one batch; empty data (which the core refuses)
    // and a proposal too big to share go alone.
    uint64_t bytes = 4 + (*props)[i]->data.size();
    size_t j = i + 1;
    while (j < n && !(*props)[i]->data.empty() && !(*props)[j]->data.empty() &&
           bytes + 4 + (*props)[j]->data.size() <= options_.max_batch_bytes) {
      bytes += 4 + (*props)[j]->data.size();
      ++j;
    }
    Result<LogPosition> pos = [&] {
      if (j == i + 1) return g.core->Propose(std::move((*props)[i]->data));
      std::string data;
      data.reserve(bytes);
      for (size_t k = i; k < j; ++k) AppendToBatch(&data, (*props)[k]->data);
      return g.core->Propose(std::move(data), EntryType::kBatch);
    }();
    if (pos.ok()) {
      auto& waiting = g.Await(*pos);
      for (size_t k = i; k < j; ++k) waiting.push_back(std::move((*props)[k]->done));
    } else {
      const Status s = pos.status().WithContext("shard " + std::to_string(g.id));
      for (size_t k = i; k < j; ++k) (*props)[k]->done(s, {});
    }
    i = j;
  }
}

void Driver::CompleteApplied(Group& g, const std::vector<Command>& applied, std::vector<std::any>* results) {
  // Complete proposals: an entry applied at a proposal's index with the proposal's term
  // is that proposal, and its k-th command answers its k-th proposer; anything else there
  // means it was lost to a leader change. Entries completed already (applied ahead of the
  // log write) are skipped.
  size_t next = 0;  // applied[next] is the first command of an entry not yet passed
  for (const Entry& e : g.held->committed_entries) {
    const size_t first = next;
    while (next < applied.size() && applied[next].index == e.index) ++next;
    if (e.index <= g.applied) continue;
    auto it = g.pending.find(e.index);
    if (it != g.pending.end()) {
      auto& dones = it->second.done;
      for (size_t k = 0; k < dones.size(); ++k) {
        if (it->second.term != e.term) {
          dones[k](Status::NotLeader("shard " + std::to_string(g.id) +
                                     ": leadership changed before the write committed; it was not applied"),
                   {});
        } else if (e.type == EntryType::kConfChange) {
          dones[k](Status::OK(), {});
        } else if (first + k < next && first + k < results->size()) {
          dones[k](Status::OK(), std::move((*results)[first + k]));
        } else {
          dones[k](Status::Corruption("shard " + std::to_string(g.id) + ": log entry " + std::to_string(e.index) +
                                      " does not hold this proposal; it was not applied"),
                   {});
        }
      }
      g.pending.erase(it);
    }
    g.applied = e.index;
    stats_.entries_applied.fetch_add(1, std::memory_order_relaxed);
  }
}

void Driver::Send(std::map<NodeId, std::vector<GroupMessage>>* outbox) {
  for (auto& [to, msgs] : *outbox) {
    stats_.messages_sent.fetch_add(msgs.size(), std::memory_order_relaxed);
    transport_->Send(to, std::move(msgs));
  }
  outbox->clear();
}

void Driver::PublishLeases(Clock::time_point tick_time) {
  // Ticks sit on a fixed grid of the monotonic clock (tick_time is the grid point of the
  // core's now()), and the core dates acknowledgements by send tick, so a lease of k more
  // ticks ends at tick_time + k intervals in real time. Followers time out no sooner than
  // election_tick - 1 intervals after hearing from us, and the lease is shorter than that
  // by the core's margin, so no other leader can exist before the published deadline.
  for (auto& [id, gp] : groups_) {
    Group& g = *gp;
    const RaftCore& c = *g.core;
    uint64_t ticks = c.ReadLeaseTicks();
    bool local = c.role() == Role::kLeader && ticks > 0 && g.term_start != UINT64_MAX && g.applied >= g.term_start;
    int64_t until = SteadyNanos(tick_time + options_.tick_interval * static_cast<int64_t>(ticks));
    g.pub->lease_deadline_ns.store(local ? until : 0, std::memory_order_release);
  }
}

void Driver::PublishStatus() {
  std::vector<GroupStatus> status;
  status.reserve(groups_.size());
  for (auto& [id, gp] : groups_) {
    const RaftCore& c = *gp->core;
    status.push_back(GroupStatus{gp->id, c.leader(), c.role(), c.term(), c.committed(), gp->applied,
                                 gp->log->FirstIndex(), c.LastIndex(), c.conf(), c.Peers()});
  }
  std::lock_guard lock(mu_);
  status_ = std::move(status);
}

}  // namespace ring::replication
