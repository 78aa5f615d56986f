// common/keyspace.h: where a key lives. Shared by ringd and libring so they never disagree.
//
// A key hashes to a 64-bit point with XXH3-64. If the key contains "{tag}" (a '{', then at
// least one byte, then the first '}' after it), only the tag is hashed, as in Redis
// Cluster, so keys that share a tag share a shard.
//
// The hash space is split into shards, each owning a contiguous range [start, next start).
// In RocksDB a key is stored under be64(hash) || key, so every shard is one contiguous key
// range: iterating, deleting or exporting a shard is a range operation, and splitting a
// shard at a hash midpoint changes only metadata, never stored keys.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ring {

using ShardId = uint32_t;

// The part of `key` that is hashed: the first non-empty {tag}, or the whole key.
std::string_view HashTag(std::string_view key);

// XXH3-64 of HashTag(key).
uint64_t KeyHash(std::string_view key);

// Storage key: be64(KeyHash(key)) || key.
std::string DataKey(std::string_view key);
// be64(hash): the first storage key of any key with that hash or above.
std::string HashPrefix(uint64_t hash);

// An ordered set of shards covering the whole hash space. Shard ids need not follow the
// ranges' order (a split gives the upper half a new id).
// Thread-safety: immutable after construction; share freely.
class ShardRanges {
 public:
  // `count` equal ranges; shard i starts at ceil(i * 2^64 / count). count >= 1.
  static ShardRanges Uniform(uint32_t count);
  // Where shard i of Uniform(count) starts, without building the set.
  static uint64_t UniformStart(uint32_t i, uint32_t count);
  // Shards given as (start, id): starts distinct with one at 0, ids distinct (any order).
  // InvalidArgument otherwise.
  static Result<ShardRanges> FromStarts(std::vector<std::pair<uint64_t, ShardId>> starts);

  uint32_t count() const { return static_cast<uint32_t>(starts_.size()); }
  // The shard whose range contains `hash`.
  ShardId ShardOf(uint64_t hash) const;
  ShardId ShardOfKey(std::string_view key) const { return ShardOf(KeyHash(key)); }
  bool Contains(ShardId shard) const { return shard < pos_.size() && pos_[shard] != kAbsent; }
  // Start of shard `shard`'s range (which must exist).
  uint64_t Start(ShardId shard) const { return starts_[pos_[shard]]; }
  // Exclusive end of the range, as a storage-key bound ("" for the last shard = no bound).
  std::string EndBound(ShardId shard) const;
  std::string StartBound(ShardId shard) const { return HashPrefix(Start(shard)); }

 private:
  static constexpr uint32_t kAbsent = UINT32_MAX;
  std::vector<uint64_t> starts_;  // sorted, starts_[0] == 0
  std::vector<ShardId> ids_;      // ids_[i] owns [starts_[i], starts_[i + 1])
  std::vector<uint32_t> pos_;     // shard id -> its index in starts_ (kAbsent: none)
};

}  // namespace ring
