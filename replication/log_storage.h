// replication/log_storage.h: LogStorage, the seam through which the replication core reads
// the durable part of its log.
//
// The core never writes to storage. The driver writes what each Ready hands it (entries,
// hard state, snapshot) and only then tells the core Advance(); from then on the core
// reads those entries back through this interface. The core keeps everything newer than
// what the driver has persisted in memory itself (its "unstable" tail).
//
// Index layout: a storage holds a snapshot covering indexes [1, FirstIndex()-1] and the
// entries [FirstIndex(), LastIndex()]. Term(FirstIndex()-1) is the snapshot's term, so the
// consistency check for the first stored entry still works. An empty log has
// FirstIndex() == LastIndex() + 1.
//
// Error contract (the core depends on these codes, so implementations must honour them):
//   - NotFound with a message starting "compacted": the index is below FirstIndex()-1 (for
//     Term) or below FirstIndex() (for Entries); it now lives only in the snapshot. The
//     leader reacts by sending the snapshot instead of entries. Test with IsCompacted().
//   - Unavailable: the index is beyond LastIndex(), or (Snapshot only) no snapshot can be
//     produced right now, e.g. one is being built; the core retries later. Test with
//     IsUnavailable().
//   - Any other code (IOError, Corruption): the storage is broken. The core stops: it
//     returns that status from every later call, and the driver must stop the group.
//
// Thread-safety: the core calls these methods only from the thread that drives it, and
// only while the driver is not writing. Implementations shared with other threads must
// synchronise themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/types.h"

namespace ring::replication {

// What a restarting core needs besides the log itself.
struct StoredState {
  HardState hard_state;
  // The configuration as of `conf_index`, the latest snapshot's index. A storage may keep
  // some entries before its snapshot (FirstIndex()-1 <= conf_index); 0 means
  // FirstIndex()-1. The core replays configuration entries after conf_index.
  ConfState conf;
  uint64_t conf_index = 0;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  // The persisted hard state and the snapshot's configuration. Errors are fatal.
  virtual Result<StoredState> InitialState() const = 0;

  // Entries [lo, hi), at most `max_bytes` in total (Entry::ByteSize) but always at least
  // one when lo < hi. Compacted if lo < FirstIndex(); Unavailable if hi > LastIndex()+1.
  virtual Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const = 0;

  // The term of the entry at `index`, for FirstIndex()-1 <= index <= LastIndex().
  // Compacted below that range, Unavailable above it.
  virtual Result<uint64_t> Term(uint64_t index) const = 0;

  // Implementations keep both in memory, so they cannot fail.
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;

  // The most recent snapshot; Unavailable if it cannot be produced right now.
  virtual Result<replication::Snapshot> Snapshot() const = 0;
};

inline Status CompactedError(uint64_t index, uint64_t first_index) {
  return Status::NotFound("compacted: index " + std::to_string(index) +
                          " is before the log's first index " + std::to_string(first_index));
}
inline bool IsCompacted(const Status& s) { return s.IsNotFound(); }
inline bool IsUnavailable(const Status& s) { return s.IsUnavailable(); }

}  // namespace ring::replication
