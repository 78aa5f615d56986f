// server/snapshot_store.h: shard snapshots as SST files, and moving them between nodes.
//
// A shard's snapshot is too big for a Raft message, so Raft carries only a manifest
// (pb::SnapshotManifest: an export id, the node serving it, and its files):
//
//   leader:   Export() pins a consistent view of the engine on the caller's thread (the
//             driver, so the view matches the applied index), then a worker writes the
//             shard's ranges from that view to SST files under dir/out/<id>/ and hands
//             back the manifest. ReadChunk() serves those files to followers (I/O thread).
//   follower: Fetch() pulls every file of a remote manifest in chunks (pipelined, within
//             the byte-rate limit), fsyncs them under dir/in/<id>/, checks every file
//             (checksums, only puts, keys within the shard), and hands back a local
//             manifest (source ""). Only then does Raft see the snapshot. LocalFiles()
//             resolves a local manifest for ingestion; Release() deletes its files once
//             the restore is durable.
//
// Lifetimes: exports live until a newer export of the same shard has replaced them and
// they were not read for a minute, or until they were idle for `export_ttl` (both checked
// whenever another export completes); fetched files
// until Release(), until the next fetch of the same shard (unless a restore holds them),
// or until the next start. Open() wipes leftovers except fetched files a pending restore
// names (see replication::Driver: a restore interrupted by a crash is redone at start).
//
// Hostile input: manifests and chunk requests come from the network. Ids and file names
// are restricted to [A-Za-z0-9._-] and resolved only inside this store's directories;
// counts and sizes are bounded; a source that sends more than asked, or a file that does
// not match its announced size or fails the checks, fails the fetch, which Raft retries.
//
// Thread-safety: every method may be called from any thread. Done callbacks run on a
// worker thread and must only hand off.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "storage/engine.h"

namespace ring::server {

inline constexpr size_t kSnapshotChunkBytes = 1u << 20;  // per chunk reply
inline constexpr size_t kMaxSnapshotFiles = 4096;

struct SnapshotStoreOptions {
  std::string dir;        // exports and fetched files live here (created)
  std::string advertise;  // this node's HOST:PORT, named as the source of its exports
  int workers = 2;        // exports and fetches that run at once
  uint64_t fetch_bytes_per_sec = 0;  // over all fetches of this node; 0 = unlimited
  std::chrono::milliseconds io_timeout{10000};  // connect, and each chunk
  std::chrono::seconds export_ttl{600};
};

// One key range of one column family that a snapshot holds.
struct SnapshotRange {
  storage::Cf cf = storage::Cf::kData;
  std::string begin, end;
};

// A fetched snapshot file, ready to ingest.
struct LocalSnapshotFile {
  storage::Cf cf = storage::Cf::kData;
  std::string path;
};

struct SnapshotStats {
  std::atomic<uint64_t> exports{0};
  std::atomic<uint64_t> export_bytes{0};
  std::atomic<uint64_t> chunks_served{0};
  std::atomic<uint64_t> bytes_served{0};
  std::atomic<uint64_t> fetches{0};
  std::atomic<uint64_t> fetch_failures{0};
  std::atomic<uint64_t> fetch_bytes{0};        // received so far, all fetches
  std::atomic<uint64_t> fetch_bytes_left{0};   // of the fetches running now
};

class SnapshotStore {
 public:
  using Done = std::function<void(Result<std::string>)>;

  // Creates the directories and removes leftovers of a previous run, keeping the fetched
  // files that any of `keep_images` (local manifests of interrupted restores) names.
  static Result<std::unique_ptr<SnapshotStore>> Open(storage::Engine* engine, SnapshotStoreOptions options,
                                                     const std::vector<std::string>& keep_images);
  ~SnapshotStore();  // Stop()
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // Leader side. Pins the engine's state now, then writes `ranges` to SST files on a
  // worker; done(manifest) or the error.
  void Export(uint64_t group, std::vector<SnapshotRange> ranges, Done done);
  // Up to max_bytes (capped at kSnapshotChunkBytes) of file `file` of export `id` from
  // `offset`. NotFound if the export is gone (the follower then waits for a new one).
  Status ReadChunk(std::string_view id, uint32_t file, uint64_t offset, uint32_t max_bytes, std::string* data);

  // Follower side. True if `image` is a manifest whose files are on another node.
  static bool IsRemote(std::string_view image);
  // Fetches the files of remote manifest `image` for shard `group`; done(local manifest).
  // Every file must hold only keys of one of `ranges` (the shard's ranges on this node).
  void Fetch(uint64_t group, std::string image, std::vector<SnapshotRange> ranges, Done done);
  // The files of a local manifest this store fetched (and checked with
  // Engine::CheckSstFiles against the shard's ranges), held until Release().
  Result<std::vector<LocalSnapshotFile>> LocalFiles(std::string_view image);
  // Deletes the files of a local manifest (its restore is durable).
  void Release(std::string_view image);

  const SnapshotStats& stats() const { return stats_; }
  // The fetches running now, by shard: bytes received so far and in all.
  struct FetchProgress {
    uint64_t done = 0;
    uint64_t total = 0;
  };
  std::map<uint64_t, FetchProgress> Fetching() const;
  // Fails queued jobs with Unavailable, interrupts running ones and joins the workers.
  void Stop();

 private:
  struct Job {
    std::function<void()> run;
    std::function<void(Status)> cancel;  // instead of run, when the store stops first
  };
  SnapshotStore(storage::Engine* engine, SnapshotStoreOptions options);
  void Work();
  void Submit(Job job);
  Result<std::string> RunExport(uint64_t group, const std::string& id,
                                const std::shared_ptr<const storage::ReadView>& view,
                                const std::vector<SnapshotRange>& ranges);
  Result<std::string> RunFetch(uint64_t group, const std::string& image, const std::vector<SnapshotRange>& ranges);
  // Waits until `bytes` more may be fetched under the rate limit; false when stopping.
  bool Throttle(uint64_t bytes);
  void SweepExports(uint64_t replaced_group, const std::string& keep_id);
  std::string NewId(uint64_t group);

  storage::Engine* const engine_;
  const SnapshotStoreOptions options_;
  const std::string out_dir_, in_dir_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  struct ExportInfo {
    uint64_t group = 0;
    std::vector<std::string> paths;  // by file index
    std::vector<uint64_t> sizes;
    std::chrono::steady_clock::time_point created, last_read;
  };
  std::map<std::string, ExportInfo> exports_;  // by id; guarded by mu_
  std::set<std::string> held_;                 // fetched ids a restore holds; guarded by mu_
  std::map<uint64_t, std::string> fetched_;    // group -> its latest fetched id; guarded by mu_
  std::map<uint64_t, FetchProgress> fetching_;  // group -> the running fetch; guarded by mu_
  uint64_t next_id_ = 0;                       // guarded by mu_
  double tokens_ = 0;                          // rate limiter; guarded by mu_
  std::chrono::steady_clock::time_point refilled_{};  // guarded by mu_
  std::atomic<bool> stop_flag_{false};
  std::vector<std::thread> workers_;
  SnapshotStats stats_;
};

}  // namespace ring::server
