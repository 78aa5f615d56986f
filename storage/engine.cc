// storage/engine.cc: the RocksDB engine. See engine.h for the contract.
//
// Reading order: status conversion, the fault-injecting filesystem (tests only), the
// column-family handles used by WriteBatch, WriteBatch itself, then Engine::Impl with its
// disk-space guard and health bookkeeping, then the Engine methods.
#include "storage/engine.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <utility>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/table_properties.h>
#include <rocksdb/write_batch.h>

#include "storage/hash_memtable.h"

namespace ring::storage {

namespace {

namespace fs = std::filesystem;

constexpr size_t kCfCount = 3;
constexpr const char* kCfNames[kCfCount] = {"data", "raftlog", "meta"};

// RocksDB assigns column family ids in creation order, and Open() creates ours in Cf
// order on a fresh DB, so data/raftlog/meta are always ids 1/2/3 (0 is "default").
// WriteBatch relies on this (see CfHandleForBatch) and Open() verifies it.
constexpr uint32_t CfId(Cf cf) { return static_cast<uint32_t>(cf) + 1; }

// Under the bytewise comparator no finite key is above every other key, yet a range
// tombstone needs an end. Keys are capped at kMaxStoredKeyBytes (data keys are at most
// 8 + kMaxKeyBytes), so a run of kMaxStoredKeyBytes + 1 bytes of 0xff sorts after every
// key that can exist: a shorter key is either a prefix of it or has a smaller byte.
constexpr size_t kMaxStoredKeyBytes = 8192;

const std::string& OpenEndBound() {
  static const std::string bound(kMaxStoredKeyBytes + 1, '\xff');
  return bound;
}

// Where IngestRange writes its temporary files: inside the data directory, so on the same
// filesystem, but in a subdirectory RocksDB never looks into.
constexpr const char* kIngestTmpDir = "ingest-tmp";

// Free-space checks are cached this long, to keep statvfs off the write hot path.
constexpr int64_t kSpaceCheckIntervalNs = 100'000'000;

std::string MiB(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Converts a RocksDB status into ours, prefixing `context` ("open /path: IO error: ...").
Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  std::string msg(context);
  msg += ": ";
  msg += s.ToString();
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return Status::NotFound(std::move(msg));
    case rocksdb::Status::kCorruption:
      return Status::Corruption(std::move(msg));
    case rocksdb::Status::kInvalidArgument:
    case rocksdb::Status::kNotSupported:
      return Status::InvalidArgument(std::move(msg));
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return Status::Busy(std::move(msg));
    case rocksdb::Status::kTimedOut:
      return Status::Timeout(std::move(msg));
    case rocksdb::Status::kShutdownInProgress:
    case rocksdb::Status::kAborted:
    case rocksdb::Status::kIncomplete:
      return Status::Unavailable(std::move(msg));
    default:
      return Status::IOError(std::move(msg));
  }
}

// ---------------------------------------------------------------------------------------
// Fault injection (tests only). Every file the DB creates is wrapped so that appends,
// syncs and creations consult DiskFaults at the moment they run.

class FaultGate {
 public:
  explicit FaultGate(std::shared_ptr<DiskFaults> faults) : faults_(std::move(faults)) {}

  // OK, or the injected failure of `op` on `fname` if `err` (one of the DiskFaults
  // fields) is set. ENOSPC becomes RocksDB's NoSpace subcode, as the real PosixFileSystem
  // reports it, so RocksDB's error handler classifies it the same way.
  rocksdb::IOStatus Check(const std::atomic<int>& err_field, const char* op,
                          const std::string& fname) const {
    int err = err_field.load(std::memory_order_relaxed);
    if (err == 0) return rocksdb::IOStatus::OK();
    faults_->injected.fetch_add(1, std::memory_order_relaxed);
    std::string what = std::string("injected fault while ") + op + " " + fname;
    if (err == ENOSPC) return rocksdb::IOStatus::NoSpace(what);
    return rocksdb::IOStatus::IOError(what, ErrnoText(err));
  }
  rocksdb::IOStatus Write(const char* op, const std::string& f) const {
    return Check(faults_->fail_writes_errno, op, f);
  }
  rocksdb::IOStatus Sync(const char* op, const std::string& f) const {
    return Check(faults_->fail_sync_errno, op, f);
  }
  rocksdb::IOStatus Open(const char* op, const std::string& f) const {
    return Check(faults_->fail_open_errno, op, f);
  }

 private:
  std::shared_ptr<DiskFaults> faults_;
};

class FaultWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::string fname,
                    FaultGate gate)
      : FSWritableFileOwnerWrapper(std::move(file)), fname_(std::move(fname)), gate_(gate) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Write("appending to", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, o, dbg) : s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Write("appending to", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, o, info, dbg) : s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Write("appending to", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, dbg) : s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Write("appending to", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, info, dbg) : s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::Sync(o, dbg) : s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::Fsync(o, dbg) : s;
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing", fname_);
    return s.ok() ? FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, o, dbg) : s;
  }

 private:
  const std::string fname_;
  const FaultGate gate_;
};

class FaultRandomRWFile : public rocksdb::FSRandomRWFileOwnerWrapper {
 public:
  FaultRandomRWFile(std::unique_ptr<rocksdb::FSRandomRWFile> file, std::string fname,
                    FaultGate gate)
      : FSRandomRWFileOwnerWrapper(std::move(file)), fname_(std::move(fname)), gate_(gate) {}

  rocksdb::IOStatus Write(uint64_t offset, const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                          rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Write("writing to", fname_);
    return s.ok() ? FSRandomRWFileOwnerWrapper::Write(offset, data, o, dbg) : s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing", fname_);
    return s.ok() ? FSRandomRWFileOwnerWrapper::Sync(o, dbg) : s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing", fname_);
    return s.ok() ? FSRandomRWFileOwnerWrapper::Fsync(o, dbg) : s;
  }

 private:
  const std::string fname_;
  const FaultGate gate_;
};

class FaultDirectory : public rocksdb::FSDirectoryWrapper {
 public:
  FaultDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, std::string name, FaultGate gate)
      : FSDirectoryWrapper(std::move(dir)), name_(std::move(name)), gate_(gate) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
    auto s = gate_.Sync("syncing directory", name_);
    return s.ok() ? FSDirectoryWrapper::Fsync(o, dbg) : s;
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& dir_opts) override {
    auto s = gate_.Sync("syncing directory", name_);
    return s.ok() ? FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, dir_opts) : s;
  }

 private:
  const std::string name_;
  const FaultGate gate_;
};

// The filesystem RocksDB sees when EngineOptions::faults is set. Reads pass through
// untouched, so a test can check that a failing disk still serves reads.
class FaultInjectingFs : public rocksdb::FileSystemWrapper {
 public:
  FaultInjectingFs(const std::shared_ptr<rocksdb::FileSystem>& base,
                   std::shared_ptr<DiskFaults> faults)
      : FileSystemWrapper(base), gate_(std::move(faults)) {}

  static const char* kClassName() { return "RingFaultInjectingFs"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("creating", f); !fault.ok()) return fault;
    return Wrap(f, target()->NewWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("opening", f); !fault.ok()) return fault;
    return Wrap(f, target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("creating", f); !fault.ok()) return fault;
    return Wrap(f, target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("opening", f); !fault.ok()) return fault;
    auto s = target()->NewRandomRWFile(f, o, r, dbg);
    if (s.ok()) *r = std::make_unique<FaultRandomRWFile>(std::move(*r), f, gate_);
    return s;
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewDirectory(name, o, r, dbg);
    if (s.ok()) *r = std::make_unique<FaultDirectory>(std::move(*r), name, gate_);
    return s;
  }
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("creating directory", d); !fault.ok()) return fault;
    return target()->CreateDir(d, o, dbg);
  }
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
    if (auto fault = gate_.Open("creating directory", d); !fault.ok()) return fault;
    return target()->CreateDirIfMissing(d, o, dbg);
  }

 private:
  rocksdb::IOStatus Wrap(const std::string& f, rocksdb::IOStatus s,
                         std::unique_ptr<rocksdb::FSWritableFile>* r) const {
    if (s.ok()) *r = std::make_unique<FaultWritableFile>(std::move(*r), f, gate_);
    return s;
  }

  const FaultGate gate_;
};

// ---------------------------------------------------------------------------------------
// Column-family handles for WriteBatch. A WriteBatch is built before it meets an engine,
// and rocksdb::WriteBatch only asks a handle for its id and comparator, so these stand-ins
// carry the fixed ids that Open() verifies.

class BatchCfHandle : public rocksdb::ColumnFamilyHandle {
 public:
  explicit BatchCfHandle(Cf cf) : name_(kCfNames[static_cast<size_t>(cf)]), id_(CfId(cf)) {}
  const std::string& GetName() const override { return name_; }
  uint32_t GetID() const override { return id_; }
  rocksdb::Status GetDescriptor(rocksdb::ColumnFamilyDescriptor*) override {
    return rocksdb::Status::NotSupported("batch-only column family handle");
  }
  const rocksdb::Comparator* GetComparator() const override {
    return rocksdb::BytewiseComparator();
  }

 private:
  const std::string name_;
  const uint32_t id_;
};

rocksdb::ColumnFamilyHandle* CfHandleForBatch(Cf cf) {
  static BatchCfHandle handles[kCfCount] = {BatchCfHandle(Cf::kData), BatchCfHandle(Cf::kRaftLog),
                                            BatchCfHandle(Cf::kMeta)};
  return &handles[static_cast<size_t>(cf)];
}

bool ValidCf(Cf cf) { return static_cast<size_t>(cf) < kCfCount; }

std::string UnknownCf(Cf cf) {
  return "unknown column family " + std::to_string(static_cast<int>(cf));
}

// ---------------------------------------------------------------------------------------
// Health: what the last write or background error was. Shared with the RocksDB event
// listener, which the DB's options own, hence the shared_ptr.

struct HealthState {
  // Lets the write path skip the mutex while everything is fine.
  std::atomic<bool> degraded{false};

  std::mutex mu;          // a leaf lock: never held while calling into RocksDB
  bool ok = true;         // guarded by mu
  bool no_space = false;  // guarded by mu; the error was ENOSPC, so Resume() may fix it
  std::string error;      // guarded by mu

  void Record(const rocksdb::Status& s, std::string message) {
    std::lock_guard lock(mu);
    ok = false;
    no_space = s.IsNoSpace();
    error = std::move(message);
    degraded.store(true, std::memory_order_release);
  }
  void Clear() {
    std::lock_guard lock(mu);
    ok = true;
    no_space = false;
    error.clear();
    degraded.store(false, std::memory_order_release);
  }
};

// Records background errors (a failed flush or compaction, or a failed WAL write) in the
// health state, and clears it when RocksDB recovers by itself.
class HealthListener : public rocksdb::EventListener {
 public:
  explicit HealthListener(std::shared_ptr<HealthState> health) : health_(std::move(health)) {}
  const char* Name() const override { return "RingHealthListener"; }

  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* bg_error) override {
    if (bg_error != nullptr && !bg_error->ok()) {
      health_->Record(*bg_error, "background error: " + bg_error->ToString());
    }
  }
  // RocksDB's own recovery from a full disk (through its SstFileManager) retries only every
  // 5 s after a failed attempt, and meanwhile a manual Resume() returns Busy. The engine resumes
  // by itself on the next write once space is back (Engine::Impl::PrepareWrite), which is
  // both sooner and deterministic, so RocksDB's is switched off for no-space errors.
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (bg_error.IsNoSpace() && auto_recovery != nullptr) *auto_recovery = false;
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) health_->Clear();
  }

 private:
  const std::shared_ptr<HealthState> health_;
};

std::optional<uint64_t> FreeBytes(const std::string& dir) {
  struct statvfs st;
  if (statvfs(dir.c_str(), &st) != 0) return std::nullopt;
  // f_bavail, not f_bfree: the blocks reserved for root are not ours to fill.
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------
// Options. Only `data` is on the client hot path; raftlog and meta are small and short-lived.

rocksdb::CompressionType FastCompression() {
  for (auto c : rocksdb::GetSupportedCompressions()) {
    if (c == rocksdb::kLZ4Compression) return c;
  }
  return rocksdb::kNoCompression;
}

// Hash buckets of the data memtable: ~one key per bucket at a full 64 MiB memtable of
// 100-byte values; the bucket array (8 MiB) is part of each memtable's arena.
constexpr size_t kDataMemtableBuckets = 1u << 20;

// ExportRange flushes the data memtable first when it holds at least this much; sorting
// its keys for the iterator costs less below that.
constexpr uint64_t kFlushBeforeExportBytes = 16u << 20;

rocksdb::ColumnFamilyOptions DataCfOptions(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks stay pinned in table-reader memory rather than competing with
  // data blocks in the cache: a point Get then never misses on its own index.
  table.cache_index_and_filter_blocks = false;
  // A small hash index inside each data block saves the binary search on point lookups.
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;

  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.compression = FastCompression();
  cf.level_compaction_dynamic_level_bytes = true;
  cf.write_buffer_size = 64u << 20;
  cf.max_write_buffer_number = 3;
  // Every Get probes the memtables first; a whole-key bloom filter answers most misses
  // without a probe, so Gets served from SST files mostly skip the memtable. (It paid
  // ~2 us per miss against a skiplist; against the hash memtable below a miss is a bucket
  // probe, and dropping the filter measured writes +3-4% and reads -2 to -7%: kept.)
  cf.memtable_whole_key_filtering = true;
  cf.memtable_prefix_bloom_size_ratio = 0.02;
  // The memtable is a hash table of keys, each with its chain of versions
  // (storage/hash_memtable.h), not one big skiplist. A point Get or Put in a skiplist of a
  // few hundred thousand entries is ~20 dependent cache misses (~2 us here); in a bucket it
  // is a few. A flush sorts one pointer per key. History, one node, 100k keys, 50 clients:
  // RocksDB's HashSkipList gave reads +28% unpipelined and +87% with pipeline 16 and writes
  // +15% over the skiplist; its HashLinkList another +5-13% writes and +9-16% reads; both
  // sort a flush by inserting every entry into a new skiplist, which was 15% of the CPU of
  // three nodes under write load.
  cf.memtable_factory = NewHashMemtableFactory(kDataMemtableBuckets);
  return cf;
}

rocksdb::ColumnFamilyOptions SmallCfOptions(const std::shared_ptr<rocksdb::Cache>& cache,
                                            size_t write_buffer_bytes, bool bloom) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  if (bloom) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Log entries and metadata are short-lived or tiny: compressing them buys little.
  cf.compression = rocksdb::kNoCompression;
  cf.level_compaction_dynamic_level_bytes = true;
  cf.write_buffer_size = write_buffer_bytes;
  cf.max_write_buffer_number = 3;
  return cf;
}

// RocksDB's insert hints: the memtable remembers, per hint prefix, where the last insert
// landed, and the next insert with that prefix starts its search there. A log append
// (always just after its stream's last entry) or a new version of a rewritten record
// (always just before the previous one) then costs a few comparisons instead of a search
// of the whole skiplist: measured on one node, 50 clients, writes +11-13% unpipelined and
// +4-6% with pipeline 16. The key shapes that get hints are the contract in engine.h
// ("Insert hints").
class InsertHintTransform final : public rocksdb::SliceTransform {
 public:
  explicit InsertHintTransform(Cf cf) : cf_(cf) {}
  const char* Name() const override { return cf_ == Cf::kRaftLog ? "ring.LogStream" : "ring.WholeKey"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return cf_ == Cf::kRaftLog ? rocksdb::Slice(key.data(), 8) : key;
  }
  bool InDomain(const rocksdb::Slice& key) const override { return HasInsertHint(cf_, {key.data(), key.size()}); }

 private:
  Cf cf_;
};

rocksdb::ColumnFamilyOptions HintedCfOptions(Cf cf, const std::shared_ptr<rocksdb::Cache>& cache,
                                             size_t write_buffer_bytes, bool bloom) {
  rocksdb::ColumnFamilyOptions o = SmallCfOptions(cache, write_buffer_bytes, bloom);
  o.memtable_insert_with_hint_prefix_extractor = std::make_shared<InsertHintTransform>(cf);
  return o;
}

bool IsLockError(const rocksdb::Status& s) {
  // PosixFileSystem::LockFile names the LOCK file in both of its failures: held by another
  // process (EAGAIN) and held by another DB instance in this process (ENOLCK).
  return s.IsIOError() && s.ToString().find("/LOCK") != std::string::npos;
}

}  // namespace

const char* CfName(Cf cf) { return ValidCf(cf) ? kCfNames[static_cast<size_t>(cf)] : "unknown"; }

bool HasInsertHint(Cf cf, std::string_view key) {
  switch (cf) {
    case Cf::kRaftLog: return key.size() == kLogKeyBytes;
    case Cf::kMeta: return key.size() >= kHintedMetaKeyBytes;
    default: return false;
  }
}

// ---------------------------------------------------------------------------------------
// WriteBatch

struct WriteBatch::Rep {
  rocksdb::WriteBatch batch;
  std::vector<uint64_t> data_hashes;  // BucketHash of each data key written: PrefetchBuckets
  // The first invalid update, if any; Engine::Write refuses the whole batch with it, since
  // a batch is all or nothing.
  std::string error;

  void Note(const rocksdb::Status& s) {
    if (!s.ok() && error.empty()) error = s.ToString();
  }
  bool CheckKey(Cf cf, std::string_view key) {
    if (!ValidCf(cf)) {
      if (error.empty()) error = UnknownCf(cf);
      return false;
    }
    if (key.size() > kMaxStoredKeyBytes) {
      if (error.empty()) {
        error = "key of " + std::to_string(key.size()) + " bytes exceeds the storage limit of " +
                std::to_string(kMaxStoredKeyBytes) + " bytes";
      }
      return false;
    }
    return true;
  }
};

WriteBatch::WriteBatch() : rep_(std::make_unique<Rep>()) {}
WriteBatch::~WriteBatch() = default;
WriteBatch::WriteBatch(WriteBatch&&) noexcept = default;
WriteBatch& WriteBatch::operator=(WriteBatch&&) noexcept = default;

// A moved-from batch has no Rep; it becomes an empty batch again on first use.
void WriteBatch::Put(Cf cf, std::string_view key, std::string_view value) {
  if (!rep_) rep_ = std::make_unique<Rep>();
  if (!rep_->CheckKey(cf, key)) return;
  if (cf == Cf::kData) rep_->data_hashes.push_back(BucketHash(key));
  rep_->Note(rep_->batch.Put(CfHandleForBatch(cf), rocksdb::Slice(key.data(), key.size()),
                             rocksdb::Slice(value.data(), value.size())));
}

void WriteBatch::Delete(Cf cf, std::string_view key) {
  if (!rep_) rep_ = std::make_unique<Rep>();
  if (!rep_->CheckKey(cf, key)) return;
  if (cf == Cf::kData) rep_->data_hashes.push_back(BucketHash(key));
  rep_->Note(rep_->batch.Delete(CfHandleForBatch(cf), rocksdb::Slice(key.data(), key.size())));
}

void WriteBatch::DeleteRange(Cf cf, std::string_view begin, std::string_view end) {
  if (!rep_) rep_ = std::make_unique<Rep>();
  if (!rep_->CheckKey(cf, begin)) return;
  if (HasInsertHint(cf, begin)) {
    // RocksDB files a range deletion's insert hint with the point writes' hints, and a
    // hint left in one table breaks the next insert into the other (engine.h).
    if (rep_->error.empty()) {
      rep_->error = std::string("a range deletion in ") + CfName(cf) + " may not begin with a key of a hinted shape (" +
                    std::to_string(begin.size()) + " bytes)";
    }
    return;
  }
  // An empty range deletes nothing. RocksDB would reject begin > end at write time.
  if (!end.empty() && begin >= end) return;
  rocksdb::Slice end_slice =
      end.empty() ? rocksdb::Slice(OpenEndBound()) : rocksdb::Slice(end.data(), end.size());
  rep_->Note(rep_->batch.DeleteRange(CfHandleForBatch(cf),
                                     rocksdb::Slice(begin.data(), begin.size()), end_slice));
}

void WriteBatch::Clear() {
  if (!rep_) return;
  rep_->batch.Clear();
  rep_->data_hashes.clear();
  rep_->error.clear();
}

size_t WriteBatch::count() const { return rep_ ? rep_->batch.Count() : 0; }
size_t WriteBatch::bytes() const { return rep_ ? rep_->batch.GetDataSize() : 0; }

// ---------------------------------------------------------------------------------------
// Engine::Impl

struct Engine::Impl {
  ~Impl() {
    if (db) {
      for (auto* h : cfs) {
        if (h != nullptr) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      }
      if (default_cf != nullptr) db->DestroyColumnFamilyHandle(default_cf).PermitUncheckedError();
      // Close() reports a pending background error again; it has already been reported
      // through health() and the failed writes, and a destructor cannot return it.
      db->Close().PermitUncheckedError();
      db.reset();
    }
    env.reset();  // after the DB: its files point into it
  }

  Status CheckCf(Cf cf) const {
    return ValidCf(cf) ? Status::OK() : Status::InvalidArgument(UnknownCf(cf));
  }
  rocksdb::ColumnFamilyHandle* Handle(Cf cf) const { return cfs[static_cast<size_t>(cf)]; }
  const rocksdb::Options& SstOptions(Cf cf) const { return sst_options[static_cast<size_t>(cf)]; }
  std::string Context(std::string_view op, Cf cf) const {
    return options.dir + ": " + std::string(op) + " " + CfName(cf);
  }

  // Refuses a write while free space is below the reserve, so that RocksDB itself does not
  // run out of space mid-write. statvfs runs at most every kSpaceCheckIntervalNs; a write
  // that slips in during that window is still caught by RocksDB's own error handling.
  Status CheckDiskSpace() {
    const uint64_t reserve = options.reserve_disk_bytes;
    if (reserve == 0) return Status::OK();
    const int64_t now = NowNs();
    uint64_t free_bytes;
    if (now - space_checked_ns.load(std::memory_order_acquire) < kSpaceCheckIntervalNs) {
      free_bytes = space_free.load(std::memory_order_relaxed);
    } else {
      // If statvfs itself fails, do not block writes on it: RocksDB reports real failures.
      free_bytes = FreeBytes(options.dir).value_or(UINT64_MAX);
      space_free.store(free_bytes, std::memory_order_relaxed);
      space_checked_ns.store(now, std::memory_order_release);
    }
    if (free_bytes >= reserve) return Status::OK();
    return Status::IOError(options.dir + ": No space left on device: only " + MiB(free_bytes) +
                           " free, below the reserve of " + MiB(reserve));
  }

  // Runs before every write: the reserve guard, then recovery from an earlier failure.
  //
  // Only a no-space error is resumed here, and only once the guard above sees space again.
  // Any other write error (EIO from fsync, a corrupt file) is left in place: after a failed
  // fsync the kernel may have dropped the dirty pages, so retrying cannot prove the data is
  // durable. RocksDB then fails every write with that error until the process restarts
  // and recovers from the WAL; reads keep working meanwhile.
  //
  // Resume() flushes the memtables (the failed WAL may be torn) and clears the background
  // error. When it fails it takes about a second, because RocksDB's flush thread sleeps 1 s
  // after a failed flush and Resume() waits for it. Writers that queued behind a failed
  // attempt share its result instead of each paying for another one.
  Status PrepareWrite() {
    RETURN_IF_ERROR(CheckDiskSpace());
    if (!health->degraded.load(std::memory_order_acquire)) return Status::OK();
    const uint64_t attempts_seen = resume_attempts.load(std::memory_order_acquire);
    std::lock_guard lock(resume_mu);
    {
      std::lock_guard health_lock(health->mu);
      if (health->ok || !health->no_space) return Status::OK();
    }
    if (resume_attempts.load(std::memory_order_relaxed) != attempts_seen) return last_resume;
    resume_attempts.fetch_add(1, std::memory_order_release);
    rocksdb::Status s = db->Resume();
    if (!s.ok()) {
      last_resume = FromRocks(s, options.dir + ": resume after running out of disk space");
      return last_resume;
    }
    health->Clear();
    return Status::OK();
  }

  // Records the outcome of a RocksDB write; a success clears an earlier error.
  Status FinishWrite(const rocksdb::Status& s, std::string_view context) {
    if (s.ok()) {
      if (health->degraded.load(std::memory_order_acquire)) health->Clear();
      return Status::OK();
    }
    Status out = FromRocks(s, context);
    if (s.IsIOError() || s.IsCorruption()) health->Record(s, out.message());
    return out;
  }

  // Constant after Open.
  EngineOptions options;
  std::unique_ptr<rocksdb::Env> env;  // the fault-injecting env, or null; outlives db
  std::shared_ptr<rocksdb::Cache> block_cache;
  rocksdb::Options sst_options[kCfCount];  // DB + CF options, for SST writers and readers
  std::unique_ptr<rocksdb::DB> db;
  std::shared_ptr<rocksdb::MemTableRepFactory> data_memtable;  // the data CF's (hash_memtable.h)
  rocksdb::ColumnFamilyHandle* cfs[kCfCount] = {};
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
  std::shared_ptr<HealthState> health = std::make_shared<HealthState>();

  // The disk-space guard's cached statvfs result; lock-free, since races only make a
  // check up to one interval stale.
  std::atomic<int64_t> space_checked_ns{0};
  std::atomic<uint64_t> space_free{0};

  std::mutex resume_mu;                      // one Resume() at a time
  std::atomic<uint64_t> resume_attempts{0};  // written under resume_mu
  Status last_resume;                        // guarded by resume_mu; the last failed attempt
  std::atomic<uint64_t> next_ingest{0};      // names temporary files of IngestRange
};

// ---------------------------------------------------------------------------------------
// Engine

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("open: empty data directory path");
  const std::string ctx = "open " + options.dir;

  // Check the directory ourselves first: RocksDB's messages for these cases are obscure.
  std::error_code ec;
  fs::file_status st = fs::status(options.dir, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) return Status::InvalidArgument(ctx + ": not a directory");
  } else if (!options.create_if_missing) {
    return Status::InvalidArgument(ctx + ": directory does not exist");
  } else if (fs::create_directories(options.dir, ec); ec) {
    return Status::IOError(ctx + ": cannot create directory: " + ec.message());
  }
  if (access(options.dir.c_str(), W_OK | X_OK) != 0) {
    return Status::IOError(ctx + ": directory is not writable: " + ErrnoText(errno));
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->space_checked_ns.store(NowNs() - kSpaceCheckIntervalNs);  // check on first write

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 4;
  db_options.allow_concurrent_memtable_write = false;  // the hash memtable cannot (and one thread writes)
  // Write SST data back gradually instead of in one burst at fsync.
  db_options.bytes_per_sync = 1u << 20;
  // All column families share one WAL; cap it so a rarely written CF (meta) cannot pin
  // old WAL files forever.
  db_options.max_total_wal_size = 512ull << 20;
  db_options.keep_log_file_num = 5;
  db_options.max_log_file_size = 32u << 20;
  db_options.listeners.push_back(std::make_shared<HealthListener>(impl->health));
  if (options.faults) {
    impl->env = rocksdb::NewCompositeEnv(
        std::make_shared<FaultInjectingFs>(rocksdb::FileSystem::Default(), options.faults));
    db_options.env = impl->env.get();
  }

  impl->block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::ColumnFamilyOptions cf_options[kCfCount] = {
      DataCfOptions(impl->block_cache),
      HintedCfOptions(Cf::kRaftLog, impl->block_cache, 32u << 20, /*bloom=*/false),
      HintedCfOptions(Cf::kMeta, impl->block_cache, 4u << 20, /*bloom=*/true),
  };
  impl->data_memtable = cf_options[static_cast<size_t>(Cf::kData)].memtable_factory;
  rocksdb::ColumnFamilyOptions default_options;
  default_options.write_buffer_size = 1u << 20;  // unused, but RocksDB requires it

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, default_options);
  for (size_t i = 0; i < kCfCount; ++i) {
    descriptors.emplace_back(kCfNames[i], cf_options[i]);
    impl->sst_options[i] = rocksdb::Options(db_options, cf_options[i]);
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.dir, descriptors, &handles, &raw_db);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return Status::IOError(ctx + ": directory is in use by another process (its LOCK file " +
                             "is held): " + s.ToString());
    }
    return FromRocks(s, ctx);
  }
  impl->db.reset(raw_db);
  impl->default_cf = handles[0];
  for (size_t i = 0; i < kCfCount; ++i) impl->cfs[i] = handles[i + 1];

  // WriteBatch addresses column families by id (see CfHandleForBatch).
  for (size_t i = 0; i < kCfCount; ++i) {
    if (impl->cfs[i]->GetID() != CfId(static_cast<Cf>(i))) {
      return Status::Corruption(ctx + ": column family " + kCfNames[i] + " has id " +
                                std::to_string(impl->cfs[i]->GetID()) + ", expected " +
                                std::to_string(CfId(static_cast<Cf>(i))));
    }
  }
  // Range-tombstone files of an IngestRange that a crash interrupted.
  fs::remove_all(fs::path(options.dir) / kIngestTmpDir, ec);
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Status Engine::Get(Cf cf, std::string_view key, std::string* value) const {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->Handle(cf),
                                     rocksdb::Slice(key.data(), key.size()), value);
  if (s.ok()) return Status::OK();
  // Short and allocation-free: a miss is a normal answer, not an error.
  if (s.IsNotFound()) return Status::NotFound("not found");
  return FromRocks(s, impl_->Context("get from", cf));
}

Status Engine::MultiGet(Cf cf, const std::vector<std::string>& keys,
                        std::vector<std::optional<std::string>>* values) const {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  values->clear();
  if (keys.empty()) return Status::OK();
  const size_t n = keys.size();
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> found(n);
  std::vector<rocksdb::Status> statuses(n);
  impl_->db->MultiGet(rocksdb::ReadOptions(), impl_->Handle(cf), n, slices.data(), found.data(),
                      statuses.data());
  values->resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].ok()) {
      (*values)[i].emplace(found[i].data(), found[i].size());
    } else if (!statuses[i].IsNotFound()) {
      values->clear();
      return FromRocks(statuses[i], impl_->Context("multiget from", cf));
    }
  }
  return Status::OK();
}

Status Engine::Write(WriteBatch& batch, bool sync) {
  if (!batch.rep_) return Status::OK();  // moved-from: nothing to write
  if (!batch.rep_->error.empty()) {
    return Status::InvalidArgument(impl_->options.dir + ": write: " + batch.rep_->error);
  }
  RETURN_IF_ERROR(impl_->PrepareWrite());
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  PrefetchBuckets(*impl_->data_memtable, batch.rep_->data_hashes);
  rocksdb::Status s = impl_->db->Write(wo, &batch.rep_->batch);
  if (s.ok()) return impl_->FinishWrite(s, {});
  return impl_->FinishWrite(
      s, impl_->options.dir + ": write of " + std::to_string(batch.count()) + " updates");
}

Status Engine::Scan(Cf cf, std::string_view begin, std::string_view end,
                    const std::function<bool(std::string_view, std::string_view)>& fn) const {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  if (!end.empty() && begin >= end) return Status::OK();
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end.data(), end.size());
  if (!end.empty()) ro.iterate_upper_bound = &upper;
  // An iterator reads from the implicit snapshot taken when it is created.
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->Handle(cf)));
  for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    rocksdb::Slice v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  return FromRocks(it->status(), impl_->Context("scan of", cf));
}

Status Engine::DeleteRange(Cf cf, std::string_view begin, std::string_view end, bool sync) {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  WriteBatch batch;
  batch.DeleteRange(cf, begin, end);
  if (!batch.rep_->error.empty()) {
    return Status::InvalidArgument(impl_->Context("delete range of", cf) + ": " +
                                   batch.rep_->error);
  }
  if (batch.count() == 0) return Status::OK();  // empty range
  RETURN_IF_ERROR(impl_->PrepareWrite());
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  rocksdb::Status s = impl_->db->Write(wo, &batch.rep_->batch);
  return impl_->FinishWrite(s, s.ok() ? std::string() : impl_->Context("delete range of", cf));
}

struct ReadView::Rep {
  rocksdb::DB* db = nullptr;
  const rocksdb::Snapshot* snapshot = nullptr;
};

ReadView::ReadView(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
ReadView::~ReadView() {
  if (rep_ && rep_->snapshot) rep_->db->ReleaseSnapshot(rep_->snapshot);
}

std::shared_ptr<const ReadView> Engine::NewReadView() const {
  auto rep = std::make_unique<ReadView::Rep>();
  rep->db = impl_->db.get();
  rep->snapshot = impl_->db->GetSnapshot();
  return std::shared_ptr<const ReadView>(new ReadView(std::move(rep)));
}

Result<std::vector<std::string>> Engine::ExportRange(Cf cf, std::string_view begin,
                                                     std::string_view end,
                                                     const std::string& out_dir,
                                                     uint64_t max_file_bytes,
                                                     const ReadView* view) const {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  const std::string ctx = impl_->Context("export of", cf) + " to " + out_dir;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return Status::IOError(ctx + ": cannot create directory: " + ec.message());

  std::vector<std::string> files;
  if (!end.empty() && begin >= end) return files;

  // Iterating the data CF's hash memtable sorts a copy of all of it. A big one is flushed
  // to an SST file first instead (the view's snapshot keeps what it needs), without
  // stalling writes for it: several exports of a move would otherwise each switch the
  // memtable and could stop every write of the node until the flushes caught up.
  uint64_t active_bytes = 0;
  if (cf == Cf::kData &&
      impl_->db->GetIntProperty(impl_->Handle(cf), "rocksdb.cur-size-active-mem-table", &active_bytes) &&
      active_bytes >= kFlushBeforeExportBytes) {
    rocksdb::FlushOptions fo;
    fo.allow_write_stall = false;
    rocksdb::Status fs = impl_->db->Flush(fo, impl_->Handle(cf));
    if (!fs.ok()) return FromRocks(fs, ctx + ": flush before export");
  }
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a bulk copy should not evict the hot set
  ro.readahead_size = 2u << 20;
  if (view != nullptr) ro.snapshot = view->rep_->snapshot;
  rocksdb::Slice upper(end.data(), end.size());
  if (!end.empty()) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->Handle(cf)));

  std::unique_ptr<rocksdb::SstFileWriter> writer;
  // On failure, no partial output stays behind.
  auto fail = [&](const rocksdb::Status& s, const std::string& what) -> Status {
    writer.reset();
    for (const auto& f : files) fs::remove(f, ec);
    return FromRocks(s, ctx + what);
  };
  for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next()) {
    rocksdb::Status s;
    if (!writer) {
      char name[32];
      std::snprintf(name, sizeof(name), "/%s-%06zu.sst", CfName(cf), files.size() + 1);
      files.push_back(out_dir + name);
      writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(),
                                                        impl_->SstOptions(cf), impl_->Handle(cf));
      s = writer->Open(files.back());
      if (!s.ok()) return fail(s, ": create " + files.back());
    }
    s = writer->Put(it->key(), it->value());
    if (!s.ok()) return fail(s, ": write " + files.back());
    if (writer->FileSize() >= max_file_bytes) {
      s = writer->Finish();
      if (!s.ok()) return fail(s, ": finish " + files.back());
      writer.reset();
    }
  }
  if (!it->status().ok()) return fail(it->status(), ": read");
  if (writer) {
    rocksdb::Status s = writer->Finish();
    if (!s.ok()) return fail(s, ": finish " + files.back());
  }
  return files;
}

Status Engine::CheckSstFiles(Cf cf, std::string_view begin, std::string_view end,
                             const std::vector<std::string>& files) const {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  const std::string ctx = impl_->Context("ingest into", cf);
  for (const auto& file : files) {
    const std::string file_ctx = ctx + ": sst file " + file;
    rocksdb::SstFileReader reader(impl_->SstOptions(cf));
    rocksdb::Status s = reader.Open(file);
    if (s.ok()) s = reader.VerifyChecksum();
    if (!s.ok()) return FromRocks(s, file_ctx);
    auto props = reader.GetTableProperties();
    // A tombstone in a file could delete keys outside the range; ExportRange writes none.
    if (props && (props->num_deletions > 0 || props->num_range_deletions > 0 ||
                  props->num_merge_operands > 0)) {
      return Status::Corruption(file_ctx + ": holds deletions or merges, which ExportRange " +
                                "never writes");
    }
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(reader.NewIterator(ro));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view k(it->key().data(), it->key().size());
      if (k < begin || (!end.empty() && k >= end)) {
        return Status::Corruption(file_ctx + ": key out of range");
      }
      if (k.size() > kMaxStoredKeyBytes) {
        return Status::Corruption(file_ctx + ": key of " + std::to_string(k.size()) +
                                  " bytes exceeds the storage limit");
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), file_ctx);
  }
  return Status::OK();
}

Status Engine::IngestRange(Cf cf, std::string_view begin, std::string_view end,
                           const std::vector<std::string>& files, bool checked) {
  RETURN_IF_ERROR(impl_->CheckCf(cf));
  const std::string ctx = impl_->Context("ingest into", cf);
  RETURN_IF_ERROR(impl_->PrepareWrite());

  // Check every file before touching the DB, so a bad file changes nothing.
  if (!checked) RETURN_IF_ERROR(CheckSstFiles(cf, begin, end, files));

  // The old contents go in the same ingestion as the new: a first file holding only a
  // range tombstone for [begin, end). Files of one ingestion that overlap get increasing
  // sequence numbers in list order, and a tombstone hides only older entries, so it deletes
  // what was there and none of the files' keys. Readers see the old range or the new one,
  // never an empty one in between.
  std::vector<std::string> ingest;
  std::string tombstone_file;
  if (end.empty() || begin < end) {
    const fs::path tmp_dir = fs::path(impl_->options.dir) / kIngestTmpDir;
    std::error_code ec;
    fs::create_directories(tmp_dir, ec);
    if (ec) return Status::IOError(ctx + ": create " + tmp_dir.string() + ": " + ec.message());
    tombstone_file =
        (tmp_dir / ("range-" + std::to_string(impl_->next_ingest.fetch_add(1)) + ".sst")).string();
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), impl_->SstOptions(cf), impl_->Handle(cf));
    rocksdb::Status s = writer.Open(tombstone_file);
    if (s.ok()) {
      s = writer.DeleteRange(
          rocksdb::Slice(begin.data(), begin.size()),
          end.empty() ? rocksdb::Slice(OpenEndBound()) : rocksdb::Slice(end.data(), end.size()));
    }
    if (s.ok()) s = writer.Finish();
    if (!s.ok()) {
      fs::remove(tombstone_file, ec);
      return FromRocks(s, ctx + ": write range tombstone " + tombstone_file);
    }
    ingest.push_back(tombstone_file);
  }
  // The caller keeps its files. RocksDB moves what it ingests (a hard link, then deleting
  // the name it was given), so it is given a second link of each file: no copy. Files on
  // another filesystem cannot be linked; then RocksDB copies them all.
  const fs::path tmp_dir = fs::path(impl_->options.dir) / kIngestTmpDir;
  std::vector<std::string> links;
  std::error_code dir_ec;
  fs::create_directories(tmp_dir, dir_ec);
  bool linked = !dir_ec;
  for (size_t i = 0; linked && i < files.size(); ++i) {
    const std::string& file = files[i];
    std::string link = (tmp_dir / ("file-" + std::to_string(impl_->next_ingest.fetch_add(1)) + ".sst")).string();
    std::error_code ec;
    fs::create_hard_link(file, link, ec);
    if (ec) {
      linked = false;
      break;
    }
    links.push_back(std::move(link));
  }
  auto remove_all = [](const std::vector<std::string>& paths) {
    std::error_code ec;
    for (const auto& p : paths) fs::remove(p, ec);
  };
  if (!linked) remove_all(links);
  ingest.insert(ingest.end(), linked ? links.begin() : files.begin(), linked ? links.end() : files.end());
  if (ingest.empty()) return Status::OK();

  rocksdb::IngestExternalFileOptions io;
  io.move_files = linked;
  // Keep each file's sequence number in the MANIFEST instead of rewriting the file.
  io.write_global_seqno = false;
  rocksdb::Status s = impl_->db->IngestExternalFile(impl_->Handle(cf), ingest, io);
  if (!tombstone_file.empty()) remove_all({tombstone_file});
  if (linked) remove_all(links);  // left behind only if the ingestion failed
  return impl_->FinishWrite(s, ctx);
}

Status Engine::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  std::vector<rocksdb::ColumnFamilyHandle*> handles(impl_->cfs, impl_->cfs + kCfCount);
  rocksdb::Status s = impl_->db->Flush(fo, handles);
  if (s.ok()) return Status::OK();
  Status out = FromRocks(s, impl_->options.dir + ": flush");
  if (s.IsIOError() || s.IsCorruption()) impl_->health->Record(s, out.message());
  return out;
}

EngineHealth Engine::health() const {
  EngineHealth h;
  {
    std::lock_guard lock(impl_->health->mu);
    h.ok = impl_->health->ok;
    h.error = impl_->health->error;
  }
  h.disk_free_bytes = FreeBytes(impl_->options.dir).value_or(0);
  // Below the reserve, writes are refused before they reach RocksDB (see Write), so the
  // engine is unhealthy even though no write has failed inside RocksDB.
  if (h.ok && impl_->options.reserve_disk_bytes > 0 && h.disk_free_bytes < impl_->options.reserve_disk_bytes) {
    h.ok = false;
    h.error = impl_->options.dir + ": No space left on device: only " + std::to_string(h.disk_free_bytes >> 20) +
              " MiB free, below the reserve of " + std::to_string(impl_->options.reserve_disk_bytes >> 20) + " MiB";
  }
  for (auto* handle : impl_->cfs) {
    uint64_t v = 0;
    if (impl_->db->GetIntProperty(handle, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
      h.live_bytes += v;
    }
    if (impl_->db->GetIntProperty(handle, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
      h.live_bytes += v;
    }
  }
  uint64_t keys = 0;
  if (impl_->db->GetIntProperty(impl_->Handle(Cf::kData), rocksdb::DB::Properties::kEstimateNumKeys,
                                &keys)) {
    h.keys_estimate = keys;
  }
  return h;
}

const std::string& Engine::dir() const { return impl_->options.dir; }

}  // namespace ring::storage
