#include "replication/raft_codec.h"

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "proto/ring.pb.h"

namespace ring::replication {

namespace {

// The wire enums are declared with the same numbers as the C++ ones (ring.proto says so);
// these make a renumbering on either side a compile error rather than silent corruption.
static_assert(static_cast<int>(pb::RAFT_ENTRY_NORMAL) == static_cast<int>(EntryType::kNormal));
static_assert(static_cast<int>(pb::RAFT_ENTRY_CONF_CHANGE) == static_cast<int>(EntryType::kConfChange));
static_assert(static_cast<int>(pb::RAFT_ENTRY_BATCH) == static_cast<int>(EntryType::kBatch));
static_assert(static_cast<int>(pb::RAFT_PRE_VOTE) == static_cast<int>(MessageType::kPreVote));
static_assert(static_cast<int>(pb::RAFT_PRE_VOTE_RESP) == static_cast<int>(MessageType::kPreVoteResp));
static_assert(static_cast<int>(pb::RAFT_VOTE) == static_cast<int>(MessageType::kVote));
static_assert(static_cast<int>(pb::RAFT_VOTE_RESP) == static_cast<int>(MessageType::kVoteResp));
static_assert(static_cast<int>(pb::RAFT_APPEND) == static_cast<int>(MessageType::kAppend));
static_assert(static_cast<int>(pb::RAFT_APPEND_RESP) == static_cast<int>(MessageType::kAppendResp));
static_assert(static_cast<int>(pb::RAFT_HEARTBEAT) == static_cast<int>(MessageType::kHeartbeat));
static_assert(static_cast<int>(pb::RAFT_HEARTBEAT_RESP) == static_cast<int>(MessageType::kHeartbeatResp));
static_assert(static_cast<int>(pb::RAFT_SNAPSHOT) == static_cast<int>(MessageType::kSnapshot));
static_assert(static_cast<int>(pb::RAFT_TIMEOUT_NOW) == static_cast<int>(MessageType::kTimeoutNow));

constexpr int kMaxEntryType = static_cast<int>(EntryType::kBatch);
constexpr int kMaxMessageType = static_cast<int>(MessageType::kTimeoutNow);

void EncodeIds(const std::vector<NodeId>& ids, google::protobuf::RepeatedField<uint64_t>* out) {
  out->Reserve(static_cast<int>(ids.size()));
  for (NodeId id : ids) out->Add(id);
}

void EncodeSnapshot(const Snapshot& snap, pb::RaftSnapshot* out) {
  out->set_index(snap.meta.index);
  out->set_term(snap.meta.term);
  EncodeIds(snap.meta.conf.voters, out->mutable_conf()->mutable_voters());
  EncodeIds(snap.meta.conf.learners, out->mutable_conf()->mutable_learners());
  out->set_data(snap.data);  // shared with other senders: copied, never moved
}

// Sorted and duplicate-free, as ConfState promises its readers.
bool SortedUnique(const std::vector<NodeId>& ids) {
  return std::adjacent_find(ids.begin(), ids.end(), std::greater_equal<NodeId>()) == ids.end();
}

Result<ConfState> DecodeConfState(const pb::RaftConfState& in) {
  ConfState conf;
  conf.voters.assign(in.voters().begin(), in.voters().end());
  conf.learners.assign(in.learners().begin(), in.learners().end());
  if (!SortedUnique(conf.voters) || !SortedUnique(conf.learners)) {
    return Status::Corruption("snapshot configuration ids are not sorted and unique");
  }
  for (NodeId id : conf.learners) {
    if (conf.IsVoter(id)) {
      return Status::Corruption("snapshot configuration names node " + std::to_string(id) +
                                " as both voter and learner");
    }
  }
  return conf;
}

// Decodes *in, moving its payloads out (the caller owns *in and discards it afterwards).
Result<GroupMessage> DecodeFrom(pb::RaftMessage* in) {
  const int type = static_cast<int>(in->type());
  if (type < 0 || type > kMaxMessageType) {
    return Status::Corruption("raft message of unknown type " + std::to_string(type));
  }
  GroupMessage out;
  out.group = in->group();
  Message& m = out.msg;
  m.type = static_cast<MessageType>(type);
  m.from = in->from();
  m.to = in->to();
  m.term = in->term();
  m.log_term = in->log_term();
  m.index = in->index();
  m.commit = in->commit();
  m.reject = in->reject();
  m.reject_hint = in->reject_hint();
  m.tick = in->tick();
  m.read_seq = in->read_seq();
  m.transfer = in->transfer();
  if (in->has_compact_floor()) m.compact_floor = in->compact_floor();
  m.entries.reserve(in->entries_size());
  for (int i = 0; i < in->entries_size(); ++i) {
    pb::RaftEntry* pe = in->mutable_entries(i);
    const int etype = static_cast<int>(pe->type());
    if (etype < 0 || etype > kMaxEntryType) {
      return Status::Corruption("raft " + std::string(MessageTypeName(m.type)) + " message: entry " +
                                std::to_string(i) + " (index " + std::to_string(pe->index()) +
                                ") has unknown entry type " + std::to_string(etype));
    }
    Entry& e = m.entries.emplace_back();
    e.term = pe->term();
    e.index = pe->index();
    e.type = static_cast<EntryType>(etype);
    e.data = std::move(*pe->mutable_data());
  }
  if (m.type == MessageType::kSnapshot && in->has_snapshot()) {
    pb::RaftSnapshot* ps = in->mutable_snapshot();
    auto conf = DecodeConfState(ps->conf());
    if (!conf.ok()) {
      return conf.status().WithContext("raft Snapshot message (index " + std::to_string(ps->index()) + ")");
    }
    auto snap = std::make_shared<Snapshot>();
    snap->meta.index = ps->index();
    snap->meta.term = ps->term();
    snap->meta.conf = std::move(conf).value();
    snap->data = std::move(*ps->mutable_data());
    m.snapshot = std::move(snap);
  }
  return out;
}

}  // namespace

void EncodeGroupMessage(GroupMessage gm, pb::RaftMessage* out) {
  out->Clear();
  Message& m = gm.msg;
  out->set_group(gm.group);
  out->set_type(static_cast<pb::RaftMessageType>(m.type));
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  out->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
  for (Entry& e : m.entries) {
    pb::RaftEntry* pe = out->add_entries();
    pe->set_term(e.term);
    pe->set_index(e.index);
    pe->set_type(static_cast<pb::RaftEntryType>(e.type));
    pe->set_data(e.data.data(), e.data.size());
  }
  out->set_commit(m.commit);
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  if (m.type == MessageType::kSnapshot && m.snapshot) EncodeSnapshot(*m.snapshot, out->mutable_snapshot());
  out->set_tick(m.tick);
  out->set_read_seq(m.read_seq);
  out->set_transfer(m.transfer);
  if (m.compact_floor) out->set_compact_floor(*m.compact_floor);
}

Result<GroupMessage> DecodeGroupMessage(pb::RaftMessage in) { return DecodeFrom(&in); }

void EncodeRaftBatch(NodeId from_node, std::vector<GroupMessage> msgs, pb::RaftBatch* out) {
  out->Clear();
  out->set_from_node(from_node);
  out->mutable_messages()->Reserve(static_cast<int>(msgs.size()));
  for (GroupMessage& m : msgs) EncodeGroupMessage(std::move(m), out->add_messages());
}

Result<std::vector<GroupMessage>> DecodeRaftBatch(pb::RaftBatch in) {
  std::vector<GroupMessage> out;
  out.reserve(in.messages_size());
  for (int i = 0; i < in.messages_size(); ++i) {
    auto m = DecodeFrom(in.mutable_messages(i));
    if (!m.ok()) {
      return m.status().WithContext("batch from node " + std::to_string(in.from_node()) + ", message " +
                                    std::to_string(i));
    }
    out.push_back(std::move(m).value());
  }
  return out;
}

}  // namespace ring::replication
