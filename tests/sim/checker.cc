#include "tests/sim/checker.h"

#include <algorithm>

namespace ring::sim {

using replication::Entry;
using replication::NodeId;

namespace {

std::string Content(const Entry& e) {
  std::string s(1, static_cast<char>(e.type));
  s += e.data;
  return s;
}

std::string Node(NodeId id) { return "node " + std::to_string(id); }
std::string At(uint64_t index, uint64_t term) {
  return std::to_string(index) + "/" + std::to_string(term);
}

}  // namespace

void InvariantChecker::Fail(const std::string& invariant, const std::string& detail) {
  if (failed()) return;  // keep the first violation: later ones are usually consequences
  invariant_ = invariant;
  detail_ = detail;
}

void InvariantChecker::OnHardStatePersisted(NodeId id, const replication::HardState& before,
                                            const replication::HardState& after) {
  if (after.term < before.term) {
    Fail("vote durability", Node(id) + " persisted term " + std::to_string(after.term) +
                                " after term " + std::to_string(before.term));
  } else if (after.term == before.term && before.vote != replication::kNoNode &&
             after.vote != before.vote) {
    Fail("vote durability", Node(id) + " changed its vote in term " + std::to_string(after.term) +
                                " from " + std::to_string(before.vote) + " to " +
                                std::to_string(after.vote));
  }
  if (after.commit < before.commit) {
    Fail("commit monotonicity", Node(id) + " persisted commit " + std::to_string(after.commit) +
                                    " after " + std::to_string(before.commit));
  }
}

void InvariantChecker::CheckCanon(NodeId id, uint64_t index, uint64_t term,
                                  const std::string& content, bool prev_known, uint64_t prev_term) {
  auto [it, inserted] = canon_.try_emplace({index, term});
  Canon& c = it->second;
  if (inserted) {
    c.content = content;
    c.prev_known = prev_known;
    c.prev_term = prev_term;
    return;
  }
  if (c.content != content) {
    Fail("log matching", Node(id) + " persisted a different entry at " + At(index, term) +
                             " than another replica");
    return;
  }
  if (prev_known) {
    if (!c.prev_known) {
      c.prev_known = true;
      c.prev_term = prev_term;
    } else if (c.prev_term != prev_term) {
      Fail("log matching", Node(id) + " has entry " + At(index, term) + " after term " +
                               std::to_string(prev_term) + ", another replica after term " +
                               std::to_string(c.prev_term));
    }
  }
}

void InvariantChecker::OnEntriesPersisted(NodeId id, const replication::MemStorage& disk,
                                          const std::vector<Entry>& entries,
                                          const std::vector<uint64_t>& replaced_terms) {
  for (size_t i = 0; i < entries.size(); i++) {
    const Entry& e = entries[i];
    bool prev_known = true;
    uint64_t prev_term = 0;
    if (i > 0) {
      prev_term = entries[i - 1].term;
    } else {
      Result<uint64_t> t = disk.Term(e.index - 1);
      prev_known = t.ok();
      if (t.ok()) prev_term = *t;
    }
    CheckCanon(id, e.index, e.term, Content(e), prev_known, prev_term);
    // A replica may hold a stale entry at a committed index (it was partitioned away),
    // but once it holds the committed entry, nothing may replace it.
    auto c = committed_.find(e.index);
    if (c != committed_.end() && i < replaced_terms.size() &&
        replaced_terms[i] == c->second.first && e.term != c->second.first) {
      Fail("leader completeness", Node(id) + " overwrote committed entry " +
                                      At(e.index, c->second.first) + " with term " +
                                      std::to_string(e.term));
      return;
    }
  }
}

void InvariantChecker::OnCommitPersisted(NodeId id, const replication::MemStorage& disk,
                                         uint64_t before, uint64_t after) {
  for (uint64_t i = std::max(before + 1, disk.FirstIndex()); i <= after; i++) {
    auto c = committed_.find(i);
    if (c == committed_.end()) continue;
    Result<uint64_t> t = disk.Term(i);
    if (t.ok() && *t != c->second.first) {
      Fail("state machine safety", Node(id) + " persisted commit index " + std::to_string(after) +
                                       " over entry " + At(i, *t) + " but " +
                                       At(i, c->second.first) + " is committed");
      return;
    }
  }
}

void InvariantChecker::OnSnapshotPersisted(NodeId id, const replication::SnapshotMeta& meta) {
  auto it = committed_.find(meta.index);
  if (it != committed_.end() && it->second.first != meta.term) {
    Fail("state machine safety", Node(id) + " persisted a snapshot at " + At(meta.index, meta.term) +
                                     " but " + At(meta.index, it->second.first) + " is committed");
  }
}

void InvariantChecker::OnLeader(NodeId id, uint64_t term, const replication::RaftCore& core) {
  auto [it, inserted] = leaders_.try_emplace(term, id);
  if (!inserted && it->second != id) {
    Fail("election safety", "nodes " + std::to_string(it->second) + " and " + std::to_string(id) +
                                " both led term " + std::to_string(term));
    return;
  }
  if (!inserted) return;  // already checked this leadership
  const uint64_t first = core.FirstIndex();
  for (auto c = committed_.lower_bound(first == 0 ? 0 : first - 1); c != committed_.end(); ++c) {
    Result<uint64_t> t = core.Term(c->first);
    if (!t.ok() || *t != c->second.first) {
      Fail("leader completeness",
           Node(id) + " became leader of term " + std::to_string(term) +
               " without committed entry " + At(c->first, c->second.first) +
               (t.ok() ? " (it has term " + std::to_string(*t) + ")" : " (" + t.status().ToString() + ")"));
      return;
    }
  }
}

void InvariantChecker::OnApplied(NodeId id, uint64_t applied_before, const Entry& e) {
  if (e.index != applied_before + 1) {
    Fail("state machine safety", Node(id) + " applied index " + std::to_string(e.index) +
                                     " right after " + std::to_string(applied_before));
    return;
  }
  const std::string content = Content(e);
  auto [it, inserted] = committed_.try_emplace(e.index, e.term, content);
  if (!inserted && (it->second.first != e.term || it->second.second != content)) {
    Fail("state machine safety", Node(id) + " applied " + replication::EntryToString(e) +
                                     " but another replica applied term " +
                                     std::to_string(it->second.first) + " there");
    return;
  }
  if (e.type != replication::EntryType::kNormal || e.data.empty()) return;
  auto p = pending_.find(e.data.str());
  if (p != pending_.end() && p->second.node == id && p->second.index == e.index &&
      p->second.term == e.term) {
    acked_[e.data.str()] = e.index;
    max_acked_index_ = std::max(max_acked_index_, e.index);
    pending_.erase(p);
  }
}

void InvariantChecker::OnSnapshotInstalled(NodeId id, uint64_t term, const SimStateMachine& sm) {
  auto it = committed_.find(sm.applied_index());
  if (it != committed_.end() && it->second.first != term) {
    Fail("state machine safety", Node(id) + " installed a snapshot at " +
                                     At(sm.applied_index(), term) + " but " +
                                     At(sm.applied_index(), it->second.first) + " is committed");
    return;
  }
  for (const AppliedCommand& c : sm.commands()) {
    std::string content(1, static_cast<char>(replication::EntryType::kNormal));
    content += c.data;
    auto [ct, inserted] = committed_.try_emplace(c.index, c.term, content);
    if (!inserted && (ct->second.first != c.term || ct->second.second != content)) {
      Fail("state machine safety", Node(id) + " installed a snapshot with " + c.data + " at " +
                                       At(c.index, c.term) + " but another replica applied term " +
                                       std::to_string(ct->second.first) + " there");
      return;
    }
  }
}

void InvariantChecker::OnProposed(NodeId id, const std::string& command,
                                  replication::LogPosition pos) {
  pending_[command] = Pending{id, pos.index, pos.term};
}

void InvariantChecker::OnCrashed(NodeId id) {
  // The client of a crashed replica never hears back: its proposals stay unacknowledged.
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second.node == id ? pending_.erase(it) : std::next(it);
  }
}

void InvariantChecker::OnReadServed(NodeId id, const std::string& context, uint64_t read_index,
                                    uint64_t applied_index) {
  auto it = read_floor_.find(context);
  if (it == read_floor_.end()) {
    Fail("linearizable reads", Node(id) + " served unknown read " + context);
    return;
  }
  if (read_index < it->second || applied_index < read_index) {
    Fail("linearizable reads", Node(id) + " served read " + context + " at index " +
                                   std::to_string(read_index) + " (applied " +
                                   std::to_string(applied_index) +
                                   ") but a write at index " + std::to_string(it->second) +
                                   " was acknowledged before it was issued");
  }
  read_floor_.erase(it);
}

void InvariantChecker::OnLeaseRead(NodeId id, uint64_t commit_index) {
  if (commit_index < max_acked_index_) {
    Fail("linearizable reads", Node(id) + " holds a read lease with commit index " +
                                   std::to_string(commit_index) + " but a write at index " +
                                   std::to_string(max_acked_index_) + " was acknowledged");
  }
}

void InvariantChecker::CheckAcked(NodeId id, const SimStateMachine& sm) {
  for (const auto& [command, index] : acked_) {
    const AppliedCommand* c = sm.At(index);
    if (c == nullptr || c->data != command) {
      Fail("durability", Node(id) + " (applied " + std::to_string(sm.applied_index()) +
                             ") lacks acknowledged write " + command + " at index " +
                             std::to_string(index));
      return;
    }
  }
}

}  // namespace ring::sim
