// server/service.h: what ringd does with one decoded request, independent of sockets.
//
// Reads (Get, BatchGet, Ping, NodeStatus) are answered immediately from the engine.
// Mutations are validated, then submitted to the CommitPipeline; their reply is built when
// the pipeline reports the result. Every request is checked against the protocol limits
// and, when it names one, against the shard that owns its key.
//
// Thread-safety: Handle() runs on the I/O thread; the `later` callback of a mutation runs
// on the commit thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/keyspace.h"
#include "replication/transport.h"
#include "server/commit_pipeline.h"
#include "server/config.h"
#include "server/metrics.h"
#include "storage/engine.h"

namespace ring::pb {
class Request;
class Response;
}  // namespace ring::pb

namespace ring::server {

// Everything a request handler may use. Owned by Server; outlives every connection.
struct NodeContext {
  const Config* config = nullptr;
  storage::Engine* engine = nullptr;
  CommitPipeline* pipeline = nullptr;
  Metrics* metrics = nullptr;
  ShardRanges shards = ShardRanges::Uniform(1);
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string listen_address;  // the bound address, e.g. "127.0.0.1:7001"
  // Receives the decoded messages of every peer RaftBatch (proto/ring.proto), called on
  // the I/O thread by the connection that read them: must only hand off (for example to
  // Driver::Deliver). `from_node` is the sender's replica id. Null when this node has no
  // replication peers: a RaftBatch is then answered with InvalidArgument.
  std::function<void(uint64_t from_node, std::vector<replication::GroupMessage> msgs)> on_peer_messages;
};

class KvService {
 public:
  explicit KvService(NodeContext* node) : node_(node) {}

  // Replies to a mutation, built from its pipeline result. Runs on the commit thread.
  using Later = std::function<void(pb::Response&&)>;

  // Handles `req`. Returns true if *resp now holds the complete reply. Returns false if the
  // reply will be passed to `later` exactly once (mutations); *resp is then untouched.
  bool Handle(const pb::Request& req, pb::Response* resp, const Later& later);

  // Reply to a payload that did not decode as a Request.
  static void UndecodableReply(size_t payload_bytes, pb::Response* resp);

 private:
  Status CheckShard(const pb::Request& req, std::string_view key) const;
  void HandleNodeStatus(pb::Response* resp);

  NodeContext* const node_;  // not owned
};

}  // namespace ring::server
