// ring/options.h: configuration of a ring::Client and of individual calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ring {

struct ClientOptions {
  // Seed nodes as "HOST:PORT". At least one. The client contacts them to serve requests
  // and, once the cluster is sharded, to learn the cluster map.
  std::vector<std::string> seeds;

  // Connections kept open to each node. Requests are pipelined over them round-robin; the
  // calls made together (a burst) share one connection and go out in one write.
  int connections_per_node = 2;

  // Deadline for a call that does not pass its own CallOptions::timeout.
  std::chrono::milliseconds default_timeout{5000};

  // Deadline for establishing one TCP connection.
  std::chrono::milliseconds connect_timeout{1000};

  // A node that has not answered a request within this time is presumed stuck (stopped,
  // partitioned): the request is sent again to another node, until the call's deadline.
  // Resending is safe for mutations too: each carries (client_id, seq) and is applied at
  // most once.
  std::chrono::milliseconds attempt_timeout{1000};

  // Upper bound on requests in flight per connection; further calls wait in the client
  // until replies free a slot (or their deadline passes). Bounds the node's memory too.
  int max_inflight_per_connection = 1024;
};

struct CallOptions {
  // 0 means ClientOptions::default_timeout.
  std::chrono::milliseconds timeout{0};
};

}  // namespace ring
