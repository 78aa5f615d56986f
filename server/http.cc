#include "server/http.h"

namespace ring::server {

namespace {
constexpr size_t kMaxRequestBytes = 8192;

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
  }
  return "Error";
}
}  // namespace

HttpServer::HttpServer(asio::io_context&, asio::ip::tcp::acceptor acceptor, Handler handler)
    : acceptor_(std::move(acceptor)), handler_(std::move(handler)) {}

void HttpServer::Start() {
  asio::co_spawn(acceptor_.get_executor(), AcceptLoop(), asio::detached);
}

void HttpServer::Stop() {
  asio::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> HttpServer::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor_.get_executor(), Serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> HttpServer::Serve(asio::ip::tcp::socket socket) {
  std::string req;
  asio::steady_timer deadline(socket.get_executor(), std::chrono::seconds(5));
  deadline.async_wait([&socket](asio::error_code ec) {
    if (!ec) socket.close(ec);
  });
  auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(req, kMaxRequestBytes),
                                                 "\r\n\r\n", kUseTuple);
  deadline.cancel();
  HttpReply reply;
  if (ec) {
    if (req.size() < kMaxRequestBytes) co_return;  // peer went away or timed out
    reply = {400, "text/plain", "request too large\n"};
  } else {
    size_t sp1 = req.find(' ');
    size_t sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
    if (sp2 == std::string::npos) {
      reply = {400, "text/plain", "malformed request line\n"};
    } else if (req.compare(0, sp1, "GET") != 0) {
      reply = {405, "text/plain", "only GET is supported\n"};
    } else {
      std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
      if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
      reply = handler_(path);
    }
  }
  std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " " + Reason(reply.status) +
                    "\r\nContent-Type: " + reply.content_type +
                    "\r\nContent-Length: " + std::to_string(reply.body.size()) +
                    "\r\nConnection: close\r\n\r\n" + reply.body;
  co_await asio::async_write(socket, asio::buffer(out), kUseTuple);
  socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
}

}  // namespace ring::server
