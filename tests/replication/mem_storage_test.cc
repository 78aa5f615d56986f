// Tests for replication/mem_storage.{h,cc}: the in-memory LogStorage and its written
// error contract (replication/log_storage.h).
#include <catch2/catch.hpp>

#include "replication/mem_storage.h"

namespace ring::replication {
namespace {

Entry E(uint64_t index, uint64_t term) {
  Entry e;
  e.index = index;
  e.term = term;
  e.data = "d" + std::to_string(index);
  return e;
}

TEST_CASE("an empty storage has the dummy entry 0 of term 0", "[replication]") {
  MemStorage s(ConfState{{1, 2, 3}, {}});
  CHECK(s.FirstIndex() == 1);
  CHECK(s.LastIndex() == 0);
  CHECK(*s.Term(0) == 0);
  CHECK(IsUnavailable(s.Term(1).status()));
  auto st = s.InitialState();
  REQUIRE(st.ok());
  CHECK(st->conf.voters == std::vector<NodeId>{1, 2, 3});
  CHECK(st->conf_index == 0);
}

TEST_CASE("append replaces a conflicting suffix and refuses gaps", "[replication]") {
  MemStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  REQUIRE(s.Append({E(2, 2)}).ok());
  CHECK(s.LastIndex() == 2);
  CHECK(*s.Term(2) == 2);
  CHECK(s.Append({E(5, 2)}).code() == StatusCode::kInvalidArgument);
  CHECK(s.Append({E(3, 2), E(5, 2)}).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("entries honour the byte cap but always return one entry", "[replication]") {
  MemStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1), E(3, 1)}).ok());
  auto all = s.Entries(1, 4, UINT64_MAX);
  REQUIRE(all.ok());
  CHECK(all->size() == 3);
  auto one = s.Entries(1, 4, 1);
  REQUIRE(one.ok());
  CHECK(one->size() == 1);
  auto two = s.Entries(1, 4, 2 * E(1, 1).ByteSize());
  REQUIRE(two.ok());
  CHECK(two->size() == 2);
  CHECK(IsUnavailable(s.Entries(2, 5, 100).status()));
}

TEST_CASE("compaction keeps the term of the compaction point and reports Compacted below it",
          "[replication]") {
  MemStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2)}).ok());
  CHECK(s.Compact(3).code() == StatusCode::kInvalidArgument);  // no snapshot covers it yet
  REQUIRE(s.CreateSnapshot(3, ConfState{{1}, {}}, "img").ok());
  REQUIRE(s.Compact(2).ok());
  CHECK(s.FirstIndex() == 3);
  CHECK(*s.Term(2) == 1);
  CHECK(IsCompacted(s.Term(1).status()));
  CHECK(IsCompacted(s.Entries(2, 4, 100).status()));
  auto st = s.InitialState();
  REQUIRE(st.ok());
  CHECK(st->conf_index == 3);  // the snapshot is newer than the compaction point
  REQUIRE(s.Compact(3).ok());
  CHECK(s.FirstIndex() == 4);
  // Appending at a compacted index skips the covered part.
  REQUIRE(s.Append({E(3, 2), E(4, 2), E(5, 3)}).ok());
  CHECK(s.LastIndex() == 5);
}

TEST_CASE("a received snapshot replaces the whole log, and must be newer", "[replication]") {
  MemStorage s;
  REQUIRE(s.Append({E(1, 1), E(2, 1)}).ok());
  Snapshot snap;
  snap.meta = SnapshotMeta{10, 3, ConfState{{1, 2}, {}}};
  snap.data = "x";
  REQUIRE(s.ApplySnapshot(snap).ok());
  CHECK(s.FirstIndex() == 11);
  CHECK(s.LastIndex() == 10);
  CHECK(*s.Term(10) == 3);
  auto got = s.Snapshot();
  REQUIRE(got.ok());
  CHECK(got->data == "x");
  CHECK(s.ApplySnapshot(snap).code() == StatusCode::kInvalidArgument);
  CHECK(s.CreateSnapshot(5, ConfState{}, "").code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ring::replication
