// RocksLogStorage must behave exactly like MemStorage (the reference LogStorage), survive
// reopening, and publish nothing until its batch is written.
#include "replication/rocks_log_storage.h"

#include <catch2/catch.hpp>
#include <random>

#include "harness.h"
#include "replication/mem_storage.h"

namespace ring::replication {
namespace {

using EngineDir = test::ScratchEngine;

std::unique_ptr<RocksLogStorage> OpenLog(storage::Engine* engine, uint64_t group) {
  auto s = RocksLogStorage::Open(engine, group);
  REQUIRE(s.ok());
  return std::move(s).value();
}

// Writes the staged batch and publishes it.
void Commit(storage::Engine* engine, RocksLogStorage* log, storage::WriteBatch* batch) {
  REQUIRE(engine->Write(*batch, true).ok());
  log->OnWritten();
  batch->Clear();
}

void RequireSame(const MemStorage& want, const RocksLogStorage& got) {
  REQUIRE(got.FirstIndex() == want.FirstIndex());
  REQUIRE(got.LastIndex() == want.LastIndex());
  auto ws = want.InitialState();
  auto gs = got.InitialState();
  REQUIRE(gs.ok());
  CHECK(gs->hard_state == ws->hard_state);
  CHECK(gs->conf == ws->conf);
  for (uint64_t i = want.FirstIndex() - 1; i <= want.LastIndex(); ++i) {
    auto wt = want.Term(i);
    auto gt = got.Term(i);
    REQUIRE(gt.ok());
    REQUIRE(*gt == *wt);
  }
  if (want.FirstIndex() > 1) CHECK(IsCompacted(got.Term(want.FirstIndex() - 2).status()));
  CHECK(IsUnavailable(got.Term(want.LastIndex() + 1).status()));
  if (want.LastIndex() >= want.FirstIndex()) {
    auto we = want.Entries(want.FirstIndex(), want.LastIndex() + 1, UINT64_MAX);
    auto ge = got.Entries(want.FirstIndex(), want.LastIndex() + 1, UINT64_MAX);
    REQUIRE(ge.ok());
    REQUIRE(*ge == *we);
    // A byte cap still returns at least one entry.
    auto one = got.Entries(want.FirstIndex(), want.LastIndex() + 1, 1);
    REQUIRE(one.ok());
    CHECK(one->size() == 1);
  }
}

TEST_CASE("the RocksDB log matches the in-memory reference under random operations and reopens", "[replication]") {
  EngineDir env;
  const uint64_t group = 7;
  ConfState conf{{1, 2, 3}, {}};
  MemStorage mem(conf);
  auto log = OpenLog(env.get(), group);
  storage::WriteBatch batch;
  log->Bootstrap(conf, 0, &batch);
  Commit(env.get(), log.get(), &batch);
  // A neighbouring group must never be disturbed.
  auto other = OpenLog(env.get(), group + 1);
  REQUIRE(other->Append({Entry{1, 1, EntryType::kNormal, "neighbour"}}, &batch).ok());
  Commit(env.get(), other.get(), &batch);

  std::mt19937_64 rng(42);
  uint64_t term = 1;
  for (int step = 0; step < 400; ++step) {
    int op = static_cast<int>(rng() % 10);
    if (op < 5) {
      // Append, sometimes overwriting a suffix with a newer term.
      uint64_t last = mem.LastIndex();
      uint64_t from = last + 1;
      if (last >= mem.FirstIndex() && rng() % 3 == 0) {
        from = mem.FirstIndex() + rng() % (last - mem.FirstIndex() + 1);
        ++term;
      }
      std::vector<Entry> es;
      for (uint64_t i = 0, n = 1 + rng() % 5; i < n; ++i) {
        es.push_back(Entry{term, from + i, rng() % 7 == 0 ? EntryType::kConfChange : EntryType::kNormal,
                           std::string(rng() % 40, static_cast<char>('a' + rng() % 26))});
      }
      REQUIRE(mem.Append(es).ok());
      REQUIRE(log->Append(es, &batch).ok());
    } else if (op < 7) {
      HardState hs{term, rng() % 4, mem.LastIndex() / 2};
      mem.SetHardState(hs);
      log->SetHardState(hs, &batch);
    } else if (op < 8 && mem.LastIndex() >= mem.FirstIndex()) {
      uint64_t idx = mem.FirstIndex() + rng() % (mem.LastIndex() - mem.FirstIndex() + 1);
      REQUIRE(mem.CreateSnapshot(idx, conf, "state@" + std::to_string(idx)).ok());
      REQUIRE(mem.Compact(idx).ok());
      REQUIRE(log->Compact(mem.snapshot(), &batch).ok());
    } else if (op < 9) {
      // A snapshot from the leader, past everything we have.
      Snapshot snap;
      snap.meta.index = mem.LastIndex() + 1 + rng() % 5;
      snap.meta.term = ++term;
      snap.meta.conf = conf;
      snap.data = "leader-state";
      REQUIRE(mem.ApplySnapshot(snap).ok());
      log->ApplySnapshot(snap, &batch);
    } else {
      // Crash and reopen: only written batches survive.
      Commit(env.get(), log.get(), &batch);
      log.reset();
      other.reset();
      env.Reopen();
      log = OpenLog(env.get(), group);
      other = OpenLog(env.get(), group + 1);
    }
    if (rng() % 2 == 0) Commit(env.get(), log.get(), &batch);
    if (batch.count() == 0) RequireSame(mem, *log);
  }
  Commit(env.get(), log.get(), &batch);
  RequireSame(mem, *log);
  CHECK(log->Snapshot()->data == mem.snapshot().data);
  auto n = other->Entries(1, 2, UINT64_MAX);
  REQUIRE(n.ok());
  CHECK(n->at(0).data == "neighbour");
}

TEST_CASE("a log larger than the entry cache reads the same from memory and from disk", "[replication]") {
  EngineDir env;
  auto log = OpenLog(env.get(), 3);
  storage::WriteBatch batch;
  const uint64_t n = 3 * kEntryCacheBytes / 8192;  // three cache budgets of 8 KiB entries
  for (uint64_t i = 1; i <= n; ++i) {
    REQUIRE(log->Append({Entry{1 + i / 100, i, EntryType::kNormal, std::string(8192, static_cast<char>('a' + i % 26))}},
                        &batch).ok());
    if (i % 7 == 0) Commit(env.get(), log.get(), &batch);
  }
  Commit(env.get(), log.get(), &batch);
  auto check_all = [&](RocksLogStorage* l) {
    auto all = l->Entries(1, n + 1, UINT64_MAX);
    REQUIRE(all.ok());
    REQUIRE(all->size() == n);
    for (uint64_t i = 1; i <= n; ++i) {
      CHECK((*all)[i - 1].index == i);
      CHECK((*all)[i - 1].data[0] == static_cast<char>('a' + i % 26));
      CHECK(*l->Term(i) == 1 + i / 100);
    }
    auto tail = l->Entries(n - 10, n + 1, 3 * 8192);  // capped by bytes
    REQUIRE(tail.ok());
    CHECK(tail->size() == 2);
  };
  check_all(log.get());
  log.reset();
  env.Reopen();
  log = OpenLog(env.get(), 3);
  check_all(log.get());  // nothing cached after a restart
}

TEST_CASE("staged log writes are invisible until their batch is written", "[replication]") {
  EngineDir env;
  auto log = OpenLog(env.get(), 1);
  storage::WriteBatch batch;
  REQUIRE(log->Append({Entry{1, 1, EntryType::kNormal, "x"}}, &batch).ok());
  log->SetHardState(HardState{1, 2, 0}, &batch);
  CHECK(log->LastIndex() == 0);
  CHECK(log->InitialState()->hard_state.term == 0);
  log->OnWriteFailed();  // the write failed: nothing is published and nothing was written
  batch.Clear();
  CHECK(log->LastIndex() == 0);
  REQUIRE(log->Append({Entry{1, 1, EntryType::kNormal, "y"}}, &batch).ok());
  Commit(env.get(), log.get(), &batch);
  CHECK(log->LastIndex() == 1);
  CHECK(log->Entries(1, 2, 100)->at(0).data == "y");
}

TEST_CASE("a gap in appended entries is refused", "[replication]") {
  EngineDir env;
  auto log = OpenLog(env.get(), 1);
  storage::WriteBatch batch;
  Status s = log->Append({Entry{1, 5, EntryType::kNormal, "x"}}, &batch);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("gap") != std::string::npos);
}

TEST_CASE("a corrupt log entry is reported, not decoded", "[replication]") {
  CHECK(DecodeEntry(3, "").status().code() == StatusCode::kCorruption);
  CHECK(DecodeEntry(3, std::string("\x01\x00", 2)).status().code() == StatusCode::kCorruption);
  CHECK(DecodeEntry(3, std::string(9, '\x09')).status().code() == StatusCode::kCorruption);
  Entry e{4, 3, EntryType::kConfChange, "data"};
  auto d = DecodeEntry(3, EncodeEntry(e));
  REQUIRE(d.ok());
  CHECK(*d == e);
}

TEST_CASE("a batch entry's commands decode back as they were appended; malformed batches are Corruption",
          "[replication]") {
  std::string batch;
  const std::vector<std::string> commands = {"a", std::string(300, 'b'), std::string("\0\1", 2)};
  for (const auto& c : commands) AppendToBatch(&batch, c);
  auto decoded = DecodeBatch(batch);
  REQUIRE(decoded.ok());
  REQUIRE(decoded->size() == commands.size());
  for (size_t i = 0; i < commands.size(); ++i) CHECK((*decoded)[i] == commands[i]);
  // It survives the log's own encoding as a kBatch entry.
  auto e = DecodeEntry(9, EncodeEntry(Entry{2, 9, EntryType::kBatch, batch}));
  REQUIRE(e.ok());
  CHECK(e->type == EntryType::kBatch);
  CHECK(e->data == batch);
  // A length cut short, and a length that runs past the end.
  CHECK(DecodeBatch(batch.substr(0, 2)).status().code() == StatusCode::kCorruption);
  CHECK(DecodeBatch(batch.substr(0, batch.size() - 1)).status().code() == StatusCode::kCorruption);
  CHECK(DecodeBatch(std::string("\xff\xff\xff\xff", 4)).status().code() == StatusCode::kCorruption);
  CHECK(DecodeBatch("").value().empty());
}

}  // namespace
}  // namespace ring::replication
