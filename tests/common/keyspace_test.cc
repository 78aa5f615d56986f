// Tests for common/keyspace.{h,cc}: Redis-style hash tags, storage-key layout and order,
// and uniform shard ranges.
#include "common/coding.h"
#include "common/keyspace.h"

#include <xxhash.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace ring {
namespace {

constexpr uint64_t kMaxHash = std::numeric_limits<uint64_t>::max();

uint64_t Xxh3(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

// ceil(i * 2^64 / count), the documented start of shard i.
uint64_t ExpectedStart(uint32_t i, uint32_t count) {
  unsigned __int128 num = static_cast<unsigned __int128>(i) << 64;
  return static_cast<uint64_t>((num + count - 1) / count);
}

std::string RandomKey(std::mt19937_64& rng) {
  std::string key(1 + rng() % 24, '\0');
  for (char& c : key) c = static_cast<char>(rng());
  return key;
}

}  // namespace

// Reference for the tag rules: Redis Cluster specification, "Hash tags": if the key
// contains a '{', and a '}' somewhere to its right, and at least one byte between the first
// '{' and the first '}' after it, only those bytes are hashed; otherwise the whole key is.

TEST_CASE("a key without braces hashes as a whole with XXH3-64", "[keyspace]") {
  CHECK(HashTag("user1000") == "user1000");
  CHECK(KeyHash("user1000") == Xxh3("user1000"));
  CHECK(KeyHash("") == Xxh3(""));
  CHECK(KeyHash("a") != KeyHash("b"));
}

TEST_CASE("keys that share a tag share a hash", "[keyspace]") {
  CHECK(HashTag("{user1000}.following") == "user1000");
  CHECK(HashTag("{user1000}.followers") == "user1000");
  CHECK(KeyHash("{user1000}.following") == KeyHash("{user1000}.followers"));
  CHECK(KeyHash("{user1000}.following") == Xxh3("user1000"));
  CHECK(KeyHash("prefix:{user1000}") == KeyHash("{user1000}.following"));
  CHECK(KeyHash("{user1000}.following") != KeyHash("{user1001}.following"));
}

TEST_CASE("keys whose braces form no non-empty tag hash as a whole", "[keyspace]") {
  for (const char* key : {"{}", "{", "}", "}{", "{}x", "x{}", "foo{}{bar}", "foo{bar", "foo}bar",
                          "foo}{bar", "}}{{"}) {
    INFO(key);
    CHECK(HashTag(key) == key);
    CHECK(KeyHash(key) == Xxh3(key));
  }
}

TEST_CASE("only the first tag counts", "[keyspace]") {
  CHECK(HashTag("{a}{b}") == "a");
  CHECK(HashTag("x{a}y{b}z") == "a");
  // The tag ends at the first '}' after the first '{', so it may contain a '{'.
  CHECK(HashTag("foo{{bar}}") == "{bar");
  CHECK(HashTag("foo{bar}{zap}") == "bar");
  // A '}' before the first '{' is ignored.
  CHECK(HashTag("foo}{bar}") == "bar");
  // A tag of a single byte, and a tag made of a '{'.
  CHECK(HashTag("{x}") == "x");
  CHECK(HashTag("{{}") == "{");
}

TEST_CASE("tags and keys may hold arbitrary bytes", "[keyspace]") {
  std::string key("a{\0\xff}b", 6);
  CHECK(HashTag(key) == std::string("\0\xff", 2));
  CHECK(KeyHash(key) == Xxh3(std::string("\0\xff", 2)));
}

TEST_CASE("a hash prefix is the hash in 8 big-endian bytes", "[keyspace]") {
  CHECK(HashPrefix(0) == std::string(8, '\0'));
  CHECK(HashPrefix(0x0102030405060708) == "\x01\x02\x03\x04\x05\x06\x07\x08");
  CHECK(HashPrefix(kMaxHash) == std::string(8, '\xff'));
}

TEST_CASE("ReadBe64 reads HashPrefix's encoding back, and refuses a short input", "[keyspace]") {
  const std::string two = HashPrefix(0x0102030405060708) + HashPrefix(kMaxHash) + "xyz";
  size_t pos = 0;
  uint64_t v = 0;
  REQUIRE(ReadBe64(two, &pos, &v));
  CHECK(v == 0x0102030405060708);
  REQUIRE(ReadBe64(two, &pos, &v));
  CHECK(v == kMaxHash);
  CHECK(pos == 16);
  CHECK_FALSE(ReadBe64(two, &pos, &v));  // 3 bytes left: nothing read
  CHECK(pos == 16);
  CHECK(v == kMaxHash);
  pos = 100;  // past the end
  CHECK_FALSE(ReadBe64(two, &pos, &v));
}

TEST_CASE("hash prefixes sort bytewise in numeric order", "[keyspace]") {
  // Bytes at or above 0x80 must sort high, as RocksDB's bytewise comparator sorts them.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    uint64_t a = rng();
    uint64_t b = i % 2 ? rng() : a ^ (uint64_t{1} << (rng() % 64));
    CHECK((HashPrefix(a) < HashPrefix(b)) == (a < b));
  }
}

TEST_CASE("a data key is the hash prefix followed by the key", "[keyspace]") {
  std::string key = "{user1000}.following";
  CHECK(DataKey(key) == HashPrefix(KeyHash(key)) + key);
  CHECK(DataKey(key).size() == 8 + key.size());
}

TEST_CASE("data keys sort in hash order", "[keyspace]") {
  std::mt19937_64 rng(11);
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) keys.push_back(RandomKey(rng));
  std::vector<std::string> data_keys;
  for (const std::string& k : keys) data_keys.push_back(DataKey(k));
  std::sort(data_keys.begin(), data_keys.end());
  for (size_t i = 1; i < data_keys.size(); ++i) {
    uint64_t prev = KeyHash(std::string_view(data_keys[i - 1]).substr(8));
    uint64_t cur = KeyHash(std::string_view(data_keys[i]).substr(8));
    REQUIRE(prev <= cur);
  }
}

TEST_CASE("keys sharing a tag are contiguous in data-key order", "[keyspace]") {
  std::vector<std::string> data_keys;
  for (int i = 0; i < 50; ++i) {
    data_keys.push_back(DataKey("{cart7}." + std::to_string(i)));
    data_keys.push_back(DataKey("other:" + std::to_string(i)));
  }
  std::sort(data_keys.begin(), data_keys.end());
  auto is_cart = [](const std::string& dk) { return dk.find("{cart7}") == 8; };
  auto first = std::find_if(data_keys.begin(), data_keys.end(), is_cart);
  REQUIRE(first != data_keys.end());
  CHECK(std::all_of(first, first + 50, is_cart));
}

TEST_CASE("a single shard owns the whole hash space", "[keyspace]") {
  ShardRanges r = ShardRanges::Uniform(1);
  CHECK(r.count() == 1);
  CHECK(r.Start(0) == 0);
  CHECK(r.ShardOf(0) == 0);
  CHECK(r.ShardOf(kMaxHash) == 0);
  CHECK(r.StartBound(0) == std::string(8, '\0'));
  CHECK(r.EndBound(0).empty());
}

TEST_CASE("64 uniform shards start at multiples of 2^58", "[keyspace]") {
  ShardRanges r = ShardRanges::Uniform(64);
  REQUIRE(r.count() == 64);
  for (uint32_t i = 0; i < 64; ++i) CHECK(r.Start(i) == uint64_t{i} << 58);
}

TEST_CASE("uniform shard boundaries map to the right shards", "[keyspace]") {
  for (uint32_t count : {1u, 2u, 3u, 7u, 64u, 1000u, 65537u}) {
    INFO("count " << count);
    ShardRanges r = ShardRanges::Uniform(count);
    REQUIRE(r.count() == count);
    REQUIRE(r.Start(0) == 0);
    REQUIRE(r.ShardOf(0) == 0);
    REQUIRE(r.ShardOf(kMaxHash) == count - 1);
    const uint64_t floor_width =
        static_cast<uint64_t>((static_cast<unsigned __int128>(1) << 64) / count);
    for (uint32_t i = 0; i < count; ++i) {
      REQUIRE(r.Start(i) == ExpectedStart(i, count));
      REQUIRE(r.ShardOf(r.Start(i)) == i);
      REQUIRE(r.StartBound(i) == HashPrefix(r.Start(i)));
      if (i > 0) {
        REQUIRE(r.ShardOf(r.Start(i) - 1) == i - 1);
        // Equal ranges: widths differ by at most one.
        uint64_t width = r.Start(i) - r.Start(i - 1);
        REQUIRE(width >= floor_width);
        REQUIRE(width <= floor_width + 1);
      }
      if (i + 1 < count) {
        REQUIRE(r.EndBound(i) == r.StartBound(i + 1));
        REQUIRE(r.ShardOf(r.Start(i + 1) - 1) == i);
      } else {
        REQUIRE(r.EndBound(i).empty());
      }
    }
  }
}

TEST_CASE("every key's data key lies within its shard's storage bounds", "[keyspace]") {
  std::mt19937_64 rng(13);
  for (uint32_t count : {1u, 3u, 64u, 1000u}) {
    ShardRanges r = ShardRanges::Uniform(count);
    for (int i = 0; i < 2000; ++i) {
      std::string key = RandomKey(rng);
      ShardId s = r.ShardOfKey(key);
      REQUIRE(s < count);
      REQUIRE(s == r.ShardOf(KeyHash(key)));
      std::string dk = DataKey(key);
      REQUIRE(r.StartBound(s) <= dk);
      std::string end = r.EndBound(s);
      REQUIRE((end.empty() || dk < end));
    }
  }
}

TEST_CASE("a million random keys spread evenly over 64 shards", "[keyspace]") {
  constexpr int kKeys = 1000000;
  constexpr uint32_t kShards = 64;
  ShardRanges r = ShardRanges::Uniform(kShards);
  std::vector<int> per_shard(kShards, 0);
  std::mt19937_64 rng(17);
  std::string key;
  for (int i = 0; i < kKeys; ++i) {
    key = "user:" + std::to_string(rng());
    ++per_shard[r.ShardOfKey(key)];
  }
  // Expected 15625 per shard with a standard deviation near 124; 5% is about six sigma.
  const double expected = static_cast<double>(kKeys) / kShards;
  for (uint32_t s = 0; s < kShards; ++s) {
    INFO("shard " << s << " holds " << per_shard[s]);
    CHECK(per_shard[s] > expected * 0.95);
    CHECK(per_shard[s] < expected * 1.05);
  }
}

TEST_CASE("shard ranges from a map's starts route by range, whatever the ids", "[keyspace]") {
  // Shard 0 split at the midpoint of [0, 2^63): the upper half is shard 2.
  auto r = ShardRanges::FromStarts({{uint64_t{1} << 63, 1}, {0, 0}, {uint64_t{1} << 62, 2}});
  REQUIRE(r.ok());
  CHECK(r->count() == 3);
  CHECK(r->ShardOf(0) == 0);
  CHECK(r->ShardOf((uint64_t{1} << 62) - 1) == 0);
  CHECK(r->ShardOf(uint64_t{1} << 62) == 2);
  CHECK(r->ShardOf(UINT64_MAX) == 1);
  CHECK(r->Start(2) == uint64_t{1} << 62);
  CHECK(r->EndBound(0) == HashPrefix(uint64_t{1} << 62));
  CHECK(r->EndBound(2) == HashPrefix(uint64_t{1} << 63));
  CHECK(r->EndBound(1).empty());
  CHECK(r->Contains(2));
  CHECK_FALSE(r->Contains(3));
  // Malformed layouts are refused.
  CHECK(ShardRanges::FromStarts({}).status().IsInvalidArgument());
  CHECK(ShardRanges::FromStarts({{5, 0}}).status().IsInvalidArgument());             // no shard at 0
  CHECK(ShardRanges::FromStarts({{0, 0}, {0, 1}}).status().IsInvalidArgument());     // same start twice
  CHECK(ShardRanges::FromStarts({{0, 3}, {9, 3}}).status().IsInvalidArgument());     // same id twice
  CHECK(ShardRanges::FromStarts({{0, UINT32_MAX}}).status().IsInvalidArgument());    // id out of range
}

}  // namespace ring
