// tests/harness.h: helpers for tests that run real processes.
//
// Every process a test starts dies with the test: children get PR_SET_PDEATHSIG(SIGKILL),
// and the RAII owners kill and reap them in their destructors, even when an assertion
// fails. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ring/client.h"
#include "storage/engine.h"

namespace ring::test {

// Path of a built binary, e.g. Bin("ringd").
std::string Bin(const std::string& name);

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A fresh RocksDB engine in its own temporary directory, for tests of modules that write
// through the real engine. Reopen() simulates a restart on the same directory.
class ScratchEngine {
 public:
  ScratchEngine();
  ~ScratchEngine();
  storage::Engine* get() const { return engine_.get(); }
  storage::Engine* operator->() const { return engine_.get(); }
  void Reopen();
  void Close() { engine_.reset(); }
  const std::string& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  std::unique_ptr<storage::Engine> engine_;
};

// Result of running a command to completion.
struct CommandResult {
  int exit_code = -1;  // -1 if killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with arguments, stdin from `input`, and waits at most `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A child process whose stdout/stderr go to a log file. Killed (SIGKILL) and reaped on
// destruction unless already reaped.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();              // not yet exited
  void Signal(int sig);        // no-op if already reaped
  // Waits for exit up to `timeout`; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  std::string Log() const;     // everything the process has written so far

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string log_path_;
};

// One real ringd on 127.0.0.1 with an OS-chosen port, started with `--ready-file` so the
// test learns the bound addresses without polling ports.
struct RingdOptions {
  std::string data_dir = {};  // required
  std::vector<std::string> extra_args = {};  // e.g. {"--sync-policy", "async"}
};

class Ringd {
 public:
  // Starts ringd and waits (bounded) until it serves. Fails the current test otherwise.
  explicit Ringd(RingdOptions options);
  ~Ringd();  // SIGKILL if still running

  const std::string& address() const { return address_; }          // "127.0.0.1:PORT"
  const std::string& metrics_address() const { return metrics_; }  // "127.0.0.1:PORT"
  Process& process() { return *proc_; }
  pid_t pid() const { return proc_->pid(); }

  // SIGTERM and wait; returns the exit code (0 on a clean shutdown).
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void Kill9();
  // Starts again on the same data directory and the same client port.
  void Restart();
  std::string Log() const { return proc_->Log(); }

 private:
  void Launch(const std::string& listen);
  RingdOptions options_;
  std::string address_;
  std::string metrics_;
  std::unique_ptr<Process> proc_;
  int generation_ = 0;
};

// Sends raw bytes to HOST:PORT over a fresh TCP connection and reads until the peer
// closes, `timeout` passes, or `enough` (if given) says the bytes read so far suffice.
// Used for hostile-input tests.
struct RawReply {
  std::string bytes;     // everything read
  bool closed = false;   // the peer closed the connection
};
RawReply SendRaw(const std::string& address, const std::string& bytes,
                 std::chrono::milliseconds timeout = std::chrono::seconds(3),
                 const std::function<bool(const std::string&)>& enough = nullptr);

// A client of `seeds` whose calls are bounded by `timeout`, with quick connect failures.
std::unique_ptr<Client> OpenClient(std::vector<std::string> seeds,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A port on 127.0.0.1 nothing listens on right now (bound with port 0, read back, released).
uint16_t FreePort();
// A socket bound to an OS-chosen port on 127.0.0.1 (the caller closes it); *port is set.
int BindLoopback(uint16_t* port);

// HTTP GET http://ADDRESS/path; returns {status code, body}; status 0 on failure.
std::pair<int, std::string> HttpGet(const std::string& address, const std::string& path);

}  // namespace ring::test
