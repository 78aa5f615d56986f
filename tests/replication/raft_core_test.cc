// Tests for replication/raft_core.{h,cc}. Protocol tests name the rule they check, in the
// style of etcd's raft_paper_test.go: "Reference: Raft §5.2" is the Raft paper (Ongaro &
// Ousterhout, 2014), "thesis §4.1" is Ongaro's dissertation (2014).
//
// Single-replica tests drive one RaftCore by hand and look at its Ready; group tests use
// the simulated cluster (tests/sim/cluster.h), whose invariant checker also runs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include "replication/mem_storage.h"
#include "replication/raft_core.h"
#include "tests/sim/cluster.h"

namespace ring::replication {
namespace {

ConfState Voters(std::vector<NodeId> v, std::vector<NodeId> learners = {}) {
  ConfState c;
  c.voters = std::move(v);
  c.learners = std::move(learners);
  return c;
}

Config TestConfig(NodeId id, const LogStorage* storage) {
  Config c;
  c.id = id;
  c.storage = storage;
  c.seed = 42;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  // The paper's algorithm; tests of the extensions switch them on.
  c.pre_vote = false;
  c.check_quorum = false;
  return c;
}

// One replica with its own disk, driven by hand.
struct Replica {
  MemStorage disk;
  std::unique_ptr<RaftCore> core;
  std::vector<Entry> applied;
  std::vector<ReadState> reads;

  Replica(NodeId id, ConfState conf, Config (*tweak)(Config) = nullptr) : disk(std::move(conf)) {
    Start(id, tweak);
  }
  void Start(NodeId id, Config (*tweak)(Config) = nullptr) {
    Config c = TestConfig(id, &disk);
    if (tweak != nullptr) c = tweak(c);
    auto r = RaftCore::Create(c);
    REQUIRE(r.ok());
    core = std::move(r).value();
  }
  RaftCore* operator->() { return core.get(); }

  // Runs Ready cycles the way a driver must (persist, then send, then apply) and returns
  // the messages to send.
  std::vector<Message> Flush() {
    std::vector<Message> out;
    while (core->HasReady()) {
      Ready rd = core->GetReady();
      if (rd.snapshot) REQUIRE(disk.ApplySnapshot(*rd.snapshot).ok());
      REQUIRE(disk.Append(rd.entries).ok());
      if (rd.hard_state) disk.SetHardState(*rd.hard_state);
      for (Message& m : rd.early_messages) out.push_back(std::move(m));
      for (Message& m : rd.messages) out.push_back(std::move(m));
      for (Entry& e : rd.committed_entries) applied.push_back(std::move(e));
      for (ReadState& r : rd.read_states) reads.push_back(std::move(r));
      core->Advance();
    }
    return out;
  }
  void TickN(int n) {
    for (int i = 0; i < n; i++) core->Tick();
  }
};

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType t) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == t) out.push_back(m);
  }
  return out;
}

Message Msg(MessageType type, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

Message VoteResp(NodeId from, NodeId to, uint64_t term, bool reject = false) {
  Message m = Msg(MessageType::kVoteResp, from, to, term);
  m.reject = reject;
  return m;
}

Message AppendResp(NodeId from, NodeId to, uint64_t term, uint64_t index) {
  Message m = Msg(MessageType::kAppendResp, from, to, term);
  m.index = index;
  return m;
}

Entry E(uint64_t index, uint64_t term, std::string data = "x") {
  Entry e;
  e.index = index;
  e.term = term;
  e.data = std::move(data);
  return e;
}

// Makes `r` (in a group of `voters`) the leader of the next term and acknowledges its
// no-op from every voter, so that it has committed an entry of its term.
void ElectAndCommit(Replica& r, const std::vector<NodeId>& voters) {
  REQUIRE(r->Campaign().ok());
  r.Flush();
  for (NodeId v : voters) {
    if (v != r->id()) REQUIRE(r->Step(VoteResp(v, r->id(), r->term())).ok());
  }
  REQUIRE(r->role() == Role::kLeader);
  r.Flush();
  for (NodeId v : voters) {
    if (v != r->id()) REQUIRE(r->Step(AppendResp(v, r->id(), r->term(), r->LastIndex())).ok());
  }
  r.Flush();
  REQUIRE(r->committed() == r->LastIndex());
}

// --- elections -------------------------------------------------------------------------

TEST_CASE("a follower campaigns after a randomized election timeout", "[replication]") {
  // Reference: Raft §5.2 (election timeouts are chosen randomly from a fixed interval,
  // here [election_tick, 2*election_tick-1]) and §9.3.
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    MemStorage disk(Voters({1, 2, 3}));
    Config c = TestConfig(1, &disk);
    c.seed = seed;
    auto core = std::move(RaftCore::Create(c)).value();
    int ticks = 0;
    while (core->role() == Role::kFollower && ticks < 100) {
      core->Tick();
      ticks++;
    }
    REQUIRE(core->role() == Role::kCandidate);
    CHECK(ticks >= 10);
    CHECK(ticks <= 19);
    seen.insert(ticks);
  }
  CHECK(seen.size() > 3);  // the seed matters
}

TEST_CASE("the same seed gives the same election timeout", "[replication]") {
  // Determinism: randomness comes only from Config::seed, never from a global RNG.
  auto timeout = [](uint64_t seed) {
    MemStorage disk(Voters({1, 2, 3}));
    Config c = TestConfig(1, &disk);
    c.seed = seed;
    auto core = std::move(RaftCore::Create(c)).value();
    int ticks = 0;
    while (core->role() == Role::kFollower) {
      core->Tick();
      ticks++;
    }
    return ticks;
  };
  CHECK(timeout(7) == timeout(7));
  CHECK(timeout(99) == timeout(99));
}

TEST_CASE("a candidate votes for itself, persists the vote and requests votes", "[replication]") {
  // Reference: Raft §5.2: "a follower increments its current term and transitions to
  // candidate state. It then votes for itself and issues RequestVote RPCs".
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  Ready rd = r->GetReady();
  REQUIRE(rd.hard_state);
  CHECK(rd.hard_state->term == 1);
  CHECK(rd.hard_state->vote == 1);
  CHECK(rd.must_sync);
  auto votes = OfType(rd.messages, MessageType::kVote);
  REQUIRE(votes.size() == 2);
  for (const Message& m : votes) {
    CHECK(m.term == 1);
    CHECK(m.index == 0);
    CHECK(m.log_term == 0);
  }
  r->Advance();
}

TEST_CASE("a candidate with a majority of votes becomes leader and appends a no-op",
          "[replication]") {
  // Reference: Raft §5.2 (majority wins) and §8 (a leader commits a blank no-op entry at
  // the start of its term).
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  CHECK(r->role() == Role::kLeader);
  CHECK(r->LastIndex() == 1);
  CHECK(*r->Term(1) == 1);
  auto apps = OfType(r.Flush(), MessageType::kAppend);
  REQUIRE(apps.size() == 2);
  REQUIRE(apps[0].entries.size() == 1);
  CHECK(apps[0].entries[0].data.empty());
}

TEST_CASE("a candidate that a majority rejects returns to follower", "[replication]") {
  // Reference: Raft §5.2.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1, true)).ok());
  CHECK(r->role() == Role::kCandidate);
  REQUIRE(r->Step(VoteResp(3, 1, 1, true)).ok());
  CHECK(r->role() == Role::kFollower);
}

TEST_CASE("a replica grants at most one vote per term", "[replication]") {
  // Reference: Raft §5.2: "each server will vote for at most one candidate in a given
  // term, on a first-come-first-served basis"; Figure 2 (votedFor is persistent).
  Replica r(1, Voters({1, 2, 3}));
  Message v2 = Msg(MessageType::kVote, 2, 1, 1);
  REQUIRE(r->Step(v2).ok());
  Ready rd = r->GetReady();
  REQUIRE(rd.hard_state);
  CHECK(rd.hard_state->vote == 2);  // persisted in the same Ready that sends the grant
  REQUIRE(rd.messages.size() == 1);
  CHECK_FALSE(rd.messages[0].reject);
  r->Advance();
  REQUIRE(r->Step(Msg(MessageType::kVote, 3, 1, 1)).ok());
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK(out[0].reject);
  // Asking again is fine (a lost reply).
  REQUIRE(r->Step(v2).ok());
  out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].reject);
}

TEST_CASE("a replica rejects a candidate whose log is less up-to-date", "[replication]") {
  // Reference: Raft §5.4.1: compare the last entries' terms, then the logs' lengths.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 2)}).ok());
  r.disk.SetHardState(HardState{2, 0, 0});
  r.Start(1);
  struct Case {
    uint64_t last_term, last_index;
    bool granted;
  } cases[] = {{1, 5, false}, {2, 1, false}, {2, 2, true}, {2, 9, true}, {3, 1, true}};
  uint64_t term = 3;
  for (const Case& c : cases) {
    Message m = Msg(MessageType::kVote, 2, 1, term++);
    m.log_term = c.last_term;
    m.index = c.last_index;
    REQUIRE(r->Step(m).ok());
    auto out = r.Flush();
    REQUIRE(out.size() == 1);
    CHECK(out[0].reject == !c.granted);
  }
}

TEST_CASE("any replica steps down when it sees a higher term", "[replication]") {
  // Reference: Raft §5.1: "If a candidate or leader discovers that its term is out of
  // date, it immediately reverts to follower state."
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  Message hb = Msg(MessageType::kHeartbeat, 2, 1, 5);
  REQUIRE(r->Step(hb).ok());
  CHECK(r->role() == Role::kFollower);
  CHECK(r->term() == 5);
  CHECK(r->leader() == 2);
}

TEST_CASE("a replica ignores messages from older terms", "[replication]") {
  // Reference: Raft §5.1: "If a server receives a request with a stale term number, it
  // rejects the request." A stale append gets a reply carrying our term.
  Replica r(1, Voters({1, 2, 3}));
  r.disk.SetHardState(HardState{4, 0, 0});
  r.Start(1, [](Config c) {
    c.check_quorum = true;
    return c;
  });
  Message app = Msg(MessageType::kAppend, 2, 1, 3);
  app.entries = {E(1, 3)};
  REQUIRE(r->Step(app).ok());
  CHECK(r->LastIndex() == 0);
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == MessageType::kAppendResp);
  CHECK(out[0].term == 4);
}

// --- log replication -------------------------------------------------------------------

TEST_CASE("the leader commits an entry once a majority stored it, and says so", "[replication]") {
  // Reference: Raft §5.3: "once the entry has been safely replicated [on a majority] the
  // leader applies the entry ... The leader keeps track of the highest index it knows
  // to be committed, and it includes that index in future AppendEntries RPCs".
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  auto pos = r->Propose("hello");
  REQUIRE(pos.ok());
  CHECK(pos->index == 2);
  r.Flush();
  CHECK(r->committed() == 1);
  REQUIRE(r->Step(AppendResp(2, 1, 1, 2)).ok());
  CHECK(r->committed() == 2);
  auto apps = OfType(r.Flush(), MessageType::kAppend);
  REQUIRE_FALSE(apps.empty());
  CHECK(apps.back().commit == 2);
  REQUIRE_FALSE(r.applied.empty());
  CHECK(r.applied.back().data == "hello");
}

TEST_CASE("the leader counts itself only once its entries are durable", "[replication]") {
  // The persistence rule: a replica's own copy counts toward a majority only after the
  // driver persisted it, so a single-voter group commits in the Ready after the write.
  Replica r(1, Voters({1}));
  REQUIRE(r->Campaign().ok());
  CHECK(r->role() == Role::kLeader);
  Ready rd = r->GetReady();
  CHECK(rd.entries.size() == 1);
  CHECK(rd.committed_entries.empty());
  REQUIRE(r.disk.Append(rd.entries).ok());
  r->Advance();
  CHECK(r->committed() == 1);
  r.Flush();
  CHECK(r.applied.size() == 1);
}

TEST_CASE("a leader never commits an entry of an earlier term by counting replicas",
          "[replication]") {
  // Reference: Raft §5.4.2 and Figure 8: "Raft never commits log entries from previous
  // terms by counting replicas. Only log entries from the leader's current term are
  // committed by counting replicas."
  Replica r(1, Voters({1, 2, 3, 4, 5}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 2)}).ok());  // index 2: written in term 2, never committed
  r.disk.SetHardState(HardState{3, 0, 1});
  r.Start(1);
  REQUIRE(r->Campaign().ok());  // term 4
  r.Flush();
  for (NodeId v : {2, 3}) REQUIRE(r->Step(VoteResp(v, 1, 4)).ok());
  REQUIRE(r->role() == Role::kLeader);
  r.Flush();
  CHECK(r->LastIndex() == 3);  // the no-op
  // A majority (1, 2, 3) now holds index 2, from term 2: not committed.
  for (NodeId v : {2, 3}) REQUIRE(r->Step(AppendResp(v, 1, 4, 2)).ok());
  r.Flush();
  CHECK(r->committed() == 1);
  // Once the no-op of term 4 is on a majority, it commits, and index 2 with it.
  for (NodeId v : {2, 3}) REQUIRE(r->Step(AppendResp(v, 1, 4, 3)).ok());
  r.Flush();
  CHECK(r->committed() == 3);
}

TEST_CASE("a follower rejects an append whose previous entry does not match, with a hint",
          "[replication]") {
  // Reference: Raft §5.3 (the consistency check) and the optimization at the end of
  // §5.3: the reply lets the leader skip all conflicting entries of a term at once.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2), E(5, 2)}).ok());
  r.disk.SetHardState(HardState{2, 0, 0});
  r.Start(1);
  Message app = Msg(MessageType::kAppend, 2, 1, 3);
  app.index = 5;
  app.log_term = 3;  // the leader has term 3 at index 5
  REQUIRE(r->Step(app).ok());
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK(out[0].reject);
  CHECK(out[0].index == 5);
  // Our last index whose term is <= 3 is 5 itself (term 2): the leader continues there.
  CHECK(out[0].reject_hint == 5);
  CHECK(out[0].log_term == 2);

  app.index = 7;  // beyond our log
  app.log_term = 3;
  REQUIRE(r->Step(app).ok());
  out = r.Flush();
  CHECK(out[0].reject_hint == 5);
}

TEST_CASE("the leader backs up a whole term per rejection", "[replication]") {
  // Reference: Raft §5.3 (fast backtracking), thesis §3.5. The leader has terms
  // 1 1 1 4 4 5 5 6 6 6 and the follower 1 1 1 2 2 2 3 3 3 3 3 (Figure 7 (f)).
  Replica leader(1, Voters({1, 2}));
  std::vector<Entry> lents;
  const uint64_t lterms[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  for (uint64_t i = 0; i < 10; i++) lents.push_back(E(i + 1, lterms[i]));
  REQUIRE(leader.disk.Append(lents).ok());
  leader.disk.SetHardState(HardState{7, 0, 3});
  leader.Start(1);
  Replica follower(2, Voters({1, 2}));
  std::vector<Entry> fents;
  const uint64_t fterms[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};
  for (uint64_t i = 0; i < 11; i++) fents.push_back(E(i + 1, fterms[i], i < 3 ? "x" : "y"));
  REQUIRE(follower.disk.Append(fents).ok());
  follower.disk.SetHardState(HardState{7, 0, 3});
  follower.Start(2);

  REQUIRE(leader->Campaign().ok());
  leader.Flush();
  REQUIRE(leader->Step(VoteResp(2, 1, 8)).ok());
  int round_trips = 0;
  std::vector<Message> to_follower = leader.Flush();
  while (!to_follower.empty() && round_trips < 20) {
    std::vector<Message> to_leader;
    for (const Message& m : to_follower) {
      if (m.type != MessageType::kAppend) continue;
      REQUIRE(follower->Step(m).ok());
    }
    to_leader = follower.Flush();
    to_follower.clear();
    for (const Message& m : to_leader) REQUIRE(leader->Step(m).ok());
    to_follower = OfType(leader.Flush(), MessageType::kAppend);
    round_trips++;
  }
  CHECK(follower->LastIndex() == 11);
  for (uint64_t i = 1; i <= 11; i++) CHECK(*follower->Term(i) == *leader->Term(i));
  // Probe at 10 rejected (hint 10/3 -> leader skips to 7), probe at 7 ... a few trips,
  // not one per conflicting entry.
  CHECK(round_trips <= 5);
}

TEST_CASE("a follower replaces a conflicting suffix with the leader's entries", "[replication]") {
  // Reference: Raft §5.3: "If an existing entry conflicts with a new one (same index but
  // different terms), delete the existing entry and all that follow it."
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  r.disk.SetHardState(HardState{1, 0, 1});
  r.Start(1);
  Message app = Msg(MessageType::kAppend, 2, 1, 2);
  app.index = 1;
  app.log_term = 1;
  app.entries = {E(2, 2, "new")};
  app.commit = 1;
  REQUIRE(r->Step(app).ok());
  Ready rd = r->GetReady();
  REQUIRE(rd.entries.size() == 1);
  CHECK(rd.entries[0].index == 2);
  REQUIRE(r.disk.Append(rd.entries).ok());
  r->Advance();
  CHECK(r.disk.LastIndex() == 2);
  CHECK(*r.disk.Term(2) == 2);
  CHECK(r->LastIndex() == 2);
}

TEST_CASE("a conflicting append can replace part of the tail not yet persisted",
          "[replication]") {
  // Reference: Raft §5.3, with the Ready contract: entries the driver has not persisted
  // yet are replaced in memory, and the next Ready carries the survivors plus the
  // replacement, so the driver's append truncates whatever it had written.
  Replica r(1, Voters({1, 2, 3}));
  Message a = Msg(MessageType::kAppend, 2, 1, 1);
  a.entries = {E(1, 1), E(2, 1), E(3, 1)};
  REQUIRE(r->Step(a).ok());  // not persisted: no Flush
  Message b = Msg(MessageType::kAppend, 3, 1, 2);
  b.index = 1;
  b.log_term = 1;
  b.entries = {E(2, 2, "new")};
  REQUIRE(r->Step(b).ok());
  CHECK(r->LastIndex() == 2);
  Ready rd = r->GetReady();
  REQUIRE(rd.entries.size() == 2);
  CHECK(rd.entries[0].term == 1);
  CHECK(rd.entries[1].term == 2);
  REQUIRE(r.disk.Append(rd.entries).ok());
  r->Advance();
  CHECK(r.disk.LastIndex() == 2);
  CHECK(*r.disk.Term(2) == 2);
}

TEST_CASE("a follower answers an append below its commit index with its commit index",
          "[replication]") {
  // Reference: Raft §5.4 (Leader Completeness): committed entries are never replaced, so
  // a follower does not even look at entries it has already committed; it tells the
  // (possibly delayed or duplicated) sender where to resume.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 1)}).ok());
  r.disk.SetHardState(HardState{1, 0, 2});
  r.Start(1);
  Message app = Msg(MessageType::kAppend, 2, 1, 2);
  app.index = 1;
  app.log_term = 1;
  app.entries = {E(2, 2)};
  REQUIRE(r->Step(app).ok());
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].reject);
  CHECK(out[0].index == 2);
  CHECK(*r->Term(2) == 1);
  CHECK(r->fatal().ok());
}

TEST_CASE("a follower only commits what it knows matches the leader", "[replication]") {
  // Reference: Raft Figure 2, AppendEntries rule 5: commitIndex = min(leaderCommit,
  // index of last new entry).
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r.disk.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());  // 2 and 3 may be stale
  r.disk.SetHardState(HardState{1, 0, 0});
  r.Start(1);
  Message app = Msg(MessageType::kAppend, 2, 1, 2);
  app.index = 0;
  app.log_term = 0;
  app.entries = {E(1, 1)};
  app.commit = 3;
  REQUIRE(r->Step(app).ok());
  CHECK(r->committed() == 1);
}

TEST_CASE("appends are pipelined up to the in-flight cap and the message size cap",
          "[replication]") {
  // Flow control (etcd's Progress/Inflights): a follower in replicate state gets at most
  // max_inflight_msgs unacknowledged appends of at most max_size_per_msg bytes each.
  Replica r(1, Voters({1, 2}), [](Config c) {
    c.max_inflight_msgs = 2;
    c.max_size_per_msg = 1;  // one entry per message
    return c;
  });
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  r.Flush();
  REQUIRE(r->Step(AppendResp(2, 1, 1, 1)).ok());  // probe -> replicate
  r.Flush();
  auto with_entries = [](const std::vector<Message>& msgs) {
    std::vector<Message> out;
    for (const Message& m : OfType(msgs, MessageType::kAppend)) {
      if (!m.entries.empty()) out.push_back(m);
    }
    return out;
  };
  for (int i = 0; i < 5; i++) REQUIRE(r->Propose("p" + std::to_string(i)).ok());
  auto apps = with_entries(r.Flush());
  REQUIRE(apps.size() == 2);
  for (const Message& m : apps) CHECK(m.entries.size() == 1);
  auto peers = r->Peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0].state == ProgressState::kReplicate);
  CHECK(peers[0].inflight == 2);
  // Acknowledging the first frees exactly one slot.
  REQUIRE(r->Step(AppendResp(2, 1, 1, apps[0].entries[0].index)).ok());
  apps = with_entries(r.Flush());
  REQUIRE(apps.size() == 1);
  CHECK(apps[0].entries[0].data == "p2");
}

TEST_CASE("a probing leader sends one append at a time", "[replication]") {
  // Flow control: in probe state the leader waits for a reply (or a heartbeat reply)
  // before sending again, so a lagging follower is not flooded with doomed appends.
  Replica r(1, Voters({1, 2}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  r.Flush();
  REQUIRE(r->Propose("a").ok());
  REQUIRE(r->Propose("b").ok());
  CHECK(OfType(r.Flush(), MessageType::kAppend).empty());
  Message hbr = Msg(MessageType::kHeartbeatResp, 2, 1, 1);
  REQUIRE(r->Step(hbr).ok());
  CHECK(OfType(r.Flush(), MessageType::kAppend).size() == 1);
}

// --- PreVote, CheckQuorum, stickiness --------------------------------------------------

TEST_CASE("PreVote does not change the term until a majority would vote", "[replication]") {
  // Reference: thesis §9.6: a pre-candidate asks first and only increments its term
  // once a majority said it could win.
  Replica r(1, Voters({1, 2, 3}), [](Config c) {
    c.pre_vote = true;
    return c;
  });
  REQUIRE(r->Campaign().ok());
  CHECK(r->role() == Role::kPreCandidate);
  CHECK(r->term() == 0);
  auto pre = OfType(r.Flush(), MessageType::kPreVote);
  REQUIRE(pre.size() == 2);
  CHECK(pre[0].term == 1);
  CHECK(r.disk.hard_state().term == 0);
  Message grant = Msg(MessageType::kPreVoteResp, 2, 1, 1);
  REQUIRE(r->Step(grant).ok());
  CHECK(r->role() == Role::kCandidate);
  CHECK(r->term() == 1);
}

TEST_CASE("a replica back from a partition does not depose a healthy leader", "[replication]") {
  // Reference: thesis §9.6 (PreVote) and §4.2.3 (disruptive servers): node 3 is cut off
  // and keeps timing out, but its pre-votes fail and it never bumps the term.
  sim::Trace off;
  sim::ClusterOptions o;
  o.voters = 3;
  sim::SimCluster c(o, &off);
  for (int i = 0; i < 40 && c.Leader() == 0; i++) {
    c.TickAll();
    c.Stabilize();
  }
  const NodeId leader = c.Leader();
  REQUIRE(leader != 0);
  const uint64_t term = c.node(leader)->core->term();
  const NodeId lonely = leader == 3 ? 2 : 3;
  for (NodeId x : c.AliveIds()) {
    if (x != lonely) c.CutBoth(lonely, x);
  }
  for (int i = 0; i < 100; i++) {
    c.TickAll();
    c.Stabilize();
  }
  CHECK(c.node(lonely)->core->term() == term);
  c.HealAll();
  for (int i = 0; i < 30; i++) {
    c.TickAll();
    c.Stabilize();
  }
  CHECK(c.Leader() == leader);
  CHECK(c.node(leader)->core->term() == term);
  CHECK_FALSE(c.failed());
}

TEST_CASE("a leader that loses its quorum steps down after an election timeout",
          "[replication]") {
  // Reference: thesis §6.2 (CheckQuorum): "a leader steps down if an election timeout
  // elapses without a successful round of heartbeats to a majority of its cluster".
  Replica r(1, Voters({1, 2, 3}), [](Config c) {
    c.check_quorum = true;
    return c;
  });
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  r.Flush();
  REQUIRE(r->Step(AppendResp(2, 1, 1, 1)).ok());
  r.TickN(10);  // node 2 answered during this round: still a quorum
  CHECK(r->role() == Role::kLeader);
  r.TickN(10);  // nobody answered
  CHECK(r->role() == Role::kFollower);
  CHECK(r->term() == 1);
}

TEST_CASE("a follower that hears from its leader ignores vote requests", "[replication]") {
  // Reference: thesis §4.2.3: "if a server receives a RequestVote request within the
  // minimum election timeout of hearing from a current leader, it does not update its
  // term or grant its vote". This is what keeps read leases safe.
  // Node 2 is a learner here only so that its own election timer stays out of the way;
  // stickiness does not depend on the role.
  Replica r(2, Voters({1, 3, 4}, {2}), [](Config c) {
    c.check_quorum = true;
    return c;
  });
  Message hb = Msg(MessageType::kHeartbeat, 1, 2, 1);
  REQUIRE(r->Step(hb).ok());
  r.Flush();
  r.TickN(5);
  Message vote = Msg(MessageType::kVote, 3, 2, 2);
  vote.index = 10;
  vote.log_term = 1;
  REQUIRE(r->Step(vote).ok());
  CHECK(r->term() == 1);
  CHECK(r.Flush().empty());
  r.TickN(5);  // an election timeout since the leader was heard
  REQUIRE(r->Step(vote).ok());
  CHECK(r->term() == 2);
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].reject);
}

TEST_CASE("a restarted replica waits an election timeout before voting", "[replication]") {
  // Lease safety across crashes: the replica may have acknowledged a leader just before
  // it went down, and that leader may be serving reads under a lease that counts on it.
  Replica r(2, Voters({1, 2, 3}), [](Config c) {
    c.check_quorum = true;
    return c;
  });
  Message vote = Msg(MessageType::kVote, 3, 2, 2);
  REQUIRE(r->Step(vote).ok());
  CHECK(r->term() == 0);
  r.TickN(10);
  REQUIRE(r->Step(vote).ok());
  CHECK(r->term() == 2);
}

TEST_CASE("a brand-new replica votes at once: no leader can count on it yet", "[replication]") {
  Replica r(2, Voters({1, 2, 3}), [](Config c) {
    c.check_quorum = true;
    c.brand_new = true;
    return c;
  });
  REQUIRE(r->Step(Msg(MessageType::kPreVote, 3, 2, 1)).ok());
  REQUIRE(r->Step(Msg(MessageType::kVote, 3, 2, 1)).ok());
  CHECK(r->term() == 1);
  // Once it has a leader, stickiness applies as usual.
  REQUIRE(r->Step(Msg(MessageType::kHeartbeat, 3, 2, 1)).ok());
  REQUIRE(r->Step(Msg(MessageType::kVote, 1, 2, 2)).ok());
  CHECK(r->term() == 1);
}

TEST_CASE("a learner never campaigns and never counts toward a majority", "[replication]") {
  // Learners (thesis §4.2.1, "catching up new servers"): non-voting members.
  Replica learner(4, Voters({1, 2, 3}, {4}));
  learner.TickN(100);
  CHECK(learner->role() == Role::kFollower);
  CHECK(learner->Campaign().code() == StatusCode::kInvalidArgument);

  Replica r(1, Voters({1, 2, 3}, {4}));
  ElectAndCommit(r, {1, 2, 3});
  auto pos = r->Propose("x");
  REQUIRE(pos.ok());
  r.Flush();
  REQUIRE(r->Step(AppendResp(4, 1, r->term(), pos->index)).ok());
  CHECK(r->committed() < pos->index);  // the learner's copy does not count
  REQUIRE(r->Step(AppendResp(2, 1, r->term(), pos->index)).ok());
  CHECK(r->committed() == pos->index);
}

// --- requests on the wrong replica -----------------------------------------------------

TEST_CASE("requests on a follower get NotLeader naming the leader", "[replication]") {
  Replica r(2, Voters({1, 2, 3}));
  auto p = r->Propose("x");
  CHECK(p.status().code() == StatusCode::kNotLeader);
  CHECK(p.status().message().find("unknown") != std::string::npos);
  REQUIRE(r->Step(Msg(MessageType::kHeartbeat, 1, 2, 1)).ok());
  p = r->Propose("x");
  CHECK(p.status().code() == StatusCode::kNotLeader);
  CHECK(p.status().message().find("node 1") != std::string::npos);
  CHECK(r->ReadIndex("r").code() == StatusCode::kNotLeader);
  CHECK(r->TransferLeadership(3).code() == StatusCode::kNotLeader);
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 3}).status().code() ==
        StatusCode::kNotLeader);
}

TEST_CASE("an empty proposal is refused because it is the leader's no-op", "[replication]") {
  Replica r(1, Voters({1}));
  REQUIRE(r->Campaign().ok());
  CHECK(r->Propose("").status().code() == StatusCode::kInvalidArgument);
}

// --- leadership transfer ---------------------------------------------------------------

TEST_CASE("leadership transfer catches the target up, then tells it to campaign",
          "[replication]") {
  // Reference: thesis §3.10: the leader stops accepting requests, brings the target's
  // log up to date, then sends TimeoutNow; the target campaigns at once.
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  REQUIRE(r->Propose("x").ok());
  r.Flush();
  REQUIRE(r->TransferLeadership(2).ok());
  CHECK(r->transferee() == 2);
  CHECK(r->Propose("y").status().code() == StatusCode::kBusy);
  CHECK_FALSE(r->HasReadLease());
  CHECK(OfType(r.Flush(), MessageType::kTimeoutNow).empty());  // 2 lacks index 3
  REQUIRE(r->Step(AppendResp(2, 1, r->term(), r->LastIndex())).ok());
  auto tn = OfType(r.Flush(), MessageType::kTimeoutNow);
  REQUIRE(tn.size() == 1);
  CHECK(tn[0].to == 2);

  // The target campaigns immediately, and its votes ignore leader stickiness.
  Replica t(2, Voters({1, 2, 3}), [](Config c) {
    c.pre_vote = true;
    c.check_quorum = true;
    return c;
  });
  REQUIRE(t->Step(Msg(MessageType::kHeartbeat, 1, 2, r->term())).ok());
  t.Flush();
  REQUIRE(t->Step(tn[0]).ok());
  CHECK(t->role() == Role::kCandidate);  // no PreVote round
  auto votes = OfType(t.Flush(), MessageType::kVote);
  REQUIRE(votes.size() == 2);
  CHECK(votes[0].transfer);
}

TEST_CASE("a leadership transfer is abandoned after an election timeout", "[replication]") {
  // Reference: thesis §3.10: "if the transfer does not complete within an election
  // timeout, the leader aborts the transfer and resumes accepting client requests".
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  REQUIRE(r->Propose("x").ok());
  REQUIRE(r->TransferLeadership(3).ok());
  r.TickN(10);
  CHECK(r->transferee() == kNoNode);
  CHECK(r->role() == Role::kLeader);
  CHECK(r->Propose("y").ok());
}

// --- membership ------------------------------------------------------------------------

TEST_CASE("a configuration change takes effect when appended, one at a time", "[replication]") {
  // Reference: thesis §4.1: "a server always uses the latest configuration in its log,
  // regardless of whether the entry is committed"; and only one change may be pending.
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  auto pos = r->ProposeConfChange(ConfChange{ConfChangeType::kAddVoter, 4});
  REQUIRE(pos.ok());
  CHECK(r->conf().voters == std::vector<NodeId>{1, 2, 3, 4});  // before it commits
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 2}).status().code() ==
        StatusCode::kBusy);
  r.Flush();
  // Majority of the new configuration {1,2,3,4} is 3.
  REQUIRE(r->Step(AppendResp(2, 1, r->term(), pos->index)).ok());
  CHECK(r->committed() < pos->index);
  REQUIRE(r->Step(AppendResp(3, 1, r->term(), pos->index)).ok());
  CHECK(r->committed() == pos->index);
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 2}).ok());
}

TEST_CASE("a new leader changes membership only after committing an entry of its term",
          "[replication]") {
  // The fix to single-server changes Ongaro posted to raft-dev in 2015: without it, two
  // leaders can each append a change that overlaps the other's and break safety.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  r.Flush();
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, 4}).status().code() ==
        StatusCode::kBusy);
  REQUIRE(r->Step(AppendResp(2, 1, 1, 1)).ok());
  r.Flush();
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, 4}).ok());
}

TEST_CASE("invalid configuration changes are refused", "[replication]") {
  Replica r(1, Voters({1, 2, 3}, {4}));
  ElectAndCommit(r, {1, 2, 3});
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kAddVoter, 2}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, 9}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, 3}).status().code() ==
        StatusCode::kInvalidArgument);
  // Promotion is allowed.
  CHECK(r->ProposeConfChange(ConfChange{ConfChangeType::kAddVoter, 4}).ok());
  CHECK(r->conf().learners.empty());
}

TEST_CASE("a follower reverts to the previous configuration when its entry is truncated",
          "[replication]") {
  // Reference: thesis §4.1 (a configuration entry in an uncommitted suffix may be
  // removed; the replica then falls back to the one before).
  Replica r(2, Voters({1, 2, 3}));
  Entry conf;
  conf.index = 1;
  conf.term = 1;
  conf.type = EntryType::kConfChange;
  conf.data = EncodeConfChangeEntry({ConfChange{ConfChangeType::kAddVoter, 4}, Voters({1, 2, 3, 4})});
  Message app = Msg(MessageType::kAppend, 1, 2, 1);
  app.entries = {conf};
  REQUIRE(r->Step(app).ok());
  r.Flush();
  CHECK(r->conf().voters.size() == 4);
  Message app2 = Msg(MessageType::kAppend, 3, 2, 2);
  app2.entries = {E(1, 2)};
  REQUIRE(r->Step(app2).ok());
  r.Flush();
  CHECK(r->conf().voters == std::vector<NodeId>{1, 2, 3});
}

TEST_CASE("a removed leader steps down once its removal commits and hands over",
          "[replication]") {
  // Reference: thesis §4.2.2: the leader manages the cluster without counting itself
  // and steps down when the configuration that removes it is committed.
  sim::Trace off;
  sim::ClusterOptions o;
  o.voters = 3;
  sim::SimCluster c(o, &off);
  for (int i = 0; i < 40 && c.Leader() == 0; i++) {
    c.TickAll();
    c.Stabilize();
  }
  NodeId leader = c.Leader();
  REQUIRE(leader != 0);
  auto pos = c.node(leader)->core->ProposeConfChange(ConfChange{ConfChangeType::kRemoveNode, leader});
  REQUIRE(pos.ok());
  c.Stabilize();
  CHECK(c.node(leader)->core->role() == Role::kFollower);
  // The TimeoutNow it sent elects a successor at once, without an election timeout.
  const NodeId next = c.Leader();
  REQUIRE(next != 0);
  CHECK(next != leader);
  CHECK(c.node(next)->core->conf().voters.size() == 2);
  REQUIRE(c.Propose(next).ok());
  c.Stabilize();
  CHECK(c.checker().acked_count() == 1);
  CHECK_FALSE(c.failed());
}

TEST_CASE("a learner is added, catches up and is promoted", "[replication]") {
  sim::Trace off;
  sim::ClusterOptions o;
  o.voters = 3;
  sim::SimCluster c(o, &off);
  for (int i = 0; i < 40 && c.Leader() == 0; i++) {
    c.TickAll();
    c.Stabilize();
  }
  NodeId leader = c.Leader();
  REQUIRE(leader != 0);
  for (int i = 0; i < 5; i++) REQUIRE(c.Propose(leader).ok());
  c.Stabilize();
  const NodeId learner = c.CreateNode();
  REQUIRE(c.node(leader)->core->ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, learner}).ok());
  for (int i = 0; i < 5; i++) {
    c.TickAll();
    c.Stabilize();
  }
  CHECK(c.node(learner)->sm.commands().size() == 5);
  CHECK(c.node(learner)->core->conf().IsLearner(learner));
  REQUIRE(c.node(leader)->core->ProposeConfChange(ConfChange{ConfChangeType::kAddVoter, learner}).ok());
  c.Stabilize();
  CHECK(c.node(leader)->core->conf().voters.size() == 4);
  CHECK(c.node(learner)->core->conf().IsVoter(learner));
  CHECK_FALSE(c.failed());
}

// --- compaction and snapshots ----------------------------------------------------------

TEST_CASE("a follower whose next entry was compacted gets a snapshot", "[replication]") {
  // Reference: Raft §7: "the leader must occasionally send snapshots to followers that
  // lag behind"; the follower discards its log and installs the snapshot.
  sim::Trace off;
  sim::ClusterOptions o;
  o.voters = 3;
  sim::SimCluster c(o, &off);
  for (int i = 0; i < 40 && c.Leader() == 0; i++) {
    c.TickAll();
    c.Stabilize();
  }
  NodeId leader = c.Leader();
  REQUIRE(leader != 0);
  const NodeId lagging = leader == 3 ? 2 : 3;
  c.Crash(lagging);
  for (int i = 0; i < 10; i++) REQUIRE(c.Propose(leader).ok());
  c.Stabilize();
  REQUIRE(c.Compact(leader, 0).ok());
  CHECK(c.node(leader)->disk.FirstIndex() > 5);
  REQUIRE(c.Restart(lagging).ok());
  const uint64_t installed = c.stats().snapshots_installed;
  for (int i = 0; i < 20; i++) {
    c.TickAll();
    c.Stabilize();
  }
  CHECK(c.stats().snapshots_installed == installed + 1);
  CHECK(c.node(lagging)->sm.commands().size() == 10);
  CHECK(c.node(lagging)->disk.snapshot().meta.index >= 11);
  CHECK_FALSE(c.failed());
}

TEST_CASE("a follower restores a snapshot through its Ready", "[replication]") {
  Replica r(2, Voters({1, 2, 3}));
  auto snap = std::make_shared<Snapshot>();
  snap->meta = SnapshotMeta{10, 3, Voters({1, 2, 3, 4})};
  snap->data = "image";
  Message m = Msg(MessageType::kSnapshot, 1, 2, 3);
  m.snapshot = snap;
  REQUIRE(r->Step(m).ok());
  CHECK(r->committed() == 10);
  CHECK(r->LastIndex() == 10);
  CHECK(r->conf().voters.size() == 4);
  Ready rd = r->GetReady();
  REQUIRE(rd.snapshot);
  CHECK(rd.snapshot->data == "image");
  CHECK(rd.committed_entries.empty());
  REQUIRE(rd.hard_state);
  CHECK(rd.hard_state->commit == 10);
  REQUIRE(rd.messages.size() == 1);
  CHECK(rd.messages[0].index == 10);  // acknowledged only after it is persisted
  REQUIRE(r.disk.ApplySnapshot(*rd.snapshot).ok());
  r->Advance();
  CHECK(r->applied() == 10);
  CHECK(r->FirstIndex() == 11);
  // An older snapshot is acknowledged with the commit index and ignored.
  snap = std::make_shared<Snapshot>();
  snap->meta = SnapshotMeta{5, 2, Voters({1, 2, 3})};
  m.snapshot = snap;
  REQUIRE(r->Step(m).ok());
  auto out = r.Flush();
  REQUIRE(out.size() == 1);
  CHECK(out[0].index == 10);
}

TEST_CASE("a restarted replica re-applies committed entries after its applied index",
          "[replication]") {
  // Reference: Raft §5.2/Figure 2: currentTerm, votedFor and the log are persistent; the
  // state machine is rebuilt from the snapshot and the committed log.
  Replica r(1, Voters({1}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Propose("a").ok());
  REQUIRE(r->Propose("b").ok());
  r.Flush();
  CHECK(r.applied.size() == 3);
  r.applied.clear();
  const uint64_t term = r->term();
  r.Start(1);
  CHECK(r->term() == term);
  CHECK(r->vote() == 1);
  CHECK(r->role() == Role::kFollower);
  r.Flush();
  REQUIRE(r.applied.size() == 3);
  CHECK(r.applied[2].data == "b");
}

TEST_CASE("a restarted replica trusts its applied index when the stored commit lags",
          "[replication]") {
  // A driver may persist the commit index lazily; entries it applied were committed.
  Replica r(1, Voters({1}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Propose("a").ok());
  r.Flush();
  REQUIRE(r.applied.size() == 2);
  r.disk.SetHardState(HardState{r->term(), r->vote(), 0});  // the commit was never written
  r.applied.clear();
  r.Start(1, [](Config c) {
    c.applied = 2;
    return c;
  });
  CHECK(r->committed() == 2);
  r.Flush();
  CHECK(r.applied.empty());

  // An applied index past the stored log is refused.
  Config bad = TestConfig(1, &r.disk);
  bad.applied = 3;
  CHECK(RaftCore::Create(bad).status().IsInvalidArgument());
}

// --- linearizable reads ----------------------------------------------------------------

TEST_CASE("ReadIndex confirms leadership with a heartbeat round before answering",
          "[replication]") {
  // Reference: thesis §6.4: record the commit index, confirm leadership by heartbeats
  // to a majority, then answer once the state machine has applied that index.
  Replica r(1, Voters({1, 2, 3}));
  ElectAndCommit(r, {1, 2, 3});
  REQUIRE(r->ReadIndex("q1").ok());
  auto hbs = OfType(r.Flush(), MessageType::kHeartbeat);
  REQUIRE(hbs.size() == 2);
  CHECK(hbs[0].read_seq != 0);
  CHECK(r.reads.empty());
  Message ack = Msg(MessageType::kHeartbeatResp, 2, 1, r->term());
  ack.read_seq = hbs[0].read_seq;
  REQUIRE(r->Step(ack).ok());
  r.Flush();
  REQUIRE(r.reads.size() == 1);
  CHECK(r.reads[0].context == "q1");
  CHECK(r.reads[0].index == r->committed());
}

TEST_CASE("a new leader answers reads only after committing an entry of its term",
          "[replication]") {
  // Reference: thesis §6.4 step 1: until its no-op commits, the leader does not know the
  // latest commit index.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  r.Flush();
  REQUIRE(r->ReadIndex("early").ok());
  CHECK(OfType(r.Flush(), MessageType::kHeartbeat).empty());
  REQUIRE(r->Step(AppendResp(2, 1, 1, 1)).ok());
  auto hbs = OfType(r.Flush(), MessageType::kHeartbeat);
  REQUIRE(hbs.size() == 2);
  Message ack = Msg(MessageType::kHeartbeatResp, 3, 1, 1);
  ack.read_seq = hbs[0].read_seq;
  REQUIRE(r->Step(ack).ok());
  r.Flush();
  REQUIRE(r.reads.size() == 1);
  CHECK(r.reads[0].index == 1);
}

TEST_CASE("the read lease holds while a quorum acknowledged recent heartbeats",
          "[replication]") {
  // Reference: thesis §6.4.1: a lease shorter than the election timeout, dated from when
  // the heartbeats were sent.
  Replica r(1, Voters({1, 2, 3}), [](Config c) {
    c.check_quorum = true;
    c.lease_margin_ticks = 2;  // lease: 8 ticks
    return c;
  });
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  auto apps = OfType(r.Flush(), MessageType::kAppend);
  CHECK_FALSE(r->HasReadLease());  // nothing acknowledged, nothing committed
  Message ack = AppendResp(2, 1, 1, 1);
  ack.tick = apps[0].tick;
  REQUIRE(r->Step(ack).ok());
  r.Flush();
  CHECK(r->HasReadLease());
  r.TickN(7);
  CHECK(r->HasReadLease());
  r.TickN(1);
  CHECK_FALSE(r->HasReadLease());  // 8 ticks since the acknowledged send
  // An acknowledgement of a heartbeat sent long ago does not renew it.
  Message old_hb = Msg(MessageType::kHeartbeatResp, 3, 1, 1);
  old_hb.tick = apps[0].tick;
  REQUIRE(r->Step(old_hb).ok());
  CHECK_FALSE(r->HasReadLease());
  Message fresh = Msg(MessageType::kHeartbeatResp, 3, 1, 1);
  fresh.tick = r->now();
  REQUIRE(r->Step(fresh).ok());
  CHECK(r->HasReadLease());
}

TEST_CASE("there is no read lease without CheckQuorum", "[replication]") {
  // Without CheckQuorum there is no stickiness, so another leader could be elected at
  // any time: leases would be unsafe.
  Replica r(1, Voters({1}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  CHECK_FALSE(r->HasReadLease());
}

// --- the Ready contract ----------------------------------------------------------------

TEST_CASE("messages and entries produced between GetReady and Advance wait for the next Ready",
          "[replication]") {
  // The driver may keep stepping the core while it persists a Ready (e.g. during an
  // fsync); those effects must not be lost or reported as persisted early.
  Replica r(1, Voters({1, 2}));
  REQUIRE(r->Campaign().ok());
  r.Flush();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  Ready rd = r->GetReady();
  CHECK(rd.entries.size() == 1);  // the no-op
  REQUIRE(r->Propose("late").ok());
  REQUIRE(r.disk.Append(rd.entries).ok());
  if (rd.hard_state) r.disk.SetHardState(*rd.hard_state);
  r->Advance();
  REQUIRE(r->HasReady());
  rd = r->GetReady();
  REQUIRE(rd.entries.size() == 1);
  CHECK(rd.entries[0].data == "late");
  REQUIRE(r.disk.Append(rd.entries).ok());
  r->Advance();
  CHECK(r.disk.LastIndex() == 2);
}

TEST_CASE("only a leader's appends may be sent before its Ready is durable", "[replication]") {
  // Thesis §10.2.1: the leader writes its log in parallel with replicating it. Votes and
  // acknowledgements are promises about the disk and always wait.
  Replica r(1, Voters({1, 2, 3}));
  REQUIRE(r->Campaign().ok());
  Ready rd = r->GetReady();
  CHECK(rd.early_messages.empty());
  CHECK(OfType(rd.messages, MessageType::kVote).size() == 2);
  if (rd.hard_state) r.disk.SetHardState(*rd.hard_state);
  r->Advance();
  REQUIRE(r->Step(VoteResp(2, 1, 1)).ok());
  REQUIRE(r->role() == Role::kLeader);
  rd = r->GetReady();  // the new leader's no-op
  CHECK(rd.entries.size() == 1);
  CHECK(rd.messages.empty());
  CHECK(OfType(rd.early_messages, MessageType::kAppend).size() == 2);
  REQUIRE(r.disk.Append(rd.entries).ok());
  r->Advance();

  Replica f(2, Voters({1, 2, 3}));
  Message app = Msg(MessageType::kAppend, 1, 2, 1);
  app.entries = {E(1, 1)};
  REQUIRE(f->Step(app).ok());
  rd = f->GetReady();
  CHECK(rd.early_messages.empty());
  CHECK(OfType(rd.messages, MessageType::kAppendResp).size() == 1);
}

TEST_CASE("malformed messages are refused without effect", "[replication]") {
  Replica r(1, Voters({1, 2, 3}));
  Message gap = Msg(MessageType::kAppend, 2, 1, 1);
  gap.entries = {E(1, 1), E(3, 1)};
  CHECK(r->Step(gap).code() == StatusCode::kInvalidArgument);
  Message future = Msg(MessageType::kAppend, 2, 1, 1);
  future.entries = {E(1, 2)};
  CHECK(r->Step(future).code() == StatusCode::kInvalidArgument);
  Message snap = Msg(MessageType::kSnapshot, 2, 1, 1);
  CHECK(r->Step(snap).code() == StatusCode::kInvalidArgument);
  Message elsewhere = Msg(MessageType::kHeartbeat, 2, 3, 1);
  CHECK(r->Step(elsewhere).code() == StatusCode::kInvalidArgument);
  CHECK(r->term() == 0);
  CHECK(r->LastIndex() == 0);
  CHECK(r->fatal().ok());
}

TEST_CASE("a bad configuration is refused", "[replication]") {
  MemStorage disk;
  Config c = TestConfig(0, &disk);
  CHECK(RaftCore::Create(c).status().code() == StatusCode::kInvalidArgument);
  c.id = 1;
  c.lease_margin_ticks = 10;
  CHECK(RaftCore::Create(c).status().code() == StatusCode::kInvalidArgument);
  c.lease_margin_ticks = 2;
  c.storage = nullptr;
  CHECK(RaftCore::Create(c).status().code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ring::replication
