// server/replicated_kv.h: the key-value state machine that every shard's replication log
// feeds, with exactly-once mutations.
//
// A log entry is a command: be64(leader wall-clock ms) || serialized pb::Request (a Put,
// Delete, CompareAndSet or BatchPut with its client_id and seq). Apply() decodes commands
// and runs them through KvStateMachine, so a replicated node computes exactly what a
// single node computes.
//
// Exactly-once (promise 3; RIFL, Lee et al.): every mutation carries (client_id, seq), and
// the client also sends first_incomplete_seq, the lowest seq it has not yet seen answered.
// Per shard and client, the state keeps the results of the applied mutations with
// seq >= first_incomplete_seq, in one meta record ("x/" be64(shard) be64(client)) written
// in the same batch as the mutations' effects. A command whose seq is already recorded is
// not applied again: the original result is returned. A seq below the client's
// first_incomplete_seq was already answered, so it is refused as stale. A client silent
// for kClientRetentionMs (by the leader-stamped clock in the commands, so every replica
// decides alike) is forgotten. The records live in the shard's state, so snapshots and
// shard moves carry them.
//
// Splits (Raft-log-first): a SplitCommand entry in a shard's log narrows the shard to
// [start, mid) from that entry on, and gives [mid, end) to a child shard. At apply, every
// replica writes both shards' range records ("x/" be64(shard): part of each shard's state
// and snapshots) and copies the parent's dedup records to the child, in the same batch;
// no key moves (keys are stored by hash). Later commands for keys outside the narrowed
// range are refused with WrongShard (a retry of one applied before the split still gets
// its original result). The child's replication group is created by the caller once the
// split is durable (SplitFounders), with the founders the entry names.
//
// The records a shard's recent clients own are cached in memory (write-through: Apply
// updates the cache as it stages the record's Put). A batch that fails to commit empties
// the cache (OnWriteFailed), so the cache never holds state the engine does not.
//
// Thread-safety: every method runs on the driver thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/keyspace.h"
#include "replication/driver.h"
#include "server/kv_state_machine.h"
#include "server/snapshot_store.h"

namespace ring::pb {
class Request;
class SplitCommand;
}

namespace ring::server {

inline constexpr uint64_t kClientRetentionMs = 60 * 60 * 1000;  // one hour
inline constexpr size_t kMaxResultsPerClient = 4096;
inline constexpr size_t kMaxCachedRecords = 100000;  // over all shards; then start over

// A client's dedup record: when it was last seen, and results by seq.
struct ClientRecord {
  uint64_t last_active_ms = 0;
  std::map<uint64_t, std::string> results;  // seq -> encoded KvResult
};

// Builds a log entry for `req` stamped with `now_ms`.
std::string EncodeCommand(const pb::Request& req, uint64_t now_ms);

class ReplicatedKv final : public replication::StateMachine {
 public:
  // A shard's hash range [start, end) (end 0: 2^64), or nullopt for a shard it does not
  // know. Called on the driver thread.
  struct HashRange {
    uint64_t start = 0;
    uint64_t end = 0;
  };
  using RangeSource = std::function<std::optional<HashRange>(uint64_t group)>;
  // `count` uniform shards (ShardRanges::Uniform), for tests and fixed layouts.
  static RangeSource UniformRanges(uint32_t count);

  // `ranges` says where each shard's keys are (ringd: the cluster map); `snapshots`
  // makes, moves and holds the SST files of this node's shard snapshots.
  ReplicatedKv(storage::Engine* engine, RangeSource ranges, SnapshotStore* snapshots)
      : engine_(engine), snapshots_(snapshots), kv_(engine), ranges_(std::move(ranges)) {}
  void Apply(uint64_t group, const std::vector<replication::Command>& commands, storage::WriteBatch* batch,
             std::vector<std::any>* results) override;
  // A snapshot is the shard's hash range of the data column family and its dedup records
  // in the meta column family, exported as SST files by the SnapshotStore; the image is
  // its manifest. A follower fetches the files, and Restore ingests them, replacing both
  // ranges (repeatable, as the driver requires).
  void Snapshot(uint64_t group, std::function<void(Result<std::string>)> done) override;
  bool NeedsFetch(std::string_view image) const override;
  void Fetch(uint64_t group, std::string image, std::function<void(Result<std::string>)> done) override;
  Status Restore(uint64_t group, std::string_view image, storage::WriteBatch* batch) override;
  void Restored(uint64_t group, std::string_view image) override;
  void OnWriteFailed() override;
  // Deletes shard `group`'s data and dedup records (the shard moved away), in *batch.
  Status Drop(uint64_t group, storage::WriteBatch* batch);

  // Any thread, from what the engine holds (durable splits only): the shard's range as
  // its own state says (its range record, else `ranges`), and, for a child of a split this
  // node applied, the founders to create its group with.
  std::optional<HashRange> DurableRange(uint64_t group) const;
  std::optional<std::vector<replication::NodeId>> SplitFounders(uint64_t group) const;

 private:
  struct RangeRecord {
    HashRange range;
    std::vector<replication::NodeId> founders;
  };
  std::optional<RangeRecord> ReadRangeRecord(uint64_t group) const;
  // Driver thread: the shard's current range, including splits staged in this batch.
  std::optional<HashRange> CurrentRange(uint64_t group);
  // The shard's data range and its dedup records' range; NotFound for an unknown shard.
  Result<std::vector<SnapshotRange>> Ranges(uint64_t group);
  // Stages a split's range records and the child's copy of the dedup records.
  void StageSplit(uint64_t group, const pb::SplitCommand& split, HashRange parent, HashRange child,
                  storage::WriteBatch* batch);

  storage::Engine* const engine_;
  SnapshotStore* const snapshots_;
  KvStateMachine kv_;
  const RangeSource ranges_;
  // group -> client -> record, as the engine holds them once the current batch commits.
  std::unordered_map<uint64_t, std::unordered_map<uint64_t, ClientRecord>> records_;
  size_t cached_records_ = 0;
  // group -> its range as of the current batch (driver thread; cleared when a batch fails).
  std::unordered_map<uint64_t, HashRange> range_cache_;
};

}  // namespace ring::server
