// replication/mem_storage.h: MemStorage, an in-memory LogStorage.
//
// Used by unit tests and by the deterministic simulation, where one MemStorage per node
// plays the node's disk: whatever the simulated driver wrote into it survives a simulated
// crash, and nothing else does. It also documents, by example, how a driver turns a Ready
// into storage writes: ApplySnapshot, then Append, then SetHardState.
//
// Thread-safety: not thread-safe; owned and used by one driver thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replication/log_storage.h"

namespace ring::replication {

class MemStorage : public LogStorage {
 public:
  // An empty log with an empty configuration: a replica that is about to be added to an
  // existing group and will learn everything from its leader.
  MemStorage() = default;
  // An empty log whose configuration is `bootstrap`: a founding member of a new group.
  explicit MemStorage(ConfState bootstrap);

  Result<StoredState> InitialState() const override;
  Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  Result<uint64_t> Term(uint64_t index) const override;
  uint64_t FirstIndex() const override { return offset_ + 1; }
  uint64_t LastIndex() const override { return offset_ + entries_.size(); }
  Result<replication::Snapshot> Snapshot() const override;

  // Appends `entries` (consecutive indexes). An entry at an index the log already holds
  // replaces it and everything after it: the core only hands out such entries when the
  // old suffix conflicts with the leader's log. Entries at compacted indexes are skipped.
  // InvalidArgument if the entries are not consecutive or leave a gap after LastIndex().
  Status Append(const std::vector<Entry>& entries);

  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }

  // Replaces the whole log with `snap` (a snapshot received from the leader). InvalidArgument
  // if it is not newer than the current snapshot.
  Status ApplySnapshot(replication::Snapshot snap);

  // Records a snapshot of the application's state at `index` (which must be applied, so
  // at most LastIndex()), with the configuration in force at `index`. Does not discard
  // entries; call Compact for that. InvalidArgument if older than the current snapshot.
  Status CreateSnapshot(uint64_t index, ConfState conf, std::string data);

  // Discards the entries up to and including `index`, which must not be past the latest
  // snapshot (so that whatever is discarded can still be sent as that snapshot).
  Status Compact(uint64_t index);

  const replication::Snapshot& snapshot() const { return snapshot_; }

 private:
  HardState hard_state_;
  replication::Snapshot snapshot_;
  // entries_[i] has index offset_ + 1 + i; offset_ is the compaction point and
  // offset_term_ the term of the entry there.
  uint64_t offset_ = 0;
  uint64_t offset_term_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace ring::replication
