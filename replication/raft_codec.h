// replication/raft_codec.h: replication messages (replication/types.h) to and from their
// wire form (pb::RaftMessage and pb::RaftBatch in proto/ring.proto).
//
// Encoding cannot fail. Decoding trusts nothing, because the bytes come off the network:
// an unknown message or entry type is Corruption naming the number, and so is a snapshot
// whose configuration is not two sorted, duplicate-free, disjoint id lists (the core
// binary-searches them). A snapshot attached to a message of any other type than
// kSnapshot is ignored, as the core would never look at it.
//
// Generated Protobuf headers are included only by the .cc file; callers that build or
// read the pb messages include "proto/ring.pb.h" themselves.
//
// Thread-safety: free functions over caller-owned values.
#pragma once

#include <vector>

#include "common/status.h"
#include "replication/transport.h"
#include "replication/types.h"

namespace ring::pb {
class RaftMessage;
class RaftBatch;
}  // namespace ring::pb

namespace ring::replication {

// Overwrites *out with the wire form of `m`. Pass an rvalue to move entry payloads into
// *out instead of copying them. The snapshot, if any, is encoded only for kSnapshot
// messages.
void EncodeGroupMessage(GroupMessage m, pb::RaftMessage* out);

// The message `in` describes, or Corruption saying what is wrong with it. Pass an rvalue
// to move the payloads out instead of copying them.
Result<GroupMessage> DecodeGroupMessage(pb::RaftMessage in);

// Overwrites *out with a batch from node `from_node` holding `msgs` in order.
void EncodeRaftBatch(NodeId from_node, std::vector<GroupMessage> msgs, pb::RaftBatch* out);

// Every message of `in`, in order, or the first bad message's error (naming its
// position): a batch is accepted or dropped whole.
Result<std::vector<GroupMessage>> DecodeRaftBatch(pb::RaftBatch in);

}  // namespace ring::replication
