// Tests for replication/types.{h,cc}: configuration entries and their encoding.
#include <catch2/catch.hpp>

#include "replication/types.h"

namespace ring::replication {
namespace {

TEST_CASE("a configuration entry round-trips and rejects garbage", "[replication]") {
  ConfChangeEntry cc{ConfChange{ConfChangeType::kAddLearner, 7}, ConfState{{1, 2, 3}, {7}}};
  const std::string enc = EncodeConfChangeEntry(cc);
  auto dec = DecodeConfChangeEntry(enc);
  REQUIRE(dec.ok());
  CHECK(*dec == cc);
  CHECK(DecodeConfChangeEntry("").status().code() == StatusCode::kCorruption);
  CHECK(DecodeConfChangeEntry(enc.substr(0, enc.size() - 1)).status().code() ==
        StatusCode::kCorruption);
  std::string bad = enc;
  bad[1] = 9;  // unknown change type
  CHECK(DecodeConfChangeEntry(bad).status().code() == StatusCode::kCorruption);
  CHECK(DecodeConfChangeEntry(enc + "x").status().code() == StatusCode::kCorruption);  // trailing bytes
  // The bytes are in logs already written: version 1, the type, then le64 fields.
  auto le = [](uint64_t v) {
    std::string b;
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<char>(v >> (8 * i)));
    return b;
  };
  CHECK(enc == std::string("\x01", 1) + static_cast<char>(ConfChangeType::kAddLearner) + le(7) + le(3) + le(1) +
                   le(2) + le(3) + le(1) + le(7));
}

TEST_CASE("configuration changes apply one server at a time", "[replication]") {
  ConfState c{{1, 2, 3}, {4}};
  auto promoted = ApplyConfChange(c, ConfChange{ConfChangeType::kAddVoter, 4});
  REQUIRE(promoted.ok());
  CHECK(promoted->voters == std::vector<NodeId>{1, 2, 3, 4});
  CHECK(promoted->learners.empty());
  auto removed = ApplyConfChange(c, ConfChange{ConfChangeType::kRemoveNode, 2});
  REQUIRE(removed.ok());
  CHECK(removed->voters == std::vector<NodeId>{1, 3});
  CHECK(ApplyConfChange(c, ConfChange{ConfChangeType::kAddLearner, 1}).status().code() ==
        StatusCode::kInvalidArgument);  // no demotion
  CHECK(ApplyConfChange(ConfState{{1}, {}}, ConfChange{ConfChangeType::kRemoveNode, 1})
            .status()
            .code() == StatusCode::kInvalidArgument);  // the last voter
  CHECK(ApplyConfChange(c, ConfChange{ConfChangeType::kAddVoter, 0}).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("messages print on one line for traces", "[replication]") {
  Message m;
  m.type = MessageType::kAppend;
  m.from = 1;
  m.to = 2;
  m.term = 3;
  m.index = 4;
  m.log_term = 2;
  m.commit = 4;
  Entry e;
  e.index = 5;
  e.term = 3;
  e.data = "x";
  m.entries = {e, Entry{3, 6, EntryType::kNormal, ""}};
  CHECK(MessageToString(m) == "1->2 Append t3 prev=4/2 commit=4 [5/3 x, 6/3 noop]");
}

}  // namespace
}  // namespace ring::replication
