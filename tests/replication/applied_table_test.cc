// AppliedTable: staged like the log, one key per chunk of groups, survives reopening, and
// still reads the per-group keys older versions wrote.
#include "replication/applied_table.h"

#include <catch2/catch.hpp>

#include "common/keyspace.h"
#include "harness.h"

namespace ring::replication {
namespace {

uint64_t MustGet(AppliedTable& t, uint64_t group) {
  auto v = t.Get(group);
  REQUIRE(v.ok());
  return *v;
}

void MustWrite(test::ScratchEngine& e, AppliedTable& t, const AppliedTable::Changes& c) {
  storage::WriteBatch b;
  REQUIRE(t.Stage(c, &b).ok());
  REQUIRE(e->Write(b, true).ok());
  t.Commit(c);
}

TEST_CASE("applied indexes are staged per chunk, published on commit and survive a reopen", "[replication]") {
  test::ScratchEngine e;
  {
    AppliedTable t(e.get());
    CHECK(MustGet(t, 5) == 0);
    // Groups 3 and 5 share a chunk; 70 is in the next one: two keys, not three.
    storage::WriteBatch b;
    AppliedTable::Changes c{{3, 30}, {5, 50}, {70, 700}};
    REQUIRE(t.Stage(c, &b).ok());
    CHECK(b.count() == 2);
    CHECK(MustGet(t, 5) == 0);  // staged, not committed
    REQUIRE(e->Write(b, true).ok());
    t.Commit(c);
    CHECK(MustGet(t, 3) == 30);
    CHECK(MustGet(t, 5) == 50);
    CHECK(MustGet(t, 70) == 700);

    // A batch that failed to write leaves the table as it was; the next staging of the
    // chunk starts from what is stored.
    storage::WriteBatch lost;
    REQUIRE(t.Stage({{3, 31}}, &lost).ok());
    MustWrite(e, t, {{5, 51}});
    CHECK(MustGet(t, 3) == 30);
    CHECK(MustGet(t, 5) == 51);

    MustWrite(e, t, {{70, std::nullopt}});  // the group left
    CHECK(MustGet(t, 70) == 0);
  }
  e.Reopen();
  AppliedTable t(e.get());
  CHECK(MustGet(t, 3) == 30);
  CHECK(MustGet(t, 5) == 51);
  CHECK(MustGet(t, 70) == 0);
  std::string v;
  CHECK(e->Get(storage::Cf::kMeta, AppliedTable::ChunkKey(70), &v).IsNotFound());  // empty chunk: no key
}

TEST_CASE("a group's applied index from the older per-group key is read until the table lists it", "[replication]") {
  test::ScratchEngine e;
  storage::WriteBatch b;
  b.Put(storage::Cf::kMeta, AppliedTable::LegacyKey(9), HashPrefix(900));
  REQUIRE(e->Write(b, true).ok());
  AppliedTable t(e.get());
  CHECK(MustGet(t, 9) == 900);
  MustWrite(e, t, {{9, 901}});
  CHECK(MustGet(t, 9) == 901);
  AppliedTable fresh(e.get());
  CHECK(MustGet(fresh, 9) == 901);
}

TEST_CASE("a malformed applied-index chunk is reported as corruption, not read", "[replication]") {
  test::ScratchEngine e;
  storage::WriteBatch b;
  b.Put(storage::Cf::kMeta, AppliedTable::ChunkKey(1), "short");
  REQUIRE(e->Write(b, true).ok());
  AppliedTable t(e.get());
  auto v = t.Get(1);
  REQUIRE_FALSE(v.ok());
  CHECK(v.status().code() == StatusCode::kCorruption);
  storage::WriteBatch c;
  CHECK(t.Stage({{1, 5}}, &c).code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace ring::replication
