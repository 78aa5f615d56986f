#include "common/coding.h"

#include <catch2/catch.hpp>
#include <random>

namespace ring {
namespace {

TEST_CASE("varints round-trip every width, and take 1 byte below 128 and 10 at most", "[coding]") {
  std::vector<uint64_t> values = {0, 1, 127, 128, 300, 16383, 16384, (uint64_t{1} << 35) - 1, uint64_t{1} << 63,
                                  UINT64_MAX};
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) values.push_back(rng() >> (rng() % 64));
  std::string all;
  for (uint64_t v : values) {
    std::string one;
    AppendVarint(&one, v);
    CHECK(one.size() == (v == 0 ? 1 : (64 - static_cast<size_t>(__builtin_clzll(v)) + 6) / 7));
    all += one;
  }
  size_t pos = 0;
  for (uint64_t v : values) {
    uint64_t got = 0;
    REQUIRE(ReadVarint(all, &pos, &got));
    CHECK(got == v);
  }
  CHECK(pos == all.size());
  std::string max;
  AppendVarint(&max, UINT64_MAX);
  CHECK(max.size() == 10);
}

TEST_CASE("a truncated or overlong varint is refused and nothing is read", "[coding]") {
  uint64_t v = 42;
  size_t pos = 0;
  CHECK_FALSE(ReadVarint("", &pos, &v));
  CHECK_FALSE(ReadVarint("\x80\x80", &pos, &v));  // continues past the end
  CHECK(pos == 0);
  CHECK(v == 42);
  const std::string eleven(11, '\x80');  // more than 10 bytes
  CHECK_FALSE(ReadVarint(eleven, &pos, &v));
  const std::string too_big = std::string(9, '\xff') + '\x02';  // a 65th bit
  CHECK_FALSE(ReadVarint(too_big, &pos, &v));
  CHECK(pos == 0);
  pos = 5;  // past the end
  CHECK_FALSE(ReadVarint("ab", &pos, &v));
}

TEST_CASE("be64 writes most significant byte first, le64 least significant first", "[coding]") {
  std::string be, le;
  AppendBe64(&be, 0x0102030405060708);
  AppendLe64(&le, 0x0102030405060708);
  CHECK(be == "\x01\x02\x03\x04\x05\x06\x07\x08");
  CHECK(le == "\x08\x07\x06\x05\x04\x03\x02\x01");
  size_t pos = 0;
  uint64_t v = 0;
  REQUIRE(ReadBe64(be, &pos, &v));
  CHECK(v == 0x0102030405060708);
  pos = 0;
  REQUIRE(ReadLe64(le, &pos, &v));
  CHECK(v == 0x0102030405060708);
  CHECK(pos == 8);
  // Short input: refused, nothing read.
  CHECK_FALSE(ReadLe64(le, &pos, &v));
  CHECK(pos == 8);
  pos = 20;
  CHECK_FALSE(ReadLe64(le, &pos, &v));
}

}  // namespace
}  // namespace ring
