#include "server/blocking_connection.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/ring.pb.h"
#include "proto/wire.h"

namespace ring::server {

using Clock = std::chrono::steady_clock;

BlockingConnection::BlockingConnection(std::chrono::milliseconds timeout, const std::atomic<bool>* stop,
                                       std::string peer)
    : timeout_(timeout), stop_(stop), peer_(std::move(peer)) {}

BlockingConnection::~BlockingConnection() {
  if (fd_ >= 0) ::close(fd_);
}

Status BlockingConnection::Connect(const Endpoint& to) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    reader_ = FrameReader();
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(to.host.c_str(), std::to_string(to.port).c_str(), &hints, &res);
  if (rc != 0) return Status::Unavailable("resolve " + to.host + ": " + gai_strerror(rc));
  Status last = Status::Unavailable("connect " + to.ToString() + ": no address");
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Status::Unavailable("connect " + to.ToString() + ": " + ErrnoText(errno));
      ::close(fd);
      continue;
    }
    fd_ = fd;
    Status s = Wait(POLLOUT);
    int err = 0;
    socklen_t len = sizeof err;
    if (s.ok() && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::freeaddrinfo(res);
      return Status::OK();
    }
    last = s.ok() ? Status::Unavailable("connect " + to.ToString() + ": " + ErrnoText(err)) : s;
    ::close(fd);
    fd_ = -1;
  }
  ::freeaddrinfo(res);
  return last;
}

Status BlockingConnection::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      RETURN_IF_ERROR(Wait(POLLOUT));
    } else {
      return Status::Unavailable("send: " + ErrnoText(errno));
    }
  }
  return Status::OK();
}

Status BlockingConnection::Receive(pb::Response* resp) {
  for (;;) {
    auto next = reader_.Next();
    if (!next.ok()) return next.status();
    if (next->has_value()) {
      std::string_view payload = **next;
      if (!resp->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return Status::Corruption(peer_ + " sent an undecodable response");
      }
      return Status::OK();
    }
    char buf[64 << 10];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      reader_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0) {
      return Status::Unavailable(peer_ + " closed the connection");
    } else if (errno == EAGAIN || errno == EINTR) {
      RETURN_IF_ERROR(Wait(POLLIN));
    } else {
      return Status::Unavailable("recv: " + ErrnoText(errno));
    }
  }
}

Status BlockingConnection::Call(const Endpoint& to, const pb::Request& req, pb::Response* resp) {
  if (fd_ < 0) RETURN_IF_ERROR(Connect(to));
  std::string frame;
  AppendRequestFrame(req, &frame);
  RETURN_IF_ERROR(Send(frame));
  return Receive(resp);
}

Status BlockingConnection::Wait(short events) {
  auto deadline = Clock::now() + timeout_;
  for (;;) {
    if (stop_->load(std::memory_order_relaxed)) return Status::Unavailable("node is shutting down");
    pollfd p{fd_, events, 0};
    int rc = ::poll(&p, 1, 100);
    if (rc > 0) return Status::OK();
    if (rc < 0 && errno != EINTR) return Status::Unavailable("poll: " + ErrnoText(errno));
    if (Clock::now() >= deadline) {
      return Status::Timeout(peer_ + " did not answer within " + std::to_string(timeout_.count()) + " ms");
    }
  }
}

}  // namespace ring::server
