#include "common/keyspace.h"

#include <xxhash.h>

#include <algorithm>
#include <cassert>

#include "common/coding.h"

namespace ring {

std::string_view HashTag(std::string_view key) {
  size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

uint64_t KeyHash(std::string_view key) {
  std::string_view h = HashTag(key);
  return XXH3_64bits(h.data(), h.size());
}

std::string HashPrefix(uint64_t hash) {
  std::string out;
  AppendBe64(&out, hash);
  return out;
}

std::string DataKey(std::string_view key) {
  std::string out;
  out.reserve(8 + key.size());
  AppendBe64(&out, KeyHash(key));
  out.append(key.data(), key.size());
  return out;
}

uint64_t ShardRanges::UniformStart(uint32_t i, uint32_t count) {
  assert(count >= 1 && i < count);
  unsigned __int128 num = static_cast<unsigned __int128>(i) << 64;
  return static_cast<uint64_t>((num + count - 1) / count);
}

ShardRanges ShardRanges::Uniform(uint32_t count) {
  assert(count >= 1);
  ShardRanges r;
  r.starts_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    r.starts_.push_back(UniformStart(i, count));
    r.ids_.push_back(i);
    r.pos_.push_back(i);
  }
  return r;
}

Result<ShardRanges> ShardRanges::FromStarts(std::vector<std::pair<uint64_t, ShardId>> starts) {
  if (starts.empty()) return Status::InvalidArgument("no shards");
  std::sort(starts.begin(), starts.end());
  if (starts.front().first != 0) return Status::InvalidArgument("no shard starts at hash 0");
  ShardRanges r;
  for (size_t i = 0; i < starts.size(); ++i) {
    const auto [start, id] = starts[i];
    if (i > 0 && start == starts[i - 1].first) return Status::InvalidArgument("two shards start at the same hash");
    if (id == kAbsent) return Status::InvalidArgument("shard id out of range");
    if (id >= r.pos_.size()) r.pos_.resize(size_t{id} + 1, kAbsent);
    if (r.pos_[id] != kAbsent) return Status::InvalidArgument("shard " + std::to_string(id) + " listed twice");
    r.pos_[id] = static_cast<uint32_t>(i);
    r.starts_.push_back(start);
    r.ids_.push_back(id);
  }
  return r;
}

ShardId ShardRanges::ShardOf(uint64_t hash) const {
  auto it = std::upper_bound(starts_.begin(), starts_.end(), hash);
  return ids_[static_cast<size_t>(it - starts_.begin() - 1)];
}

std::string ShardRanges::EndBound(ShardId shard) const {
  const uint32_t i = pos_[shard];
  if (i + 1 >= starts_.size()) return std::string();
  return HashPrefix(starts_[i + 1]);
}

}  // namespace ring
