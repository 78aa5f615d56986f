// server/connection.h: one client (or peer) connection to ringd.
//
// Three coroutines share the connection on the I/O thread:
//   ReadLoop   reads bytes, cuts frames, decodes requests and hands them to KvService.
//              It stops reading while `max_inflight_per_connection` requests await the
//              commit pipeline, or while more than kMaxPendingOutput bytes of replies are
//              unsent: that is the backpressure that bounds a node's memory per client.
//   WriteLoop  writes queued reply frames, coalescing everything queued since its last
//              write into one send.
//   IdleLoop   closes the connection after `idle_timeout_s` without a request in flight.
// An oversized frame gets an InvalidArgument reply (id 0) and then the connection closes,
// because the rest of the stream can no longer be framed. A frame that does not decode
// gets an InvalidArgument reply (id 0) and the connection stays open.
//
// Lifetime: shared_ptr; coroutines and pending mutation callbacks hold references.
// Thread-safety: everything runs on the server's single I/O thread, except the mutation
// callbacks, which only post back to it.
#pragma once

#include "common/asio.h"
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/frame.h"
#include "server/service.h"

namespace ring::server {

class Connection;

// Hands replies made on other threads (mutations are answered on the driver thread) to
// the I/O thread in batches: the first reply after a drain posts one task, which delivers
// every reply queued by the time it runs. A cycle that answers a thousand writes then
// costs the I/O thread one wakeup, not a thousand posted handlers.
class ReplyMailbox {
 public:
  explicit ReplyMailbox(asio::any_io_executor io);
  ~ReplyMailbox();
  ReplyMailbox(const ReplyMailbox&) = delete;
  ReplyMailbox& operator=(const ReplyMailbox&) = delete;
  // Any thread. Dropped if the connection is gone by then.
  void Push(std::weak_ptr<Connection> to, pb::Response&& reply);

 private:
  struct Item;
  void Drain();  // I/O thread

  asio::any_io_executor io_;
  std::mutex mu_;
  std::vector<Item> queue_;  // guarded by mu_
  bool posted_ = false;      // guarded by mu_: a Drain is on its way
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  static constexpr size_t kMaxPendingOutput = 16u << 20;

  Connection(asio::ip::tcp::socket socket, NodeContext* node, std::function<void(Connection*)> on_close);
  ~Connection();

  void Start();
  // Delivers the reply to a request that was in flight (I/O thread).
  void Answer(const pb::Response& reply);
  // Stops reading new requests; closes once every request in flight is answered and its
  // reply written.
  void BeginShutdown();
  // Closes now.
  void Close();

 private:
  asio::awaitable<void> ReadLoop();
  asio::awaitable<void> WriteLoop();
  asio::awaitable<void> IdleLoop();
  // Processes buffered frames while under the in-flight cap. False: close the connection.
  bool ProcessFrames();
  void QueueReply(const pb::Response& resp);
  void MaybeFinish();
  static void Wake(asio::steady_timer& t) { t.cancel(); }

  asio::ip::tcp::socket socket_;
  NodeContext* const node_;
  KvService service_;
  std::function<void(Connection*)> on_close_;
  FrameReader reader_;
  std::unique_ptr<pb::Request> request_;  // reused for every frame
  std::unique_ptr<pb::Response> response_;
  std::string out_;            // replies waiting for WriteLoop
  std::string writing_;        // the buffer being written now
  asio::steady_timer read_wake_;   // ReadLoop waits here for backpressure to clear
  asio::steady_timer write_wake_;  // WriteLoop waits here for replies
  asio::steady_timer idle_timer_;
  size_t inflight_ = 0;             // mutations awaiting the pipeline
  bool reading_ = true;             // false after EOF, an error, or BeginShutdown
  bool close_after_flush_ = false;  // set by an oversized frame
  bool closed_ = false;
  std::chrono::steady_clock::time_point last_active_;
};

}  // namespace ring::server
