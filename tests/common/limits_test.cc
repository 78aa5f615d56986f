// Tests for common/limits.{h,cc}: each limit accepts its boundary, rejects one past it, and
// the rejection names both the size and the limit.
#include "common/limits.h"

#include <catch2/catch.hpp>
#include <string>

namespace ring {

TEST_CASE("the protocol limits have their documented values", "[limits]") {
  // proto/ring.proto documents these; ringd and libring must agree on them.
  CHECK(kFrameHeaderBytes == 4);
  CHECK(kMaxFrameBytes == 8u * 1024 * 1024);
  CHECK(kMaxKeyBytes == 4096);
  CHECK(kMaxValueBytes == 1024u * 1024);
  CHECK(kMaxBatchEntries == 10000);
  // A maximal value with a maximal key must fit in one frame with room for the envelope.
  CHECK(kMaxKeyBytes + kMaxValueBytes < kMaxFrameBytes);
}

TEST_CASE("an empty key is rejected", "[limits]") {
  Status s = CheckKey("");
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "key is empty");
}

TEST_CASE("keys of 1 byte and of exactly the limit are accepted", "[limits]") {
  CHECK(CheckKey("k").ok());
  CHECK(CheckKey(std::string(kMaxKeyBytes, 'k')).ok());
  CHECK(CheckKey(std::string(kMaxKeyBytes, '\0')).ok());  // keys are bytes
}

TEST_CASE("a key one byte over the limit is rejected naming the limit", "[limits]") {
  Status s = CheckKey(std::string(kMaxKeyBytes + 1, 'k'));
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "key of 4097 bytes exceeds the 4096-byte limit");
}

TEST_CASE("empty values and values of exactly the limit are accepted", "[limits]") {
  CHECK(CheckValue("").ok());
  CHECK(CheckValue(std::string(kMaxValueBytes, 'v')).ok());
}

TEST_CASE("a value one byte over the limit is rejected naming the limit", "[limits]") {
  Status s = CheckValue(std::string(kMaxValueBytes + 1, 'v'));
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "value of 1048577 bytes exceeds the 1048576-byte limit");
}

TEST_CASE("an empty batch is rejected", "[limits]") {
  Status s = CheckBatchSize(0);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "batch is empty");
}

TEST_CASE("batches of 1 and of exactly the limit are accepted", "[limits]") {
  CHECK(CheckBatchSize(1).ok());
  CHECK(CheckBatchSize(kMaxBatchEntries).ok());
}

TEST_CASE("a batch one entry over the limit is rejected naming the limit", "[limits]") {
  Status s = CheckBatchSize(kMaxBatchEntries + 1);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "batch of 10001 entries exceeds the 10000-entry limit");
  CHECK(CheckBatchSize(static_cast<size_t>(-1)).IsInvalidArgument());
}

}  // namespace ring
