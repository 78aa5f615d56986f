// tests/sim/checker.h: InvariantChecker, Raft's safety properties checked as they happen.
//
// The simulated driver reports every durable write, election, application and client
// event here, and the checker compares it with everything seen before in the schedule:
//
//   election safety       at most one leader per term
//   log matching          two logs (on disk) with an entry of the same index and term
//                         agree on it and on everything before it (checked incrementally:
//                         each (index, term) always carries the same content and follows
//                         the same previous term)
//   leader completeness   a new leader's log holds every entry known to be committed, and
//                         no disk ever overwrites a committed entry with another term
//   state machine safety  replicas apply entries in index order, and whatever any replica
//                         applied (or installed from a snapshot) at an index is the same
//   vote durability       a replica's persisted vote never changes within a term, and its
//                         term and commit index never go backwards
//   linearizable reads    a ReadIndex or lease read reflects every write acknowledged
//                         before it was issued
//   durability            every acknowledged write is applied on every live member
//                         (checked at the end of a schedule, after healing: CheckAcked)
//
// Ownership: owned by a SimCluster. Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "replication/mem_storage.h"
#include "replication/raft_core.h"
#include "tests/sim/state_machine.h"

namespace ring::sim {

class InvariantChecker {
 public:
  bool failed() const { return !invariant_.empty(); }
  // The name of the broken invariant ("log matching", ...) and what happened.
  const std::string& invariant() const { return invariant_; }
  const std::string& detail() const { return detail_; }
  void Fail(const std::string& invariant, const std::string& detail);

  // Durable writes by the simulated driver.
  void OnHardStatePersisted(replication::NodeId id, const replication::HardState& before,
                            const replication::HardState& after);
  // `replaced_terms[i]` is the term the disk held at entries[i].index before the write
  // (0 if none); the write has already happened.
  void OnEntriesPersisted(replication::NodeId id, const replication::MemStorage& disk,
                          const std::vector<replication::Entry>& entries,
                          const std::vector<uint64_t>& replaced_terms);
  // The disk's commit index moved from `before` to `after`: the entries it now claims
  // committed must be the committed ones.
  void OnCommitPersisted(replication::NodeId id, const replication::MemStorage& disk,
                         uint64_t before, uint64_t after);
  void OnSnapshotPersisted(replication::NodeId id, const replication::SnapshotMeta& meta);

  // A replica reported itself leader of `term`.
  void OnLeader(replication::NodeId id, uint64_t term, const replication::RaftCore& core);

  // State machine events.
  void OnApplied(replication::NodeId id, uint64_t applied_before, const replication::Entry& e);
  void OnSnapshotInstalled(replication::NodeId id, uint64_t term, const SimStateMachine& sm);

  // Clients. A proposal is acknowledged when its proposer applies it at its position.
  void OnProposed(replication::NodeId id, const std::string& command,
                  replication::LogPosition pos);
  void OnCrashed(replication::NodeId id);
  uint64_t acked_count() const { return acked_.size(); }
  bool IsAcked(const std::string& command) const { return acked_.count(command) != 0; }
  // The highest index of any acknowledged write.
  uint64_t max_acked_index() const { return max_acked_index_; }
  // A read was issued now; remember what it must see.
  void OnReadIssued(const std::string& context) { read_floor_[context] = max_acked_index_; }
  void OnReadServed(replication::NodeId id, const std::string& context, uint64_t read_index,
                    uint64_t applied_index);
  void OnLeaseRead(replication::NodeId id, uint64_t commit_index);

  // Liveness/durability, after healing: every acknowledged write is applied on `id`.
  void CheckAcked(replication::NodeId id, const SimStateMachine& sm);

 private:
  struct Canon {
    std::string content;  // type byte + data
    uint64_t prev_term = 0;
    bool prev_known = false;
  };
  struct Pending {
    replication::NodeId node = 0;
    uint64_t index = 0;
    uint64_t term = 0;
  };

  void CheckCanon(replication::NodeId id, uint64_t index, uint64_t term, const std::string& content,
                  bool prev_known, uint64_t prev_term);

  std::string invariant_;
  std::string detail_;

  std::map<uint64_t, replication::NodeId> leaders_;                 // term -> leader
  std::map<std::pair<uint64_t, uint64_t>, Canon> canon_;              // (index, term)
  std::map<uint64_t, std::pair<uint64_t, std::string>> committed_;  // index -> (term, content)

  std::map<std::string, Pending> pending_;  // command -> where it was proposed
  std::map<std::string, uint64_t> acked_;   // command -> index
  uint64_t max_acked_index_ = 0;
  std::map<std::string, uint64_t> read_floor_;
};

}  // namespace ring::sim
