#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace ring::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string Bin(const std::string& name) { return std::string(RING_BIN_DIR) + "/" + name; }

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "ringtest-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  REQUIRE(p != nullptr);
  path_ = p;
}

TempDir::~TempDir() {
  // RING_TEST_KEEP=1 keeps every test's directory (data and ringd logs) for a post-mortem.
  if (const char* keep = std::getenv("RING_TEST_KEEP"); keep && *keep && std::string(keep) != "0") {
    std::fprintf(stderr, "kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
}

ScratchEngine::ScratchEngine() { Reopen(); }

ScratchEngine::~ScratchEngine() { engine_.reset(); }

void ScratchEngine::Reopen() {
  engine_.reset();
  storage::EngineOptions o;
  o.dir = dir_.path() + "/db";
  o.reserve_disk_bytes = 0;  // tests must not depend on the machine's free space
  auto e = storage::Engine::Open(o);
  REQUIRE(e.ok());
  engine_ = std::move(e).value();
}

namespace {

// fork + exec with the child dying when the test process dies.
pid_t Spawn(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    if (in_fd >= 0) dup2(in_fd, 0);
    if (out_fd >= 0) dup2(out_fd, 1);
    if (err_fd >= 0) dup2(err_fd, 2);
    signal(SIGPIPE, SIG_DFL);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
                         std::chrono::milliseconds timeout) {
  CommandResult r;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  REQUIRE(pipe2(in_pipe, O_CLOEXEC) == 0);  // CLOEXEC: the child must not hold its own stdin open
  REQUIRE(pipe2(out_pipe, O_CLOEXEC) == 0);
  REQUIRE(pipe2(err_pipe, O_CLOEXEC) == 0);
  pid_t pid = Spawn(argv, in_pipe[0], out_pipe[1], err_pipe[1]);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  // Feed stdin from the same poll loop that drains stdout/stderr: writing all input first
  // would deadlock against a child that fills its output pipe before reading everything.
  fcntl(in_pipe[1], F_SETFL, fcntl(in_pipe[1], F_GETFL) | O_NONBLOCK);
  size_t in_off = 0;
  int in_fd = in_pipe[1];
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[3] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}, {in_fd, POLLOUT, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 3, static_cast<int>(left.count())) <= 0) continue;
    if (fds[2].fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(fds[2].fd, input.data() + in_off, input.size() - in_off);
      if (n > 0) in_off += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) in_off = input.size();  // the child closed stdin early
      if (in_off == input.size()) {
        close(fds[2].fd);
        fds[2].fd = -1;
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, n);
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) && !r.timed_out ? WEXITSTATUS(status) : -1;
  return r;
}

Process::Process(std::vector<std::string> argv, std::string log_path) : log_path_(std::move(log_path)) {
  int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_ = Spawn(argv, devnull, fd, fd);
  close(fd);
  close(devnull);
  REQUIRE(pid_ > 0);
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    kill(pid_, SIGCONT);  // a stopped process must run to die
    waitpid(pid_, &status_, 0);
  }
}

bool Process::running() {
  if (reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

void Process::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

int Process::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(5ms);
  }
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

std::string Process::Log() const { return ReadFile(log_path_); }

Ringd::Ringd(RingdOptions options) : options_(std::move(options)) { Launch("127.0.0.1:0"); }

Ringd::~Ringd() = default;

void Ringd::Launch(const std::string& listen) {
  ++generation_;
  std::string ready = options_.data_dir + ".ready";
  std::error_code ec;
  fs::remove(ready, ec);
  std::vector<std::string> argv = {Bin("ringd"), "--data-dir", options_.data_dir, "--listen", listen,
                                   "--metrics-listen", "127.0.0.1:0", "--ready-file", ready,
                                   "--log-level", "info"};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  proc_.reset();  // reap any previous incarnation first
  proc_ = std::make_unique<Process>(argv, options_.data_dir + ".log");
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!fs::exists(ready)) {
    if (!proc_->running()) FAIL("ringd exited during startup:\n" << proc_->Log());
    if (std::chrono::steady_clock::now() > deadline) FAIL("ringd did not become ready in 20 s:\n" << proc_->Log());
    std::this_thread::sleep_for(10ms);
  }
  std::istringstream in(ReadFile(ready));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("listen=", 0) == 0) address_ = line.substr(7);
    if (line.rfind("metrics=", 0) == 0) metrics_ = line.substr(8);
  }
  REQUIRE(!address_.empty());
}

int Ringd::Stop(std::chrono::milliseconds timeout) {
  proc_->Signal(SIGTERM);
  int code = proc_->Wait(timeout);
  if (code == -1) {
    proc_->Signal(SIGKILL);
    proc_->Wait(5s);
  }
  return code;
}

void Ringd::Kill9() {
  proc_->Signal(SIGKILL);
  proc_->Wait(10s);
}

void Ringd::Restart() {
  if (proc_->running()) Kill9();
  Launch(address_);
}

namespace {
int ConnectTo(const std::string& address) {
  auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}
}  // namespace

RawReply SendRaw(const std::string& address, const std::string& bytes, std::chrono::milliseconds timeout,
                 const std::function<bool(const std::string&)>& enough) {
  RawReply r;
  int fd = ConnectTo(address);
  REQUIRE(fd >= 0);
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the node may close early on hostile input; that is allowed
    off += static_cast<size_t>(n);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = true;
      break;
    }
    r.bytes.append(buf, n);
    if (enough && enough(r.bytes)) break;
  }
  close(fd);
  return r;
}

std::pair<int, std::string> HttpGet(const std::string& address, const std::string& path) {
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + address + "\r\nConnection: close\r\n\r\n";
  RawReply r = SendRaw(address, req, 5s);
  if (r.bytes.rfind("HTTP/1.1 ", 0) != 0) return {0, ""};
  int code = std::stoi(r.bytes.substr(9, 3));
  auto body = r.bytes.find("\r\n\r\n");
  return {code, body == std::string::npos ? "" : r.bytes.substr(body + 4)};
}

int BindLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

uint16_t FreePort() {
  uint16_t port = 0;
  close(BindLoopback(&port));
  return port;
}

std::unique_ptr<Client> OpenClient(std::vector<std::string> seeds, std::chrono::milliseconds timeout) {
  ClientOptions o;
  o.seeds = std::move(seeds);
  o.default_timeout = timeout;
  o.connect_timeout = std::chrono::milliseconds(300);
  std::unique_ptr<Client> c;
  REQUIRE(Client::Open(o, &c).ok());
  return c;
}

}  // namespace ring::test
