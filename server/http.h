// server/http.h: a minimal HTTP/1.1 endpoint for GET /metrics and GET /health.
//
// Enough HTTP for Prometheus scrapers, load balancers and curl: one request per
// connection, GET only, bounded request size, `Connection: close`.
//
// Thread-safety: runs on the server's I/O thread.
#pragma once

#include "common/asio.h"
#include <functional>
#include <string>

namespace ring::server {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; version=0.0.4";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpReply(const std::string& path)>;
  HttpServer(asio::io_context& io, asio::ip::tcp::acceptor acceptor, Handler handler);
  void Start();
  void Stop();

 private:
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Serve(asio::ip::tcp::socket socket);
  asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
};

}  // namespace ring::server
