// server/config.h: ringd's configuration, from a TOML file and command-line flags.
//
// Every setting has a flag (--kebab-case) and a TOML key (snake_case). Flags override the
// file. Everything is validated before the node starts: an unknown key, a wrong type or an
// out-of-range value is an error naming the file, line and setting.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/endpoint.h"
#include "common/status.h"

namespace ring::server {

enum class SyncPolicy { kSync, kAsync };
const char* SyncPolicyName(SyncPolicy p);

struct Config {
  std::string node_id;              // empty: the bound listen address
  Endpoint listen{"127.0.0.1", 7001};
  Endpoint metrics_listen{"127.0.0.1", 9101};
  bool metrics_enabled = true;      // metrics_listen = "off" disables the HTTP endpoint
  std::string data_dir = "ringd-data";
  SyncPolicy sync_policy = SyncPolicy::kSync;
  uint32_t max_connections = 10000;
  uint32_t idle_timeout_s = 300;    // 0 = never close idle connections
  uint32_t max_inflight_per_connection = 1024;
  uint32_t shard_count = 64;
  uint32_t replication_factor = 3;  // replicas per shard, at most the number of peers
  uint32_t block_cache_mb = 128;
  uint32_t reserve_disk_mb = 192;
  uint32_t shutdown_grace_s = 10;   // how long SIGTERM waits for in-flight requests
  std::string log_level = "info";
  // Replication: every node of a static cluster lists the same peers (HOST:PORT, in the
  // same order); a node's replica id is 1 + its position, found by its advertise address
  // (default: listen). Empty: a one-node cluster, still replicated through a log.
  std::vector<Endpoint> peers;
  // Dynamic membership instead: the node asks these (any members of the cluster) to join,
  // gets a member id, and keeps it in its data directory. Not together with peers.
  std::vector<Endpoint> join;
  std::optional<Endpoint> advertise;
  uint32_t tick_ms = 50;         // one Raft tick of the monotonic clock
  uint32_t election_ticks = 10;  // election timeout: election_ticks .. 2x-1 ticks
  uint32_t log_compact_after = 20000;  // compact a shard's log past this many applied entries
  uint32_t log_retain = 10000;         // applied entries kept after compaction
  uint32_t snapshot_rate_mb = 0;       // MB/s cap on fetching shard snapshots; 0 = none
  uint32_t snapshot_workers = 4;       // snapshot exports and fetches at once
  uint32_t max_concurrent_moves = 4;   // shards with a replica move in flight (metadata leader)
  uint32_t down_after_s = 10;          // a member silent this long is marked down (metadata leader)
  uint32_t rereplicate_after_s = 60;   // ... and its replicas are re-created elsewhere after this
  std::string ready_file;           // flag only: written once the node serves
};

// What ParseCommandLine decided: run with `config`, or exit now with `exit_code` after
// printing `output` (help text, version, or an error).
struct ParsedCommandLine {
  bool run = false;
  int exit_code = 0;
  std::string output;
  Config config;
};

ParsedCommandLine ParseCommandLine(int argc, const char* const* argv);

// Loads settings from TOML text into *config (used by ParseCommandLine; public for tests).
// `origin` names the source in error messages (a file path).
Status ApplyToml(std::string_view toml_text, const std::string& origin, Config* config);

// Checks cross-field rules after all sources are merged.
Status Validate(const Config& config);

// A static cluster's replica id of this node (1-based position among peers), or 1 with
// no peers. (A node that joins gets its id from the cluster instead.)
uint64_t ReplicaId(const Config& config);
// The address of replica `id` (1-based) of a static cluster, as clients should reach it;
// "" if the static configuration does not know it.
std::string ReplicaAddress(const Config& config, uint64_t id);

}  // namespace ring::server
