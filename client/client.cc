// libring's implementation. Reading order: Call (one request's life), Conn (one TCP
// connection: connect, pipelined writes, reply matching), Impl (routing, retries,
// deadlines), then the public wrappers at the bottom.
//
// Threading: one I/O thread runs an io_context; every mutable structure below is touched
// only on it. Public methods encode the request on the caller's thread and post it over.
#include "ring/client.h"

#include <algorithm>
#include <deque>
#include <future>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/asio.h"
#include "common/endpoint.h"
#include "common/frame.h"
#include "common/keyspace.h"
#include "common/limits.h"
#include "client/timer_heap.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"

namespace ring {

namespace {

using Clock = std::chrono::steady_clock;
using tcp = asio::ip::tcp;
constexpr auto kSweepInterval = std::chrono::milliseconds(10);
constexpr size_t kReadChunk = 64 * 1024;

struct Conn;

// One request from submission to completion.
struct Call {
  uint64_t id = 0;
  pb::Request request;
  Clock::time_point deadline;
  bool mutation = false;
  std::function<void(Status, pb::Response*)> done;
  size_t node = 0;      // index of the node to try next
  int attempts = 0;
  Conn* conn = nullptr;  // where it is queued or in flight
  bool sent = false;     // bytes handed to the socket at least once
  bool pinned = false;   // only this node may serve it (NodeStatus of a named node)
  bool registered = false;  // in calls_, with its deadline in deadlines_
  bool redirected = false;  // `node` was named by the last reply: go there, not to the cache
  bool attempt_armed = false;
  uint64_t attempt_arm = 0;  // which of its entries in attempts_ is current
  bool finished = false;
};
using CallPtr = std::shared_ptr<Call>;

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options, std::vector<Endpoint> seeds);
  ~Impl();

  // Encodes and submits; `done` runs once on the I/O thread.
  void Submit(pb::Request req, bool mutation, const CallOptions& call,
              std::function<void(Status, pb::Response*)> done);
  // Like Submit, on the I/O thread, sending only to node `node` (no failover).
  void SubmitPinned(pb::Request req, size_t node, const CallOptions& call,
                    std::function<void(Status, pb::Response*)> done);
  // Fails `done` (on the I/O thread) without sending anything.
  void FailLater(Status s, std::function<void(Status, pb::Response*)> done);
  bool OnIoThread() const { return std::this_thread::get_id() == io_thread_id_; }
  size_t NodeIndex(std::string_view endpoint);  // adds the node if unknown (I/O thread)
  const std::vector<Endpoint>& seeds() const { return seeds_; }
  asio::io_context& io() { return io_; }

  // --- I/O thread only ---
  void Dispatch(const CallPtr& call);
  void SplitBatchGet(const CallPtr& parent, std::map<ShardId, std::vector<int>> parts);
  void Finish(const CallPtr& call, Status s, pb::Response* resp);
  void OnReply(const CallPtr& call, pb::Response* resp);
  // Starts (or restarts) the attempt timer of a call just written to a connection.
  void ArmAttempt(Call* call) {
    if (!call->attempt_armed) ++attempts_live_;
    call->attempt_armed = true;
    attempts_.Push({Clock::now() + options_.attempt_timeout, call->id, ++call->attempt_arm}, attempts_live_,
                   [this](const TimerHeap::Entry& e) { return LiveAttempt(e) != nullptr; });
  }
  void DisarmAttempt(Call* call) {
    if (call->attempt_armed) --attempts_live_;
    call->attempt_armed = false;
  }
  // The call whose current attempt timer `e` is, or null.
  Call* LiveAttempt(const TimerHeap::Entry& e) const {
    auto it = calls_.find(e.id);
    if (it == calls_.end() || !it->second->attempt_armed || it->second->attempt_arm != e.arm) return nullptr;
    return it->second.get();
  }
  // Puts a call on the books (calls_, its deadline) or takes it off.
  void Register(const CallPtr& call) {
    calls_.emplace(call->id, call);
    call->registered = true;
    deadlines_.Push({call->deadline, call->id, 0}, calls_.size(),
                    [this](const TimerHeap::Entry& e) { return calls_.count(e.id) > 0; });
  }
  void Unregister(Call* call) {
    DisarmAttempt(call);
    if (!call->registered) return;
    calls_.erase(call->id);
    call->registered = false;
  }
  // Drops cached shard leaderships of node `node` (its connection failed).
  void ForgetLeader(size_t node) {
    for (int& l : shard_leader_) {
      if (l == static_cast<int>(node)) l = -1;
    }
  }
  void Retry(const CallPtr& call, const std::string& why, bool immediately = false);
  // The lowest seq of a mutation not yet answered (exactly-once bookkeeping).
  uint64_t FirstIncomplete() const { return open_seqs_.empty() ? next_seq_.load() : *open_seqs_.begin(); }

  const ClientOptions options_;

 private:
  friend struct Conn;
  void Sweep();

  std::vector<Endpoint> seeds_;
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread::id io_thread_id_;
  std::atomic<uint64_t> next_id_{1};
  // Exactly-once identity: a random id per client, a seq per mutation (kept across retries).
  const uint64_t client_id_ = [] {
    std::random_device rd;
    uint64_t id = (uint64_t{rd()} << 32) | rd();
    return id == 0 ? 1 : id;
  }();
  std::atomic<uint64_t> next_seq_{1};
  std::set<uint64_t> open_seqs_;  // I/O thread: seqs of unanswered mutations
  // Routing learned from redirects (I/O thread): shard count and each shard's leader node.
  // How keys map to shards: the cluster map's ranges once fetched (map_version_ > 0),
  // else uniform ranges from a redirect's shard count (map_version_ == 0), else unknown.
  std::optional<ShardRanges> shards_;
  uint64_t map_version_ = 0;
  bool map_fetching_ = false;
  Clock::time_point map_asked_{};  // when RefreshMap last asked
  std::vector<int> shard_leader_;  // by shard id: node index, -1 unknown
  // Fetches the cluster map from node `node` (if newer than ours) and routes by it.
  void RefreshMap(size_t node);
  int& LeaderSlot(ShardId shard) {
    if (shard >= shard_leader_.size()) shard_leader_.resize(size_t{shard} + 1, -1);
    return shard_leader_[shard];
  }
  asio::steady_timer sweep_timer_{io_};
  // I/O thread state.
  std::vector<Endpoint> nodes_;                           // seeds, then nodes learned later
  std::vector<std::vector<std::unique_ptr<Conn>>> pools_;  // per node
  std::vector<size_t> rr_;                                // round-robin cursor per node
  std::unordered_map<uint64_t, CallPtr> calls_;           // every unfinished call
  TimerHeap deadlines_;  // of the calls in calls_
  TimerHeap attempts_;   // per-send deadlines (attempt_timeout)
  size_t attempts_live_ = 0;
  bool closing_ = false;
  std::thread thread_;
};

namespace {

// One TCP connection to one node. Requests are written as they come (pipelined) and
// replies matched by id. On any socket error every call on it is handed back to Impl.
struct Conn {
  Conn(Client::Impl* impl, Endpoint ep, size_t node)
      : impl(impl), endpoint(std::move(ep)), node(node), socket(impl->io()), resolver(impl->io()),
        connect_timer(impl->io()) {}

  enum class State { kIdle, kConnecting, kReady };

  void Enqueue(const CallPtr& call) {
    call->conn = this;
    if (state == State::kReady && inflight.size() < static_cast<size_t>(impl->options_.max_inflight_per_connection)) {
      Send(call);
    } else {
      waiting.push_back(call);
      if (state == State::kIdle) Connect();
    }
  }

  void Send(const CallPtr& call) {
    inflight.emplace(call->id, call);
    call->sent = true;
    if (call->mutation) call->request.set_first_incomplete_seq(impl->FirstIncomplete());
    impl->ArmAttempt(call.get());
    AppendRequestFrame(call->request, &out);
    // Flush once the calls already queued on the I/O thread have been sent too: a burst
    // (a pipeline, or the calls that the replies of one read set off) leaves in one write.
    if (!writing && !flush_posted) {
      flush_posted = true;
      asio::post(impl->io(), [this, gen = generation] {
        if (gen != generation) return;
        flush_posted = false;
        if (!writing && !out.empty()) StartWrite();
      });
    }
  }

  void Connect() {
    state = State::kConnecting;
    connect_timer.expires_after(impl->options_.connect_timeout);
    connect_timer.async_wait([this, gen = generation](asio::error_code ec) {
      if (ec || gen != generation || state != State::kConnecting) return;
      Fail("connect to " + endpoint.ToString() + " timed out");
    });
    resolver.async_resolve(endpoint.host, std::to_string(endpoint.port),
                           [this, gen = generation](asio::error_code ec, tcp::resolver::results_type results) {
                             if (gen != generation) return;
                             if (ec) return Fail("resolve " + endpoint.host + ": " + ec.message());
                             asio::async_connect(socket, results, [this, gen](asio::error_code ec2, const tcp::endpoint&) {
                               if (gen != generation) return;
                               if (ec2) return Fail("connect to " + endpoint.ToString() + ": " + ec2.message());
                               connect_timer.cancel();
                               asio::error_code ignored;
                               socket.set_option(tcp::no_delay(true), ignored);
                               state = State::kReady;
                               failures = 0;
                               StartRead();
                               Pump();
                             });
                           });
  }

  // Moves waiting calls into flight while under the cap.
  void Pump() {
    size_t cap = static_cast<size_t>(impl->options_.max_inflight_per_connection);
    while (state == State::kReady && !waiting.empty() && inflight.size() < cap) {
      CallPtr c = std::move(waiting.front());
      waiting.pop_front();
      if (!c->finished) Send(c);
    }
  }

  void StartWrite() {
    writing = true;
    writing_buf.swap(out);
    asio::async_write(socket, asio::buffer(writing_buf), [this, gen = generation](asio::error_code ec, size_t) {
      if (gen != generation) return;
      writing = false;
      writing_buf.clear();
      if (ec) return Fail("write to " + endpoint.ToString() + ": " + ec.message());
      if (!out.empty()) StartWrite();
    });
  }

  void StartRead() {
    socket.async_read_some(asio::buffer(read_buf), [this, gen = generation](asio::error_code ec, size_t n) {
      if (gen != generation) return;
      if (ec) return Fail("connection to " + endpoint.ToString() + " lost: " + ec.message());
      reader.Feed(std::string_view(read_buf.data(), n));
      for (;;) {
        auto frame = reader.Next();
        if (!frame.ok()) return Fail("reply from " + endpoint.ToString() + ": " + frame.status().message());
        if (!frame->has_value()) break;
        pb::Response resp;
        if (!resp.ParseFromArray((*frame)->data(), static_cast<int>((*frame)->size()))) {
          return Fail("undecodable reply from " + endpoint.ToString());
        }
        if (resp.id() == 0) {
          // A connection-level error (e.g. Busy at the connection limit): the node is
          // about to close the connection; remember why for the calls on it.
          last_error = StatusFromResponse(resp);
          continue;
        }
        auto it = inflight.find(resp.id());
        if (it == inflight.end()) continue;  // its call already timed out
        CallPtr call = std::move(it->second);
        inflight.erase(it);
        call->conn = nullptr;
        impl->OnReply(call, &resp);
      }
      Pump();
      if (state == State::kReady) StartRead();
    });
  }

  // Tears the connection down; its calls go back to Impl for retry or failure.
  void Fail(const std::string& why) {
    if (state == State::kIdle) return;
    ++generation;  // orphan every handler still pending on the old socket
    asio::error_code ec;
    socket.close(ec);
    connect_timer.cancel();
    resolver.cancel();
    state = State::kIdle;
    out.clear();
    flush_posted = false;
    writing = false;
    writing_buf.clear();
    reader = FrameReader();
    ++failures;
    std::string reason = last_error.ok() ? why : last_error.ToString();
    last_error = Status::OK();
    std::vector<CallPtr> calls;
    for (auto& [id, c] : inflight) calls.push_back(std::move(c));
    for (auto& c : waiting) calls.push_back(std::move(c));
    inflight.clear();
    waiting.clear();
    socket = tcp::socket(impl->io());
    impl->ForgetLeader(node);  // its shards' leaders must be found again
    for (auto& c : calls) {
      c->conn = nullptr;
      if (!c->finished) impl->Retry(c, reason);
    }
  }

  void Forget(uint64_t id) { inflight.erase(id); }

  Client::Impl* impl;
  Endpoint endpoint;
  size_t node;  // index in Impl's node list
  tcp::socket socket;
  tcp::resolver resolver;
  asio::steady_timer connect_timer;
  State state = State::kIdle;
  uint64_t generation = 0;
  int failures = 0;  // consecutive; drives backoff
  Status last_error;
  std::unordered_map<uint64_t, CallPtr> inflight;
  std::deque<CallPtr> waiting;
  std::string out, writing_buf;
  bool writing = false;
  bool flush_posted = false;  // a flush of `out` is queued on the I/O thread
  std::array<char, kReadChunk> read_buf{};
  FrameReader reader;
};

}  // namespace

Client::Impl::Impl(ClientOptions options, std::vector<Endpoint> seeds)
    : options_(std::move(options)), seeds_(std::move(seeds)) {
  for (const auto& s : seeds_) {
    nodes_.push_back(s);
    pools_.emplace_back();
    for (int i = 0; i < options_.connections_per_node; ++i) pools_.back().push_back(std::make_unique<Conn>(this, s, nodes_.size() - 1));
    rr_.push_back(0);
  }
  std::promise<void> started;
  thread_ = std::thread([this, &started] {
    io_thread_id_ = std::this_thread::get_id();
    started.set_value();
    io_.run();
  });
  started.get_future().wait();
  asio::post(io_, [this] { Sweep(); });
}

Client::Impl::~Impl() {
  std::promise<void> drained;
  asio::post(io_, [this, &drained] {
    closing_ = true;
    sweep_timer_.cancel();
    std::vector<CallPtr> all;
    for (auto& [id, c] : calls_) all.push_back(c);
    for (auto& c : all) Finish(c, Status::Unavailable("client closed"), nullptr);
    for (auto& pool : pools_) {
      for (auto& conn : pool) {
        ++conn->generation;
        asio::error_code ec;
        conn->socket.close(ec);
        conn->connect_timer.cancel();
        conn->resolver.cancel();
      }
    }
    drained.set_value();
  });
  drained.get_future().wait();
  work_.reset();
  io_.stop();
  thread_.join();
}

size_t Client::Impl::NodeIndex(std::string_view endpoint) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].ToString() == endpoint) return i;
  }
  auto ep = ParseEndpoint(endpoint);
  if (!ep.ok()) return 0;
  nodes_.push_back(*ep);
  pools_.emplace_back();
  for (int i = 0; i < options_.connections_per_node; ++i) pools_.back().push_back(std::make_unique<Conn>(this, *ep, nodes_.size() - 1));
  rr_.push_back(0);
  return nodes_.size() - 1;
}

namespace {
CallPtr MakeCall(uint64_t id, pb::Request req, bool mutation, Clock::time_point deadline,
                 std::function<void(Status, pb::Response*)> done) {
  auto call = std::make_shared<Call>();
  call->id = id;
  req.set_id(id);
  call->request = std::move(req);
  call->mutation = mutation;
  call->done = std::move(done);
  call->deadline = deadline;
  return call;
}
}  // namespace

void Client::Impl::SubmitPinned(pb::Request req, size_t node, const CallOptions& opts,
                                std::function<void(Status, pb::Response*)> done) {
  auto timeout = opts.timeout.count() > 0 ? opts.timeout : options_.default_timeout;
  auto call = MakeCall(next_id_.fetch_add(1), std::move(req), false, Clock::now() + timeout, std::move(done));
  call->node = node;
  call->pinned = true;
  if (closing_) return Finish(call, Status::Unavailable("client closed"), nullptr);
  Register(call);
  Dispatch(call);
}

void Client::Impl::Submit(pb::Request req, bool mutation, const CallOptions& opts,
                          std::function<void(Status, pb::Response*)> done) {
  auto timeout = opts.timeout.count() > 0 ? opts.timeout : options_.default_timeout;
  if (mutation) {
    req.set_client_id(client_id_);
    req.set_seq(next_seq_.fetch_add(1, std::memory_order_relaxed));
  }
  auto call = MakeCall(next_id_.fetch_add(1, std::memory_order_relaxed), std::move(req), mutation,
                       Clock::now() + timeout, std::move(done));
  asio::post(io_, [this, call = std::move(call)] {
    if (closing_) return Finish(call, Status::Unavailable("client closed"), nullptr);
    Register(call);
    if (call->mutation) open_seqs_.insert(open_seqs_.end(), call->request.seq());
    Dispatch(call);
  });
}

void Client::Impl::FailLater(Status s, std::function<void(Status, pb::Response*)> done) {
  asio::post(io_, [s = std::move(s), done = std::move(done)] { done(s, nullptr); });
}

namespace {
// The key a request routes by (its first key), or empty for node-level requests.
std::string_view RoutingKey(const pb::Request& r) {
  switch (r.body_case()) {
    case pb::Request::kGet: return r.get().key();
    case pb::Request::kPut: return r.put().key();
    case pb::Request::kDel: return r.del().key();
    case pb::Request::kCas: return r.cas().key();
    case pb::Request::kBatchGet: return r.batch_get().keys_size() ? std::string_view(r.batch_get().keys(0)) : "";
    case pb::Request::kBatchPut: return r.batch_put().pairs_size() ? std::string_view(r.batch_put().pairs(0).key()) : "";
    default: return "";
  }
}
}  // namespace

// Splits a BatchGet whose keys span shards into one call per shard, each routed to its
// shard's leader; the parent finishes once every part has (with the first error, if any).
// Reads need no atomicity across shards, so this is invisible to the caller.
void Client::Impl::SplitBatchGet(const CallPtr& parent, std::map<ShardId, std::vector<int>> parts) {
  // The parent leaves the books; its parts carry its deadline.
  Unregister(parent.get());
  if (parent->conn) parent->conn->Forget(parent->id);
  parent->conn = nullptr;
  struct Gather {
    pb::Response merged;
    size_t remaining = 0;
    Status error;
  };
  auto gather = std::make_shared<Gather>();
  const int n = parent->request.batch_get().keys_size();
  for (int i = 0; i < n; ++i) gather->merged.mutable_batch_get()->add_entries();
  gather->remaining = parts.size();
  for (auto& [shard, idx] : parts) {
    pb::Request sub;
    for (int i : idx) sub.mutable_batch_get()->add_keys(parent->request.batch_get().keys(i));
    auto part = MakeCall(next_id_.fetch_add(1, std::memory_order_relaxed), std::move(sub), false, parent->deadline,
                         [this, parent, gather, idx = std::move(idx)](Status s, pb::Response* r) {
                           if (s.ok() && (r == nullptr || r->batch_get().entries_size() != static_cast<int>(idx.size()))) {
                             s = Status::Corruption("BatchGet part reply has the wrong number of entries");
                           }
                           if (s.ok()) {
                             auto* out = gather->merged.mutable_batch_get()->mutable_entries();
                             for (size_t k = 0; k < idx.size(); ++k) {
                               *out->Mutable(idx[k]) = std::move(*r->mutable_batch_get()->mutable_entries(static_cast<int>(k)));
                             }
                           } else if (gather->error.ok()) {
                             gather->error = std::move(s);
                           }
                           if (--gather->remaining > 0) return;
                           if (gather->error.ok()) Finish(parent, Status::OK(), &gather->merged);
                           else Finish(parent, gather->error, nullptr);
                         });
    Register(part);
    Dispatch(part);
  }
}

void Client::Impl::Dispatch(const CallPtr& call) {
  if (!call->pinned && shards_ && call->request.body_case() == pb::Request::kBatchGet) {
    std::map<ShardId, std::vector<int>> parts;
    const auto& keys = call->request.batch_get().keys();
    for (int i = 0; i < keys.size(); ++i) parts[shards_->ShardOfKey(keys[i])].push_back(i);
    if (parts.size() > 1) return SplitBatchGet(call, std::move(parts));
  }
  // Route by the cluster map: fetch it with the first request (and again at most once a
  // second while no node has one to give).
  if (!call->pinned && map_version_ == 0 && Clock::now() - map_asked_ > std::chrono::seconds(1)) {
    RefreshMap(call->node);
  }
  if (!call->pinned && shards_) {
    std::string_view key = RoutingKey(call->request);
    if (!key.empty()) {
      const ShardId shard = shards_->ShardOfKey(key);
      if (!call->redirected) {
        int leader = LeaderSlot(shard);
        if (leader >= 0) call->node = static_cast<size_t>(leader);
      }
      // Name the shard and the map it was chosen from, so a node whose map differs
      // refuses it (WrongShard) instead of serving a range it no longer owns.
      if (map_version_ > 0) {
        call->request.set_shard(shard + 1);
        call->request.set_map_version(map_version_);
      }
    }
  }
  call->redirected = false;
  // Round-robin over the node's connections, but a burst stays on the connection whose
  // flush is still queued, so it goes out in one write (and is read in one by the node).
  auto& pool = pools_[call->node];
  size_t& cursor = rr_[call->node];
  if (!pool[cursor % pool.size()]->flush_posted) ++cursor;
  pool[cursor % pool.size()]->Enqueue(call);
}

void Client::Impl::OnReply(const CallPtr& call, pb::Response* resp) {
  Status st = StatusFromResponse(*resp);
  switch (st.code()) {
    case StatusCode::kNotLeader:
    case StatusCode::kWrongShard:
    case StatusCode::kStaleEpoch:
    case StatusCode::kUnavailable:
    case StatusCode::kBusy:
      break;  // the node could not serve it; route again below
    default:
      return Finish(call, std::move(st), resp);
  }
  bool redirected = false;
  if (resp->has_redirect()) {
    const pb::Redirect& r = resp->redirect();
    if (r.map_version() > map_version_) RefreshMap(call->node);
    if (map_version_ == 0 && r.shard_count() > 0 && (!shards_ || shards_->count() != r.shard_count())) {
      shards_ = ShardRanges::Uniform(r.shard_count());  // until the map arrives
      shard_leader_.assign(r.shard_count(), -1);
    }
    if (!r.leader().empty()) {
      size_t node = NodeIndex(r.leader());
      if (r.shard() >= 1) LeaderSlot(r.shard() - 1) = static_cast<int>(node);
      if (!call->pinned) {
        call->node = node;
        call->redirected = true;
        redirected = true;
      }
    } else if (r.shard() >= 1) {
      LeaderSlot(r.shard() - 1) = -1;  // the cached leader is not (or no longer) it
    }
  }
  // A redirect to a named leader is followed at once (a few times), and so is a batch
  // that can now be split by shard; anything else backs off.
  const bool split = st.code() == StatusCode::kWrongShard && shards_ &&
                     call->request.body_case() == pb::Request::kBatchGet;
  Retry(call, st.ToString(), (redirected || split) && call->attempts < 3);
}

void Client::Impl::RefreshMap(size_t node) {
  if (map_fetching_ || closing_) return;
  map_fetching_ = true;
  map_asked_ = Clock::now();
  pb::Request req;
  req.mutable_node_status();
  CallOptions opts;
  opts.timeout = std::min(options_.default_timeout, std::chrono::milliseconds(2000));
  SubmitPinned(std::move(req), node, opts, [this](Status s, pb::Response* r) {
    map_fetching_ = false;
    if (!s.ok() || r == nullptr) return;
    const auto& map = r->node_status().cluster_map();
    if (map.version() <= map_version_) return;
    std::vector<std::pair<uint64_t, ShardId>> starts;
    for (const auto& sh : map.shards()) starts.emplace_back(sh.start(), sh.id());
    auto ranges = ShardRanges::FromStarts(std::move(starts));
    if (!ranges.ok()) return;  // a node never serves a broken map; keep what we have
    const bool same = shards_ && map_version_ > 0 && shards_->count() == ranges->count();
    shards_ = std::move(ranges).value();
    map_version_ = map.version();
    if (!same) shard_leader_.assign(shard_leader_.size(), -1);
  });
}

void Client::Impl::Retry(const CallPtr& call, const std::string& why, bool immediately) {
  if (call->finished || closing_) return;
  // The send this timer watched was answered or lost; the next send arms it again (if it
  // fired during the backoff below, the call would be sent twice).
  DisarmAttempt(call.get());
  // Resending a mutation is safe: it carries (client_id, seq), and the shard applies each
  // seq at most once, answering a duplicate with the original result.
  ++call->attempts;
  if (!call->pinned && !call->redirected && nodes_.size() > 1) call->node = (call->node + 1) % nodes_.size();
  if (immediately) return Dispatch(call);
  // Back off a little more after each failure so a dead node is not hammered.
  auto delay = std::chrono::milliseconds(std::min(10 * (1 << std::min(call->attempts, 5)), 250));
  if (Clock::now() + delay >= call->deadline) {
    return Finish(call, call->mutation && call->sent
                            ? Status::Unavailable(why + "; the write may or may not have been applied")
                            : Status::Unavailable(why),
                  nullptr);
  }
  auto timer = std::make_shared<asio::steady_timer>(io_, delay);
  timer->async_wait([this, call, timer](asio::error_code) {
    if (!call->finished && !closing_) Dispatch(call);
  });
}

void Client::Impl::Finish(const CallPtr& call, Status s, pb::Response* resp) {
  if (call->finished) return;
  call->finished = true;
  if (call->registered && call->mutation) open_seqs_.erase(call->request.seq());
  Unregister(call.get());
  if (call->conn) call->conn->Forget(call->id);
  auto done = std::move(call->done);
  done(std::move(s), resp);
}

void Client::Impl::Sweep() {
  auto now = Clock::now();
  // Sends that went unanswered too long: presume the node stuck and try another.
  while (auto e = attempts_.PopDue(now)) {
    Call* raw = LiveAttempt(*e);
    if (raw == nullptr) continue;  // answered, or sent again since
    DisarmAttempt(raw);
    CallPtr call = calls_.at(raw->id);
    std::string why = "no reply within " + std::to_string(options_.attempt_timeout.count()) + " ms";
    if (call->conn) {
      why += " from " + call->conn->endpoint.ToString();
      ForgetLeader(call->conn->node);
      call->conn->Forget(call->id);
      call->conn = nullptr;
    }
    call->redirected = false;
    Retry(call, why, /*immediately=*/true);
  }
  while (auto e = deadlines_.PopDue(now)) {
    auto it = calls_.find(e->id);
    if (it == calls_.end()) continue;  // finished already
    CallPtr call = it->second;
    std::string what = call->mutation ? "; the write may or may not have been applied" : "";
    Finish(call, Status::Timeout("no reply within the deadline" + what), nullptr);
  }
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](asio::error_code ec) {
    if (!ec && !closing_) Sweep();
  });
}

// ---------------------------------------------------------------------------------------
// Public API.

namespace {

// Runs an asynchronous call and waits for it. Refuses to block the I/O thread.
template <typename Start>
Status Blocking(Client::Impl* impl, Start&& start) {
  if (impl->OnIoThread()) {
    return Status::InvalidArgument("blocking call made from a ring::Client callback; use the Async variant");
  }
  std::promise<Status> p;
  auto f = p.get_future();
  start([&p](Status s) { p.set_value(std::move(s)); });
  return f.get();
}

// A ClusterAdmin change, answered by the metadata leader: *map_version (if given) is the
// map's version once it is applied.
Status AdminChange(Client::Impl* impl, pb::ClusterAdminRequest admin, uint64_t* map_version, const CallOptions& call) {
  return Blocking(impl, [&](auto finish) {
    pb::Request req;
    *req.mutable_cluster_admin() = std::move(admin);
    impl->Submit(std::move(req), false, call, [map_version, finish](Status s, pb::Response* r) {
      if (s.ok() && r && map_version) *map_version = r->cluster_admin().map_version();
      finish(std::move(s));
    });
  });
}

// Sends `req` to the node at `endpoint` only ("" = the first seed) and waits;
// on_reply(*response) runs on the I/O thread for an OK reply.
Status PinnedCall(Client::Impl* impl, std::string_view endpoint, pb::Request req, const CallOptions& call,
                  std::function<void(const pb::Response&)> on_reply) {
  if (!endpoint.empty()) {
    auto ep = ParseEndpoint(endpoint);
    if (!ep.ok()) return ep.status();
  }
  return Blocking(impl, [&](auto finish) {
    asio::post(impl->io(), [impl, target = std::string(endpoint), req = std::move(req), call, on_reply, finish]() mutable {
      size_t node = target.empty() ? 0 : impl->NodeIndex(target);
      impl->SubmitPinned(std::move(req), node, call, [on_reply, finish](Status s, pb::Response* r) {
        if (s.ok() && r) on_reply(*r);
        finish(std::move(s));
      });
    });
  });
}

}  // namespace

Status Client::Open(const ClientOptions& options, std::unique_ptr<Client>* client) {
  if (options.seeds.empty()) return Status::InvalidArgument("ClientOptions.seeds is empty: give at least one HOST:PORT");
  std::vector<Endpoint> seeds;
  for (const auto& s : options.seeds) {
    auto ep = ParseEndpoint(s);
    if (!ep.ok()) return ep.status().WithContext("ClientOptions.seeds");
    seeds.push_back(*ep);
  }
  if (options.connections_per_node < 1 || options.connections_per_node > 1024) {
    return Status::InvalidArgument("ClientOptions.connections_per_node must be from 1 to 1024");
  }
  if (options.max_inflight_per_connection < 1) {
    return Status::InvalidArgument("ClientOptions.max_inflight_per_connection must be at least 1");
  }
  if (options.default_timeout.count() <= 0 || options.connect_timeout.count() <= 0 ||
      options.attempt_timeout.count() <= 0) {
    return Status::InvalidArgument("ClientOptions timeouts must be positive");
  }
  client->reset(new Client(std::make_unique<Impl>(options, std::move(seeds))));
  return Status::OK();
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

void Client::GetAsync(std::string_view key, std::function<void(Status, std::string)> done, const CallOptions& call) {
  Status s = CheckKey(key);
  auto cb = [done = std::move(done)](Status st, pb::Response* r) {
    std::string v;
    if (st.ok() && r) v = std::move(*r->mutable_get()->mutable_value());
    done(std::move(st), std::move(v));
  };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  req.mutable_get()->set_key(key.data(), key.size());
  impl_->Submit(std::move(req), false, call, std::move(cb));
}

void Client::PutAsync(std::string_view key, std::string_view value, StatusCallback done, const CallOptions& call) {
  Status s = CheckKey(key);
  if (s.ok()) s = CheckValue(value);
  auto cb = [done = std::move(done)](Status st, pb::Response*) { done(std::move(st)); };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  req.mutable_put()->set_key(key.data(), key.size());
  req.mutable_put()->set_value(value.data(), value.size());
  impl_->Submit(std::move(req), true, call, std::move(cb));
}

void Client::DeleteAsync(std::string_view key, std::function<void(Status, bool)> done, const CallOptions& call) {
  Status s = CheckKey(key);
  auto cb = [done = std::move(done)](Status st, pb::Response* r) {
    bool existed = st.ok() && r && r->del().existed();
    done(std::move(st), existed);
  };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  req.mutable_del()->set_key(key.data(), key.size());
  impl_->Submit(std::move(req), true, call, std::move(cb));
}

void Client::CompareAndSetAsync(std::string_view key, std::optional<std::string_view> expected, std::string_view value,
                                std::function<void(Status, CasResult)> done, const CallOptions& call) {
  Status s = CheckKey(key);
  if (s.ok()) s = CheckValue(value);
  auto cb = [done = std::move(done)](Status st, pb::Response* r) {
    CasResult out;
    if (st.ok() && r) {
      out.swapped = r->cas().swapped();
      if (!out.swapped && r->cas().current_present()) out.current = std::move(*r->mutable_cas()->mutable_current());
    }
    done(std::move(st), std::move(out));
  };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  auto* cas = req.mutable_cas();
  cas->set_key(key.data(), key.size());
  cas->set_value(value.data(), value.size());
  if (expected) cas->set_expected(expected->data(), expected->size());
  else cas->set_expect_absent(true);
  impl_->Submit(std::move(req), true, call, std::move(cb));
}

void Client::BatchGetAsync(const std::vector<std::string>& keys,
                           std::function<void(Status, std::vector<std::optional<std::string>>)> done,
                           const CallOptions& call) {
  Status s = CheckBatchSize(keys.size());
  for (size_t i = 0; s.ok() && i < keys.size(); ++i) s = CheckKey(keys[i]).WithContext("key " + std::to_string(i));
  size_t n = keys.size();
  auto cb = [done = std::move(done), n](Status st, pb::Response* r) {
    std::vector<std::optional<std::string>> values;
    if (st.ok() && r) {
      auto* entries = r->mutable_batch_get()->mutable_entries();
      if (static_cast<size_t>(entries->size()) != n) {
        st = Status::Corruption("BatchGet reply has " + std::to_string(entries->size()) + " entries for " +
                                std::to_string(n) + " keys");
      } else {
        values.reserve(n);
        for (auto& e : *entries) {
          if (e.found()) values.emplace_back(std::move(*e.mutable_value()));
          else values.emplace_back();
        }
      }
    }
    done(std::move(st), std::move(values));
  };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  for (const auto& k : keys) req.mutable_batch_get()->add_keys(k);
  impl_->Submit(std::move(req), false, call, std::move(cb));
}

void Client::BatchPutAsync(const std::vector<std::pair<std::string, std::string>>& pairs, StatusCallback done,
                           const CallOptions& call) {
  Status s = CheckBatchSize(pairs.size());
  size_t bytes = 0;
  for (size_t i = 0; s.ok() && i < pairs.size(); ++i) {
    s = CheckKey(pairs[i].first);
    if (s.ok()) s = CheckValue(pairs[i].second);
    s = s.WithContext("pair " + std::to_string(i));
    bytes += pairs[i].first.size() + pairs[i].second.size() + 16;
  }
  if (s.ok() && bytes > kMaxFrameBytes) {
    s = Status::InvalidArgument("batch of about " + std::to_string(bytes) + " bytes exceeds the " +
                                std::to_string(kMaxFrameBytes) + "-byte frame limit; split it");
  }
  auto cb = [done = std::move(done)](Status st, pb::Response*) { done(std::move(st)); };
  if (!s.ok()) return impl_->FailLater(std::move(s), std::move(cb));
  pb::Request req;
  for (const auto& [k, v] : pairs) {
    auto* kv = req.mutable_batch_put()->add_pairs();
    kv->set_key(k);
    kv->set_value(v);
  }
  impl_->Submit(std::move(req), true, call, std::move(cb));
}

Status Client::Get(std::string_view key, std::string* value, const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) {
    GetAsync(key, [value, finish](Status s, std::string v) {
      if (s.ok()) *value = std::move(v);
      finish(std::move(s));
    }, call);
  });
}

Status Client::Put(std::string_view key, std::string_view value, const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) { PutAsync(key, value, finish, call); });
}

Status Client::Delete(std::string_view key, bool* existed, const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) {
    DeleteAsync(key, [existed, finish](Status s, bool e) {
      if (existed) *existed = e;
      finish(std::move(s));
    }, call);
  });
}

Status Client::CompareAndSet(std::string_view key, std::optional<std::string_view> expected, std::string_view value,
                             CasResult* result, const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) {
    CompareAndSetAsync(key, expected, value, [result, finish](Status s, CasResult r) {
      if (result) *result = std::move(r);
      finish(std::move(s));
    }, call);
  });
}

Status Client::BatchGet(const std::vector<std::string>& keys, std::vector<std::optional<std::string>>* values,
                        const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) {
    BatchGetAsync(keys, [values, finish](Status s, std::vector<std::optional<std::string>> v) {
      if (s.ok()) *values = std::move(v);
      finish(std::move(s));
    }, call);
  });
}

Status Client::BatchPut(const std::vector<std::pair<std::string, std::string>>& pairs, const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) { BatchPutAsync(pairs, finish, call); });
}

Status Client::Ping(const CallOptions& call) {
  return Blocking(impl_.get(), [&](auto finish) {
    pb::Request req;
    req.mutable_ping();
    impl_->Submit(std::move(req), false, call, [finish](Status s, pb::Response*) { finish(std::move(s)); });
  });
}

Status Client::ChangeMember(uint64_t node_id, MemberChange change, uint64_t* map_version, const CallOptions& call) {
  pb::ClusterAdminRequest a;
  a.set_node(node_id);
  a.set_op(change == MemberChange::kDrain     ? pb::ClusterAdminRequest::DRAIN
           : change == MemberChange::kUndrain ? pb::ClusterAdminRequest::UNDRAIN
                                              : pb::ClusterAdminRequest::REMOVE);
  return AdminChange(impl_.get(), std::move(a), map_version, call);
}

Status Client::PauseMoves(bool paused, uint64_t* map_version, const CallOptions& call) {
  pb::ClusterAdminRequest a;
  a.set_op(paused ? pb::ClusterAdminRequest::PAUSE_MOVES : pb::ClusterAdminRequest::RESUME_MOVES);
  return AdminChange(impl_.get(), std::move(a), map_version, call);
}

Status Client::SplitShard(uint32_t shard, uint64_t* map_version, const CallOptions& call) {
  pb::ClusterAdminRequest a;
  a.set_op(pb::ClusterAdminRequest::SPLIT);
  a.set_shard(shard);
  return AdminChange(impl_.get(), std::move(a), map_version, call);
}

Status Client::InitCluster(std::string_view endpoint, uint32_t shard_count, uint32_t replication_factor,
                           InitResult* result, const CallOptions& call) {
  pb::Request req;
  auto* a = req.mutable_cluster_admin();
  a->set_op(pb::ClusterAdminRequest::INIT);
  a->set_shard_count(shard_count);
  a->set_replication_factor(replication_factor);
  return PinnedCall(impl_.get(), endpoint, std::move(req), call, [result](const pb::Response& r) {
    const auto& c = r.cluster_admin();
    if (result) *result = InitResult{c.cluster_id(), c.node_id(), c.map_version(), c.already_initialized()};
  });
}

Status Client::NodeStatus(std::string_view endpoint, NodeInfo* info, const CallOptions& call) {
  pb::Request req;
  req.mutable_node_status();
  return PinnedCall(impl_.get(), endpoint, std::move(req), call, [info](const pb::Response& r) {
    const auto& ns = r.node_status();
    *info = NodeInfo{ns.node_id(), ns.version(), ns.listen(), ns.uptime_ms(), ns.sync_policy(),
                     ns.shard_count(), ns.connections(), ns.requests_served(), ns.keys_estimate(),
                     ns.disk_bytes(), ns.disk_ok(), ns.disk_error(), {}, {}};
    for (const auto& sh : ns.shards()) {
      info->shards.push_back(ShardInfo{sh.shard(), sh.leader(), sh.role(), sh.term(), sh.commit_index(),
                                       sh.applied_index(), sh.last_index(),
                                       {sh.replicas().begin(), sh.replicas().end()},
                                       sh.snapshot_bytes_done(), sh.snapshot_bytes_total()});
    }
    static const char* const kStates[] = {"joining", "up", "draining", "down", "removed"};
    const auto& cm = ns.cluster_map();
    ClusterMapInfo& map = info->cluster_map;
    map.version = cm.version();
    map.cluster_id = cm.cluster_id();
    map.replication_factor = cm.replication_factor();
    map.moves_paused = cm.moves_paused();
    for (const auto& m : cm.members()) {
      map.members.push_back({m.id(), m.address(), m.state() < 5 ? kStates[m.state()] : "unknown", m.weight()});
    }
    for (const auto& sh : cm.shards()) {
      map.shards.push_back({sh.id(), sh.start(), sh.end(), {sh.voters().begin(), sh.voters().end()},
                            {sh.learners().begin(), sh.learners().end()}, sh.epoch()});
    }
  });
}

}  // namespace ring
