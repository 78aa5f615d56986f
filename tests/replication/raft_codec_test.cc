// Tests for replication/raft_codec.{h,cc}: every message type survives the wire with all
// fields set, and hostile input is refused with an error that names what is wrong.
#include "replication/raft_codec.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proto/ring.pb.h"

namespace ring::replication {
namespace {

constexpr MessageType kAllTypes[] = {
    MessageType::kPreVote,   MessageType::kPreVoteResp,   MessageType::kVote,     MessageType::kVoteResp,
    MessageType::kAppend,    MessageType::kAppendResp,    MessageType::kHeartbeat, MessageType::kHeartbeatResp,
    MessageType::kSnapshot,  MessageType::kTimeoutNow,
};

// A message of `type` with every field set to a distinct non-default value, entries of
// both types (one with binary data, one empty), and a snapshot with a configuration.
GroupMessage FullMessage(MessageType type, uint64_t seed) {
  GroupMessage gm;
  gm.group = 1000 + seed;
  Message& m = gm.msg;
  m.type = type;
  m.from = 2;
  m.to = 3;
  m.term = 70 + seed;
  m.log_term = 60 + seed;
  m.index = 500 + seed;
  m.entries.push_back(Entry{m.term, m.index + 1, EntryType::kNormal, std::string("v\0\xff\x80", 4)});
  m.entries.push_back(Entry{m.term, m.index + 2, EntryType::kNormal, ""});
  ConfChangeEntry cc{ConfChange{ConfChangeType::kAddLearner, 9}, ConfState{{1, 2, 3}, {9}}};
  m.entries.push_back(Entry{m.term, m.index + 3, EntryType::kConfChange, EncodeConfChangeEntry(cc)});
  std::string batch;
  AppendToBatch(&batch, "first");
  AppendToBatch(&batch, "second");
  m.entries.push_back(Entry{m.term, m.index + 4, EntryType::kBatch, batch});
  m.commit = 499 + seed;
  m.reject = true;
  m.reject_hint = 450 + seed;
  auto snap = std::make_shared<Snapshot>();
  snap->meta.index = 400 + seed;
  snap->meta.term = 40 + seed;
  snap->meta.conf = ConfState{{1, 2, 3}, {7, 8}};
  snap->data = std::string(10000, '\x01') + std::string("\0sst", 4);
  m.snapshot = snap;
  m.tick = 123456789 + seed;
  m.read_seq = 42 + seed;
  m.transfer = true;
  if (seed % 2 == 0) m.compact_floor = seed % 4;  // unset, 0 (a floor, not "unset") and 2
  return gm;
}

// Field-by-field equality; the snapshot is expected only on kSnapshot messages.
void CheckSame(const GroupMessage& want, const GroupMessage& got) {
  INFO(MessageToString(want.msg));
  CHECK(got.group == want.group);
  const Message& a = want.msg;
  const Message& b = got.msg;
  CHECK(b.type == a.type);
  CHECK(b.from == a.from);
  CHECK(b.to == a.to);
  CHECK(b.term == a.term);
  CHECK(b.log_term == a.log_term);
  CHECK(b.index == a.index);
  CHECK(b.entries == a.entries);
  CHECK(b.commit == a.commit);
  CHECK(b.reject == a.reject);
  CHECK(b.reject_hint == a.reject_hint);
  CHECK(b.tick == a.tick);
  CHECK(b.read_seq == a.read_seq);
  CHECK(b.transfer == a.transfer);
  CHECK(b.compact_floor == a.compact_floor);
  if (a.type == MessageType::kSnapshot && a.snapshot) {
    REQUIRE(b.snapshot);
    CHECK(b.snapshot->meta == a.snapshot->meta);
    CHECK(b.snapshot->data == a.snapshot->data);
  } else {
    CHECK_FALSE(b.snapshot);
  }
}

TEST_CASE("every message type round-trips through the wire with all fields set", "[raft_codec]") {
  uint64_t seed = 0;
  for (MessageType type : kAllTypes) {
    GroupMessage want = FullMessage(type, ++seed);
    pb::RaftMessage wire;
    EncodeGroupMessage(want, &wire);  // a copy: `want` keeps its payloads
    // Through bytes, as on the network.
    pb::RaftMessage parsed;
    REQUIRE(parsed.ParseFromString(wire.SerializeAsString()));
    auto got = DecodeGroupMessage(std::move(parsed));
    REQUIRE(got.ok());
    CheckSame(want, *got);
  }
}

TEST_CASE("a batch round-trips in order with its sender", "[raft_codec]") {
  std::vector<GroupMessage> msgs;
  uint64_t seed = 0;
  for (MessageType type : kAllTypes) msgs.push_back(FullMessage(type, ++seed));
  pb::RaftBatch wire;
  EncodeRaftBatch(7, msgs, &wire);
  CHECK(wire.from_node() == 7);
  pb::RaftBatch parsed;
  REQUIRE(parsed.ParseFromString(wire.SerializeAsString()));
  auto got = DecodeRaftBatch(std::move(parsed));
  REQUIRE(got.ok());
  REQUIRE(got->size() == msgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) CheckSame(msgs[i], (*got)[i]);
}

TEST_CASE("encoding by move hands over the payloads and still decodes identically", "[raft_codec]") {
  GroupMessage want = FullMessage(MessageType::kAppend, 5);
  GroupMessage moved = want;
  pb::RaftMessage wire;
  EncodeGroupMessage(std::move(moved), &wire);
  auto got = DecodeGroupMessage(wire);  // a copy of `wire`
  REQUIRE(got.ok());
  CheckSame(want, *got);
  CHECK(wire.entries(0).data() == want.msg.entries[0].data);
}

TEST_CASE("an empty message and an empty batch decode to defaults", "[raft_codec]") {
  auto m = DecodeGroupMessage(pb::RaftMessage());
  REQUIRE(m.ok());
  CHECK(m->group == 0);
  CHECK(m->msg.type == MessageType::kPreVote);  // wire 0
  CHECK(m->msg.entries.empty());
  CHECK_FALSE(m->msg.snapshot);
  auto b = DecodeRaftBatch(pb::RaftBatch());
  REQUIRE(b.ok());
  CHECK(b->empty());
}

TEST_CASE("an unknown message type is Corruption naming the number", "[raft_codec]") {
  for (int bad : {10, 99, -1}) {
    pb::RaftMessage wire;
    wire.set_type(static_cast<pb::RaftMessageType>(bad));
    auto m = DecodeGroupMessage(wire);
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == StatusCode::kCorruption);
    CHECK_THAT(m.status().message(), Catch::Contains("unknown type " + std::to_string(bad)));
  }
}

TEST_CASE("an unknown entry type is Corruption naming the number and the entry", "[raft_codec]") {
  pb::RaftMessage wire;
  wire.set_type(pb::RAFT_APPEND);
  wire.add_entries()->set_index(11);
  pb::RaftEntry* bad = wire.add_entries();
  bad->set_index(12);
  bad->set_type(static_cast<pb::RaftEntryType>(7));
  auto m = DecodeGroupMessage(wire);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == StatusCode::kCorruption);
  CHECK_THAT(m.status().message(), Catch::Contains("unknown entry type 7"));
  CHECK_THAT(m.status().message(), Catch::Contains("entry 1 (index 12)"));
}

TEST_CASE("unknown type numbers on the wire bytes themselves are refused", "[raft_codec]") {
  // Hand-encoded: field 2 (type), varint 200. Protobuf keeps unknown numbers of an open
  // enum as they are, so the codec is the one that must refuse them.
  const std::string bytes("\x10\xc8\x01", 3);
  pb::RaftMessage wire;
  REQUIRE(wire.ParseFromString(bytes));
  auto m = DecodeGroupMessage(wire);
  REQUIRE_FALSE(m.ok());
  CHECK_THAT(m.status().message(), Catch::Contains("200"));
}

TEST_CASE("one bad message rejects the whole batch, naming its position and sender", "[raft_codec]") {
  std::vector<GroupMessage> msgs = {FullMessage(MessageType::kHeartbeat, 1),
                                    FullMessage(MessageType::kAppend, 2)};
  pb::RaftBatch wire;
  EncodeRaftBatch(3, msgs, &wire);
  wire.add_messages()->set_type(static_cast<pb::RaftMessageType>(77));
  auto b = DecodeRaftBatch(wire);
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().code() == StatusCode::kCorruption);
  CHECK_THAT(b.status().message(), Catch::Contains("node 3"));
  CHECK_THAT(b.status().message(), Catch::Contains("message 2"));
  CHECK_THAT(b.status().message(), Catch::Contains("77"));
}

TEST_CASE("a snapshot on a non-snapshot message is ignored", "[raft_codec]") {
  pb::RaftMessage wire;
  wire.set_type(pb::RAFT_HEARTBEAT);
  wire.mutable_snapshot()->set_index(5);
  wire.mutable_snapshot()->mutable_conf()->add_voters(2);
  wire.mutable_snapshot()->mutable_conf()->add_voters(1);  // even a malformed one
  auto m = DecodeGroupMessage(wire);
  REQUIRE(m.ok());
  CHECK_FALSE(m->msg.snapshot);
}

TEST_CASE("a snapshot message without a snapshot decodes without one", "[raft_codec]") {
  // The core ignores such a message; the codec need not invent an empty snapshot.
  pb::RaftMessage wire;
  wire.set_type(pb::RAFT_SNAPSHOT);
  auto m = DecodeGroupMessage(wire);
  REQUIRE(m.ok());
  CHECK_FALSE(m->msg.snapshot);
}

TEST_CASE("a snapshot whose configuration breaks ConfState's promises is Corruption", "[raft_codec]") {
  auto with_conf = [](std::vector<uint64_t> voters, std::vector<uint64_t> learners) {
    pb::RaftMessage wire;
    wire.set_type(pb::RAFT_SNAPSHOT);
    pb::RaftSnapshot* s = wire.mutable_snapshot();
    s->set_index(9);
    for (uint64_t v : voters) s->mutable_conf()->add_voters(v);
    for (uint64_t l : learners) s->mutable_conf()->add_learners(l);
    return DecodeGroupMessage(wire);
  };
  CHECK(with_conf({1, 2, 3}, {4}).ok());
  CHECK(with_conf({}, {}).ok());
  auto unsorted = with_conf({2, 1}, {});
  CHECK(unsorted.status().code() == StatusCode::kCorruption);
  CHECK_THAT(unsorted.status().message(), Catch::Contains("index 9"));
  CHECK(with_conf({1, 1, 2}, {}).status().code() == StatusCode::kCorruption);
  CHECK(with_conf({1, 2}, {5, 3}).status().code() == StatusCode::kCorruption);
  auto both = with_conf({1, 2}, {2});
  CHECK(both.status().code() == StatusCode::kCorruption);
  CHECK_THAT(both.status().message(), Catch::Contains("node 2"));
}

}  // namespace
}  // namespace ring::replication
