#include "server/peer_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "common/frame.h"
#include "common/limits.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "replication/raft_codec.h"

namespace ring::server {

using replication::GroupMessage;
using replication::NodeId;

namespace {

// Room left in a frame for the Request and RaftBatch wrappers (tags, lengths, from_node).
constexpr size_t kFrameSlack = 64;
// Per message in a batch: its tag and length prefix.
constexpr size_t kPerMessageSlack = 16;
// A write buffer bigger than this is released after use rather than kept for the next
// write, so one burst does not pin its peak size for the life of the connection.
constexpr size_t kKeepWriteCapacity = size_t{1} << 20;

// Encodes `msgs` as Request{raft} frames appended to *out, splitting the batch wherever
// one frame would exceed the frame limit. A message that alone exceeds it cannot be sent
// at all: it is dropped and counted. Returns the number of frames.
uint64_t EncodeFrames(NodeId self, NodeId to, std::vector<GroupMessage> msgs, PeerTransportStats* stats,
                      std::string* out) {
  pb::Request req;
  pb::RaftBatch* batch = req.mutable_raft();
  batch->set_from_node(self);
  auto* repeated = batch->mutable_messages();
  repeated->Reserve(static_cast<int>(msgs.size()));
  uint64_t frames = 0;
  size_t estimate = kFrameSlack;
  for (GroupMessage& gm : msgs) {
    pb::RaftMessage* pm = repeated->Add();
    const uint64_t group = gm.group;
    const auto type = gm.msg.type;
    replication::EncodeGroupMessage(std::move(gm), pm);
    const size_t size = pm->ByteSizeLong() + kPerMessageSlack;
    if (size + kFrameSlack > kMaxFrameBytes) {
      repeated->RemoveLast();
      stats->messages_too_large.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("dropping a {}-byte {} message of group {} for node {}: over the {}-byte frame limit", size,
                    replication::MessageTypeName(type), group, to, kMaxFrameBytes);
      continue;
    }
    if (estimate + size > kMaxFrameBytes && repeated->size() > 1) {
      // Flush everything before this message as one frame, then start the next with it.
      pb::RaftMessage* last = repeated->ReleaseLast();
      AppendRequestFrame(req, out);
      ++frames;
      repeated->Clear();
      repeated->AddAllocated(last);
      estimate = kFrameSlack;
    }
    estimate += size;
  }
  if (!repeated->empty()) {
    AppendRequestFrame(req, out);
    ++frames;
  }
  return frames;
}

}  // namespace

// One peer: its queue (shared with Send's threads) and its connection (I/O thread only).
//
// Run() is the only writer: it waits for queued bytes, connects if needed, and writes the
// whole queue at once. Drain() reads the connection and discards what arrives, so that a
// closed or reset connection is noticed even while nothing is being written.
class PeerTransport::Peer : public std::enable_shared_from_this<Peer> {
 public:
  Peer(asio::io_context& io, NodeId id, Endpoint endpoint, std::shared_ptr<Shared> shared)
      : id_(id),
        endpoint_(std::move(endpoint)),
        shared_(std::move(shared)),
        io_(io),
        socket_(io),
        wake_timer_(io),
        backoff_timer_(io),
        backoff_(shared_->options.min_backoff) {}

  // Any thread: queues `frames` (`count` of them) or drops them, per the rules in the
  // header.
  void Enqueue(std::string frames, uint64_t count) {
    bool post = false;
    bool dropped = false;
    bool stopped = false;
    {
      std::lock_guard lock(mu_);
      stopped = stopped_;
      // A full queue is reported like a failed connection: the peer is not keeping up,
      // and the core should stop pipelining to it until it answers again.
      if (stopped_ || down_ || queue_.size() + frames.size() > shared_->options.max_queued_bytes) {
        dropped = true;
      } else {
        if (queue_.empty()) {
          queue_ = std::move(frames);
        } else {
          queue_.append(frames);
        }
        queued_frames_ += count;
        if (!wake_posted_) post = wake_posted_ = true;
      }
    }
    if (dropped) {
      shared_->stats.batches_dropped.fetch_add(count, std::memory_order_relaxed);
      if (!stopped) shared_->MarkUnreachable(id_);
      return;
    }
    if (post) asio::post(io_, [self = shared_from_this()] { self->Wake(); });
  }

  asio::io_context& io() const { return io_; }

  // Any thread: no more sending; drops whatever is queued. The connection itself is
  // closed by Close() on the I/O thread.
  void MarkStopped() {
    uint64_t dropped = 0;
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      dropped = queued_frames_;
      queued_frames_ = 0;
      queue_.clear();
    }
    shared_->stats.batches_dropped.fetch_add(dropped, std::memory_order_relaxed);
  }

  // I/O thread (or while it is not running): closes the connection and wakes Run() so
  // that it exits.
  void Close() {
    CloseSocket();
    wake_timer_.cancel();
    backoff_timer_.cancel();
  }

 private:
  // I/O thread: a Send queued bytes.
  void Wake() {
    if (!running_) {
      running_ = true;
      asio::co_spawn(io_, [self = shared_from_this()] { return self->Run(); }, asio::detached);
    } else {
      wake_timer_.cancel();
    }
  }

  void CloseSocket() {
    asio::error_code ec;
    if (!socket_.is_open()) return;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // Drops whatever is queued after a failure, and records the peer as unreachable.
  void Fail(const char* what, const Status& why, uint64_t frames_lost) {
    bool stopped;
    {
      std::lock_guard lock(mu_);
      stopped = stopped_;
      frames_lost += queued_frames_;
      queued_frames_ = 0;
      queue_.clear();
    }
    shared_->stats.batches_dropped.fetch_add(frames_lost, std::memory_order_relaxed);
    if (stopped) return;  // Stop() closed the connection: not the peer's failure
    shared_->MarkUnreachable(id_);
    // Log the first failure of an outage loudly and the retries quietly: a peer that is
    // down for a minute would otherwise log hundreds of lines.
    if (!reported_down_) {
      spdlog::warn("peer {} ({}) unreachable: {} failed: {}", id_, endpoint_.ToString(), what, why.message());
      reported_down_ = true;
    } else {
      spdlog::debug("peer {} ({}): {} failed: {}", id_, endpoint_.ToString(), what, why.message());
    }
  }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    for (;;) {
      {
        std::unique_lock lock(mu_);
        if (stopped_) break;
        if (queue_.empty()) {
          // The next Enqueue must post a wake-up; anything queued from here on does.
          wake_posted_ = false;
          lock.unlock();
          wake_timer_.expires_at(asio::steady_timer::time_point::max());
          co_await wake_timer_.async_wait(kUseTuple);
          continue;
        }
      }
      if (!socket_.is_open()) {
        Status s = co_await Connect();
        if (!s.ok()) {
          {
            std::lock_guard lock(mu_);
            if (stopped_) break;
            down_ = true;  // until the backoff ends, Sends are dropped at once
          }
          shared_->stats.connect_failures.fetch_add(1, std::memory_order_relaxed);
          Fail("connect", s, 0);
          backoff_timer_.expires_after(backoff_);
          co_await backoff_timer_.async_wait(kUseTuple);
          backoff_ = std::min(backoff_ * 2, shared_->options.max_backoff);
          std::lock_guard lock(mu_);
          down_ = false;
          continue;
        }
      }
      uint64_t frames = 0;
      {
        std::lock_guard lock(mu_);
        if (stopped_) break;
        writing_.swap(queue_);
        frames = queued_frames_;
        queued_frames_ = 0;
      }
      auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(writing_), kUseTuple);
      writing_.clear();
      if (writing_.capacity() > kKeepWriteCapacity) std::string().swap(writing_);
      if (ec) {
        CloseSocket();
        Fail("write", Status::IOError(ec.message()), frames);
        continue;
      }
      shared_->stats.batches_sent.fetch_add(frames, std::memory_order_relaxed);
      shared_->stats.bytes_sent.fetch_add(n, std::memory_order_relaxed);
      shared_->stats.writes.fetch_add(1, std::memory_order_relaxed);
      backoff_ = shared_->options.min_backoff;
      if (reported_down_) {
        spdlog::info("peer {} ({}) reachable again", id_, endpoint_.ToString());
        reported_down_ = false;
      }
    }
    CloseSocket();
    running_ = false;
  }

  // Opens the connection, bounded by connect_timeout, and starts Drain() on it.
  asio::awaitable<Status> Connect() {
    auto self = shared_from_this();
    const uint64_t generation = ++generation_;
    asio::ip::tcp::resolver resolver(io_);
    auto [rec, results] =
        co_await resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port), kUseTuple);
    if (rec) co_return Status::Unavailable("resolve " + endpoint_.host + ": " + rec.message());

    // The timer closes the socket, which makes async_connect give up. `state` outlives
    // this frame if the timer's handler runs after Connect returned.
    struct State {
      bool done = false;
      bool timed_out = false;
    };
    auto state = std::make_shared<State>();
    asio::steady_timer timer(io_);
    timer.expires_after(shared_->options.connect_timeout);
    timer.async_wait([self, state](asio::error_code ec) {
      if (ec || state->done) return;
      state->timed_out = true;
      self->CloseSocket();
    });
    auto [cec, ep] = co_await asio::async_connect(socket_, results, kUseTuple);
    state->done = true;
    timer.cancel();
    if (cec || state->timed_out) {
      CloseSocket();
      co_return Status::Unavailable(
          state->timed_out ? "connect timed out after " + std::to_string(shared_->options.connect_timeout.count()) + " ms"
                           : cec.message());
    }
    asio::error_code ec;
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
    if (shared_->options.unacked_timeout.count() > 0) {
      unsigned int ms = static_cast<unsigned int>(shared_->options.unacked_timeout.count());
      // Best effort: without it a vanished host is noticed only by TCP's own retries.
      (void)::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    }
    spdlog::debug("peer {}: connected to {}", id_, endpoint_.ToString());
    asio::co_spawn(io_, [self, generation] { return self->Drain(generation); }, asio::detached);
    co_return Status::OK();
  }

  // Reads connection `generation` until it ends. Peers never answer replication traffic,
  // so anything that arrives is a Response to something they could not accept (e.g. a
  // node with no peers configured, or one at its connection limit): logged once, dropped.
  asio::awaitable<void> Drain(uint64_t generation) {
    auto self = shared_from_this();
    std::string buf(4096, '\0');
    FrameReader reader;
    bool logged = false;
    std::string why = "closed by the peer";
    for (;;) {
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), kUseTuple);
      if (ec || n == 0) {
        if (ec && ec != asio::error::eof) why = ec.message();
        break;
      }
      reader.Feed(std::string_view(buf.data(), n));
      Result<std::optional<std::string_view>> next = std::optional<std::string_view>();
      while ((next = reader.Next()).ok() && next->has_value()) {
        pb::Response resp;
        if (!logged && resp.ParseFromArray((*next)->data(), static_cast<int>((*next)->size()))) {
          Status s = StatusFromResponse(resp);
          if (!s.ok()) {
            spdlog::warn("peer {} ({}) refused replication traffic: {}", id_, endpoint_.ToString(), s.ToString());
            logged = true;
          }
        }
      }
      if (!next.ok()) {  // not our framing: nothing good will come of this connection
        why = next.status().ToString();
        break;
      }
    }
    // Only the connection this coroutine was reading: by now Run() may have opened another.
    if (generation == generation_ && socket_.is_open()) {
      spdlog::debug("peer {} ({}): connection ended: {}", id_, endpoint_.ToString(), why);
      CloseSocket();
    }
  }

  // Constant after construction.
  const NodeId id_;
  const Endpoint endpoint_;
  const std::shared_ptr<Shared> shared_;
  asio::io_context& io_;

  std::mutex mu_;
  std::string queue_;           // guarded by mu_: frames waiting for the next write
  uint64_t queued_frames_ = 0;  // guarded by mu_
  bool down_ = false;           // guarded by mu_: in backoff after a failed connect
  bool wake_posted_ = false;    // guarded by mu_: a Wake() is posted or Run() will look
  bool stopped_ = false;        // guarded by mu_

  // I/O thread only.
  asio::ip::tcp::socket socket_;
  asio::steady_timer wake_timer_;     // Run() waits here for queued bytes
  asio::steady_timer backoff_timer_;  // Run() waits here between connect attempts
  std::chrono::milliseconds backoff_;
  std::string writing_;       // the buffer being written
  uint64_t generation_ = 0;   // counts connect attempts; tells Drain() its socket is gone
  bool running_ = false;      // Run() has been spawned and has not returned
  bool reported_down_ = false;
};

void PeerTransport::Shared::MarkUnreachable(NodeId id) {
  std::lock_guard lock(mu);
  if (std::find(unreachable.begin(), unreachable.end(), id) == unreachable.end()) unreachable.push_back(id);
}

PeerTransport::PeerTransport(asio::io_context& io, NodeId self, std::map<NodeId, Endpoint> peers,
                             PeerTransportOptions options, Resolver resolve)
    : io_(io), shared_(std::make_shared<Shared>()), resolve_(std::move(resolve)) {
  shared_->options = options;
  shared_->self = self;
  for (auto& [id, endpoint] : peers) {
    if (id == self) continue;
    peers_.emplace(id, std::make_shared<Peer>(io, id, std::move(endpoint), shared_));
  }
}

PeerTransport::~PeerTransport() {
  std::lock_guard lock(peers_mu_);
  for (auto& [id, peer] : peers_) {
    peer->MarkStopped();
    // Close on the I/O thread; if it never runs again, the handler is simply destroyed.
    asio::post(peer->io(), [peer = peer] { peer->Close(); });
  }
}

std::shared_ptr<PeerTransport::Peer> PeerTransport::Find(NodeId to) {
  std::lock_guard lock(peers_mu_);
  auto it = peers_.find(to);
  if (it != peers_.end()) return it->second;
  if (stopped_ || !resolve_ || to == shared_->self || to == replication::kNoNode) return nullptr;
  std::optional<Endpoint> endpoint = resolve_(to);
  if (!endpoint) return nullptr;
  spdlog::debug("peer transport: node {} is at {}", to, endpoint->ToString());
  return peers_.emplace(to, std::make_shared<Peer>(io_, to, std::move(*endpoint), shared_)).first->second;
}

void PeerTransport::Send(NodeId to, std::vector<GroupMessage> msgs) {
  if (msgs.empty()) return;
  std::shared_ptr<Peer> peer = Find(to);
  if (!peer) {
    shared_->stats.batches_dropped.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("dropping {} message(s) for node {}: not a known peer", msgs.size(), to);
    return;
  }
  std::string frames;
  uint64_t count = EncodeFrames(shared_->self, to, std::move(msgs), &shared_->stats, &frames);
  if (count > 0) peer->Enqueue(std::move(frames), count);
}

void PeerTransport::SendReport(NodeId to, const std::string& report) {
  std::shared_ptr<Peer> peer = Find(to);
  if (!peer) return;
  pb::Request req;
  req.mutable_raft()->set_from_node(shared_->self);
  if (!req.mutable_raft()->mutable_report()->ParseFromString(report)) return;
  std::string frame;
  AppendRequestFrame(req, &frame);
  peer->Enqueue(std::move(frame), 1);
}

std::vector<NodeId> PeerTransport::TakeUnreachable() {
  std::vector<NodeId> out;
  {
    std::lock_guard lock(shared_->mu);
    out.swap(shared_->unreachable);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void PeerTransport::Stop() {
  std::lock_guard lock(peers_mu_);
  stopped_ = true;
  for (auto& [id, peer] : peers_) {
    peer->MarkStopped();
    peer->Close();
  }
}

}  // namespace ring::server
