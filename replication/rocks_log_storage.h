// replication/rocks_log_storage.h: the durable Raft log of one replication group, kept in
// the engine's `raftlog` column family, implementing the LogStorage seam.
//
// Layout:
//   raftlog  be64(group) || be64(index)  ->  entry (type byte, be64 term, data)
//   meta     "rl/" be64(group) "/hs"     ->  hard state (term, vote, commit)
//   meta     "rl/" be64(group) "/snap"   ->  snapshot meta (index, term, conf) + data
// An entry's index is its key, so a group's log is one contiguous range and truncating a
// conflicting suffix or compacting a prefix is one DeleteRange.
//
// Writes are STAGED: Append, SetHardState, ApplySnapshot and Compact add their effects to
// the caller's WriteBatch (the driver's single per-cycle batch, so every group's log
// writes share one fsync) and record what will change. OnWritten() makes the change
// visible to readers once that batch's Write returned OK; OnWriteFailed() drops it. The
// core only ever reads what was durably written, which is what the LogStorage contract
// promises it.
//
// Reads of the recent tail are served from memory: the entries written last (up to
// kEntryCacheBytes per group) are kept in a cache, so the hot path (the core asking for
// terms and for just-committed entries to apply or send) never touches RocksDB. Older
// entries, and anything after a restart, are read from the engine.
//
// Thread-safety: none; the driver thread owns every group's storage.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "replication/log_storage.h"
#include "storage/engine.h"

namespace ring::replication {

class RocksLogStorage final : public LogStorage {
 public:
  // Loads the group's first/last index, hard state and snapshot meta from `engine`.
  // A group never written before starts empty. `engine` must outlive the storage.
  static Result<std::unique_ptr<RocksLogStorage>> Open(storage::Engine* engine, uint64_t group);

  // --- LogStorage (reads see only what OnWritten() published) ---
  Result<StoredState> InitialState() const override;
  Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  Result<uint64_t> Term(uint64_t index) const override;
  uint64_t FirstIndex() const override { return first_index_; }
  uint64_t LastIndex() const override { return last_index_; }
  Result<replication::Snapshot> Snapshot() const override;

  // --- staged writes ---
  // Gives a brand-new group its founding configuration: an index-0 snapshot record, or
  // with index > 0, a snapshot at (index, term 1) that the state machine already holds
  // (a split's child), so the log starts after it.
  void Bootstrap(const ConfState& conf, uint64_t index, storage::WriteBatch* batch);
  // Appends `entries` (consecutive indexes); any stored suffix from entries[0].index on is
  // replaced. InvalidArgument if they would leave a gap or overwrite the snapshot.
  Status Append(const std::vector<Entry>& entries, storage::WriteBatch* batch);
  void SetHardState(const HardState& hs, storage::WriteBatch* batch);
  // Replaces the whole log with `snap`: entries are dropped, FirstIndex becomes
  // snap.meta.index + 1.
  void ApplySnapshot(const replication::Snapshot& snap, storage::WriteBatch* batch);
  // Records a snapshot of the application's state at `meta.index` (which must be applied)
  // and drops the entries up to it. Entries after it are kept.
  Status Compact(const replication::Snapshot& snap, storage::WriteBatch* batch);

  // Deletes the whole log: entries, hard state and snapshot record (the group is leaving
  // this node). The storage must not be used afterwards.
  void Destroy(storage::WriteBatch* batch);

  void OnWritten();
  void OnWriteFailed();

  uint64_t group() const { return group_; }
  // The hard state the engine holds (as published by OnWritten).
  const HardState& hard_state() const { return hard_state_; }

  // Where Snapshot() gets a snapshot to send: the driver makes a fresh one of the state
  // machine at its applied index (the stored compaction record has no state data).
  void set_snapshot_source(std::function<Result<replication::Snapshot>()> source) {
    snapshot_source_ = std::move(source);
  }

 private:
  RocksLogStorage(storage::Engine* engine, uint64_t group) : engine_(engine), group_(group) {}
  std::string EntryKey(uint64_t index) const;
  Status LoadMeta();
  // The cached entry at `index`, or null if it is not cached.
  const Entry* Cached(uint64_t index) const;
  void PublishToCache(std::vector<Entry> appended, bool reset);

  storage::Engine* const engine_;
  const uint64_t group_;

  // Published state: what the engine durably holds.
  uint64_t first_index_ = 1;
  uint64_t last_index_ = 0;
  HardState hard_state_;
  replication::Snapshot snapshot_;  // meta.index == 0: none

  // Staged by the current cycle, published by OnWritten().
  struct Pending {
    std::optional<uint64_t> first_index, last_index;
    std::optional<HardState> hard_state;
    std::optional<replication::Snapshot> snapshot;
    std::vector<Entry> entries;  // appended (copies for the cache)
    bool reset_cache = false;    // the log was replaced by a snapshot
  };
  Pending pending_;
  std::function<Result<replication::Snapshot>()> snapshot_source_;

  // The newest published entries, consecutive, ending at last_index_ when non-empty.
  std::deque<Entry> cache_;
  uint64_t cache_bytes_ = 0;
};

inline constexpr uint64_t kEntryCacheBytes = 1u << 20;

// Encodings, public for tests.
// A snapshot (meta and image) as one record, and back; Corruption names `group`.
std::string EncodeSnapshot(const Snapshot& s);
Result<Snapshot> DecodeSnapshot(uint64_t group, std::string_view in);
std::string EncodeEntry(const Entry& e);
Result<Entry> DecodeEntry(uint64_t index, std::string_view bytes);

}  // namespace ring::replication
