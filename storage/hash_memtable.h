// storage/hash_memtable.h: the data column family's memtable, a hash table of keys whose
// versions hang off each key, built for point reads and writes and for cheap flushes.
//
// Why not RocksDB's own hash memtables (HashLinkList, HashSkipList): a flush, and any
// iterator, needs the memtable in key order, and theirs build it by inserting every entry
// into a fresh skiplist: ~20 dependent cache misses and comparator calls per entry. On
// three nodes under write load that sort was 15% of the machine's CPU. Here a key's
// versions are one chain (newest first, as RocksDB orders them), so ordering the memtable
// is a std::sort of one pointer per distinct key, keyed by the key's first 8 bytes as an
// integer. Storage keys start with an 8-byte hash, so that integer nearly always decides.
//
// Shape: buckets (a power of two) of singly linked lists of distinct keys, chosen by
// XXH3-64 of the whole user key (keys sharing a {tag} share their 8-byte prefix, so the
// prefix would crowd them into one bucket). Each list node is the newest version of its
// key; each version links to the next older one. A new version replaces the old newest in
// the key list with one release store, so a reader sees either; either is correct for it,
// because RocksDB publishes a write's sequence number only after its memtable insert, so
// versions inserted after a reader started are newer than anything it may return.
//
// Contract (checked by tests/storage/hash_memtable_test.cc against a model):
//   - the column family's comparator is bytewise (the default): ordering uses memcmp;
//   - one writer at a time (allow_concurrent_memtable_write = false), any number of
//     concurrent readers;
//   - iterators see total order whatever the read options say (a prefix iterator is the
//     total-order one); creating one sorts a copy of the key list, so big scans should
//     flush first (Engine::ExportRange does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace rocksdb {
class MemTableRepFactory;
}

namespace ring::storage {

// `buckets` is rounded up to a power of two; the bucket array (8 bytes each) is allocated
// from each memtable's arena when the memtable is created.
std::shared_ptr<rocksdb::MemTableRepFactory> NewHashMemtableFactory(size_t buckets);

// What picks a user key's bucket.
uint64_t BucketHash(std::string_view key);

// A hint before a write: starts loading the buckets that keys with these hashes fall in,
// in the newest memtable `factory` (one of NewHashMemtableFactory's) made. RocksDB writes
// the WAL before it inserts, so by then they are in cache; otherwise every insert begins
// with a cache miss on an 8 MiB bucket array. Nothing is read, only prefetched: if that
// memtable was switched or even freed meanwhile, the hint is merely wasted.
void PrefetchBuckets(const rocksdb::MemTableRepFactory& factory, const std::vector<uint64_t>& hashes);

}  // namespace ring::storage
