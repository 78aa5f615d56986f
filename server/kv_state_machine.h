// server/kv_state_machine.h: the key-value state machine that mutations are applied to.
//
// Apply() turns an ordered list of mutations into one storage WriteBatch plus one result
// per mutation. It reads the current values it needs (CAS, Delete) from the engine, through
// an overlay of the earlier mutations in the same list, so a list behaves exactly as if its
// mutations ran one by one. Apply() is deterministic given the engine's contents: that is
// what lets the replication log feed it committed entries in the same order on every
// replica (ReplicatedKv does, adding exactly-once and splits).
//
// Thread-safety: Apply() must be called by one thread at a time (the driver thread); the
// engine may serve reads concurrently.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "storage/engine.h"

namespace ring::server {

struct KvOp {
  enum class Kind { kPut, kDelete, kCas, kBatchPut };
  Kind kind = Kind::kPut;
  std::string key;       // Put, Delete, Cas
  std::string value;     // Put, Cas (the new value)
  std::string expected;  // Cas
  bool expect_absent = false;                              // Cas
  std::vector<std::pair<std::string, std::string>> pairs;  // BatchPut
};

struct KvResult {
  Status status;
  bool existed = false;                // Delete
  bool swapped = false;                // Cas
  std::optional<std::string> current;  // Cas, when not swapped
};

class KvStateMachine {
 public:
  explicit KvStateMachine(storage::Engine* engine) : engine_(engine) {}

  // Appends the effects of `ops` to *batch and sets (*results)[i] for ops[i]. A read error
  // fails only the op that needed the read.
  void Apply(const std::vector<const KvOp*>& ops, storage::WriteBatch* batch,
             std::vector<KvResult>* results);

 private:
  storage::Engine* const engine_;  // not owned
};

}  // namespace ring::server
