#include "server/snapshot_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "common/endpoint.h"
#include "server/blocking_connection.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"

namespace ring::server {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kMaxSnapshotFileBytes = 1ull << 40;
constexpr int kPipelineDepth = 4;  // chunk requests in flight per fetch
constexpr auto kReplacedExportGrace = std::chrono::seconds(60);

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 128 || s == "." || s == "..") return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

bool ValidCf(uint32_t cf) {
  return cf == static_cast<uint32_t>(storage::Cf::kData) || cf == static_cast<uint32_t>(storage::Cf::kMeta);
}

// Decodes and checks a manifest from the network or from a restore record.
Result<pb::SnapshotManifest> ParseManifest(std::string_view image) {
  pb::SnapshotManifest m;
  if (!m.ParseFromArray(image.data(), static_cast<int>(image.size()))) {
    return Status::Corruption("snapshot manifest does not decode");
  }
  if (!ValidName(m.id())) return Status::Corruption("snapshot manifest: invalid id");
  if (m.files_size() > static_cast<int>(kMaxSnapshotFiles)) {
    return Status::Corruption("snapshot manifest: " + std::to_string(m.files_size()) + " files, over the limit of " +
                              std::to_string(kMaxSnapshotFiles));
  }
  std::set<std::string> names;
  uint64_t total = 0;
  for (const auto& f : m.files()) {
    if (!ValidName(f.name()) || !names.insert(f.name()).second) {
      return Status::Corruption("snapshot manifest: invalid or repeated file name");
    }
    if (!ValidCf(f.cf())) return Status::Corruption("snapshot manifest: file " + f.name() + " names an unknown cf");
    if (f.size() > kMaxSnapshotFileBytes) return Status::Corruption("snapshot manifest: file " + f.name() + " too large");
    total += f.size();
  }
  if (total != m.total_bytes()) return Status::Corruption("snapshot manifest: sizes do not add up to total_bytes");
  return m;
}

std::string Encode(const pb::SnapshotManifest& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

Status SyncPath(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_WRONLY) | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open " + path + ": " + ErrnoText(errno));
  int rc = dir ? ::fsync(fd) : ::fdatasync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync " + path + ": " + ErrnoText(err));
  return Status::OK();
}

}  // namespace

SnapshotStore::SnapshotStore(storage::Engine* engine, SnapshotStoreOptions options)
    : engine_(engine),
      options_(std::move(options)),
      out_dir_((fs::path(options_.dir) / "out").string()),
      in_dir_((fs::path(options_.dir) / "in").string()) {}

Result<std::unique_ptr<SnapshotStore>> SnapshotStore::Open(storage::Engine* engine, SnapshotStoreOptions options,
                                                           const std::vector<std::string>& keep_images) {
  if (options.workers < 1) return Status::InvalidArgument("snapshot store: workers must be at least 1");
  std::unique_ptr<SnapshotStore> store(new SnapshotStore(engine, std::move(options)));
  std::error_code ec;
  // Exports of a previous run are useless: their ids are unknown to every follower's Raft.
  fs::remove_all(store->out_dir_, ec);
  for (const auto& d : {store->out_dir_, store->in_dir_}) {
    fs::create_directories(d, ec);
    if (ec) return Status::IOError("snapshot store: create " + d + ": " + ec.message());
  }
  std::set<std::string> keep;
  for (const auto& image : keep_images) {
    if (auto m = ParseManifest(image); m.ok()) keep.insert(m->id());
  }
  for (const auto& entry : fs::directory_iterator(store->in_dir_, ec)) {
    if (!keep.count(entry.path().filename().string())) fs::remove_all(entry.path(), ec);
  }
  for (int i = 0; i < store->options_.workers; ++i) {
    store->workers_.emplace_back([p = store.get()] { p->Work(); });
  }
  return store;
}

SnapshotStore::~SnapshotStore() { Stop(); }

void SnapshotStore::Stop() {
  std::deque<Job> queued;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queued.swap(jobs_);
  }
  stop_flag_.store(true);
  cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  for (auto& j : queued) j.cancel(Status::Unavailable("node is shutting down"));
}

void SnapshotStore::Submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  job.cancel(Status::Unavailable("node is shutting down"));
}

void SnapshotStore::Work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job.run();
  }
}

std::string SnapshotStore::NewId(uint64_t group) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t n;
  {
    std::lock_guard lock(mu_);
    n = ++next_id_;
  }
  char buf[80];
  std::snprintf(buf, sizeof buf, "%llu-%llu-%016llx", static_cast<unsigned long long>(group),
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(rng()));
  return buf;
}

// --- Leader side -------------------------------------------------------------------------

void SnapshotStore::Export(uint64_t group, std::vector<SnapshotRange> ranges, Done done) {
  auto view = engine_->NewReadView();  // now, on the caller's thread: the applied state
  std::string id = NewId(group);
  Submit(Job{[this, group, id, view, ranges = std::move(ranges), done]() mutable {
               Result<std::string> r = RunExport(group, id, view, ranges);
               view.reset();
               if (!r.ok()) {
                 std::error_code ec;
                 fs::remove_all(fs::path(out_dir_) / id, ec);
               }
               done(std::move(r));
             },
             [done](Status s) { done(std::move(s)); }});
}

Result<std::string> SnapshotStore::RunExport(uint64_t group, const std::string& id,
                                             const std::shared_ptr<const storage::ReadView>& view,
                                             const std::vector<SnapshotRange>& ranges) {
  const std::string dir = (fs::path(out_dir_) / id).string();
  pb::SnapshotManifest m;
  m.set_id(id);
  m.set_source(options_.advertise);
  ExportInfo info;
  info.group = group;
  std::set<storage::Cf> cfs;
  uint64_t total = 0;
  for (const auto& r : ranges) {
    if (!cfs.insert(r.cf).second) return Status::InvalidArgument("snapshot export: two ranges of one column family");
    ASSIGN_OR_RETURN(auto files, engine_->ExportRange(r.cf, r.begin, r.end, dir, 64ull << 20, view.get()));
    for (const auto& path : files) {
      std::error_code ec;
      uint64_t size = fs::file_size(path, ec);
      if (ec) return Status::IOError("snapshot export: size of " + path + ": " + ec.message());
      auto* f = m.add_files();
      f->set_name(fs::path(path).filename().string());
      f->set_cf(static_cast<uint32_t>(r.cf));
      f->set_size(size);
      info.paths.push_back(path);
      info.sizes.push_back(size);
      total += size;
    }
  }
  m.set_total_bytes(total);
  info.created = info.last_read = Clock::now();
  {
    std::lock_guard lock(mu_);
    exports_[id] = std::move(info);
  }
  SweepExports(group, id);
  stats_.exports.fetch_add(1, std::memory_order_relaxed);
  stats_.export_bytes.fetch_add(total, std::memory_order_relaxed);
  spdlog::info("shard {}: snapshot {} exported: {} files, {} bytes", group, id, m.files_size(), total);
  return Encode(m);
}

void SnapshotStore::SweepExports(uint64_t replaced_group, const std::string& keep_id) {
  std::vector<std::string> gone;
  auto now = Clock::now();
  {
    std::lock_guard lock(mu_);
    for (auto it = exports_.begin(); it != exports_.end();) {
      const ExportInfo& e = it->second;
      bool replaced = e.group == replaced_group && it->first != keep_id && now - e.last_read > kReplacedExportGrace;
      if (replaced || now - e.last_read > options_.export_ttl) {
        gone.push_back(it->first);
        it = exports_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& id : gone) {
    std::error_code ec;
    fs::remove_all(fs::path(out_dir_) / id, ec);
  }
}

Status SnapshotStore::ReadChunk(std::string_view id, uint32_t file, uint64_t offset, uint32_t max_bytes,
                                std::string* data) {
  data->clear();
  if (!ValidName(id)) return Status::InvalidArgument("snapshot chunk: invalid snapshot id");
  std::string path;
  uint64_t size = 0;
  {
    std::lock_guard lock(mu_);
    auto it = exports_.find(std::string(id));
    if (it == exports_.end()) return Status::NotFound("snapshot " + std::string(id) + " is not held here (any more)");
    if (file >= it->second.paths.size()) {
      return Status::InvalidArgument("snapshot chunk: snapshot " + std::string(id) + " has " +
                                     std::to_string(it->second.paths.size()) + " files");
    }
    it->second.last_read = Clock::now();
    path = it->second.paths[file];
    size = it->second.sizes[file];
  }
  if (offset > size) return Status::InvalidArgument("snapshot chunk: offset past the end of the file");
  size_t want = static_cast<size_t>(std::min<uint64_t>({size - offset, max_bytes, kSnapshotChunkBytes}));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("snapshot chunk: open " + path + ": " + ErrnoText(errno));
  data->resize(want);
  size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd, data->data() + got, want - got, static_cast<off_t>(offset + got));
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      data->clear();
      return Status::IOError("snapshot chunk: read " + path + ": " + (n == 0 ? "short file" : ErrnoText(err)));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  stats_.chunks_served.fetch_add(1, std::memory_order_relaxed);
  stats_.bytes_served.fetch_add(want, std::memory_order_relaxed);
  return Status::OK();
}

// --- Follower side -----------------------------------------------------------------------

std::map<uint64_t, SnapshotStore::FetchProgress> SnapshotStore::Fetching() const {
  std::lock_guard lock(mu_);
  return fetching_;
}

bool SnapshotStore::IsRemote(std::string_view image) {
  auto m = ParseManifest(image);
  return m.ok() && !m->source().empty();
}

void SnapshotStore::Fetch(uint64_t group, std::string image, std::vector<SnapshotRange> ranges, Done done) {
  Submit(Job{[this, group, image = std::move(image), ranges = std::move(ranges), done] {
               Result<std::string> r = RunFetch(group, image, ranges);
               if (!r.ok()) stats_.fetch_failures.fetch_add(1, std::memory_order_relaxed);
               done(std::move(r));
             },
             [done](Status s) { done(std::move(s)); }});
}

bool SnapshotStore::Throttle(uint64_t bytes) {
  const uint64_t rate = options_.fetch_bytes_per_sec;
  if (rate == 0) return !stop_flag_.load(std::memory_order_relaxed);
  // A token bucket that may go into debt: take the bytes now, then sleep the debt off.
  double debt;
  {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    if (refilled_ == Clock::time_point{}) refilled_ = now;
    double burst = static_cast<double>(rate) / 5;  // at most 200 ms worth saved up
    tokens_ = std::min(burst, tokens_ + std::chrono::duration<double>(now - refilled_).count() * static_cast<double>(rate));
    refilled_ = now;
    tokens_ -= static_cast<double>(bytes);
    debt = -tokens_;
  }
  auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(std::max(0.0, debt) / static_cast<double>(rate)));
  while (Clock::now() < until) {
    if (stop_flag_.load(std::memory_order_relaxed)) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(100)));
  }
  return !stop_flag_.load(std::memory_order_relaxed);
}

Result<std::string> SnapshotStore::RunFetch(uint64_t group, const std::string& image,
                                            const std::vector<SnapshotRange>& ranges) {
  ASSIGN_OR_RETURN(pb::SnapshotManifest m, ParseManifest(image));
  const std::string ctx = "shard " + std::to_string(group) + ": fetching snapshot " + m.id();
  ASSIGN_OR_RETURN(Endpoint source, ParseEndpoint(m.source()));
  std::map<storage::Cf, const SnapshotRange*> by_cf;
  for (const auto& r : ranges) by_cf[r.cf] = &r;
  for (const auto& f : m.files()) {
    if (!by_cf.count(static_cast<storage::Cf>(f.cf()))) {
      return Status::Corruption(ctx + ": file " + f.name() + " is of a column family the shard does not use");
    }
  }
  auto health = engine_->health();
  if (health.disk_free_bytes != 0 && m.total_bytes() + (256ull << 20) > health.disk_free_bytes) {
    return Status::IOError(ctx + ": " + std::to_string(m.total_bytes()) + " bytes do not fit the " +
                           std::to_string(health.disk_free_bytes) + " bytes free");
  }

  // A fresh directory; the previous fetch of this shard goes unless a restore holds it.
  const std::string local_id = NewId(group);
  const std::string dir = (fs::path(in_dir_) / local_id).string();
  {
    std::string previous;
    {
      std::lock_guard lock(mu_);
      auto it = fetched_.find(group);
      if (it != fetched_.end() && !held_.count(it->second)) previous = it->second;
      fetched_[group] = local_id;
    }
    std::error_code ec;
    if (!previous.empty()) fs::remove_all(fs::path(in_dir_) / previous, ec);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError(ctx + ": create " + dir + ": " + ec.message());
  auto cleanup = [&](Status s) -> Status {
    std::error_code e;
    fs::remove_all(dir, e);
    return s.WithContext(ctx);
  };

  BlockingConnection conn(options_.io_timeout, &stop_flag_, "snapshot source");
  if (m.total_bytes() > 0 || m.files_size() > 0) {
    Status s = conn.Connect(source);
    if (!s.ok()) return cleanup(s);
  }
  stats_.fetches.fetch_add(1, std::memory_order_relaxed);
  stats_.fetch_bytes_left.fetch_add(m.total_bytes(), std::memory_order_relaxed);
  uint64_t received_total = 0;
  {
    std::lock_guard lock(mu_);
    fetching_[group] = FetchProgress{0, m.total_bytes()};
  }
  auto settle = [&] {
    stats_.fetch_bytes_left.fetch_sub(m.total_bytes() - received_total, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    fetching_.erase(group);
  };
  uint64_t next_req = 1;
  for (int fi = 0; fi < m.files_size(); ++fi) {
    const auto& f = m.files(fi);
    const std::string path = (fs::path(dir) / f.name()).string();
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
      settle();
      return cleanup(Status::IOError("create " + path + ": " + ErrnoText(errno)));
    }
    struct Pending {
      uint64_t offset, len;
    };
    std::map<uint64_t, Pending> inflight;  // by request id
    uint64_t requested = 0, received = 0;
    Status s;
    while (s.ok() && received < f.size()) {
      while (s.ok() && requested < f.size() && inflight.size() < kPipelineDepth) {
        uint64_t len = std::min<uint64_t>(kSnapshotChunkBytes, f.size() - requested);
        if (!Throttle(len)) {
          s = Status::Unavailable("node is shutting down");
          break;
        }
        pb::Request req;
        req.set_id(next_req);
        auto* c = req.mutable_snapshot_chunk();
        c->set_id(m.id());
        c->set_file(static_cast<uint32_t>(fi));
        c->set_offset(requested);
        c->set_max_bytes(static_cast<uint32_t>(len));
        std::string frame;
        AppendRequestFrame(req, &frame);
        s = conn.Send(frame);
        inflight[next_req++] = Pending{requested, len};
        requested += len;
      }
      if (!s.ok()) break;
      pb::Response resp;
      s = conn.Receive(&resp);
      if (!s.ok()) break;
      auto it = inflight.find(resp.id());
      if (it == inflight.end()) {
        s = Status::Corruption("snapshot source answered a request never made");
        break;
      }
      if (Status rs = StatusFromResponse(resp); !rs.ok()) {
        s = rs;
        break;
      }
      const std::string& data = resp.snapshot_chunk().data();
      if (data.size() != it->second.len) {
        s = Status::Corruption("snapshot source sent " + std::to_string(data.size()) + " bytes for a chunk of " +
                               std::to_string(it->second.len) + " (file " + f.name() + ")");
        break;
      }
      size_t done_bytes = 0;
      while (done_bytes < data.size()) {
        ssize_t n = ::pwrite(fd, data.data() + done_bytes, data.size() - done_bytes,
                             static_cast<off_t>(it->second.offset + done_bytes));
        if (n <= 0) {
          s = Status::IOError("write " + path + ": " + ErrnoText(errno));
          break;
        }
        done_bytes += static_cast<size_t>(n);
      }
      received += data.size();
      received_total += data.size();
      stats_.fetch_bytes.fetch_add(data.size(), std::memory_order_relaxed);
      stats_.fetch_bytes_left.fetch_sub(data.size(), std::memory_order_relaxed);
      {
        std::lock_guard lock(mu_);
        fetching_[group].done = received_total;
      }
      inflight.erase(it);
    }
    if (s.ok() && ::fdatasync(fd) != 0) s = Status::IOError("fsync " + path + ": " + ErrnoText(errno));
    ::close(fd);
    if (!s.ok()) {
      settle();
      return cleanup(s);
    }
  }
  settle();
  if (Status s = SyncPath(dir, true); !s.ok()) return cleanup(s);
  // Check before Raft ever sees it: a bad transfer fails here and is fetched again.
  for (const auto& [cf, range] : by_cf) {
    std::vector<std::string> files;
    for (const auto& f : m.files()) {
      if (static_cast<storage::Cf>(f.cf()) == cf) files.push_back((fs::path(dir) / f.name()).string());
    }
    if (Status s = engine_->CheckSstFiles(cf, range->begin, range->end, files); !s.ok()) return cleanup(s);
  }
  pb::SnapshotManifest local = m;
  local.set_id(local_id);
  local.clear_source();
  spdlog::info("shard {}: snapshot {} fetched from {}: {} files, {} bytes", group, m.id(), m.source(),
               m.files_size(), m.total_bytes());
  return Encode(local);
}

Result<std::vector<LocalSnapshotFile>> SnapshotStore::LocalFiles(std::string_view image) {
  ASSIGN_OR_RETURN(pb::SnapshotManifest m, ParseManifest(image));
  if (!m.source().empty()) return Status::InvalidArgument("snapshot " + m.id() + " has not been fetched");
  const fs::path dir = fs::path(in_dir_) / m.id();
  std::vector<LocalSnapshotFile> out;
  for (const auto& f : m.files()) {
    std::string path = (dir / f.name()).string();
    std::error_code ec;
    uint64_t size = fs::file_size(path, ec);
    if (ec || size != f.size()) {
      return Status::Corruption("snapshot " + m.id() + ": file " + path + (ec ? " is missing" : " has the wrong size"));
    }
    out.push_back(LocalSnapshotFile{static_cast<storage::Cf>(f.cf()), std::move(path)});
  }
  std::lock_guard lock(mu_);
  held_.insert(m.id());
  return out;
}

void SnapshotStore::Release(std::string_view image) {
  auto m = ParseManifest(image);
  if (!m.ok() || !m->source().empty()) return;
  {
    std::lock_guard lock(mu_);
    held_.erase(m->id());
    for (auto it = fetched_.begin(); it != fetched_.end(); ++it) {
      if (it->second == m->id()) {
        fetched_.erase(it);
        break;
      }
    }
  }
  std::error_code ec;
  fs::remove_all(fs::path(in_dir_) / m->id(), ec);
}

}  // namespace ring::server
