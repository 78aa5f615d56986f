// server/blocking_connection.h: BlockingConnection, a blocking client connection to
// another node, for the few callers that run on their own threads (snapshot fetch
// workers, the join loop): one frame out, one frame back, a deadline on every wait.
//
// Every wait is cut into 100 ms slices, so that the caller's `stop` flag is noticed
// promptly when the node shuts down. Errors are Unavailable (connect, send, receive,
// shutdown), Timeout (no progress within `timeout`) or Corruption (an undecodable reply),
// each naming `peer` (e.g. "snapshot source").
//
// Thread-safety: one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>

#include "common/endpoint.h"
#include "common/frame.h"
#include "common/status.h"

namespace ring::pb {
class Request;
class Response;
}  // namespace ring::pb

namespace ring::server {

class BlockingConnection {
 public:
  BlockingConnection(std::chrono::milliseconds timeout, const std::atomic<bool>* stop, std::string peer);
  ~BlockingConnection();
  BlockingConnection(const BlockingConnection&) = delete;
  BlockingConnection& operator=(const BlockingConnection&) = delete;

  Status Connect(const Endpoint& to);
  Status Send(std::string_view bytes);
  // The next Response on the connection.
  Status Receive(pb::Response* resp);
  // Connect (if not yet), send `req` framed, and receive one response.
  Status Call(const Endpoint& to, const pb::Request& req, pb::Response* resp);

 private:
  Status Wait(short events);

  int fd_ = -1;
  FrameReader reader_;
  const std::chrono::milliseconds timeout_;
  const std::atomic<bool>* const stop_;
  const std::string peer_;
};

}  // namespace ring::server
