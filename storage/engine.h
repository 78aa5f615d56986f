// storage/engine.h: the node's RocksDB engine behind a narrow interface.
//
// Column families:
//   data     user keys as be64(hash) || key (common/keyspace.h), so a shard is one range
//   raftlog  replication log entries and hard state (used by replication/)
//   meta     small records: node identity, applied indexes, client dedup tables
//
// Every failure is a Status with context, never a crash or an exception: a missing or
// unwritable directory, a DB locked by another process, a corrupt DB, a full disk. RocksDB
// types and headers stay inside storage/*.cc.
//
// Full disk: writes are refused with IOError while free space on the data directory's
// filesystem is below `reserve_disk_bytes`, so RocksDB itself never hits ENOSPC in its WAL
// (Debian's librocksdb is built with assertions, some of which fire after a failed WAL
// write). If a write fails anyway, the engine records the error, reports it in health(),
// and retries RocksDB's Resume() on later writes once space is back.
//
// Insert hints. Most writes rewrite something just written: a replication log appends to
// its stream, and a shard's client records are rewritten every cycle. For two key shapes
// the memtable remembers where the last insert with the same hint prefix landed and starts
// the next one there, instead of searching the whole skiplist:
//   raftlog  16-byte keys, be64(stream) || be64(index), appended in index order per stream;
//            the hint prefix is the stream
//   meta     keys of 16 bytes or more; the hint prefix is the whole key
// Other shapes are written as usual. A range deletion must not begin with a hinted key
// (WriteBatch refuses it): RocksDB files range deletions under the same hints as point
// writes, and a hint left by one table breaks the next insert into the other.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ring::storage {

enum class Cf : uint8_t { kData = 0, kRaftLog = 1, kMeta = 2 };
const char* CfName(Cf cf);

// Insert hints (above): the raft log's key size, the smallest hinted meta key, and whether
// `key` gets a hint in `cf`.
inline constexpr size_t kLogKeyBytes = 16;
inline constexpr size_t kHintedMetaKeyBytes = 16;
bool HasInsertHint(Cf cf, std::string_view key);

// Faults a test can switch on while an engine runs on top of them (the fault-injecting
// filesystem wrapper, in the spirit of leveldb's SpecialEnv). All fields are atomics so a
// test thread may flip them at any time.
struct DiskFaults {
  std::atomic<int> fail_writes_errno{0};  // e.g. ENOSPC: every file append/write fails
  std::atomic<int> fail_sync_errno{0};    // e.g. EIO: every fsync/fdatasync fails
  std::atomic<int> fail_open_errno{0};    // e.g. EACCES: creating new files fails
  std::atomic<uint64_t> injected{0};      // how many faults fired
};

struct EngineOptions {
  std::string dir;                                // data directory; created if missing
  bool create_if_missing = true;                  // create the directory and the DB
  size_t block_cache_bytes = 128u << 20;          // shared LRU block cache
  uint64_t reserve_disk_bytes = 192ull << 20;     // refuse writes below this much free space
  std::shared_ptr<DiskFaults> faults;             // test seam; null in production
};

// An atomic group of updates across column families. Not thread-safe.
class WriteBatch {
 public:
  WriteBatch();
  ~WriteBatch();
  WriteBatch(WriteBatch&&) noexcept;
  WriteBatch& operator=(WriteBatch&&) noexcept;

  void Put(Cf cf, std::string_view key, std::string_view value);
  void Delete(Cf cf, std::string_view key);
  // Deletes [begin, end); an empty `end` means "to the end of the column family".
  void DeleteRange(Cf cf, std::string_view begin, std::string_view end);
  void Clear();
  size_t count() const;
  size_t bytes() const;

 private:
  friend class Engine;
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

struct EngineHealth {
  bool ok = true;           // false after a failed write, or while free space is below the reserve
  std::string error;        // why, while !ok
  uint64_t disk_free_bytes = 0;
  uint64_t live_bytes = 0;  // approximate size of all SST files + memtables
  uint64_t keys_estimate = 0;
};

class Engine;

// A consistent point-in-time view of the whole engine (a RocksDB snapshot), pinned until the
// last reference goes. Taking one is cheap; it keeps old versions of overwritten keys
// alive, so hold it only while exporting. Must not outlive its engine.
class ReadView {
 public:
  ~ReadView();
  ReadView(const ReadView&) = delete;
  ReadView& operator=(const ReadView&) = delete;

 private:
  friend class Engine;
  struct Rep;
  explicit ReadView(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Reads one key. NotFound if absent.
  Status Get(Cf cf, std::string_view key, std::string* value) const;
  // Reads many keys of one column family; one entry per key, nullopt when absent.
  Status MultiGet(Cf cf, const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values) const;

  // Applies `batch` atomically. With `sync`, the WAL is fsynced before returning.
  Status Write(WriteBatch& batch, bool sync);

  // Calls fn(key, value) for every key in [begin, end) of `cf` from one consistent
  // snapshot, in key order, until fn returns false. Empty `end` = no upper bound.
  Status Scan(Cf cf, std::string_view begin, std::string_view end,
              const std::function<bool(std::string_view, std::string_view)>& fn) const;

  // Deletes [begin, end) of `cf` with a range tombstone.
  Status DeleteRange(Cf cf, std::string_view begin, std::string_view end, bool sync);

  // Pins the engine's current state for a later ExportRange (see ReadView).
  std::shared_ptr<const ReadView> NewReadView() const;
  // Writes every key of [begin, end) in `cf`, as of `view` (null: one snapshot taken now),
  // to SST files under `out_dir` (created), named `<cf>-NNNNNN.sst`. Returns the files in
  // order; none if the range is empty. `max_file_bytes` bounds each file.
  Result<std::vector<std::string>> ExportRange(Cf cf, std::string_view begin,
                                               std::string_view end, const std::string& out_dir,
                                               uint64_t max_file_bytes = 64ull << 20,
                                               const ReadView* view = nullptr) const;
  // Checks that `files` are SST files IngestRange would accept for [begin, end) of `cf`:
  // readable, checksums intact, only puts, every key within the range. Corruption if not.
  Status CheckSstFiles(Cf cf, std::string_view begin, std::string_view end,
                       const std::vector<std::string>& files) const;

  // Ingests SST files produced by ExportRange into `cf`. Every key in them must lie within
  // [begin, end): checked first with CheckSstFiles (Corruption otherwise) unless the
  // caller already did (`checked`). Existing keys of [begin, end) are deleted in the same
  // step, so after success the range holds exactly the files' keys.
  Status IngestRange(Cf cf, std::string_view begin, std::string_view end,
                     const std::vector<std::string>& files, bool checked = false);

  // Flushes memtables to SST files (used before a clean shutdown).
  Status Flush();

  EngineHealth health() const;
  const std::string& dir() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ring::storage
