// replication/transport.h: the seam through which a node's replication driver talks to
// its peers.
//
// The driver hands the transport every message of one cycle for one destination node at
// once (all groups together), so a node pair exchanges one frame per cycle no matter how
// many shards they share. Delivery is best effort: a transport may drop, delay or
// duplicate messages (Raft tolerates all three), but it must never reorder the messages
// within one Send call or corrupt them, and Send must never block the driver.
//
// Inbound messages take the opposite path: whatever receives them calls
// Driver::Deliver(), which is thread-safe.
//
// Thread-safety: Send may be called from the driver thread only; implementations hand the
// work to their own I/O thread.
#pragma once

#include <cstdint>
#include <vector>

#include "replication/types.h"

namespace ring::replication {

// A message and the replication group (shard) it belongs to.
struct GroupMessage {
  uint64_t group = 0;
  Message msg;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues `msgs` for node `to`. Never blocks; drops the messages if `to` is unknown or
  // its queue is full (the driver learns of unreachable peers via ReportUnreachable).
  virtual void Send(NodeId to, std::vector<GroupMessage> msgs) = 0;

  // Peers that could not be reached since the last call (each once). The driver tells
  // every group's core, which stops pipelining to them and probes instead.
  virtual std::vector<NodeId> TakeUnreachable() { return {}; }
};

}  // namespace ring::replication
