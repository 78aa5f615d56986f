// Tests for storage/hash_memtable.cc, through a real RocksDB that uses it: every read form
// RocksDB has (Get at a snapshot, forward and backward iteration, Seek, SeekForPrev) is
// compared with a model after random writes, both from the memtable and, after a flush
// (which reads the memtable through the same sorted iterator), from the SST files. A
// writer and readers also run concurrently, the memtable's one threading promise.
#include "storage/hash_memtable.h"

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "harness.h"

namespace ring::storage {
namespace {

class TestDb {
 public:
  explicit TestDb(size_t buckets) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.memtable_factory = NewHashMemtableFactory(buckets);
    o.allow_concurrent_memtable_write = false;
    o.write_buffer_size = 64u << 20;  // no flush unless the test asks
    o.memtable_whole_key_filtering = true;
    o.memtable_prefix_bloom_size_ratio = 0.02;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, dir_.path(), &db);
    REQUIRE(s.ok());
    db_.reset(db);
  }
  rocksdb::DB* operator->() { return db_.get(); }
  rocksdb::DB* get() { return db_.get(); }

 private:
  test::TempDir dir_;  // destroyed after the DB closes
  std::unique_ptr<rocksdb::DB> db_;
};

using Model = std::map<std::string, std::string>;

// Keys that stress the ordering: shorter than the 8-byte integer prefix, sharing it (as
// keys with one {tag} do), and differing only past it.
std::string RandomKey(std::mt19937_64& rng) {
  static const std::vector<std::string> prefixes = {"", "a", "ab", "abcdefgh", "abcdefgi", "\xff\xff\xff\xff\xff\xff\xff\xff",
                                                    std::string("\0\0\0\0\0\0\0\x01", 8), "zz"};
  std::string k = prefixes[rng() % prefixes.size()];
  size_t extra = rng() % 4;
  for (size_t i = 0; i < extra; ++i) k.push_back(static_cast<char>("\0ab\xff"[rng() % 4]));
  if (k.empty()) k = "k";
  return k;
}

std::optional<std::string> Get(rocksdb::DB* db, const std::string& key, const rocksdb::Snapshot* snap) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string v;
  rocksdb::Status s = db->Get(ro, key, &v);
  if (s.IsNotFound()) return std::nullopt;
  REQUIRE(s.ok());
  return v;
}

// Everything a reader at `snap` can see, against `model`.
void CheckReads(rocksdb::DB* db, const Model& model, const rocksdb::Snapshot* snap, std::mt19937_64& rng) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  // Forward and backward: exactly the model, in order.
  auto m = model.begin();
  for (it->SeekToFirst(); it->Valid(); it->Next(), ++m) {
    REQUIRE(m != model.end());
    REQUIRE(it->key().ToString() == m->first);
    REQUIRE(it->value().ToString() == m->second);
  }
  REQUIRE(it->status().ok());
  REQUIRE(m == model.end());
  auto r = model.rbegin();
  for (it->SeekToLast(); it->Valid(); it->Prev(), ++r) {
    REQUIRE(r != model.rend());
    REQUIRE(it->key().ToString() == r->first);
  }
  REQUIRE(r == model.rend());
  // Point reads, seeks, and a step the other way after a seek.
  for (int i = 0; i < 40; ++i) {
    std::string k = RandomKey(rng);
    auto want = model.find(k);
    auto got = Get(db, k, snap);
    REQUIRE(got.has_value() == (want != model.end()));
    if (got) REQUIRE(*got == want->second);

    it->Seek(k);
    auto lb = model.lower_bound(k);
    REQUIRE(it->Valid() == (lb != model.end()));
    if (lb != model.end()) {
      REQUIRE(it->key().ToString() == lb->first);
      it->Prev();
      REQUIRE(it->Valid() == (lb != model.begin()));
      if (lb != model.begin()) REQUIRE(it->key().ToString() == std::prev(lb)->first);
    }

    it->SeekForPrev(k);
    auto ub = model.upper_bound(k);
    REQUIRE(it->Valid() == (ub != model.begin()));
    if (ub != model.begin()) {
      REQUIRE(it->key().ToString() == std::prev(ub)->first);
      it->Next();
      REQUIRE(it->Valid() == (ub != model.end()));
      if (ub != model.end()) REQUIRE(it->key().ToString() == ub->first);
    }
  }
}

TEST_CASE("hash memtable: random writes read back like a model, at snapshots, before and after a flush",
          "[storage][memtable]") {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    // Few buckets, so distinct keys share them.
    TestDb db(seed % 2 == 0 ? 4 : 1024);
    Model model;
    std::vector<std::pair<const rocksdb::Snapshot*, Model>> snaps;
    for (int op = 0; op < 3000; ++op) {
      rocksdb::WriteBatch b;
      int n = 1 + static_cast<int>(rng() % 4);
      for (int j = 0; j < n; ++j) {
        std::string k = RandomKey(rng);
        uint64_t kind = rng() % 10;
        if (kind < 7) {
          std::string v = "v" + std::to_string(op) + "." + std::to_string(j);
          b.Put(k, v);
          model[k] = v;
        } else if (kind < 9) {
          b.Delete(k);
          model.erase(k);
        } else {
          std::string e = RandomKey(rng);
          if (e < k) std::swap(e, k);
          if (k == e) continue;
          b.DeleteRange(k, e);
          model.erase(model.lower_bound(k), model.lower_bound(e));
        }
      }
      REQUIRE(db->Write(rocksdb::WriteOptions(), &b).ok());
      if (op % 500 == 0) snaps.emplace_back(db->GetSnapshot(), model);
    }
    CheckReads(db.get(), model, nullptr, rng);
    for (auto& [snap, m] : snaps) CheckReads(db.get(), m, snap, rng);
    // The flush writes the memtable out through its sorted iterator; RocksDB (built with
    // assertions in Debian) checks the order, and the reads check the content.
    REQUIRE(db->Flush(rocksdb::FlushOptions()).ok());
    CheckReads(db.get(), model, nullptr, rng);
    for (auto& [snap, m] : snaps) {
      CheckReads(db.get(), m, snap, rng);
      db->ReleaseSnapshot(snap);
    }
  }
}

TEST_CASE("hash memtable: an iterator made before later writes sees none of them", "[storage][memtable]") {
  TestDb db(16);
  REQUIRE(db->Put(rocksdb::WriteOptions(), "b", "1").ok());
  REQUIRE(db->Put(rocksdb::WriteOptions(), "d", "1").ok());
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  REQUIRE(db->Put(rocksdb::WriteOptions(), "b", "2").ok());  // a newer version of a key
  REQUIRE(db->Put(rocksdb::WriteOptions(), "c", "2").ok());  // a new key
  REQUIRE(db->Delete(rocksdb::WriteOptions(), "d").ok());
  std::vector<std::string> seen;
  for (it->SeekToFirst(); it->Valid(); it->Next()) seen.push_back(it->key().ToString() + "=" + it->value().ToString());
  CHECK(seen == std::vector<std::string>{"b=1", "d=1"});
  it.reset();
  seen.clear();
  it.reset(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) seen.push_back(it->key().ToString() + "=" + it->value().ToString());
  CHECK(seen == std::vector<std::string>{"b=2", "c=2"});
}

TEST_CASE("hash memtable: readers running beside the writer see every key's values only grow",
          "[storage][memtable]") {
  TestDb db(64);
  constexpr int kKeys = 200;
  constexpr uint64_t kRounds = 300;
  auto key = [](int i) { return std::string("key") + std::to_string(i); };
  auto value = [](uint64_t round) {
    char buf[24];
    std::snprintf(buf, sizeof(buf), "%020llu", static_cast<unsigned long long>(round));
    return std::string(buf);
  };
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      std::vector<std::string> last(kKeys);
      while (!done.load()) {
        int i = static_cast<int>(rng() % kKeys);
        std::string v;
        rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key(i), &v);
        if (s.ok()) {
          if (v < last[i]) failures.fetch_add(1);
          last[i] = v;
        } else if (!s.IsNotFound() || !last[i].empty()) {
          failures.fetch_add(1);
        }
        // A scan: sorted, and every key at most once.
        if (rng() % 64 == 0) {
          std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
          std::string prev;
          for (it->SeekToFirst(); it->Valid(); it->Next()) {
            if (!prev.empty() && it->key().ToString() <= prev) failures.fetch_add(1);
            prev = it->key().ToString();
          }
        }
      }
    });
  }
  for (uint64_t round = 1; round <= kRounds; ++round) {
    rocksdb::WriteBatch b;
    for (int i = 0; i < kKeys; ++i) b.Put(key(i), value(round));
    REQUIRE(db->Write(rocksdb::WriteOptions(), &b).ok());
  }
  done = true;
  for (auto& t : readers) t.join();
  CHECK(failures.load() == 0);
  std::string v;
  REQUIRE(db->Get(rocksdb::ReadOptions(), key(7), &v).ok());
  CHECK(v == value(kRounds));
}

}  // namespace
}  // namespace ring::storage
