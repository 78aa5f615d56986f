// Tests for server/peer_transport.{h,cc}: a PeerTransport on its own I/O thread sends to a
// plain Asio listener on 127.0.0.1 that cuts frames and decodes RaftBatches, the way a
// ringd connection does. The test thread plays the driver thread. Every wait is bounded,
// and the fixture stops everything even when a check fails.
#include "server/peer_transport.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/frame.h"
#include "harness.h"
#include "proto/ring.pb.h"
#include "replication/raft_codec.h"

namespace ring::server {
namespace {

using replication::GroupMessage;
using replication::MessageType;
using replication::NodeId;
using namespace std::chrono_literals;
using test::FreePort;

constexpr NodeId kSelf = 1;
constexpr NodeId kPeer = 2;
constexpr auto kWait = 5s;

// Polls `pred` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kWait) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Batch number `seq`: two messages whose fields encode `seq`, so order and integrity can
// be checked on arrival.
std::vector<GroupMessage> MakeBatch(uint64_t seq, size_t payload = 16) {
  std::vector<GroupMessage> out(2);
  for (uint64_t k = 0; k < 2; ++k) {
    GroupMessage& gm = out[k];
    gm.group = seq * 2 + k;
    gm.msg.type = k == 0 ? MessageType::kAppend : MessageType::kHeartbeat;
    gm.msg.from = kSelf;
    gm.msg.to = kPeer;
    gm.msg.term = 3;
    gm.msg.index = seq;
    gm.msg.commit = seq + k;
    if (k == 0) {
      gm.msg.entries.push_back({3, seq + 1, replication::EntryType::kNormal,
                                std::string(payload, static_cast<char>('a' + seq % 26))});
    }
  }
  return out;
}

// The sequence number MakeBatch encoded, or -1 if the batch is not one of its batches.
int64_t SeqOf(const std::vector<GroupMessage>& msgs) {
  if (msgs.size() != 2) return -1;
  uint64_t seq = msgs[0].msg.index;
  auto want = MakeBatch(seq, msgs[0].msg.entries.empty() ? 0 : msgs[0].msg.entries[0].data.size());
  for (size_t k = 0; k < 2; ++k) {
    const auto& a = want[k];
    const auto& b = msgs[k];
    if (a.group != b.group || a.msg.type != b.msg.type || a.msg.from != b.msg.from || a.msg.to != b.msg.to ||
        a.msg.term != b.msg.term || a.msg.index != b.msg.index || a.msg.commit != b.msg.commit ||
        a.msg.entries != b.msg.entries) {
      return -1;
    }
  }
  return static_cast<int64_t>(seq);
}

// A stand-in for a ringd node's port: accepts connections and decodes every frame as a
// Request carrying a RaftBatch. Runs on the fixture's I/O thread; the test thread reads
// what it recorded through the accessors.
class TestListener {
 public:
  struct Batch {
    int connection = 0;  // which accepted connection (1-based) carried it
    uint64_t from_node = 0;
    std::vector<GroupMessage> msgs;
  };

  // Listens on 127.0.0.1:`port` (0 = any). `read` false: accept, then never read.
  // `close_after` > 0: close each connection after that many frames.
  TestListener(asio::io_context& io, uint16_t port, bool read = true, int close_after = 0)
      : io_(io), acceptor_(io), read_(read), close_after_(close_after) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, AcceptLoop(), asio::detached);
  }

  uint16_t port() const { return port_; }

  // I/O thread only.
  void Close() {
    asio::error_code ec;
    acceptor_.close(ec);
    for (auto& s : sockets_) s->close(ec);
  }

  std::vector<Batch> batches() const {
    std::lock_guard lock(mu_);
    return batches_;
  }
  size_t batch_count() const {
    std::lock_guard lock(mu_);
    return batches_.size();
  }
  int connections() const {
    std::lock_guard lock(mu_);
    return connections_;
  }
  // Frames that were not a Request{raft} holding a valid RaftBatch.
  std::vector<std::string> errors() const {
    std::lock_guard lock(mu_);
    return errors_;
  }
  bool eof_seen() const {
    std::lock_guard lock(mu_);
    return eofs_ > 0;
  }

 private:
  asio::awaitable<void> AcceptLoop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
      if (ec) co_return;
      auto s = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
      sockets_.push_back(s);
      int id;
      {
        std::lock_guard lock(mu_);
        id = ++connections_;
      }
      if (read_) asio::co_spawn(io_, ReadLoop(s, id), asio::detached);
    }
  }

  asio::awaitable<void> ReadLoop(std::shared_ptr<asio::ip::tcp::socket> socket, int id) {
    FrameReader reader;
    std::string buf(64 * 1024, '\0');
    int frames = 0;
    for (;;) {
      auto [ec, n] = co_await socket->async_read_some(asio::buffer(buf), kUseTuple);
      if (ec || n == 0) break;
      reader.Feed(std::string_view(buf.data(), n));
      for (;;) {
        auto next = reader.Next();
        if (!next.ok()) {
          Error(next.status().ToString());
          co_return;
        }
        if (!next->has_value()) break;
        pb::Request req;
        if (!req.ParseFromArray((*next)->data(), static_cast<int>((*next)->size())) || !req.has_raft()) {
          Error("frame is not a Request{raft}");
          continue;
        }
        uint64_t from = req.raft().from_node();
        auto msgs = replication::DecodeRaftBatch(std::move(*req.mutable_raft()));
        if (!msgs.ok()) {
          Error(msgs.status().ToString());
          continue;
        }
        {
          std::lock_guard lock(mu_);
          batches_.push_back(Batch{id, from, std::move(msgs).value()});
        }
        if (close_after_ > 0 && ++frames >= close_after_) {
          asio::error_code cec;
          socket->close(cec);
          co_return;
        }
      }
    }
    std::lock_guard lock(mu_);
    ++eofs_;
  }

  void Error(std::string e) {
    std::lock_guard lock(mu_);
    errors_.push_back(std::move(e));
  }

  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  const bool read_;
  const int close_after_;
  uint16_t port_ = 0;
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> sockets_;  // I/O thread only

  mutable std::mutex mu_;
  std::vector<Batch> batches_;      // guarded by mu_
  std::vector<std::string> errors_;  // guarded by mu_
  int connections_ = 0;             // guarded by mu_
  int eofs_ = 0;                    // guarded by mu_
};


PeerTransportOptions FastOptions() {
  PeerTransportOptions o;
  o.min_backoff = 20ms;
  o.max_backoff = 100ms;
  o.connect_timeout = 1000ms;
  return o;
}

// An I/O thread, the listeners and the transport under test. The destructor stops them
// all on the I/O thread, then joins it, whatever state a failed check left them in.
class Fixture {
 public:
  Fixture() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}

  ~Fixture() {
    Resume();
    OnIo([this] {
      if (transport_) transport_->Stop();
      for (auto& l : listeners_) l->Close();
    });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  TestListener& Listen(uint16_t port = 0, bool read = true, int close_after = 0) {
    listeners_.push_back(std::make_unique<TestListener>(io_, port, read, close_after));
    return *listeners_.back();
  }

  PeerTransport& Connect(uint16_t port, PeerTransportOptions options = FastOptions()) {
    std::map<NodeId, Endpoint> peers{{kPeer, Endpoint{"127.0.0.1", port}}};
    transport_ = std::make_unique<PeerTransport>(io_, kSelf, std::move(peers), options);
    return *transport_;
  }

  // Runs `fn` on the I/O thread and waits for it (bounded). False if it did not run in time.
  bool OnIo(std::function<void()> fn) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    asio::post(io_, [fn = std::move(fn), done] {
      fn();
      done->set_value();
    });
    return fut.wait_for(kWait) == std::future_status::ready;
  }

  // Blocks the I/O thread until Resume(), so that Sends pile up in the transport's queue.
  void Pause() {
    release_ = std::make_shared<std::promise<void>>();
    auto paused = std::make_shared<std::promise<void>>();
    auto fut = paused->get_future();
    asio::post(io_, [paused, released = release_->get_future().share()] {
      paused->set_value();
      released.wait_for(kWait);
    });
    fut.wait_for(kWait);
  }
  void Resume() {
    if (release_) release_->set_value();
    release_.reset();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::unique_ptr<TestListener>> listeners_;
  std::unique_ptr<PeerTransport> transport_;
  std::shared_ptr<std::promise<void>> release_;
  std::thread thread_;  // last: starts once everything above exists
};

TEST_CASE("peer transport delivers batches in order and intact", "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen();
  PeerTransport& t = f.Connect(listener.port());
  constexpr uint64_t kBatches = 200;
  for (uint64_t i = 0; i < kBatches; ++i) {
    t.Send(kPeer, MakeBatch(i, i * 37));
    if (i % 50 == 0) std::this_thread::sleep_for(1ms);  // let some writes go out singly
  }
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= kBatches; }));
  auto got = listener.batches();
  REQUIRE(got.size() == kBatches);
  for (uint64_t i = 0; i < kBatches; ++i) {
    INFO("batch " << i);
    CHECK(got[i].from_node == kSelf);
    CHECK(SeqOf(got[i].msgs) == static_cast<int64_t>(i));
    CHECK(got[i].connection == 1);
  }
  CHECK(listener.errors().empty());
  CHECK(listener.connections() == 1);
  REQUIRE(WaitUntil([&] { return t.stats().batches_sent.load() == kBatches; }));
  CHECK(t.stats().batches_dropped.load() == 0);
  CHECK(t.stats().connect_failures.load() == 0);
  CHECK(t.stats().bytes_sent.load() > 0);
  CHECK(t.TakeUnreachable().empty());
}

TEST_CASE("peer transport coalesces everything queued into one write", "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen();
  PeerTransport& t = f.Connect(listener.port());
  // With the I/O thread held, every Send queues behind the first wake-up.
  f.Pause();
  constexpr uint64_t kBatches = 1000;
  for (uint64_t i = 0; i < kBatches; ++i) t.Send(kPeer, MakeBatch(i));
  f.Resume();
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= kBatches; }));
  REQUIRE(WaitUntil([&] { return t.stats().batches_sent.load() == kBatches; }));
  CHECK(t.stats().writes.load() <= 2);
  auto got = listener.batches();
  for (uint64_t i = 0; i < kBatches; ++i) REQUIRE(SeqOf(got[i].msgs) == static_cast<int64_t>(i));
}

TEST_CASE("peer transport reconnects with backoff to a listener that appears later", "[peer_transport]") {
  Fixture f;
  const uint16_t port = FreePort();
  PeerTransport& t = f.Connect(port);
  // Nothing listens: batches are dropped, connects fail, and the peer is reported.
  std::vector<NodeId> unreachable;
  uint64_t seq = 0;
  REQUIRE(WaitUntil([&] {
    t.Send(kPeer, MakeBatch(seq++));
    if (unreachable.empty()) unreachable = t.TakeUnreachable();
    return !unreachable.empty() && t.stats().connect_failures.load() >= 2;
  }));
  CHECK(unreachable == std::vector<NodeId>{kPeer});
  CHECK(t.stats().batches_dropped.load() > 0);
  CHECK(t.stats().batches_sent.load() == 0);

  // Still down and still sending: reported again.
  t.Send(kPeer, MakeBatch(seq++));
  REQUIRE(WaitUntil([&] {
    t.Send(kPeer, MakeBatch(seq++));
    return t.TakeUnreachable() == std::vector<NodeId>{kPeer};
  }));

  TestListener& listener = f.Listen(port);
  const uint64_t first_after = seq;
  REQUIRE(WaitUntil([&] {
    t.Send(kPeer, MakeBatch(seq++));
    std::this_thread::sleep_for(1ms);
    return listener.batch_count() >= 10;
  }));
  // What arrives is in order; what was dropped is simply missing.
  auto got = listener.batches();
  int64_t last = -1;
  for (const auto& b : got) {
    int64_t s = SeqOf(b.msgs);
    REQUIRE(s > last);
    last = s;
  }
  CHECK(SeqOf(got.back().msgs) >= static_cast<int64_t>(first_after));
  CHECK(listener.errors().empty());
  CHECK(t.stats().batches_sent.load() >= 10);

  // Reachable again: nothing new is reported once the failures before are taken.
  t.TakeUnreachable();
  for (int i = 0; i < 20; ++i) t.Send(kPeer, MakeBatch(seq++));
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= got.size() + 20; }));
  CHECK(t.TakeUnreachable().empty());
}

TEST_CASE("peer transport reports an unreachable peer only while it fails", "[peer_transport]") {
  Fixture f;
  PeerTransport& t = f.Connect(FreePort());
  CHECK(t.TakeUnreachable().empty());
  t.Send(kPeer, MakeBatch(0));
  std::vector<NodeId> unreachable;
  REQUIRE(WaitUntil([&] {
    unreachable = t.TakeUnreachable();
    return !unreachable.empty();
  }));
  CHECK(unreachable == std::vector<NodeId>{kPeer});
  // Taken once; with nothing more sent there is no new failure to report.
  std::this_thread::sleep_for(300ms);
  CHECK(t.TakeUnreachable().empty());
  CHECK(t.stats().connect_failures.load() == 1);
  CHECK(t.stats().batches_dropped.load() == 1);

  // A node that is not a peer: dropped and counted, never reported as a peer.
  t.Send(99, MakeBatch(1));
  CHECK(t.stats().batches_dropped.load() == 2);
  CHECK(t.TakeUnreachable().empty());
}

TEST_CASE("peer transport drops at its queue bound instead of growing", "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen();
  PeerTransportOptions o = FastOptions();
  o.max_queued_bytes = 1 << 20;
  PeerTransport& t = f.Connect(listener.port(), o);
  // Hold the I/O thread so nothing drains: 40 batches of ~100 KiB against a 1 MiB bound.
  f.Pause();
  constexpr uint64_t kBatches = 40;
  for (uint64_t i = 0; i < kBatches; ++i) t.Send(kPeer, MakeBatch(i, 100 * 1024));
  const uint64_t dropped = t.stats().batches_dropped.load();
  CHECK(dropped >= 29);
  CHECK(dropped <= 31);
  CHECK(t.TakeUnreachable() == std::vector<NodeId>{kPeer});
  f.Resume();
  // The queued prefix is delivered, in order; the rest was dropped whole.
  const uint64_t kept = kBatches - dropped;
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= kept; }));
  auto got = listener.batches();
  REQUIRE(got.size() == kept);
  for (uint64_t i = 0; i < kept; ++i) CHECK(SeqOf(got[i].msgs) == static_cast<int64_t>(i));
  // Below the bound again: sending works.
  t.Send(kPeer, MakeBatch(kBatches, 100 * 1024));
  REQUIRE(WaitUntil([&] { return listener.batch_count() == kept + 1; }));
}

TEST_CASE("peer transport splits a batch over the frame limit and drops a message that alone exceeds it",
          "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen();
  PeerTransport& t = f.Connect(listener.port());
  // Three 3 MiB appends: 9 MiB in one Send, more than one 8 MiB frame.
  std::vector<GroupMessage> big;
  for (uint64_t i = 0; i < 3; ++i) {
    GroupMessage& gm = big.emplace_back();
    gm.group = 7;
    gm.msg.type = MessageType::kAppend;
    gm.msg.index = i;
    gm.msg.entries.push_back({1, i + 1, replication::EntryType::kNormal, std::string(3 << 20, 'x')});
  }
  t.Send(kPeer, big);
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= 2; }));
  auto got = listener.batches();
  REQUIRE(got.size() == 2);
  std::vector<GroupMessage> all;
  for (auto& b : got) all.insert(all.end(), b.msgs.begin(), b.msgs.end());
  REQUIRE(all.size() == 3);
  for (uint64_t i = 0; i < 3; ++i) {
    CHECK(all[i].msg.index == i);
    CHECK(all[i].msg.entries == big[i].msg.entries);
  }

  // One 9 MiB message can never be framed: dropped and counted; the rest still goes.
  std::vector<GroupMessage> huge = MakeBatch(5);
  huge[0].msg.entries[0].data = std::string(9 << 20, 'y');
  t.Send(kPeer, huge);
  REQUIRE(WaitUntil([&] { return listener.batch_count() >= 3; }));
  got = listener.batches();
  REQUIRE(got[2].msgs.size() == 1);
  CHECK(got[2].msgs[0].msg.type == MessageType::kHeartbeat);
  CHECK(t.stats().messages_too_large.load() == 1);
  CHECK(listener.errors().empty());
}

TEST_CASE("peer transport opens a new connection when the peer closes its end", "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen(0, /*read=*/true, /*close_after=*/1);
  PeerTransport& t = f.Connect(listener.port());
  uint64_t seq = 0;
  REQUIRE(WaitUntil([&] {
    t.Send(kPeer, MakeBatch(seq++));
    std::this_thread::sleep_for(5ms);
    return listener.connections() >= 3 && listener.batch_count() >= 3;
  }));
  auto got = listener.batches();
  for (size_t i = 1; i < got.size(); ++i) CHECK(SeqOf(got[i].msgs) > SeqOf(got[i - 1].msgs));
  CHECK(listener.errors().empty());
}

TEST_CASE("peer transport Stop closes the connection and drops later sends", "[peer_transport]") {
  Fixture f;
  TestListener& listener = f.Listen();
  PeerTransport& t = f.Connect(listener.port());
  t.Send(kPeer, MakeBatch(0));
  REQUIRE(WaitUntil([&] { return listener.batch_count() == 1; }));
  REQUIRE(f.OnIo([&] { t.Stop(); }));
  REQUIRE(WaitUntil([&] { return listener.eof_seen(); }));
  const uint64_t dropped = t.stats().batches_dropped.load();
  t.Send(kPeer, MakeBatch(1));
  CHECK(t.stats().batches_dropped.load() == dropped + 1);
  std::this_thread::sleep_for(50ms);
  CHECK(listener.batch_count() == 1);
  CHECK(t.TakeUnreachable().empty());
  REQUIRE(f.OnIo([&] { t.Stop(); }));  // idempotent
}

}  // namespace
}  // namespace ring::server
