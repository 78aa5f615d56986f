// ring/client.h: the ringstore client library (libring).
//
//   #include "ring/client.h"
//   std::unique_ptr<ring::Client> client;
//   ring::Status s = ring::Client::Open({.seeds = {"127.0.0.1:7001"}}, &client);
//   if (s.ok()) s = client->Put("user:42", "alice");
//
// Every call has a deadline (CallOptions::timeout, else ClientOptions::default_timeout).
// Calls are pipelined over a small pool of connections per node, so many threads, or many
// asynchronous calls from one thread, share connections efficiently.
//
// Errors common to every call:
//   InvalidArgument  the request breaks a protocol limit (key 1..4096 bytes, value <= 1 MiB,
//                    batch <= 10,000 entries); detected locally, nothing is sent.
//   Timeout          the deadline passed. For a mutation the outcome is unknown: it may or
//                    may not have been applied.
//   Unavailable      no node could be reached before the deadline.
//   Busy             the node refused the request because it is overloaded.
//   IOError          the node could not write to its disk (for example, it is full);
//                    the mutation was not applied.
//
// Asynchronous calls take a callback that runs exactly once, on the client's I/O thread.
// Callbacks must not block: a blocking call made from inside a callback returns
// InvalidArgument instead of deadlocking. Issue more asynchronous calls instead.
//
// Thread-safety: a Client is thread-safe. Destroying it completes every outstanding call
// with Unavailable("client closed") before the destructor returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ring/options.h"
#include "ring/status.h"

namespace ring {

// The outcome of a CompareAndSet that reached the node.
struct CasResult {
  bool swapped = false;                // true: the new value was written
  std::optional<std::string> current;  // when not swapped: the key's value, nullopt if absent
};

// One shard's replication state as one node sees it.
struct ShardInfo {
  uint32_t shard = 0;
  std::string leader;  // HOST:PORT, empty if unknown
  std::string role;    // this node's role: follower, pre-candidate, candidate, leader
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
  std::vector<std::string> replicas;
  uint64_t snapshot_bytes_done = 0;   // while this node fetches a snapshot of the shard
  uint64_t snapshot_bytes_total = 0;  // (a replica move or catch-up); 0 otherwise
};

// The cluster map as a node last applied it: members and how the hash space is sharded.
struct ClusterMapInfo {
  struct Member {
    uint64_t id = 0;
    std::string address;  // HOST:PORT
    std::string state;    // joining, up, draining, down, removed
    double weight = 1.0;
  };
  struct Shard {
    uint32_t id = 0;
    uint64_t start = 0;  // hash range [start, end); end 0 means 2^64
    uint64_t end = 0;
    std::vector<uint64_t> voters;
    std::vector<uint64_t> learners;
    uint64_t epoch = 0;
  };
  uint64_t version = 0;  // 0: the node holds no map (yet)
  uint64_t cluster_id = 0;
  uint32_t replication_factor = 0;
  bool moves_paused = false;  // operators paused replica moves
  std::vector<Member> members;
  std::vector<Shard> shards;
};

// A node's self-description, as returned by NodeStatus.
struct NodeInfo {
  std::string node_id;
  std::string version;
  std::string listen;
  uint64_t uptime_ms = 0;
  std::string sync_policy;
  uint32_t shard_count = 0;
  uint64_t connections = 0;
  uint64_t requests_served = 0;
  uint64_t keys_estimate = 0;
  uint64_t disk_bytes = 0;
  bool disk_ok = true;
  std::string disk_error;
  std::vector<ShardInfo> shards;
  ClusterMapInfo cluster_map;
};

class Client {
 public:
  // Validates options and starts the I/O thread; on OK, *client is set. Connections are
  // opened lazily, so Open succeeds even if no node is up yet. InvalidArgument for bad
  // options (no seeds, a seed that is not HOST:PORT, non-positive limits).
  static Status Open(const ClientOptions& options, std::unique_ptr<Client>* client);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Reads `key`. OK: *value holds it. NotFound: the key does not exist.
  Status Get(std::string_view key, std::string* value, const CallOptions& call = {});

  // Writes `key` = `value` (an empty value is a value, not a delete). OK: durable under the
  // node's sync policy.
  Status Put(std::string_view key, std::string_view value, const CallOptions& call = {});

  // Removes `key`. OK whether or not it existed; *existed (if given) tells which.
  Status Delete(std::string_view key, bool* existed = nullptr, const CallOptions& call = {});

  // Atomically sets `key` to `value` if its current value equals *expected, or, when
  // `expected` is nullopt, if the key does not exist. OK means the node decided: see
  // result->swapped, and result->current for what was there instead.
  Status CompareAndSet(std::string_view key, std::optional<std::string_view> expected,
                       std::string_view value, CasResult* result, const CallOptions& call = {});

  // Reads many keys. OK: (*values)[i] is the value of keys[i], nullopt if absent. Keys may
  // span shards: the client splits the batch and asks each shard's leader, so each value
  // is linearizable on its own, but the batch is not one snapshot across shards.
  Status BatchGet(const std::vector<std::string>& keys,
                  std::vector<std::optional<std::string>>* values, const CallOptions& call = {});

  // Writes every pair atomically. OK: all were written; otherwise none were. The keys must
  // share a shard (give them a common {tag}); InvalidArgument otherwise.
  Status BatchPut(const std::vector<std::pair<std::string, std::string>>& pairs,
                  const CallOptions& call = {});

  // Round trip to a node. OK: it answered.
  Status Ping(const CallOptions& call = {});

  // Describes the node at `endpoint` ("HOST:PORT"), or the first seed if empty.
  Status NodeStatus(std::string_view endpoint, NodeInfo* info, const CallOptions& call = {});

  // Operator changes to a member of the cluster map, made by the metadata leader (any
  // seed redirects there). kDrain: move every replica off the node (the controller does
  // it in the background; watch the map); kUndrain: make it a placement target again;
  // kRemove: retire it for good, which is refused (InvalidArgument) while it still holds
  // replicas. Idempotent: asking for the state the node is already in is OK.
  // *map_version (optional) is the map's version once the change is applied.
  enum class MemberChange { kDrain, kUndrain, kRemove };
  Status ChangeMember(uint64_t node_id, MemberChange change, uint64_t* map_version = nullptr,
                      const CallOptions& call = {});
  // Pauses (or resumes) replica moves cluster-wide: the controller starts no further move
  // step while paused (steps already proposed complete; nothing is rolled back). The
  // setting is in the replicated map, so it survives a change of metadata leader.
  // Idempotent. *map_version as for ChangeMember.
  Status PauseMoves(bool paused, uint64_t* map_version = nullptr, const CallOptions& call = {});
  // Splits shard `shard` at the midpoint of its hash range: the upper half becomes a new
  // shard with the same replicas. Returns once the map records it (*map_version as for
  // ChangeMember); the shard's own log then makes the cut, and the new shard serves a
  // moment later (requests meanwhile are retried). Not idempotent: each call halves
  // again. InvalidArgument for an unknown shard, one with a move in progress, or one
  // covering a single hash.
  Status SplitShard(uint32_t shard, uint64_t* map_version = nullptr, const CallOptions& call = {});

  // Creates the cluster, once, on the node at `endpoint` ("" = the first seed), which
  // must have been started with --join and not have joined yet: it becomes member 1 of a
  // new cluster of `shard_count` shards with `replication_factor` replicas each (0: the
  // node's own settings), and nodes started with --join pointing at it join one by one.
  // Returns once the map is committed. Idempotent: on a node that already belongs to a
  // cluster it changes nothing and sets already_initialized. InvalidArgument for bad
  // counts, or when the node's --join seeds already form a cluster (it joins that one).
  struct InitResult {
    uint64_t cluster_id = 0;
    uint64_t node_id = 0;  // the node's member id
    uint64_t map_version = 0;
    bool already_initialized = false;
  };
  Status InitCluster(std::string_view endpoint, uint32_t shard_count, uint32_t replication_factor,
                     InitResult* result, const CallOptions& call = {});

  // Asynchronous variants: same contracts; the callback gets the Status and the result.
  using StatusCallback = std::function<void(Status)>;
  void GetAsync(std::string_view key, std::function<void(Status, std::string)> done,
                const CallOptions& call = {});
  void PutAsync(std::string_view key, std::string_view value, StatusCallback done,
                const CallOptions& call = {});
  void DeleteAsync(std::string_view key, std::function<void(Status, bool existed)> done,
                   const CallOptions& call = {});
  void CompareAndSetAsync(std::string_view key, std::optional<std::string_view> expected,
                          std::string_view value, std::function<void(Status, CasResult)> done,
                          const CallOptions& call = {});
  void BatchGetAsync(const std::vector<std::string>& keys,
                     std::function<void(Status, std::vector<std::optional<std::string>>)> done,
                     const CallOptions& call = {});
  void BatchPutAsync(const std::vector<std::pair<std::string, std::string>>& pairs,
                     StatusCallback done, const CallOptions& call = {});

  class Impl;  // private; declared here so the implementation can name it

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ring
