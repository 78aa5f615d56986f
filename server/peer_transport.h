// server/peer_transport.h: PeerTransport, the replication::Transport that carries a node's
// Raft traffic to its peers over TCP.
//
// Wire: peers use the node's one port and the client framing (proto/ring.proto). Each
// Send becomes one frame, a pb::Request whose body is a RaftBatch (split into several
// frames only if it would exceed the frame limit). Such requests are one-way: the
// receiver never answers them, so each outgoing connection only writes. Inbound peer
// traffic arrives on ordinary server connections (server/connection.cc), not here.
//
// Per peer there is one outgoing connection, opened lazily by the first Send and
// re-opened after a failure with exponential backoff (min_backoff doubling to
// max_backoff). Everything queued while a write is in progress goes out in the next
// single write. Delivery is best effort, as Raft wants it:
//   - while a peer is in backoff after a failed connect, Send drops its batches;
//   - a failed connect or write drops what was queued or being written;
//   - a Send that would push the peer's queue past max_queued_bytes is dropped whole.
// Each of these drops is counted, and the peer is recorded for TakeUnreachable(), so the
// driver can tell the Raft core (RaftCore::ReportUnreachable) to stop pipelining to it.
// Batches of one Send, and of successive Sends from one thread, are never reordered.
//
// Peers: those given at construction, and any other node `resolve` finds an address for
// (called on first Send to an unknown node, e.g. a member that joined after start; a node
// it cannot resolve yet is dropped as unknown and asked again next time).
//
// Ownership: the transport owns its connections. The io_context must outlive it.
// Thread-safety: Send, TakeUnreachable and stats() may be called from any thread; Send
// encodes on the caller's thread and only posts to the I/O thread (it never blocks on
// the network). The constructor and Stop() run on the I/O thread, or while it is not
// running.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/asio.h"
#include "common/endpoint.h"
#include "replication/transport.h"

namespace ring::server {

struct PeerTransportOptions {
  // Bytes queued per peer, beyond the write in progress, before Send starts dropping.
  size_t max_queued_bytes = size_t{64} << 20;
  // Wait after a failed connect before the next attempt: doubles per failure, up to max.
  std::chrono::milliseconds min_backoff{50};
  std::chrono::milliseconds max_backoff{1000};
  // A connect that takes longer than this counts as failed (a black-holed host would
  // otherwise hold the connection in SYN retries for minutes).
  std::chrono::milliseconds connect_timeout{1000};
  // TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged this long is
  // broken (peer host gone without a RST); 0 keeps the kernel default.
  std::chrono::milliseconds unacked_timeout{10000};
};

// Counters for the metrics endpoint; updated with relaxed atomics.
struct PeerTransportStats {
  std::atomic<uint64_t> batches_sent{0};      // frames written to a peer's socket
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> writes{0};            // socket writes: batches_sent / writes = coalescing
  std::atomic<uint64_t> batches_dropped{0};   // frames dropped: peer down, queue full, write failed, unknown peer
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> messages_too_large{0};  // single messages over the frame limit, dropped
};

class PeerTransport : public replication::Transport {
 public:
  // `self` is this node's replica id, sent in every batch; `peers` maps every other
  // node's replica id to its address.
  // `peers` maps other nodes' replica ids to their addresses; `resolve` (may be null) finds
  // the address of any other node, and may be called on any thread that sends.
  using Resolver = std::function<std::optional<Endpoint>(replication::NodeId)>;
  PeerTransport(asio::io_context& io, replication::NodeId self,
                std::map<replication::NodeId, Endpoint> peers, PeerTransportOptions options = {},
                Resolver resolve = nullptr);
  // Does not block on the I/O thread: marks every peer stopped and posts the closing.
  ~PeerTransport() override;

  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Queues `msgs` for node `to` (see the drop rules above). Never blocks.
  void Send(replication::NodeId to, std::vector<replication::GroupMessage> msgs) override;
  // Queues a node report (an encoded pb::NodeReport) for node `to`, under the same drop
  // rules: reports are periodic, so a lost one is replaced by the next.
  void SendReport(replication::NodeId to, const std::string& report);

  // The peers whose connection failed, or whose batches were dropped, since the last call;
  // sorted, each once.
  std::vector<replication::NodeId> TakeUnreachable() override;

  const PeerTransportStats& stats() const { return shared_->stats; }

  // Closes every connection and drops everything queued; later Sends are dropped.
  // Idempotent.
  void Stop();

 private:
  class Peer;
  // What peers share with the transport; shared_ptr so that a coroutine still suspended
  // on the io_context never outlives what it touches.
  struct Shared {
    PeerTransportOptions options;
    replication::NodeId self = replication::kNoNode;
    PeerTransportStats stats;
    std::mutex mu;
    std::vector<replication::NodeId> unreachable;  // guarded by mu

    void MarkUnreachable(replication::NodeId id);
  };

  // The peer for node `to` (created if `resolve_` knows it), or null.
  std::shared_ptr<Peer> Find(replication::NodeId to);

  asio::io_context& io_;
  const std::shared_ptr<Shared> shared_;
  const Resolver resolve_;
  std::mutex peers_mu_;
  std::map<replication::NodeId, std::shared_ptr<Peer>> peers_;  // guarded by peers_mu_
  bool stopped_ = false;                                          // guarded by peers_mu_
};

}  // namespace ring::server
