// storage/hash_memtable.cc: see hash_memtable.h for the shape and its contract.
#include "storage/hash_memtable.h"

#include <rocksdb/memtablerep.h>
#include <rocksdb/slice.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace ring::storage {
namespace {

using rocksdb::MemTableRep;
using rocksdb::Slice;

// A memtable entry, as RocksDB encodes it into the buffer Allocate() hands out:
// varint32 internal-key length, internal key (user key + 8 bytes of sequence and type),
// varint32 value length, value. This is LevelDB's format, unchanged in RocksDB.
Slice EntryInternalKey(const char* entry) {
  uint32_t len = 0;
  const char* p = entry;
  for (int shift = 0; shift <= 28; shift += 7) {
    uint32_t byte = static_cast<unsigned char>(*p++);
    len |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
  return Slice(p, len);
}

Slice EntryUserKey(const char* entry) {
  Slice ikey = EntryInternalKey(entry);
  return Slice(ikey.data(), ikey.size() - 8);
}

// The user key's first 8 bytes as a big-endian integer, zero-padded: integers order like
// the bytes they came from, and only equal integers need a memcmp.
uint64_t Order(const Slice& ukey) {
  unsigned char b[8] = {};
  std::memcpy(b, ukey.data(), std::min<size_t>(ukey.size(), 8));
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

uint64_t Hash(const Slice& ukey) { return XXH3_64bits(ukey.data(), ukey.size()); }

// One version of a key, in the memtable's arena, just ahead of its entry.
struct Version {
  std::atomic<Version*> next_key{nullptr};  // the bucket's next key (read in a key's newest version)
  std::atomic<Version*> older{nullptr};     // the same key's next older version
  char* entry() { return reinterpret_cast<char*>(this + 1); }
  const char* entry() const { return reinterpret_cast<const char*>(this + 1); }
};
static_assert(sizeof(Version) == 16);

// RocksDB hands Get() a LookupKey, a class its installed headers only declare. Its layout
// has been three pointers since LevelDB: the memtable key (a length-prefixed internal key),
// the internal key inside it, and the end. Every call checks that the three agree before
// trusting them; a RocksDB that changed it stops the process at the first read instead of
// answering wrongly.
struct LookupKeyLayout {
  const char* start;
  const char* kstart;
  const char* end;
};

Slice LookupInternalKey(const rocksdb::LookupKey& k) {
  LookupKeyLayout l;
  std::memcpy(&l, static_cast<const void*>(&k), sizeof(l));
  Slice ikey = EntryInternalKey(l.start);
  if (ikey.data() != l.kstart || l.kstart + ikey.size() != l.end || ikey.size() < 8) {
    std::fprintf(stderr, "ringd: this RocksDB's LookupKey layout is not the one storage/hash_memtable.cc reads\n");
    std::abort();
  }
  return ikey;
}

// One key in an iterator's sorted view: its order integer and its newest version then.
using SortedKey = std::pair<uint64_t, Version*>;

bool KeyLess(const SortedKey& a, uint64_t order, const Slice& ukey) {
  if (a.first != order) return a.first < order;
  return EntryUserKey(a.second->entry()).compare(ukey) < 0;
}

// RocksDB destroys an iterator it asked for "in its arena" with ~Iterator() and never
// frees it; that arena's class is not in the installed headers (and this memtable's own
// arena may not grow once the memtable is immutable: RocksDB has accounted for it). So such
// an iterator gets heap storage, which the thread that destroys it frees at its next
// destruction of one (or when it exits): by then the earlier destructor has returned. The
// pointer is trivially destructible, so it stays usable until the thread is gone.
thread_local void* deferred_block = nullptr;
struct FreeDeferredAtExit {
  ~FreeDeferredAtExit() { ::operator delete(std::exchange(deferred_block, nullptr)); }
};
thread_local FreeDeferredAtExit free_deferred_at_exit;

void DeferFree(void* block) {
  (void)&free_deferred_at_exit;  // registers the exit hook on this thread
  ::operator delete(std::exchange(deferred_block, block));
}

// Iterates a sorted copy of the key list (taken when the iterator was made), walking each
// key's versions in place. Versions a writer adds later are newer than anything the
// iterator's reader may see, and RocksDB skips them.
class SortedIterator final : public MemTableRep::Iterator {
 public:
  SortedIterator(const MemTableRep::KeyComparator& cmp, std::vector<SortedKey>* keys, bool frees_itself)
      : cmp_(cmp), keys_(keys), frees_itself_(frees_itself) {}
  ~SortedIterator() override {
    delete keys_;
    if (frees_itself_) DeferFree(this);
  }

  bool Valid() const override { return cur_ != nullptr; }
  const char* key() const override { return cur_->entry(); }

  void Next() override {
    cur_ = cur_->older.load(std::memory_order_acquire);
    if (cur_ == nullptr) At(i_ + 1);
  }

  void Prev() override {
    Version* v = (*keys_)[i_].second;
    if (v == cur_) {
      if (i_ == 0) {
        cur_ = nullptr;
        return;
      }
      --i_;
      cur_ = Oldest((*keys_)[i_].second);
      return;
    }
    for (Version* o = v->older.load(std::memory_order_acquire); o != cur_; o = o->older.load(std::memory_order_acquire)) v = o;
    cur_ = v;
  }

  void Seek(const Slice& ikey, const char* /*memtable_key*/) override {
    Slice ukey(ikey.data(), ikey.size() - 8);
    uint64_t order = Order(ukey);
    auto it = std::lower_bound(keys_->begin(), keys_->end(), 0, [&](const SortedKey& k, int) {
      return KeyLess(k, order, ukey);
    });
    At(static_cast<size_t>(it - keys_->begin()));
    if (cur_ == nullptr || EntryUserKey(cur_->entry()) != ukey) return;
    // Same user key: the first version at or after the target (newest first).
    while (cur_ != nullptr && cmp_(cur_->entry(), ikey) < 0) cur_ = cur_->older.load(std::memory_order_acquire);
    if (cur_ == nullptr) At(i_ + 1);
  }

  void SeekForPrev(const Slice& ikey, const char* memtable_key) override {
    Seek(ikey, memtable_key);
    if (!Valid()) SeekToLast();
    while (Valid() && cmp_(cur_->entry(), ikey) > 0) Prev();
  }

  void SeekToFirst() override { At(0); }

  void SeekToLast() override {
    if (keys_->empty()) {
      cur_ = nullptr;
      return;
    }
    i_ = keys_->size() - 1;
    cur_ = Oldest((*keys_)[i_].second);
  }

 private:
  void At(size_t i) {
    i_ = i;
    cur_ = i < keys_->size() ? (*keys_)[i].second : nullptr;
  }
  static Version* Oldest(Version* v) {
    for (Version* o = v->older.load(std::memory_order_acquire); o != nullptr; o = o->older.load(std::memory_order_acquire)) v = o;
    return v;
  }

  const MemTableRep::KeyComparator& cmp_;
  std::vector<SortedKey>* keys_;  // owned
  const bool frees_itself_;       // made for RocksDB's arena: see DeferFree
  size_t i_ = 0;
  Version* cur_ = nullptr;
};

class HashMemtable final : public MemTableRep {
 public:
  HashMemtable(const KeyComparator& cmp, rocksdb::Allocator* allocator, size_t buckets)
      : MemTableRep(allocator), cmp_(cmp), mask_(buckets - 1) {
    char* mem = AllocateAligned(sizeof(std::atomic<Version*>) * buckets);
    buckets_ = reinterpret_cast<std::atomic<Version*>*>(mem);
    for (size_t i = 0; i < buckets; ++i) new (&buckets_[i]) std::atomic<Version*>(nullptr);
  }
  const void* buckets() const { return buckets_; }

  rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
    Version* v = new (AllocateAligned(sizeof(Version) + len)) Version;
    *buf = v->entry();
    return v;
  }

  // The only writer. Relaxed loads see its own stores; release stores publish to readers.
  void Insert(rocksdb::KeyHandle handle) override {
    Version* v = static_cast<Version*>(handle);
    Slice ukey = EntryUserKey(v->entry());
    std::atomic<Version*>& bucket = buckets_[Hash(ukey) & mask_];
    std::atomic<Version*>* link = &bucket;
    for (Version* n = link->load(std::memory_order_relaxed); n != nullptr;
         link = &n->next_key, n = link->load(std::memory_order_relaxed)) {
      if (EntryUserKey(n->entry()) != ukey) continue;
      if (cmp_(v->entry(), n->entry()) < 0) {
        // The usual case: a newer version takes the key's place in the bucket's list.
        v->older.store(n, std::memory_order_relaxed);
        v->next_key.store(n->next_key.load(std::memory_order_relaxed), std::memory_order_relaxed);
        link->store(v, std::memory_order_release);
      } else {
        // An older version than the newest (not produced by one writer's increasing
        // sequence numbers, but cheap to keep correct): insert it in order in the chain.
        Version* prev = n;
        for (Version* o = prev->older.load(std::memory_order_relaxed); o != nullptr && cmp_(o->entry(), v->entry()) < 0;
             o = prev->older.load(std::memory_order_relaxed)) {
          prev = o;
        }
        v->older.store(prev->older.load(std::memory_order_relaxed), std::memory_order_relaxed);
        prev->older.store(v, std::memory_order_release);
      }
      return;
    }
    v->next_key.store(bucket.load(std::memory_order_relaxed), std::memory_order_relaxed);
    bucket.store(v, std::memory_order_release);
    keys_.fetch_add(1, std::memory_order_relaxed);
  }

  bool Contains(const char* entry) const override {
    Slice ikey = EntryInternalKey(entry);
    for (Version* v = Find(Slice(ikey.data(), ikey.size() - 8)); v != nullptr; v = v->older.load(std::memory_order_acquire)) {
      int c = cmp_(v->entry(), ikey);
      if (c == 0) return true;
      if (c > 0) return false;
    }
    return false;
  }

  // Calls back with the key's versions from the lookup's sequence number down, until the
  // callback says stop (it has found a value or a deletion).
  void Get(const rocksdb::LookupKey& k, void* arg, bool (*callback)(void* arg, const char* entry)) override {
    Slice ikey = LookupInternalKey(k);
    for (Version* v = Find(Slice(ikey.data(), ikey.size() - 8)); v != nullptr; v = v->older.load(std::memory_order_acquire)) {
      if (cmp_(v->entry(), ikey) < 0) continue;  // newer than the lookup
      if (!callback(arg, v->entry())) return;
    }
  }

  // Everything is allocated from the arena, which RocksDB accounts for itself.
  size_t ApproximateMemoryUsage() override { return 0; }

  Iterator* GetIterator(rocksdb::Arena* arena) override {
    auto* keys = new std::vector<SortedKey>();
    keys->reserve(keys_.load(std::memory_order_relaxed) + 64);
    for (size_t b = 0; b <= mask_; ++b) {
      for (Version* v = buckets_[b].load(std::memory_order_acquire); v != nullptr;
           v = v->next_key.load(std::memory_order_acquire)) {
        keys->emplace_back(Order(EntryUserKey(v->entry())), v);
      }
    }
    // Only keys with equal integers read their entries.
    std::sort(keys->begin(), keys->end(), [](const SortedKey& a, const SortedKey& b) {
      if (a.first != b.first) return a.first < b.first;
      return EntryUserKey(a.second->entry()).compare(EntryUserKey(b.second->entry())) < 0;
    });
    if (arena == nullptr) return new SortedIterator(cmp_, keys, false);
    return new (::operator new(sizeof(SortedIterator))) SortedIterator(cmp_, keys, true);
  }

 private:
  // Memory from the arena, 8-byte aligned (RocksDB's aligned allocation is not public).
  char* AllocateAligned(size_t bytes) {
    char* raw = nullptr;
    MemTableRep::Allocate(bytes + 7, &raw);
    return reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 7) & ~uintptr_t{7});
  }

  Version* Find(const Slice& ukey) const {
    for (Version* v = buckets_[Hash(ukey) & mask_].load(std::memory_order_acquire); v != nullptr;
         v = v->next_key.load(std::memory_order_acquire)) {
      if (EntryUserKey(v->entry()) == ukey) return v;
    }
    return nullptr;
  }

  const KeyComparator& cmp_;
  const size_t mask_;
  std::atomic<Version*>* buckets_ = nullptr;
  std::atomic<size_t> keys_{0};  // distinct keys: a size hint for iterators
};

class HashMemtableFactory final : public rocksdb::MemTableRepFactory {
 public:
  explicit HashMemtableFactory(size_t buckets) : buckets_(std::bit_ceil(std::max<size_t>(buckets, 1))) {}
  MemTableRep* CreateMemTableRep(const MemTableRep::KeyComparator& cmp, rocksdb::Allocator* allocator,
                                 const rocksdb::SliceTransform*, rocksdb::Logger*) override {
    auto* table = new HashMemtable(cmp, allocator, buckets_);
    newest_.store(table->buckets(), std::memory_order_relaxed);
    return table;
  }
  const char* Name() const override { return "ring.HashMemtable"; }

  // Only the address is used, never dereferenced: prefetching memory that was freed
  // meanwhile is harmless.
  void Prefetch(const std::vector<uint64_t>& hashes) const {
    auto* b = static_cast<const std::atomic<Version*>*>(newest_.load(std::memory_order_relaxed));
    if (b == nullptr) return;
    for (uint64_t h : hashes) __builtin_prefetch(&b[h & (buckets_ - 1)]);
  }

 private:
  const size_t buckets_;
  std::atomic<const void*> newest_{nullptr};  // the bucket array of the newest memtable
};

}  // namespace

void PrefetchBuckets(const rocksdb::MemTableRepFactory& factory, const std::vector<uint64_t>& hashes) {
  static_cast<const HashMemtableFactory&>(factory).Prefetch(hashes);
}

uint64_t BucketHash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

std::shared_ptr<rocksdb::MemTableRepFactory> NewHashMemtableFactory(size_t buckets) {
  return std::make_shared<HashMemtableFactory>(buckets);
}

}  // namespace ring::storage
