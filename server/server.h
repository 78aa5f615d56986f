// server/server.h: a ringd node: storage, commit pipeline, client listener, HTTP endpoint.
//
// Startup: open the engine (clear errors for a locked, corrupt or unwritable data
// directory), bind both listeners (a port already in use is an error naming it), then
// serve on one I/O thread. The commit pipeline has its own thread for storage writes.
//
// Shutdown (SIGTERM/SIGINT or RequestStop): stop accepting, stop reading requests, answer
// every request already received, write the replies, close connections (or give up after
// shutdown_grace_s), commit what the pipeline holds, flush RocksDB, and return 0.
//
// Thread-safety: Run() blocks the calling thread; RequestStop() may be called from any.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "server/config.h"

namespace ring::server {

class Server {
 public:
  static Result<std::unique_ptr<Server>> Create(Config config);
  ~Server();

  // Serves until a shutdown signal; returns the process exit code.
  int Run();
  void RequestStop();

  std::string listen_address() const;   // bound address, e.g. "127.0.0.1:41234"
  std::string metrics_address() const;  // "" when metrics are off

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ring::server
