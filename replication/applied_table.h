// replication/applied_table.h: AppliedTable, the durable applied index of every
// replication group a node hosts.
//
// A group's applied index must be written in the same batch as the state machine effects
// of the entries it covers, so that after a crash the group resumes exactly where its
// state is. Kept as one meta key per group, a cycle that applies entries of many groups
// (the common case: a client's writes are spread over every shard) adds one more key to
// every group's write. Here groups share a key per chunk of kChunk ids:
//
//   meta  "aq/" be64(group / kChunk)  ->  (be64 group, be64 applied index)*, by group
//
// so a cycle rewrites one small value per chunk it touched. Versions before this table
// kept "ap/" be64(group) -> be64 applied; Get still reads such a key for a group its
// chunk does not list, and the driver deletes it when the group leaves.
//
// Changes are staged like the log's writes: Stage() puts the touched chunks, as stored
// plus the changes, into the caller's batch; Commit() records them once that batch was
// written. Thread-safety: none (the driver thread owns it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"
#include "storage/engine.h"

namespace ring::replication {

class AppliedTable {
 public:
  static constexpr uint64_t kChunk = 64;
  // group -> new applied index, or nullopt: the group is no longer hosted.
  using Changes = std::map<uint64_t, std::optional<uint64_t>>;

  explicit AppliedTable(storage::Engine* engine) : engine_(engine) {}

  // The applied index stored for `group`; 0 if none.
  Result<uint64_t> Get(uint64_t group);
  // Puts every chunk `changes` touches into *batch: what is stored, with `changes` applied.
  Status Stage(const Changes& changes, storage::WriteBatch* batch);
  // The batch `changes` was staged into is written.
  void Commit(const Changes& changes);

  // The key of the chunk holding `group`, and the key older versions kept for it.
  static std::string ChunkKey(uint64_t group);
  static std::string LegacyKey(uint64_t group);

 private:
  using Chunk = std::map<uint64_t, uint64_t>;
  Result<Chunk*> Load(uint64_t chunk);  // read once, then cached

  storage::Engine* const engine_;
  std::map<uint64_t, Chunk> chunks_;  // by chunk number: what is stored
};

}  // namespace ring::replication
