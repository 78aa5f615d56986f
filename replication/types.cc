#include "replication/types.h"

#include <algorithm>

#include "common/coding.h"
#include "common/frame.h"

namespace ring::replication {

namespace {

bool Contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::binary_search(ids.begin(), ids.end(), id);
}

void Insert(std::vector<NodeId>* ids, NodeId id) {
  ids->insert(std::lower_bound(ids->begin(), ids->end(), id), id);
}

void Erase(std::vector<NodeId>* ids, NodeId id) {
  auto it = std::lower_bound(ids->begin(), ids->end(), id);
  if (it != ids->end() && *it == id) ids->erase(it);
}

// Fixed-width little-endian (le64): configuration entries are tiny and rare, so simplicity
// wins over compactness.
void PutIds(std::string* out, const std::vector<NodeId>& ids) {
  AppendLe64(out, ids.size());
  for (NodeId id : ids) AppendLe64(out, id);
}

bool GetIds(std::string_view in, size_t* pos, std::vector<NodeId>* ids) {
  uint64_t n = 0;
  if (!ReadLe64(in, pos, &n) || n > (in.size() - *pos) / 8) return false;
  ids->clear();
  for (uint64_t i = 0; i < n; i++) {
    uint64_t id = 0;
    if (!ReadLe64(in, pos, &id)) return false;
    ids->push_back(id);
  }
  return std::is_sorted(ids->begin(), ids->end()) &&
         std::adjacent_find(ids->begin(), ids->end()) == ids->end();
}

constexpr uint8_t kConfChangeVersion = 1;

}  // namespace

bool ConfState::IsVoter(NodeId id) const { return Contains(voters, id); }
bool ConfState::IsLearner(NodeId id) const { return Contains(learners, id); }

void AppendToBatch(std::string* batch, std::string_view command) {
  AppendFrameHeader(batch, static_cast<uint32_t>(command.size()));
  batch->append(command);
}

Result<std::vector<std::string_view>> DecodeBatch(std::string_view data) {
  std::vector<std::string_view> out;
  while (!data.empty()) {
    if (data.size() < 4) return Status::Corruption("batch entry: truncated length");
    uint32_t n = 0;
    for (int i = 0; i < 4; i++) n = (n << 8) | static_cast<uint8_t>(data[i]);
    data.remove_prefix(4);
    if (n > data.size()) return Status::Corruption("batch entry: command of " + std::to_string(n) +
                                                   " bytes with " + std::to_string(data.size()) + " left");
    out.push_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  return out;
}

std::string EncodeConfChangeEntry(const ConfChangeEntry& cc) {
  std::string out;
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(cc.change.type));
  AppendLe64(&out, cc.change.node);
  PutIds(&out, cc.result.voters);
  PutIds(&out, cc.result.learners);
  return out;
}

Result<ConfChangeEntry> DecodeConfChangeEntry(std::string_view data) {
  ConfChangeEntry cc;
  if (data.size() < 2 || static_cast<uint8_t>(data[0]) != kConfChangeVersion ||
      static_cast<uint8_t>(data[1]) > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
    return Status::Corruption("configuration entry: bad header");
  }
  cc.change.type = static_cast<ConfChangeType>(data[1]);
  size_t pos = 2;
  if (!ReadLe64(data, &pos, &cc.change.node) || !GetIds(data, &pos, &cc.result.voters) ||
      !GetIds(data, &pos, &cc.result.learners) || pos != data.size()) {
    return Status::Corruption("configuration entry: truncated or malformed");
  }
  return cc;
}

Result<ConfState> ApplyConfChange(const ConfState& conf, const ConfChange& cc) {
  if (cc.node == kNoNode) return Status::InvalidArgument("configuration change names node 0");
  ConfState out = conf;
  const std::string who = "node " + std::to_string(cc.node);
  switch (cc.type) {
    case ConfChangeType::kAddVoter:
      if (out.IsVoter(cc.node)) return Status::InvalidArgument(who + " is already a voter");
      Erase(&out.learners, cc.node);  // promotion
      Insert(&out.voters, cc.node);
      return out;
    case ConfChangeType::kAddLearner:
      if (out.IsLearner(cc.node)) return Status::InvalidArgument(who + " is already a learner");
      if (out.IsVoter(cc.node)) {
        return Status::InvalidArgument(who +
                                       " is a voter; demotion is not supported, remove it first");
      }
      Insert(&out.learners, cc.node);
      return out;
    case ConfChangeType::kRemoveNode:
      if (!out.IsMember(cc.node)) return Status::InvalidArgument(who + " is not a member");
      if (out.IsVoter(cc.node) && out.voters.size() == 1) {
        return Status::InvalidArgument(who + " is the last voter");
      }
      Erase(&out.voters, cc.node);
      Erase(&out.learners, cc.node);
      return out;
  }
  return Status::InvalidArgument("unknown configuration change type");
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kPreVote: return "PreVote";
    case MessageType::kPreVoteResp: return "PreVoteResp";
    case MessageType::kVote: return "Vote";
    case MessageType::kVoteResp: return "VoteResp";
    case MessageType::kAppend: return "Append";
    case MessageType::kAppendResp: return "AppendResp";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kHeartbeatResp: return "HeartbeatResp";
    case MessageType::kSnapshot: return "Snapshot";
    case MessageType::kTimeoutNow: return "TimeoutNow";
  }
  return "Unknown";
}

std::string EntryToString(const Entry& e) {
  std::string s = std::to_string(e.index) + "/" + std::to_string(e.term);
  if (e.type == EntryType::kConfChange) {
    auto cc = DecodeConfChangeEntry(e.data);
    if (!cc.ok()) return s + " conf(?)";
    static const char* kNames[] = {"add-voter", "add-learner", "remove"};
    return s + " " + kNames[static_cast<int>(cc->change.type)] + "(" +
           std::to_string(cc->change.node) + ")";
  }
  if (e.type == EntryType::kBatch) {
    auto cmds = DecodeBatch(e.data);
    if (!cmds.ok()) return s + " batch(?)";
    s += " batch(";
    for (size_t i = 0; i < cmds->size(); i++) s += (i ? " " : "") + std::string((*cmds)[i]);
    return s + ")";
  }
  if (e.data.empty()) return s + " noop";
  return s + " " + e.data.str();
}

std::string ConfStateToString(const ConfState& c) {
  std::string s = "voters=(";
  for (size_t i = 0; i < c.voters.size(); i++) {
    if (i > 0) s += " ";
    s += std::to_string(c.voters[i]);
  }
  s += ")";
  if (!c.learners.empty()) {
    s += " learners=(";
    for (size_t i = 0; i < c.learners.size(); i++) {
      if (i > 0) s += " ";
      s += std::to_string(c.learners[i]);
    }
    s += ")";
  }
  return s;
}

std::string MessageToString(const Message& m) {
  std::string s = std::to_string(m.from) + "->" + std::to_string(m.to) + " " +
                  MessageTypeName(m.type) + " t" + std::to_string(m.term);
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kVote:
      s += " last=" + std::to_string(m.index) + "/" + std::to_string(m.log_term);
      if (m.transfer) s += " transfer";
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp:
      s += m.reject ? " rejected" : " granted";
      break;
    case MessageType::kAppend:
      s += " prev=" + std::to_string(m.index) + "/" + std::to_string(m.log_term) +
           " commit=" + std::to_string(m.commit);
      if (!m.entries.empty()) {
        s += " [";
        for (size_t i = 0; i < m.entries.size(); i++) {
          if (i > 0) s += ", ";
          s += EntryToString(m.entries[i]);
        }
        s += "]";
      }
      break;
    case MessageType::kAppendResp:
      if (m.reject) {
        s += " reject " + std::to_string(m.index) + " hint=" + std::to_string(m.reject_hint) +
             "/" + std::to_string(m.log_term);
      } else {
        s += " ok " + std::to_string(m.index);
      }
      break;
    case MessageType::kHeartbeat:
      s += " commit=" + std::to_string(m.commit);
      if (m.read_seq != 0) s += " read=" + std::to_string(m.read_seq);
      break;
    case MessageType::kHeartbeatResp:
      if (m.read_seq != 0) s += " read=" + std::to_string(m.read_seq);
      break;
    case MessageType::kSnapshot:
      if (m.snapshot) {
        s += " snap=" + std::to_string(m.snapshot->meta.index) + "/" +
             std::to_string(m.snapshot->meta.term) + " " +
             ConfStateToString(m.snapshot->meta.conf);
      }
      break;
    case MessageType::kTimeoutNow:
      break;
  }
  return s;
}

}  // namespace ring::replication
