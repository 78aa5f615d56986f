// Tests for storage/engine.cc: column families, batches, scans, range deletes, shard
// export/ingest, and every failure the engine must turn into a Status: bad directories,
// a locked or corrupt DB, and a disk that fails or fills up (through DiskFaults, since
// tests run as root and chmod would not stop them).
#include "storage/engine.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace ring::storage {
namespace {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it when the test ends.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/engine_test.XXXXXX";
    const char* made = mkdtemp(tmpl);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

EngineOptions Options(const std::string& dir) {
  EngineOptions o;
  o.dir = dir;
  o.block_cache_bytes = 8u << 20;
  // The guard is tested on its own below; elsewhere a nearly full /tmp must not matter.
  o.reserve_disk_bytes = 0;
  return o;
}

std::unique_ptr<Engine> MustOpen(const EngineOptions& options) {
  auto engine = Engine::Open(options);
  INFO(engine.status().ToString());
  REQUIRE(engine.ok());
  return std::move(engine).value();
}

std::string MustGet(const Engine& engine, Cf cf, const std::string& key) {
  std::string value;
  Status s = engine.Get(cf, key, &value);
  INFO(key << ": " << s.ToString());
  REQUIRE(s.ok());
  return value;
}

void MustPut(Engine& engine, Cf cf, const std::string& key, const std::string& value,
             bool sync = false) {
  WriteBatch batch;
  batch.Put(cf, key, value);
  Status s = engine.Write(batch, sync);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

std::map<std::string, std::string> ScanAll(const Engine& engine, Cf cf, const std::string& begin,
                                           const std::string& end) {
  std::map<std::string, std::string> out;
  Status s = engine.Scan(cf, begin, end, [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return true;
  });
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("each column family keeps its own keys", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  MustPut(*engine, Cf::kData, "k", "data-value");
  MustPut(*engine, Cf::kRaftLog, "k", "log-value");
  MustPut(*engine, Cf::kMeta, "k", "meta-value");

  CHECK(MustGet(*engine, Cf::kData, "k") == "data-value");
  CHECK(MustGet(*engine, Cf::kRaftLog, "k") == "log-value");
  CHECK(MustGet(*engine, Cf::kMeta, "k") == "meta-value");

  WriteBatch batch;
  batch.Delete(Cf::kRaftLog, "k");
  REQUIRE(engine->Write(batch, false).ok());
  std::string value;
  CHECK(engine->Get(Cf::kRaftLog, "k", &value).IsNotFound());
  CHECK(MustGet(*engine, Cf::kData, "k") == "data-value");
  CHECK(engine->Get(Cf::kMeta, "absent", &value).IsNotFound());
  CHECK(std::string(CfName(Cf::kData)) == "data");
  CHECK(std::string(CfName(Cf::kRaftLog)) == "raftlog");
  CHECK(std::string(CfName(Cf::kMeta)) == "meta");
}

TEST_CASE("a write batch spans column families atomically", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  MustPut(*engine, Cf::kData, "old", "x");

  WriteBatch batch;
  batch.Put(Cf::kData, "a", "1");
  batch.Put(Cf::kRaftLog, "entry-1", "payload");
  batch.Put(Cf::kMeta, "applied", "1");
  batch.Delete(Cf::kData, "old");
  CHECK(batch.count() == 4);
  CHECK(batch.bytes() > 0);
  REQUIRE(engine->Write(batch, true).ok());
  CHECK(MustGet(*engine, Cf::kData, "a") == "1");
  CHECK(MustGet(*engine, Cf::kRaftLog, "entry-1") == "payload");
  CHECK(MustGet(*engine, Cf::kMeta, "applied") == "1");
  std::string value;
  CHECK(engine->Get(Cf::kData, "old", &value).IsNotFound());

  SECTION("an invalid update refuses the whole batch") {
    WriteBatch bad;
    bad.Put(Cf::kData, "b", "2");
    bad.Put(Cf::kMeta, "applied", "2");
    bad.Put(Cf::kData, std::string(10000, 'k'), "too long a key");
    Status s = engine->Write(bad, false);
    CHECK(s.IsInvalidArgument());
    CHECK(Contains(s.message(), "exceeds the storage limit"));
    CHECK(engine->Get(Cf::kData, "b", &value).IsNotFound());
    CHECK(MustGet(*engine, Cf::kMeta, "applied") == "1");
  }

  SECTION("a cleared batch can be reused") {
    batch.Clear();
    CHECK(batch.count() == 0);
    batch.Put(Cf::kData, "c", "3");
    REQUIRE(engine->Write(batch, false).ok());
    CHECK(MustGet(*engine, Cf::kData, "c") == "3");
  }

  SECTION("a moved-from batch is empty and usable") {
    WriteBatch moved = std::move(batch);
    CHECK(moved.count() == 4);
    CHECK(batch.count() == 0);  // NOLINT(bugprone-use-after-move): documented state
    CHECK(engine->Write(batch, false).ok());
    batch.Put(Cf::kData, "d", "4");
    REQUIRE(engine->Write(batch, false).ok());
    CHECK(MustGet(*engine, Cf::kData, "d") == "4");
  }
}

TEST_CASE("sync and async writes survive a reopen", "[storage]") {
  ScratchDir dir;
  {
    auto engine = MustOpen(Options(dir.path()));
    MustPut(*engine, Cf::kData, "synced", "1", /*sync=*/true);
    MustPut(*engine, Cf::kData, "unsynced", "2", /*sync=*/false);
    MustPut(*engine, Cf::kMeta, "node-id", "7", /*sync=*/true);
  }
  {
    auto engine = MustOpen(Options(dir.path()));
    CHECK(MustGet(*engine, Cf::kData, "synced") == "1");
    CHECK(MustGet(*engine, Cf::kData, "unsynced") == "2");
    CHECK(MustGet(*engine, Cf::kMeta, "node-id") == "7");
    // Now from SST files rather than the WAL.
    REQUIRE(engine->Flush().ok());
    MustPut(*engine, Cf::kData, "after-flush", "3");
  }
  auto engine = MustOpen(Options(dir.path()));
  CHECK(MustGet(*engine, Cf::kData, "synced") == "1");
  CHECK(MustGet(*engine, Cf::kData, "after-flush") == "3");
  CHECK(engine->dir() == dir.path());
}

TEST_CASE("multiget answers every key, with nothing for absent ones", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  MustPut(*engine, Cf::kData, "a", "1");
  MustPut(*engine, Cf::kData, "c", "3");
  MustPut(*engine, Cf::kMeta, "b", "meta only");

  std::vector<std::optional<std::string>> values;
  REQUIRE(engine->MultiGet(Cf::kData, {"c", "b", "a", "c"}, &values).ok());
  REQUIRE(values.size() == 4);
  CHECK(values[0] == "3");
  CHECK_FALSE(values[1].has_value());
  CHECK(values[2] == "1");
  CHECK(values[3] == "3");

  REQUIRE(engine->MultiGet(Cf::kData, {}, &values).ok());
  CHECK(values.empty());
}

TEST_CASE("scan visits exactly [begin, end) in key order from one snapshot", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  for (const char* k : {"a", "b", "b\x01", "c", "d", "e"}) MustPut(*engine, Cf::kData, k, k);
  MustPut(*engine, Cf::kMeta, "c2", "other column family");

  std::vector<std::string> seen;
  auto collect = [&](std::string_view k, std::string_view v) {
    CHECK(k == v);
    seen.emplace_back(k);
    return true;
  };
  REQUIRE(engine->Scan(Cf::kData, "b", "d", collect).ok());
  CHECK(seen == std::vector<std::string>{"b", "b\x01", "c"});

  seen.clear();
  REQUIRE(engine->Scan(Cf::kData, "c", "", collect).ok());
  CHECK(seen == std::vector<std::string>{"c", "d", "e"});

  seen.clear();
  REQUIRE(engine->Scan(Cf::kData, "", "", collect).ok());
  CHECK(seen.size() == 6);

  seen.clear();
  REQUIRE(engine->Scan(Cf::kData, "d", "b", collect).ok());  // empty range
  CHECK(seen.empty());

  // Stops as soon as the callback says so.
  seen.clear();
  auto first_two = [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return seen.size() < 2;
  };
  REQUIRE(engine->Scan(Cf::kData, "a", "", first_two).ok());
  CHECK(seen == std::vector<std::string>{"a", "b"});

  // Writes made during the scan are not part of its snapshot.
  seen.clear();
  auto write_while_scanning = [&](std::string_view k, std::string_view) {
    if (seen.empty()) {
      MustPut(*engine, Cf::kData, "cc", "new");
      WriteBatch batch;
      batch.Delete(Cf::kData, "e");
      REQUIRE(engine->Write(batch, false).ok());
    }
    seen.emplace_back(k);
    return true;
  };
  REQUIRE(engine->Scan(Cf::kData, "a", "z", write_while_scanning).ok());
  CHECK(seen == std::vector<std::string>{"a", "b", "b\x01", "c", "d", "e"});
  CHECK(MustGet(*engine, Cf::kData, "cc") == "new");
}

TEST_CASE("delete range removes [begin, end) and nothing else", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  for (const char* k : {"a", "b", "c", "d", "e"}) MustPut(*engine, Cf::kData, k, "v");
  MustPut(*engine, Cf::kMeta, "c", "other column family");

  REQUIRE(engine->DeleteRange(Cf::kData, "b", "d", /*sync=*/true).ok());
  auto left = ScanAll(*engine, Cf::kData, "", "");
  CHECK(left == std::map<std::string, std::string>{{"a", "v"}, {"d", "v"}, {"e", "v"}});
  CHECK(MustGet(*engine, Cf::kMeta, "c") == "other column family");

  SECTION("an empty end deletes to the end of the column family") {
    // Keys full of 0xff bytes sort last; the open end must still cover them.
    MustPut(*engine, Cf::kData, std::string(4200, '\xff'), "v");
    MustPut(*engine, Cf::kData, std::string(8, '\xff') + "key", "v");
    REQUIRE(engine->DeleteRange(Cf::kData, "d", "", false).ok());
    CHECK(ScanAll(*engine, Cf::kData, "", "") == std::map<std::string, std::string>{{"a", "v"}});
  }

  SECTION("an empty or inverted range deletes nothing") {
    REQUIRE(engine->DeleteRange(Cf::kData, "d", "d", false).ok());
    REQUIRE(engine->DeleteRange(Cf::kData, "e", "a", false).ok());
    CHECK(ScanAll(*engine, Cf::kData, "", "").size() == 3);
  }

  SECTION("in a batch, a put after the range delete survives it") {
    WriteBatch batch;
    batch.Put(Cf::kData, "x", "before");
    batch.DeleteRange(Cf::kData, "", "");
    batch.Put(Cf::kData, "y", "after");
    REQUIRE(engine->Write(batch, false).ok());
    CHECK(ScanAll(*engine, Cf::kData, "", "") ==
          std::map<std::string, std::string>{{"y", "after"}});
  }
}

// be64(stream) || be64(index): the raft log's hinted key shape (engine.h, insert hints).
std::string LogKey(uint64_t stream, uint64_t index) {
  std::string k;
  for (uint64_t v : {stream, index}) {
    for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  return k;
}

TEST_CASE("hinted appends and rewrites interleave with range deletions and reads", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  std::map<std::string, std::string> log_model, meta_model;
  auto put = [&](Cf cf, const std::string& k, const std::string& v) {
    MustPut(*engine, cf, k, v);
    (cf == Cf::kRaftLog ? log_model : meta_model)[k] = v;
  };
  auto erase = [&](Cf cf, const std::string& begin, const std::string& end) {
    REQUIRE(engine->DeleteRange(cf, begin, end, false).ok());
    auto& m = cf == Cf::kRaftLog ? log_model : meta_model;
    m.erase(m.lower_bound(begin), m.lower_bound(end));
  };
  const std::string record = "x/" + std::string(8, '\1') + std::string(8, '\2');  // 18 bytes: hinted
  const std::string range_key = "x/" + std::string(8, '\1');                      // 10 bytes: not
  for (uint64_t round = 0; round < 3; ++round) {
    // Three streams append in turn, as a node's groups do.
    for (uint64_t i = 1; i <= 300; ++i) {
      for (uint64_t s = 1; s <= 3; ++s) put(Cf::kRaftLog, LogKey(s, round * 300 + i), "e" + std::to_string(i));
      put(Cf::kMeta, record, "rec" + std::to_string(round * 300 + i));
    }
    for (uint64_t s = 1; s <= 3; ++s) {
      // Compaction: everything of the stream below an index.
      erase(Cf::kRaftLog, LogKey(s, 0).substr(0, 8), LogKey(s, round * 300 + 100));
      // A conflicting suffix replaced: entries after 250 dropped, 240..260 rewritten.
      std::string after = LogKey(s, round * 300 + 250);
      after.push_back('\0');
      erase(Cf::kRaftLog, after, LogKey(s + 1, 0).substr(0, 8));
      for (uint64_t i = 240; i <= 260; ++i) put(Cf::kRaftLog, LogKey(s, round * 300 + i), "r" + std::to_string(i));
    }
    put(Cf::kMeta, range_key, "range" + std::to_string(round));
    erase(Cf::kMeta, range_key, "x/" + std::string(8, '\1') + std::string(1, '\3'));
    put(Cf::kMeta, record, "after-erase" + std::to_string(round));
    CHECK(ScanAll(*engine, Cf::kRaftLog, "", "") == log_model);
    CHECK(ScanAll(*engine, Cf::kMeta, "", "") == meta_model);
    REQUIRE(engine->Flush().ok());  // the next round starts in a fresh memtable
  }
  CHECK(MustGet(*engine, Cf::kMeta, record) == "after-erase2");
  CHECK(MustGet(*engine, Cf::kRaftLog, LogKey(2, 855)) == "r255");
}

TEST_CASE("a range deletion may not begin with a hinted key", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  MustPut(*engine, Cf::kRaftLog, LogKey(1, 1), "e");
  Status s = engine->DeleteRange(Cf::kRaftLog, LogKey(1, 1), LogKey(1, 9), false);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("hinted") != std::string::npos);
  CHECK(engine->DeleteRange(Cf::kMeta, std::string(16, 'm'), std::string(17, 'm'), false).IsInvalidArgument());
  // The whole batch is refused, and the engine goes on.
  WriteBatch batch;
  batch.Put(Cf::kData, "d", "v");
  batch.DeleteRange(Cf::kRaftLog, LogKey(1, 0), LogKey(2, 0));
  CHECK(engine->Write(batch, false).IsInvalidArgument());
  CHECK(ScanAll(*engine, Cf::kData, "", "").empty());
  CHECK(MustGet(*engine, Cf::kRaftLog, LogKey(1, 1)) == "e");
  // Shapes without hints are free to begin one.
  CHECK(engine->DeleteRange(Cf::kRaftLog, LogKey(1, 0).substr(0, 8), LogKey(1, 9), false).ok());
  CHECK(engine->DeleteRange(Cf::kData, LogKey(1, 1), LogKey(1, 9), false).ok());
  CHECK(ScanAll(*engine, Cf::kRaftLog, "", "").empty());
}

TEST_CASE("an exported range ingests onto a second engine", "[storage]") {
  ScratchDir dir;
  auto source = MustOpen(Options(dir.Sub("source")));
  std::map<std::string, std::string> expected;
  uint64_t rng = 42;
  for (int i = 0; i < 300; ++i) {
    char key[16];
    std::snprintf(key, sizeof(key), "k%04d", i);
    // Incompressible values, so that the files really reach the size limit.
    std::string value(200, '\0');
    for (char& c : value) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(rng >> 56);
    }
    MustPut(*source, Cf::kData, key, value);
    if (i >= 100 && i < 200) expected[key] = value;
  }
  REQUIRE(source->Flush().ok());
  MustPut(*source, Cf::kData, "k0150", "newer, in the memtable");
  expected["k0150"] = "newer, in the memtable";

  // Small files, so the export splits.
  auto files = source->ExportRange(Cf::kData, "k0100", "k0200", dir.Sub("export"), 4096);
  INFO(files.status().ToString());
  REQUIRE(files.ok());
  REQUIRE(files->size() > 1);
  for (const auto& f : *files) CHECK(fs::exists(f));

  auto target = MustOpen(Options(dir.Sub("target")));
  MustPut(*target, Cf::kData, "k0099", "outside, below");
  MustPut(*target, Cf::kData, "k0120", "stale, replaced");
  MustPut(*target, Cf::kData, "k0199x", "stale, deleted");
  MustPut(*target, Cf::kData, "k0200", "outside, above");
  REQUIRE(target->Flush().ok());
  MustPut(*target, Cf::kData, "k0150x", "stale, in the memtable");

  Status s = target->IngestRange(Cf::kData, "k0100", "k0200", *files);
  INFO(s.ToString());
  REQUIRE(s.ok());
  CHECK(ScanAll(*target, Cf::kData, "k0100", "k0200") == expected);
  CHECK(MustGet(*target, Cf::kData, "k0099") == "outside, below");
  CHECK(MustGet(*target, Cf::kData, "k0200") == "outside, above");

  // The ingested data is ordinary data: it survives a reopen and can be overwritten.
  target.reset();
  target = MustOpen(Options(dir.Sub("target")));
  CHECK(ScanAll(*target, Cf::kData, "k0100", "k0200") == expected);
  MustPut(*target, Cf::kData, "k0120", "overwritten");
  CHECK(MustGet(*target, Cf::kData, "k0120") == "overwritten");

  SECTION("an empty range exports no files, and ingesting none empties the range") {
    auto none = source->ExportRange(Cf::kData, "x", "y", dir.Sub("empty"));
    REQUIRE(none.ok());
    CHECK(none->empty());
    REQUIRE(target->IngestRange(Cf::kData, "k0100", "k0200", *none).ok());
    CHECK(ScanAll(*target, Cf::kData, "k0100", "k0200").empty());
    CHECK(MustGet(*target, Cf::kData, "k0099") == "outside, below");
  }

  SECTION("an open-ended range exports and ingests to the end") {
    auto tail = source->ExportRange(Cf::kData, "k0250", "", dir.Sub("tail"));
    REQUIRE(tail.ok());
    REQUIRE(tail->size() == 1);
    REQUIRE(target->IngestRange(Cf::kData, "k0250", "", *tail).ok());
    CHECK(ScanAll(*target, Cf::kData, "k0250", "").size() == 50);
    CHECK(MustGet(*target, Cf::kData, "k0200") == "outside, above");
  }
}

TEST_CASE("ingest rejects a file with a key outside the range", "[storage]") {
  ScratchDir dir;
  auto source = MustOpen(Options(dir.Sub("source")));
  MustPut(*source, Cf::kData, "b", "1");
  MustPut(*source, Cf::kData, "m", "2");
  auto files = source->ExportRange(Cf::kData, "a", "z", dir.Sub("export"));
  REQUIRE(files.ok());
  REQUIRE(files->size() == 1);

  auto target = MustOpen(Options(dir.Sub("target")));
  MustPut(*target, Cf::kData, "c", "kept");
  Status s = target->IngestRange(Cf::kData, "a", "k", *files);
  CHECK(s.code() == StatusCode::kCorruption);
  CHECK(Contains(s.message(), "key out of range"));
  CHECK(Contains(s.message(), files->front()));
  // Nothing changed.
  CHECK(ScanAll(*target, Cf::kData, "", "") == std::map<std::string, std::string>{{"c", "kept"}});

  SECTION("a file that is not an SST is corrupt") {
    std::string junk = dir.Sub("junk.sst");
    std::ofstream(junk) << std::string(4096, 'x');
    Status junk_status = target->IngestRange(Cf::kData, "a", "k", {junk});
    CHECK(junk_status.code() == StatusCode::kCorruption);
    CHECK(MustGet(*target, Cf::kData, "c") == "kept");
  }
}

TEST_CASE("open creates a missing directory", "[storage]") {
  ScratchDir dir;
  std::string nested = dir.Sub("a/b/c");
  auto engine = MustOpen(Options(nested));
  CHECK(fs::is_directory(nested));
  MustPut(*engine, Cf::kData, "k", "v");

  EngineOptions no_create = Options(dir.Sub("absent"));
  no_create.create_if_missing = false;
  auto refused = Engine::Open(no_create);
  CHECK(refused.status().IsInvalidArgument());
  CHECK(Contains(refused.status().message(), "does not exist"));
}

TEST_CASE("open refuses a path that is a regular file", "[storage]") {
  ScratchDir dir;
  std::string file = dir.Sub("file");
  std::ofstream(file) << "not a directory";
  auto engine = Engine::Open(Options(file));
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().IsInvalidArgument());
  CHECK(Contains(engine.status().message(), file));
  CHECK(Contains(engine.status().message(), "not a directory"));

  // A regular file as a parent fails too, as an IO error naming the cause.
  auto below = Engine::Open(Options(file + "/db"));
  REQUIRE_FALSE(below.ok());
  CHECK(Contains(below.status().message(), "Not a directory"));
}

TEST_CASE("open refuses a directory that another engine holds", "[storage]") {
  ScratchDir dir;
  auto first = MustOpen(Options(dir.path()));
  auto second = Engine::Open(Options(dir.path()));
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().IsIOError());
  CHECK(Contains(second.status().message(), "in use by another process"));
  CHECK(Contains(second.status().message(), dir.path()));

  // The holder is unaffected, and the lock goes with it.
  MustPut(*first, Cf::kData, "k", "v");
  first.reset();
  auto third = MustOpen(Options(dir.path()));
  CHECK(MustGet(*third, Cf::kData, "k") == "v");
}

TEST_CASE("open refuses a directory that another process holds", "[storage]") {
  ScratchDir dir;
  MustOpen(Options(dir.path())).reset();

  // RocksDB locks LOCK with fcntl, so a child holding the same kind of lock stands in for
  // another ringd. The child only makes async-signal-safe calls between fork and _exit.
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  std::string lock_path = dir.Sub("LOCK");
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int fd = open(lock_path.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char ok = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? '1' : '0';
    if (write(ready[1], &ok, 1) != 1) _exit(1);
    pause();  // until the parent kills us
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  CHECK(read(ready[0], &ok, 1) == 1);
  close(ready[0]);

  auto engine = Engine::Open(Options(dir.path()));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  REQUIRE(ok == '1');
  REQUIRE_FALSE(engine.ok());
  INFO(engine.status().ToString());
  CHECK(engine.status().IsIOError());
  CHECK(Contains(engine.status().message(), "in use by another process"));

  // The child's lock died with it.
  MustOpen(Options(dir.path()));
}

TEST_CASE("open reports a corrupt database as Corruption", "[storage]") {
  ScratchDir dir;
  {
    auto engine = MustOpen(Options(dir.path()));
    MustPut(*engine, Cf::kData, "k", "v", true);
  }
  std::string victim;
  SECTION("garbage over CURRENT") { victim = "CURRENT"; }
  SECTION("garbage over the MANIFEST") {
    for (const auto& entry : fs::directory_iterator(dir.path())) {
      std::string name = entry.path().filename().string();
      if (name.rfind("MANIFEST-", 0) == 0) victim = name;
    }
  }
  REQUIRE_FALSE(victim.empty());
  {
    std::ofstream out(dir.Sub(victim), std::ios::trunc | std::ios::binary);
    out << std::string(1000, '\x5a') << "\n";
  }
  auto engine = Engine::Open(Options(dir.path()));
  REQUIRE_FALSE(engine.ok());
  INFO(engine.status().ToString());
  CHECK(engine.status().code() == StatusCode::kCorruption);
  CHECK(Contains(engine.status().message(), "open " + dir.path()));
}

TEST_CASE("open fails with IOError when the directory refuses new files", "[storage]") {
  ScratchDir dir;
  EngineOptions options = Options(dir.Sub("db"));
  options.faults = std::make_shared<DiskFaults>();
  options.faults->fail_open_errno = EACCES;
  auto engine = Engine::Open(options);
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().IsIOError());
  CHECK(Contains(engine.status().message(), "Permission denied"));
  CHECK(Contains(engine.status().message(), "open " + options.dir));
  CHECK(options.faults->injected > 0);

  options.faults->fail_open_errno = 0;
  auto retry = MustOpen(options);
  MustPut(*retry, Cf::kData, "k", "v");
}

TEST_CASE("a full disk fails writes but not reads, and writes resume once space is back",
          "[storage]") {
  ScratchDir dir;
  EngineOptions options = Options(dir.path());
  options.faults = std::make_shared<DiskFaults>();
  auto engine = MustOpen(options);
  MustPut(*engine, Cf::kData, "before", "1", true);
  REQUIRE(engine->health().ok);

  options.faults->fail_writes_errno = ENOSPC;
  bool sync = GENERATE(false, true);
  WriteBatch batch;
  batch.Put(Cf::kData, "during", "2");
  Status s = engine->Write(batch, sync);
  INFO(s.ToString());
  CHECK(s.IsIOError());
  CHECK(Contains(s.message(), "No space left on device"));
  CHECK(Contains(s.message(), dir.path()));
  CHECK(options.faults->injected > 0);

  // Reads are unaffected, and health says what is wrong.
  CHECK(MustGet(*engine, Cf::kData, "before") == "1");
  CHECK(ScanAll(*engine, Cf::kData, "", "").count("before") == 1);
  EngineHealth health = engine->health();
  CHECK_FALSE(health.ok);
  CHECK(Contains(health.error, "No space left on device"));

  // Still full: still refused, still no crash.
  Status again = engine->Write(batch, sync);
  INFO(again.ToString());
  CHECK(again.IsIOError());
  CHECK(engine->DeleteRange(Cf::kData, "a", "z", false).IsIOError());

  options.faults->fail_writes_errno = 0;
  WriteBatch after;
  after.Put(Cf::kData, "after", "3");
  Status recovered = engine->Write(after, true);
  INFO(recovered.ToString());
  REQUIRE(recovered.ok());
  CHECK(engine->health().ok);
  CHECK(engine->health().error.empty());
  CHECK(MustGet(*engine, Cf::kData, "before") == "1");
  CHECK(MustGet(*engine, Cf::kData, "after") == "3");
  // The failed write never reached the WAL (the fault fires before any byte is written).
  std::string value;
  CHECK(engine->Get(Cf::kData, "during", &value).IsNotFound());

  // Everything acknowledged is still there after a reopen.
  engine.reset();
  engine = MustOpen(options);
  CHECK(MustGet(*engine, Cf::kData, "before") == "1");
  CHECK(MustGet(*engine, Cf::kData, "after") == "3");
  CHECK(engine->Get(Cf::kData, "during", &value).IsNotFound());
}

TEST_CASE("a flush that runs out of space stops writes until space is back", "[storage]") {
  ScratchDir dir;
  EngineOptions options = Options(dir.path());
  options.faults = std::make_shared<DiskFaults>();
  auto engine = MustOpen(options);
  MustPut(*engine, Cf::kData, "k", "v");

  options.faults->fail_writes_errno = ENOSPC;
  Status s = engine->Flush();
  INFO(s.ToString());
  CHECK(s.IsIOError());
  CHECK(Contains(s.message(), "No space left on device"));
  CHECK_FALSE(engine->health().ok);
  CHECK(MustGet(*engine, Cf::kData, "k") == "v");
  WriteBatch batch;
  batch.Put(Cf::kData, "k2", "v2");
  CHECK(engine->Write(batch, false).IsIOError());

  options.faults->fail_writes_errno = 0;
  Status recovered = engine->Write(batch, false);
  INFO(recovered.ToString());
  REQUIRE(recovered.ok());
  CHECK(engine->health().ok);
  REQUIRE(engine->Flush().ok());
  CHECK(MustGet(*engine, Cf::kData, "k") == "v");
  CHECK(MustGet(*engine, Cf::kData, "k2") == "v2");
}

TEST_CASE("a failed fsync fails the synced write with IOError", "[storage]") {
  ScratchDir dir;
  EngineOptions options = Options(dir.path());
  options.faults = std::make_shared<DiskFaults>();
  auto engine = MustOpen(options);
  MustPut(*engine, Cf::kData, "before", "1", true);

  options.faults->fail_sync_errno = EIO;
  WriteBatch batch;
  batch.Put(Cf::kData, "k", "v");
  Status s = engine->Write(batch, /*sync=*/true);
  CHECK(s.IsIOError());
  CHECK(Contains(s.message(), "Input/output error"));
  CHECK(options.faults->injected > 0);
  CHECK_FALSE(engine->health().ok);
  CHECK(MustGet(*engine, Cf::kData, "before") == "1");

  // A failed fsync is not retried in place (the kernel may have dropped the pages), so
  // writes keep failing until the engine is reopened, which recovers from the WAL.
  options.faults->fail_sync_errno = 0;
  Status still = engine->Write(batch, true);
  INFO(still.ToString());
  CHECK(still.IsIOError());
  std::string value;
  CHECK(engine->Get(Cf::kData, "k", &value).IsNotFound());
  engine.reset();
  engine = MustOpen(options);
  CHECK(MustGet(*engine, Cf::kData, "before") == "1");
  // The record reached the WAL before its fsync failed, so recovery replays it: a failed
  // write's outcome is unknown, exactly as after a crash, and callers must treat it so.
  Status replayed = engine->Get(Cf::kData, "k", &value);
  INFO(replayed.ToString());
  CHECK(replayed.ok());
  MustPut(*engine, Cf::kData, "after", "2", true);
  CHECK(engine->health().ok);
}

TEST_CASE("writes are refused below the disk reserve while reads keep working", "[storage]") {
  ScratchDir dir;
  {
    auto engine = MustOpen(Options(dir.path()));
    MustPut(*engine, Cf::kData, "k", "v");
  }
  EngineOptions options = Options(dir.path());
  options.reserve_disk_bytes = UINT64_MAX / 2;
  auto engine = MustOpen(options);

  WriteBatch batch;
  batch.Put(Cf::kData, "new", "v");
  Status s = engine->Write(batch, false);
  CHECK(s.IsIOError());
  CHECK(Contains(s.message(), dir.path()));
  CHECK(Contains(s.message(), "No space left on device"));
  CHECK(Contains(s.message(), "below the reserve of"));
  CHECK(engine->DeleteRange(Cf::kData, "a", "z", true).IsIOError());
  CHECK(engine->IngestRange(Cf::kData, "a", "z", {}).IsIOError());

  CHECK(MustGet(*engine, Cf::kData, "k") == "v");
  std::string value;
  CHECK(engine->Get(Cf::kData, "new", &value).IsNotFound());
  // RocksDB never failed, but a node that refuses writes is not healthy: health says why.
  EngineHealth h = engine->health();
  CHECK_FALSE(h.ok);
  CHECK(Contains(h.error, "below the reserve of"));
}

TEST_CASE("concurrent writers and readers do not interfere", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  constexpr int kWriters = 3;
  constexpr int kBatches = 200;
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kBatches && !failed; ++i) {
        // Each batch writes one key in data and the same key in meta.
        std::string key = "w" + std::to_string(w) + "-" + std::to_string(i);
        WriteBatch batch;
        batch.Put(Cf::kData, key, "v");
        batch.Put(Cf::kMeta, key, "v");
        if (!engine->Write(batch, i % 50 == 0).ok()) failed = true;
      }
    });
  }
  threads.emplace_back([&] {
    // Every batch puts its key in data and meta together and nothing deletes, so any key
    // a scan finds in meta must be readable in data afterwards.
    for (int round = 0; round < 20 && !failed; ++round) {
      std::vector<std::string> keys;
      Status s = engine->Scan(Cf::kMeta, "", "", [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      });
      std::vector<std::optional<std::string>> values;
      if (!s.ok() || !engine->MultiGet(Cf::kData, keys, &values).ok()) failed = true;
      for (const auto& v : values) {
        if (!v.has_value()) failed = true;
      }
    }
  });
  for (auto& t : threads) t.join();
  CHECK_FALSE(failed);
  CHECK(ScanAll(*engine, Cf::kData, "", "").size() == kWriters * kBatches);
}

TEST_CASE("health reports free space, live bytes and a key estimate", "[storage]") {
  ScratchDir dir;
  auto engine = MustOpen(Options(dir.path()));
  for (int i = 0; i < 100; ++i) {
    MustPut(*engine, Cf::kData, "key" + std::to_string(i), std::string(100, 'v'));
  }
  EngineHealth health = engine->health();
  CHECK(health.ok);
  CHECK(health.error.empty());
  CHECK(health.disk_free_bytes > 0);
  CHECK(health.live_bytes > 0);
  CHECK(health.keys_estimate > 0);

  REQUIRE(engine->Flush().ok());
  health = engine->health();
  CHECK(health.live_bytes > 100 * 100 / 4);  // compressed, but not to nothing
  CHECK(health.keys_estimate == 100);
}

}  // namespace
}  // namespace ring::storage
