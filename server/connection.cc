#include "server/connection.h"

#include <spdlog/spdlog.h>

#include "common/wakeups.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "replication/raft_codec.h"

namespace ring::server {

namespace {
constexpr size_t kReadChunk = 64 * 1024;

// Hands a peer's RaftBatch to the replication driver; peer traffic is one-way, so nothing
// is ever replied. Returns false if this node has no peers configured. A batch that does
// not decode is dropped (Raft retransmits) and the connection stays open: its framing is
// intact.
bool DeliverPeerBatch(NodeContext* node, pb::RaftBatch* batch) {
  if (!node->on_peer_messages) return false;
  uint64_t from = batch->from_node();
  if (batch->has_report() && node->on_peer_report) node->on_peer_report(from, batch->report());
  if (batch->messages().empty()) return true;
  auto msgs = replication::DecodeRaftBatch(std::move(*batch));
  if (!msgs.ok()) {
    node->metrics->frames_rejected.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("dropping a replication batch: {}", msgs.status().ToString());
    return true;
  }
  node->on_peer_messages(from, std::move(msgs).value());
  return true;
}
}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, NodeContext* node,
                       std::function<void(Connection*)> on_close)
    : socket_(std::move(socket)),
      node_(node),
      service_(node),
      on_close_(std::move(on_close)),
      request_(std::make_unique<pb::Request>()),
      response_(std::make_unique<pb::Response>()),
      read_wake_(socket_.get_executor()),
      write_wake_(socket_.get_executor()),
      idle_timer_(socket_.get_executor()),
      last_active_(std::chrono::steady_clock::now()) {
  asio::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  node_->metrics->connections_open.fetch_add(1, std::memory_order_relaxed);
}

Connection::~Connection() { node_->metrics->connections_open.fetch_sub(1, std::memory_order_relaxed); }

void Connection::Start() {
  auto self = shared_from_this();
  asio::co_spawn(socket_.get_executor(), [self] { return self->ReadLoop(); }, asio::detached);
  asio::co_spawn(socket_.get_executor(), [self] { return self->WriteLoop(); }, asio::detached);
  if (node_->config->idle_timeout_s > 0) {
    asio::co_spawn(socket_.get_executor(), [self] { return self->IdleLoop(); }, asio::detached);
  }
}

void Connection::BeginShutdown() {
  if (closed_) return;
  reading_ = false;
  asio::error_code ec;
  // Wakes a pending read with EOF without cancelling writes in progress.
  socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
  Wake(read_wake_);
  MaybeFinish();
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  Wake(read_wake_);
  Wake(write_wake_);
  idle_timer_.cancel();
  if (on_close_) {
    auto cb = std::move(on_close_);
    cb(this);
  }
}

// Closes once nothing is left to answer or write, after reading has ended.
void Connection::MaybeFinish() {
  if (closed_ || reading_ || inflight_ > 0 || !out_.empty() || !writing_.empty()) return;
  Close();
}

void Connection::QueueReply(const pb::Response& resp) {
  if (closed_) return;
  bool was_empty = out_.empty();
  AppendResponseFrame(resp, &out_);
  if (was_empty) Wake(write_wake_);
}

struct ReplyMailbox::Item {
  std::weak_ptr<Connection> to;
  pb::Response reply;
};

ReplyMailbox::ReplyMailbox(asio::any_io_executor io) : io_(std::move(io)) {}
ReplyMailbox::~ReplyMailbox() = default;

void ReplyMailbox::Push(std::weak_ptr<Connection> to, pb::Response&& reply) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{std::move(to), std::move(reply)});
    if (posted_) return;
    posted_ = true;
  }
  WakeupBatch::Wake([this] { asio::post(io_, [this] { Drain(); }); });
}

void ReplyMailbox::Drain() {
  std::vector<Item> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
    posted_ = false;
  }
  for (Item& item : batch) {
    if (auto conn = item.to.lock()) conn->Answer(item.reply);
  }
}

void Connection::Answer(const pb::Response& reply) {
  --inflight_;
  QueueReply(reply);
  last_active_ = std::chrono::steady_clock::now();
  Wake(read_wake_);
  MaybeFinish();
}

bool Connection::ProcessFrames() {
  while (inflight_ < node_->config->max_inflight_per_connection && out_.size() < kMaxPendingOutput) {
    auto next = reader_.Next();
    if (!next.ok()) {
      node_->metrics->frames_rejected.fetch_add(1, std::memory_order_relaxed);
      pb::Response r;
      SetResponseStatus(next.status(), &r);
      QueueReply(r);
      spdlog::debug("closing connection: {}", next.status().ToString());
      return false;
    }
    if (!next->has_value()) return true;
    std::string_view payload = **next;
    pb::Request& req = *request_;
    req.Clear();
    response_->Clear();
    if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      node_->metrics->frames_rejected.fetch_add(1, std::memory_order_relaxed);
      node_->metrics->errors[static_cast<size_t>(StatusCode::kInvalidArgument)].fetch_add(1);
      KvService::UndecodableReply(payload.size(), response_.get());
      QueueReply(*response_);
      continue;
    }
    if (req.body_case() == pb::Request::kRaft) {
      if (!DeliverPeerBatch(node_, req.mutable_raft())) {
        node_->metrics->requests[static_cast<size_t>(RequestKind::kInvalid)].fetch_add(1);
        node_->metrics->errors[static_cast<size_t>(StatusCode::kInvalidArgument)].fetch_add(1);
        response_->set_id(req.id());
        SetResponseStatus(Status::InvalidArgument("this node has no replication peers configured"), response_.get());
        QueueReply(*response_);
      }
      continue;
    }
    // The reply is made on the driver thread; the mailbox hops it back to this one.
    bool now = service_.Handle(req, response_.get(), [weak = weak_from_this(), box = node_->replies](pb::Response&& r) {
      box->Push(weak, std::move(r));
    });
    if (now) {
      QueueReply(*response_);
    } else {
      ++inflight_;
    }
  }
  return true;
}

asio::awaitable<void> Connection::ReadLoop() {
  auto self = shared_from_this();
  std::string buf(kReadChunk, '\0');
  while (reading_) {
    if (!ProcessFrames()) {
      reading_ = false;
      close_after_flush_ = true;
      break;
    }
    // Backpressure: hold off reading while the pipeline or the output is full.
    if (inflight_ >= node_->config->max_inflight_per_connection || out_.size() >= kMaxPendingOutput) {
      read_wake_.expires_at(asio::steady_timer::time_point::max());
      co_await read_wake_.async_wait(kUseTuple);
      continue;
    }
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), kUseTuple);
    if (ec || n == 0) break;
    node_->metrics->bytes_in.fetch_add(n, std::memory_order_relaxed);
    last_active_ = std::chrono::steady_clock::now();
    reader_.Feed(std::string_view(buf.data(), n));
  }
  reading_ = false;
  MaybeFinish();
}

asio::awaitable<void> Connection::WriteLoop() {
  auto self = shared_from_this();
  while (!closed_) {
    if (out_.empty()) {
      if (close_after_flush_ || (!reading_ && inflight_ == 0)) break;
      write_wake_.expires_at(asio::steady_timer::time_point::max());
      co_await write_wake_.async_wait(kUseTuple);
      continue;
    }
    writing_.swap(out_);
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(writing_), kUseTuple);
    writing_.clear();
    if (ec) {
      Close();
      co_return;
    }
    node_->metrics->bytes_out.fetch_add(n, std::memory_order_relaxed);
    last_active_ = std::chrono::steady_clock::now();
    Wake(read_wake_);  // output space was freed
  }
  if (close_after_flush_) {
    Close();
  } else {
    MaybeFinish();
  }
}

asio::awaitable<void> Connection::IdleLoop() {
  auto self = shared_from_this();
  const auto idle = std::chrono::seconds(node_->config->idle_timeout_s);
  while (!closed_) {
    // Never wait less than a second, so a connection kept busy by a slow request past its
    // idle deadline re-checks calmly instead of spinning.
    idle_timer_.expires_at(std::max(last_active_ + idle, std::chrono::steady_clock::now() +
                                                             std::chrono::seconds(1)));
    co_await idle_timer_.async_wait(kUseTuple);
    if (closed_) break;
    if (inflight_ == 0 && out_.empty() && std::chrono::steady_clock::now() - last_active_ >= idle) {
      node_->metrics->connections_idle_closed.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("closing connection idle for {} s", node_->config->idle_timeout_s);
      Close();
    }
  }
}

}  // namespace ring::server
