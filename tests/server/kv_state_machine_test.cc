#include "server/kv_state_machine.h"

#include <catch2/catch.hpp>

#include "common/keyspace.h"
#include "harness.h"

namespace ring::server {
namespace {

struct Fixture {
  std::vector<KvResult> Run(const std::vector<KvOp>& ops) {
    std::vector<const KvOp*> ptrs;
    for (const auto& o : ops) ptrs.push_back(&o);
    storage::WriteBatch batch;
    std::vector<KvResult> results;
    KvStateMachine sm(engine.get());
    sm.Apply(ptrs, &batch, &results);
    REQUIRE(engine->Write(batch, false).ok());
    return results;
  }
  std::optional<std::string> Value(const std::string& key) {
    std::string v;
    Status s = engine->Get(storage::Cf::kData, DataKey(key), &v);
    if (s.IsNotFound()) return std::nullopt;
    REQUIRE(s.ok());
    return v;
  }
  test::ScratchEngine engine;
};

KvOp Put(std::string k, std::string v) {
  KvOp o;
  o.kind = KvOp::Kind::kPut;
  o.key = std::move(k);
  o.value = std::move(v);
  return o;
}
KvOp Del(std::string k) {
  KvOp o;
  o.kind = KvOp::Kind::kDelete;
  o.key = std::move(k);
  return o;
}
KvOp Cas(std::string k, std::optional<std::string> expected, std::string v) {
  KvOp o;
  o.kind = KvOp::Kind::kCas;
  o.key = std::move(k);
  o.expect_absent = !expected.has_value();
  o.expected = expected.value_or("");
  o.value = std::move(v);
  return o;
}

TEST_CASE("mutations in one batch see each other in order", "[state_machine]") {
  Fixture f;
  auto r = f.Run({Put("a", "1"), Cas("a", "1", "2"), Cas("a", "1", "3"), Del("a"), Del("a"), Cas("a", std::nullopt, "4")});
  CHECK(r[1].swapped);
  CHECK_FALSE(r[2].swapped);
  CHECK(r[2].current == std::optional<std::string>("2"));
  CHECK(r[3].existed);
  CHECK_FALSE(r[4].existed);
  CHECK(r[5].swapped);
  CHECK(f.Value("a") == std::optional<std::string>("4"));
}

TEST_CASE("compare-and-set compares against what is stored", "[state_machine]") {
  Fixture f;
  f.Run({Put("k", "old")});
  auto r = f.Run({Cas("k", std::nullopt, "x"), Cas("k", "wrong", "x"), Cas("missing", "x", "y")});
  CHECK_FALSE(r[0].swapped);
  CHECK(r[0].current == std::optional<std::string>("old"));
  CHECK_FALSE(r[1].swapped);
  CHECK_FALSE(r[2].swapped);
  CHECK_FALSE(r[2].current.has_value());
  r = f.Run({Cas("k", "old", "new")});
  CHECK(r[0].swapped);
  CHECK(f.Value("k") == std::optional<std::string>("new"));
  CHECK_FALSE(f.Value("missing").has_value());
}

TEST_CASE("a batch put writes every pair and an empty value is a value", "[state_machine]") {
  Fixture f;
  KvOp bp;
  bp.kind = KvOp::Kind::kBatchPut;
  bp.pairs = {{"x", "1"}, {"y", ""}, {"x", "2"}};
  f.Run({bp});
  CHECK(f.Value("x") == std::optional<std::string>("2"));
  CHECK(f.Value("y") == std::optional<std::string>(""));
}

}  // namespace
}  // namespace ring::server
