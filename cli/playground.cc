// `ringctl playground`: see playground.h for the contract. Reading order: RunPlayground
// at the bottom, then Playground::Run, which goes Validate -> PrepareDir -> Launch ->
// WaitUntilServing -> PrintBanner -> Serve -> StopAll.
//
// Signals are never handled asynchronously here. SIGINT, SIGTERM, SIGHUP and SIGCHLD are
// blocked up front and collected with sigtimedwait() in the one loop that owns the nodes,
// so "a node died" and "the user pressed Ctrl-C" are ordinary events in sequence, and no
// code runs in a signal handler.
#include "cli/playground.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/exit_codes.h"
#include "common/json.h"
#include "ring/client.h"

namespace ring::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kReadyTimeout = 20s;
// ringd answers SIGTERM by finishing in-flight requests for up to its shutdown grace
// (10 s by default); allow a little more before SIGKILL.
constexpr auto kStopTimeout = 15s;
constexpr auto kPingTimeout = 500ms;
constexpr int kMaxNodes = 9;
constexpr size_t kLogTailLines = 20;
// Written into the directory so that a later run may reuse (and on exit remove) it; a
// directory without it that holds anything is refused, since removing it could destroy
// a user's files.
constexpr char kMarkerFile[] = ".ring-playground";

struct Node {
  std::string name;  // "node-1"
  int port = 0;
  int metrics_port = 0;  // 0: metrics off
  std::string data_dir, log_path, ready_path;
  std::string address;  // from the ready file once it exists
  std::string metrics;  // likewise; empty when metrics are off
  pid_t pid = -1;
  bool serving = false;
  bool reaped = false;
  int wait_status = 0;
};

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "stopped with status " + std::to_string(wait_status);
}

// The last lines of a log, indented for quoting under an error message. Reads only the
// end of the file: a crashing node's log can be large.
std::string LogTail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "    (no log at " + path + ")\n";
  in.seekg(0, std::ios::end);
  auto size = static_cast<std::streamoff>(in.tellg());
  std::streamoff start = std::max<std::streamoff>(0, size - 16 * 1024);
  in.seekg(start);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  std::istringstream ss(text);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  if (start > 0 && !lines.empty()) lines.erase(lines.begin());  // probably cut mid-line
  if (lines.empty()) return "    (the log is empty)\n";
  std::string out;
  for (size_t i = lines.size() > kLogTailLines ? lines.size() - kLogTailLines : 0; i < lines.size(); ++i) {
    out += "    " + lines[i] + "\n";
  }
  return out;
}

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
}

std::optional<fs::path> FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string_view rest(path);
  for (;;) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
    if (IsExecutable(candidate)) return candidate;
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon + 1);
  }
}

// The directory holding this ringctl binary; ringd and ringbench are built beside it.
fs::path ExeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

// How to spell a sibling tool in printed examples: the bare name when PATH finds this
// very binary (copy-paste works and reads well), else the full path.
std::string CommandFor(const std::string& name) {
  fs::path sibling = ExeDir() / name;
  bool has_sibling = !ExeDir().empty() && IsExecutable(sibling);
  auto on_path = FindOnPath(name);
  std::error_code ec;
  if (on_path && (!has_sibling || fs::equivalent(*on_path, sibling, ec))) return name;
  return has_sibling ? sibling.string() : name;
}

// Whether ringd could bind 127.0.0.1:port. SO_REUSEADDR as ringd's acceptor sets it, so a
// port held only by TIME_WAIT connections is not reported as busy.
bool PortIsFree(int port, std::string* why) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int err = errno;
  close(fd);
  if (rc == 0) return true;
  *why = err == EADDRINUSE ? "already in use" : std::strerror(err);
  return false;
}

// Owns the nodes of one playground run, from launch to reaping.
class Playground {
 public:
  explicit Playground(PlaygroundOptions options) : options_(std::move(options)) {}

  int Run();

 private:
  // Reports a failure that ends the run and returns `exit_code`.
  int Fail(int exit_code, const char* code, const std::string& message);
  std::optional<std::string> Validate() const;
  int PrepareDir();  // kExitOk, or the exit code after reporting why not
  bool Launch(Node* node, const std::string& ringd, std::string* error);
  // Waits for every node to serve. Returns nullopt when all do; otherwise the run is over:
  // the nodes are stopped and the result is the exit code (kExitOk if the user interrupted).
  std::optional<int> WaitUntilServing();
  bool ReadReadyFile(Node* node);
  void PrintBanner() const;
  int Serve();
  // Reaps any node that exited; returns the first one newly found dead, or null.
  Node* ReapExited();
  void StopAll();
  void RemoveDirUnlessKept();
  std::string ClusterList() const;

  const PlaygroundOptions options_;
  sigset_t signals_{};  // the signals this loop collects; blocked in every thread
  fs::path dir_;
  bool dir_created_ = false;
  std::vector<Node> nodes_;
};

int Playground::Fail(int exit_code, const char* code, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "ringctl: playground: %s\n", message.c_str());
  if (options_.json) {
    JsonWriter w;
    w.BeginObject().Key("ok").Bool(false).Key("code").String(code).Key("error").String(message).EndObject();
    std::printf("%s\n", w.str().c_str());
    std::fflush(stdout);
  }
  return exit_code;
}

std::optional<std::string> Playground::Validate() const {
  const auto& o = options_;
  if (o.nodes < 1 || o.nodes > kMaxNodes) return "--nodes must be from 1 to " + std::to_string(kMaxNodes);
  int last = o.base_port + o.nodes - 1;
  if (o.base_port < 1 || last > 65535) {
    return "--base-port " + std::to_string(o.base_port) + " with " + std::to_string(o.nodes) +
           " nodes needs ports up to " + std::to_string(last) + "; ports must be from 1 to 65535";
  }
  if (o.metrics_base_port != 0) {
    int mlast = o.metrics_base_port + o.nodes - 1;
    if (o.metrics_base_port < 1 || mlast > 65535) {
      return "--metrics-base-port " + std::to_string(o.metrics_base_port) + " with " +
             std::to_string(o.nodes) + " nodes needs ports up to " + std::to_string(mlast) +
             "; ports must be from 1 to 65535 (or 0 for no metrics)";
    }
    if (o.metrics_base_port <= last && o.base_port <= mlast) {
      return "client ports " + std::to_string(o.base_port) + "-" + std::to_string(last) +
             " overlap metrics ports " + std::to_string(o.metrics_base_port) + "-" + std::to_string(mlast) +
             "; change --base-port or --metrics-base-port";
    }
  }
  if (o.sync_policy != "sync" && o.sync_policy != "async") return "--sync-policy must be sync or async";
  return std::nullopt;
}

int Playground::PrepareDir() {
  std::error_code ec;
  if (options_.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path(ec) / "ring-playground-XXXXXX").string();
    if (ec || mkdtemp(tmpl.data()) == nullptr) {
      return Fail(kExitSoftware, "IOError", "cannot create a directory like " + tmpl + ": " + std::strerror(errno));
    }
    dir_ = tmpl;
    dir_created_ = true;
  } else {
    dir_ = fs::absolute(options_.dir, ec);
    if (ec) dir_ = options_.dir;
    if (fs::exists(dir_, ec)) {
      if (!fs::is_directory(dir_, ec)) {
        return Fail(kExitUsage, "UsageError", "--dir " + dir_.string() + " exists and is not a directory");
      }
      if (!fs::is_empty(dir_, ec) && !fs::exists(dir_ / kMarkerFile, ec)) {
        return Fail(kExitUsage, "UsageError",
                    "--dir " + dir_.string() +
                        " is not empty and was not made by a playground; the playground removes its "
                        "directory on exit, so give a new or empty one");
      }
    } else {
      fs::create_directories(dir_, ec);
      if (ec) return Fail(kExitSoftware, "IOError", "cannot create --dir " + dir_.string() + ": " + ec.message());
      dir_created_ = true;
    }
  }
  std::ofstream marker(dir_ / kMarkerFile);
  marker << "Made by `ringctl playground`, which removes this directory on exit unless --keep.\n";
  if (!marker) return Fail(kExitSoftware, "IOError", "cannot write in " + dir_.string());
  return kExitOk;
}

bool Playground::Launch(Node* node, const std::string& ringd, std::string* error) {
  std::error_code ec;
  fs::remove(node->ready_path, ec);  // a stale file from a kept run would look ready
  std::vector<std::string> args = {
      ringd,
      "--node-id", node->name,
      "--data-dir", node->data_dir,
      "--listen", "127.0.0.1:" + std::to_string(node->port),
      "--metrics-listen", node->metrics_port == 0 ? "off" : "127.0.0.1:" + std::to_string(node->metrics_port),
      "--sync-policy", options_.sync_policy,
      "--ready-file", node->ready_path,
  };
  if (nodes_.size() > 1) {
    // One static cluster: every node lists every node, in the same order, so each shard
    // is replicated on all of them.
    std::string peers;
    for (const auto& n : nodes_) peers += (peers.empty() ? "" : ",") + ("127.0.0.1:" + std::to_string(n.port));
    args.push_back("--peers");
    args.push_back(peers);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int log_fd = open(node->log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "cannot open " + node->log_path + ": " + std::strerror(errno);
    return false;
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    setpgid(0, 0);  // out of the terminal's group: Ctrl-C reaches ringctl, which stops us in order
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // SIGTERM, so even an orphaned node shuts down cleanly
    if (getppid() != parent) _exit(127);  // ringctl died before prctl took effect
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // blocked masks survive exec; ringd needs its signals
    signal(SIGPIPE, SIG_DFL);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    static const char kMsg[] = "ringctl playground: exec of ringd failed\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    (void)ignored;
    _exit(127);
  }
  int fork_errno = errno;
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(fork_errno);
    return false;
  }
  setpgid(pid, pid);  // also here, so the group exists whichever process runs first
  node->pid = pid;
  return true;
}

bool Playground::ReadReadyFile(Node* node) {
  std::ifstream in(node->ready_path);
  if (!in) return false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("listen=", 0) == 0) node->address = line.substr(7);
    if (line.rfind("metrics=", 0) == 0) node->metrics = line.substr(8);
  }
  return !node->address.empty();
}

Node* Playground::ReapExited() {
  Node* first = nullptr;
  for (auto& n : nodes_) {
    if (n.reaped || n.pid <= 0) continue;
    if (waitpid(n.pid, &n.wait_status, WNOHANG) == n.pid) {
      n.reaped = true;
      if (first == nullptr) first = &n;
    }
  }
  return first;
}

std::optional<int> Playground::WaitUntilServing() {
  auto deadline = Clock::now() + kReadyTimeout;
  // One client per node: Ping goes to the first seed that answers, and each node must
  // answer for itself.
  std::vector<std::unique_ptr<Client>> clients(nodes_.size());
  for (;;) {
    if (Node* dead = ReapExited()) {
      std::string message = dead->name + " " + DescribeExit(dead->wait_status) + " during startup; the end of " +
                            dead->log_path + ":\n" + LogTail(dead->log_path);
      StopAll();
      return Fail(kExitSoftware, "Unavailable", message + "Kept " + dir_.string() + " for inspection.");
    }
    bool all = true;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      Node& n = nodes_[i];
      if (n.serving) continue;
      all = false;
      if (!clients[i]) {
        if (!ReadReadyFile(&n)) continue;
        ClientOptions co;
        co.seeds = {n.address};
        co.connections_per_node = 1;
        co.connect_timeout = kPingTimeout;
        if (!Client::Open(co, &clients[i]).ok()) continue;
      }
      if (clients[i]->Ping({.timeout = kPingTimeout}).ok()) {
        n.serving = true;
        clients[i].reset();
      }
    }
    if (all) return std::nullopt;
    if (Clock::now() >= deadline) {
      std::string message = "not every node was serving within " +
                            std::to_string(std::chrono::seconds(kReadyTimeout).count()) + " s:\n";
      for (const auto& n : nodes_) {
        if (n.serving) continue;
        message += "  " + n.name + (n.address.empty() ? " never wrote " + n.ready_path : " did not answer a ping at " + n.address) +
                   "; the end of " + n.log_path + ":\n" + LogTail(n.log_path);
      }
      StopAll();
      return Fail(kExitSoftware, "Unavailable", message + "Kept " + dir_.string() + " for inspection.");
    }
    timespec pause{0, 20 * 1000 * 1000};
    siginfo_t info;
    int sig = sigtimedwait(&signals_, &info, &pause);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      std::fprintf(stderr, "ringctl: playground: interrupted during startup; stopping\n");
      StopAll();
      RemoveDirUnlessKept();
      return kExitOk;
    }
  }
}

std::string Playground::ClusterList() const {
  std::string out;
  for (const auto& n : nodes_) out += (out.empty() ? "" : ",") + n.address;
  return out;
}

void Playground::PrintBanner() const {
  std::string cluster = ClusterList();
  if (options_.json) {
    JsonWriter w;
    w.BeginObject().Key("ok").Bool(true).Key("dir").String(dir_.string()).Key("cluster").String(cluster);
    w.Key("keep").Bool(options_.keep).Key("replicated").Bool(nodes_.size() > 1).Key("nodes").BeginArray();
    for (const auto& n : nodes_) {
      w.BeginObject().Key("name").String(n.name).Key("address").String(n.address).Key("metrics");
      if (n.metrics.empty()) w.Null();
      else w.String(n.metrics);
      w.Key("pid").Int(n.pid).Key("data_dir").String(n.data_dir).Key("log").String(n.log_path).EndObject();
    }
    w.EndArray().EndObject();
    std::printf("%s\n", w.str().c_str());
    std::fflush(stdout);
    return;
  }
  std::string ringctl = CommandFor("ringctl");
  std::string ringbench = CommandFor("ringbench");
  std::string out;
  out += "ringstore playground: " + std::to_string(nodes_.size()) + (nodes_.size() == 1 ? " node" : " nodes") +
         " serving, data in " + dir_.string() + "\n\n";
  std::vector<std::vector<std::string>> rows = {{"NODE", "ADDRESS", "METRICS", "PID", "LOG"}};
  for (const auto& n : nodes_) {
    rows.push_back({n.name, n.address, n.metrics.empty() ? "off" : "http://" + n.metrics + "/metrics",
                    std::to_string(n.pid), n.log_path});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) widths[c] = std::max(widths[c], r[c].size());
  }
  for (const auto& r : rows) {
    out += "  ";
    for (size_t c = 0; c < r.size(); ++c) {
      out += r[c];
      if (c + 1 < r.size()) out.append(widths[c] - r[c].size() + 2, ' ');
    }
    out += "\n";
  }
  out += "\nCluster: " + cluster + "\n";
  if (nodes_.size() > 1) {
    const size_t rf = std::min<size_t>(nodes_.size(), 3);
    out += "\nEvery shard is replicated on " + (rf == nodes_.size() ? "all " : std::to_string(rf) + " of the ") +
           std::to_string(nodes_.size()) +
           " nodes; a write commits once a majority has it on disk.\n"
           "Clients may start from any node: they are redirected to each shard's leader.\n";
  }
  out += "\nAdd a node (it joins as the next member and takes its share of replicas):\n  " + CommandFor("ringd") +
         " --data-dir " + (dir_ / ("n" + std::to_string(nodes_.size() + 1))).string() + " --listen 127.0.0.1:" +
         std::to_string(options_.base_port + static_cast<int>(nodes_.size())) + " --metrics-listen off --join " +
         nodes_.front().address + "\n";
  out += "\nTry (or `export RING_CLUSTER=" + cluster + "` and leave out --cluster):\n";
  out += "  " + ringctl + " --cluster " + cluster + " put greeting hello\n";
  out += "  " + ringctl + " --cluster " + cluster + " get greeting\n";
  out += "  " + ringctl + " --cluster " + cluster + " status\n";
  out += "  " + ringbench + " --cluster " + cluster + " --workload A --duration 10\n";
  if (!nodes_.front().metrics.empty()) out += "  curl http://" + nodes_.front().metrics + "/metrics\n";
  out += "\nPress Ctrl-C to stop the nodes";
  out += options_.keep ? " (" + dir_.string() + " is kept).\n" : " and remove " + dir_.string() + " (--keep keeps it).\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

int Playground::Serve() {
  for (;;) {
    timespec tick{1, 0};  // also a backstop in case a SIGCHLD is coalesced or missed
    siginfo_t info;
    int sig = sigtimedwait(&signals_, &info, &tick);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      std::fprintf(stderr, "\nringctl: playground: %s received; stopping %zu node(s)\n", strsignal(sig),
                   nodes_.size());
      StopAll();
      RemoveDirUnlessKept();
      return kExitOk;
    }
    if (Node* dead = ReapExited()) {
      std::string message = dead->name + " (pid " + std::to_string(dead->pid) + ") " +
                            DescribeExit(dead->wait_status) + " unexpectedly; the end of " + dead->log_path +
                            ":\n" + LogTail(dead->log_path);
      std::fprintf(stderr, "ringctl: playground: %s", message.c_str());
      std::fprintf(stderr, "ringctl: playground: stopping the other nodes; kept %s for inspection\n",
                   dir_.c_str());
      StopAll();
      return kExitSoftware;
    }
  }
}

void Playground::StopAll() {
  for (const auto& n : nodes_) {
    if (!n.reaped && n.pid > 0) kill(n.pid, SIGTERM);
  }
  auto deadline = Clock::now() + kStopTimeout;
  bool impatient = false;
  for (;;) {
    ReapExited();
    bool running = false;
    for (const auto& n : nodes_) running = running || (!n.reaped && n.pid > 0);
    if (!running || impatient || Clock::now() >= deadline) break;
    timespec pause{0, 20 * 1000 * 1000};
    siginfo_t info;
    int sig = sigtimedwait(&signals_, &info, &pause);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      std::fprintf(stderr, "ringctl: playground: interrupted again; killing the nodes\n");
      impatient = true;
    }
  }
  for (auto& n : nodes_) {
    if (n.reaped || n.pid <= 0) continue;
    if (!impatient) {
      std::fprintf(stderr, "ringctl: playground: %s did not stop within %lld s; killing it\n", n.name.c_str(),
                   static_cast<long long>(std::chrono::seconds(kStopTimeout).count()));
    }
    kill(n.pid, SIGKILL);
    waitpid(n.pid, &n.wait_status, 0);
    n.reaped = true;
  }
}

void Playground::RemoveDirUnlessKept() {
  if (options_.keep) {
    std::fprintf(stderr, "ringctl: playground: stopped; kept %s\n", dir_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) std::fprintf(stderr, "ringctl: playground: cannot remove %s: %s\n", dir_.c_str(), ec.message().c_str());
  else std::fprintf(stderr, "ringctl: playground: stopped; removed %s\n", dir_.c_str());
}

int Playground::Run() {
  if (auto error = Validate()) return Fail(kExitUsage, "UsageError", *error);

  std::string ringd;
  fs::path sibling = ExeDir() / "ringd";
  if (!ExeDir().empty() && IsExecutable(sibling)) {
    ringd = sibling.string();
  } else if (auto on_path = FindOnPath("ringd")) {
    ringd = on_path->string();
  } else {
    return Fail(kExitSoftware, "Unavailable",
                "cannot find ringd next to ringctl (" + ExeDir().string() + ") or on PATH");
  }

  // Block before any thread exists (the ping clients start one each), so every thread
  // inherits the mask and the signals wait for sigtimedwait.
  sigemptyset(&signals_);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&signals_, sig);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  // stdout may be a pipe whose reader leaves; the nodes must still be stopped cleanly.
  signal(SIGPIPE, SIG_IGN);

  for (int i = 0; i < options_.nodes; ++i) {
    Node n;
    n.name = "node-" + std::to_string(i + 1);
    n.port = options_.base_port + i;
    n.metrics_port = options_.metrics_base_port == 0 ? 0 : options_.metrics_base_port + i;
    nodes_.push_back(std::move(n));
  }
  // Check every port first, so that a busy port is one clear error naming it rather than a
  // node dying halfway through startup.
  for (const auto& n : nodes_) {
    std::string why;
    if (!PortIsFree(n.port, &why)) {
      return Fail(kExitSoftware, "Unavailable",
                  "port " + std::to_string(n.port) + " (" + n.name + "'s client port) on 127.0.0.1 is " + why +
                      "; choose another --base-port");
    }
    if (n.metrics_port != 0 && !PortIsFree(n.metrics_port, &why)) {
      return Fail(kExitSoftware, "Unavailable",
                  "port " + std::to_string(n.metrics_port) + " (" + n.name + "'s metrics port) on 127.0.0.1 is " +
                      why + "; choose another --metrics-base-port, or 0 for no metrics");
    }
  }

  if (int code = PrepareDir(); code != kExitOk) return code;
  for (auto& n : nodes_) {
    n.data_dir = (dir_ / n.name).string();
    n.log_path = (dir_ / (n.name + ".log")).string();
    n.ready_path = (dir_ / (n.name + ".ready")).string();
  }

  for (auto& n : nodes_) {
    std::string error;
    if (!Launch(&n, ringd, &error)) {
      StopAll();
      int code = Fail(kExitSoftware, "Unavailable", "cannot start " + n.name + ": " + error);
      RemoveDirUnlessKept();
      return code;
    }
  }
  if (auto code = WaitUntilServing()) return *code;
  PrintBanner();
  return Serve();
}

}  // namespace

int RunPlayground(const PlaygroundOptions& options) { return Playground(options).Run(); }

}  // namespace ring::cli
