// server/service.h: what ringd does with one decoded request, independent of sockets.
//
// Every key belongs to a shard, and every shard is a replication group. Mutations are
// validated, stamped and proposed to their shard's log through the Driver; the reply is
// built once the command is applied (exactly-once: see server/replicated_kv.h). Reads
// (Get, BatchGet) are served from the engine while this node holds the shard's read
// lease; otherwise the reply is NotLeader with the leader's address, so the client can
// re-route. A batch must stay within one shard (use a {tag}). Every request is checked
// against the protocol limits and, when it names one, against its key's shard.
//
// Thread-safety: Handle() runs on the I/O thread; the `later` callback of a mutation runs
// on the driver thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/keyspace.h"
#include "replication/driver.h"
#include "replication/transport.h"
#include "server/config.h"
#include "server/metrics.h"
#include "storage/engine.h"

namespace ring::sharding {
struct ClusterMap;
}

namespace ring::pb {
class Request;
class Response;
class Redirect;
class NodeReport;
}  // namespace ring::pb

namespace ring::server {

// Everything a request handler may use. Owned by Server; outlives every connection.
// HOST:PORT of node `id`: its address in `map` (may be null), else the static peer list.
std::string MemberAddress(const sharding::ClusterMap* map, const Config& config, uint64_t id);

class SnapshotStore;
class ReplyMailbox;

struct NodeContext {
  const Config* config = nullptr;
  SnapshotStore* snapshots = nullptr;  // serves snapshot chunks to followers (null: none)
  storage::Engine* engine = nullptr;
  replication::Driver* driver = nullptr;  // null while waiting to join a cluster
  replication::NodeId self_id = replication::kNoNode;  // this node's member id, once known
  Metrics* metrics = nullptr;
  ReplyMailbox* replies = nullptr;  // carries mutation replies back to the I/O thread
  // How the hash space is cut into shards: the cluster map's ranges, replaced (any thread
  // may read, the I/O thread writes) when a new map changes them.
  std::shared_ptr<const ShardRanges> Shards() const { return shards_.load(std::memory_order_acquire); }
  void SetShards(ShardRanges ranges, uint64_t map_version) {
    shards_.store(std::make_shared<const ShardRanges>(std::move(ranges)), std::memory_order_release);
    map_version_.store(map_version, std::memory_order_release);
  }
  // The version of the map Shards() came from (0: none yet).
  uint64_t MapVersion() const { return map_version_.load(std::memory_order_acquire); }
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string listen_address;  // the bound address, e.g. "127.0.0.1:7001"
  // Receives the decoded messages of every peer RaftBatch (proto/ring.proto), called on
  // the I/O thread by the connection that read them: must only hand off (for example to
  // Driver::Deliver). `from_node` is the sender's replica id. Null when this node has no
  // replication peers: a RaftBatch is then answered with InvalidArgument.
  std::function<void(uint64_t from_node, std::vector<replication::GroupMessage> msgs)> on_peer_messages;
  // The cluster map this node last applied (null function: the node holds none).
  std::function<std::shared_ptr<const sharding::ClusterMap>()> cluster_map;
  // A peer's periodic report (I/O thread; see server/cluster_manager.h).
  std::function<void(uint64_t from_node, const pb::NodeReport& report)> on_peer_report;
  // Operator changes to the map: answered now (true) or later through `later` (false).
  std::function<bool(const pb::Request& req, pb::Response* resp, const std::function<void(pb::Response&&)>& later)>
      cluster_admin;
  // The HOST:PORT of replica `id`, from the map (or the static peer list).
  std::string AddressOf(uint64_t id) const;
  // Rotates redirect hints over a shard's replicas when its leader is unknown here.
  mutable std::atomic<uint64_t> next_hint{0};

 private:
  std::atomic<uint64_t> map_version_{0};
  std::atomic<std::shared_ptr<const ShardRanges>> shards_{std::make_shared<const ShardRanges>(ShardRanges::Uniform(1))};
};

class KvService {
 public:
  explicit KvService(NodeContext* node) : node_(node) {}

  // Replies to a mutation, built from its applied result. Runs on the driver thread.
  using Later = std::function<void(pb::Response&&)>;

  // Handles `req`. Returns true if *resp now holds the complete reply. Returns false if the
  // reply will be passed to `later` exactly once (mutations); *resp is then untouched.
  bool Handle(const pb::Request& req, pb::Response* resp, const Later& later);

  // Reply to a payload that did not decode as a Request.
  static void UndecodableReply(size_t payload_bytes, pb::Response* resp);

 private:
  // WrongShard if the request names a shard that does not own `key` here, StaleEpoch if
  // it was also routed with an older map version than this node's.
  static Status CheckShard(const ShardRanges& shards, uint64_t map_version, const pb::Request& req,
                           std::string_view key);
  // The one shard all `keys` belong to, or InvalidArgument naming two that differ.
  static Result<ShardId> SingleShard(const ShardRanges& shards, const std::vector<std::string_view>& keys);
  // NotLeader (or Unavailable while the leader confirms its lease) with a redirect.
  // Static: mutation callbacks may outlive the connection that owns this service.
  static void Redirect(NodeContext* node, ShardId shard, pb::Response* resp);
  // The node's map version and shard count, so a client can tell its routing is stale.
  static void SetMapHints(NodeContext* node, pb::Redirect* r);
  // Fail(), plus the map hints when `s` is WrongShard or StaleEpoch.
  static void FailRouting(NodeContext* node, const Status& s, pb::Response* resp);
  void HandleNodeStatus(pb::Response* resp);

  NodeContext* const node_;  // not owned
};

}  // namespace ring::server
