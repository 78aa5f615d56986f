#include "server/config.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <map>
#include <sstream>
#include <toml++/toml.h>

namespace ring::server {

const char* SyncPolicyName(SyncPolicy p) { return p == SyncPolicy::kSync ? "sync" : "async"; }

namespace {

const char* const kLogLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

Status ParseSyncPolicy(std::string_view s, SyncPolicy* out) {
  if (s == "sync") *out = SyncPolicy::kSync;
  else if (s == "async") *out = SyncPolicy::kAsync;
  else return Status::InvalidArgument("sync_policy must be \"sync\" or \"async\", not \"" + std::string(s) + "\"");
  return Status::OK();
}

Status ParseMetricsListen(std::string_view s, Config* c) {
  if (s == "off") {
    c->metrics_enabled = false;
    return Status::OK();
  }
  ASSIGN_OR_RETURN(c->metrics_listen, ParseEndpoint(s, /*allow_port_zero=*/true));
  c->metrics_enabled = true;
  return Status::OK();
}

Status CheckLogLevel(const std::string& s) {
  for (const char* l : kLogLevels) {
    if (s == l) return Status::OK();
  }
  return Status::InvalidArgument("log_level must be one of trace, debug, info, warn, error, critical, off; not \"" + s + "\"");
}

// Reads an integer setting in [lo, hi].
Status ReadUint(const toml::node& node, std::string_view key, uint32_t lo, uint32_t hi,
                uint32_t* out) {
  auto v = node.value<int64_t>();
  if (!node.is_integer() || !v) return Status::InvalidArgument(std::string(key) + " must be an integer");
  if (*v < lo || *v > hi) {
    return Status::InvalidArgument(std::string(key) + " must be from " + std::to_string(lo) +
                                   " to " + std::to_string(hi) + ", not " + std::to_string(*v));
  }
  *out = static_cast<uint32_t>(*v);
  return Status::OK();
}

Status ReadString(const toml::node& node, std::string_view key, std::string* out) {
  if (!node.is_string()) return Status::InvalidArgument(std::string(key) + " must be a string");
  *out = *node.value<std::string>();
  return Status::OK();
}

}  // namespace

Status ApplyToml(std::string_view toml_text, const std::string& origin, Config* c) {
  toml::table table;
  try {
    table = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return Status::InvalidArgument(origin + ":" + std::to_string(at.line) + ":" +
                                   std::to_string(at.column) + ": " + std::string(e.description()));
  }
  for (const auto& [k, node] : table) {
    std::string key(k.str());
    Status s;
    if (key == "node_id") s = ReadString(node, key, &c->node_id);
    else if (key == "listen" || key == "metrics_listen" || key == "sync_policy" ||
             key == "data_dir" || key == "log_level") {
      std::string v;
      s = ReadString(node, key, &v);
      if (s.ok()) {
        if (key == "listen") {
          auto ep = ParseEndpoint(v, true);
          if (ep.ok()) c->listen = *ep; else s = ep.status();
        } else if (key == "metrics_listen") {
          s = ParseMetricsListen(v, c);
        } else if (key == "sync_policy") {
          s = ParseSyncPolicy(v, &c->sync_policy);
        } else if (key == "data_dir") {
          c->data_dir = v;
        } else {
          c->log_level = v;
          s = CheckLogLevel(v);
        }
      }
    } else if (key == "peers" || key == "join") {
      // A list of strings, or one comma-separated string.
      std::string joined;
      if (const auto* arr = node.as_array()) {
        for (const auto& item : *arr) {
          if (!item.is_string()) {
            s = Status::InvalidArgument(key + " must be a list of \"HOST:PORT\" strings");
            break;
          }
          joined += (joined.empty() ? "" : ",") + *item.value<std::string>();
        }
      } else {
        s = ReadString(node, key, &joined);
      }
      if (s.ok()) {
        auto eps = ParseEndpointList(joined);
        if (eps.ok()) (key == "peers" ? c->peers : c->join) = *eps; else s = eps.status();
      }
    } else if (key == "advertise") {
      std::string v;
      s = ReadString(node, key, &v);
      if (s.ok()) {
        auto ep = ParseEndpoint(v);
        if (ep.ok()) c->advertise = *ep; else s = ep.status();
      }
    } else if (key == "tick_ms") s = ReadUint(node, key, 1, 10000, &c->tick_ms);
    else if (key == "election_ticks") s = ReadUint(node, key, 3, 1000, &c->election_ticks);
    else if (key == "log_compact_after") s = ReadUint(node, key, 2, 100000000, &c->log_compact_after);
    else if (key == "log_retain") s = ReadUint(node, key, 1, 100000000, &c->log_retain);
    else if (key == "max_connections") s = ReadUint(node, key, 1, 1000000, &c->max_connections);
    else if (key == "idle_timeout_s") s = ReadUint(node, key, 0, 86400 * 7, &c->idle_timeout_s);
    else if (key == "max_inflight_per_connection") s = ReadUint(node, key, 1, 1000000, &c->max_inflight_per_connection);
    else if (key == "shard_count") s = ReadUint(node, key, 1, 65536, &c->shard_count);
    else if (key == "replication_factor") s = ReadUint(node, key, 1, 7, &c->replication_factor);
    else if (key == "block_cache_mb") s = ReadUint(node, key, 1, 1 << 20, &c->block_cache_mb);
    else if (key == "reserve_disk_mb") s = ReadUint(node, key, 0, 1 << 20, &c->reserve_disk_mb);
    else if (key == "shutdown_grace_s") s = ReadUint(node, key, 0, 3600, &c->shutdown_grace_s);
    else if (key == "snapshot_rate_mb") s = ReadUint(node, key, 0, 1 << 20, &c->snapshot_rate_mb);
    else if (key == "snapshot_workers") s = ReadUint(node, key, 1, 64, &c->snapshot_workers);
    else if (key == "max_concurrent_moves") s = ReadUint(node, key, 1, 1024, &c->max_concurrent_moves);
    else if (key == "down_after_s") s = ReadUint(node, key, 1, 86400, &c->down_after_s);
    else if (key == "rereplicate_after_s") s = ReadUint(node, key, 1, 86400 * 7, &c->rereplicate_after_s);
    else s = Status::InvalidArgument("unknown setting \"" + key + "\"");
    if (!s.ok()) {
      const auto& at = node.source().begin;
      return s.WithContext(origin + ":" + std::to_string(at.line));
    }
  }
  return Status::OK();
}

Status Validate(const Config& c) {
  if (c.data_dir.empty()) return Status::InvalidArgument("data_dir must not be empty");
  if (c.metrics_enabled && c.metrics_listen.port != 0 && c.metrics_listen == c.listen) {
    return Status::InvalidArgument("metrics_listen must differ from listen (" + c.listen.ToString() + ")");
  }
  if (c.log_retain >= c.log_compact_after) {
    return Status::InvalidArgument("log_retain (" + std::to_string(c.log_retain) + ") must be below log_compact_after (" +
                                   std::to_string(c.log_compact_after) + ")");
  }
  if (c.rereplicate_after_s < c.down_after_s) {
    return Status::InvalidArgument("rereplicate_after_s (" + std::to_string(c.rereplicate_after_s) +
                                   ") must not be below down_after_s (" + std::to_string(c.down_after_s) + ")");
  }
  if (!c.peers.empty() && !c.join.empty()) {
    return Status::InvalidArgument("give either peers (a static cluster) or join (join a cluster), not both");
  }
  if (!c.join.empty()) {
    Endpoint self = c.advertise.value_or(c.listen);
    if (!self.Reachable()) {
      return Status::InvalidArgument("a node that joins needs an address the others can reach; " + self.ToString() +
                                     " is not one: set advertise (or listen on a fixed HOST:PORT)");
    }
  }
  if (!c.peers.empty()) {
    Endpoint self = c.advertise.value_or(c.listen);
    int found = 0;
    for (size_t i = 0; i < c.peers.size(); ++i) {
      for (size_t j = i + 1; j < c.peers.size(); ++j) {
        if (c.peers[i] == c.peers[j]) return Status::InvalidArgument("peers lists " + c.peers[i].ToString() + " twice");
      }
      if (c.peers[i] == self) ++found;
    }
    if (found == 0) {
      return Status::InvalidArgument("this node's address " + self.ToString() +
                                     " is not among the peers; set advertise to the address peers list for it");
    }
  }
  return CheckLogLevel(c.log_level);
}

uint64_t ReplicaId(const Config& c) {
  Endpoint self = c.advertise.value_or(c.listen);
  for (size_t i = 0; i < c.peers.size(); ++i) {
    if (c.peers[i] == self) return i + 1;
  }
  return 1;
}

std::string ReplicaAddress(const Config& c, uint64_t id) {
  if (c.peers.empty()) return id == 1 && c.join.empty() ? c.advertise.value_or(c.listen).ToString() : "";
  return id >= 1 && id <= c.peers.size() ? c.peers[id - 1].ToString() : "";
}

ParsedCommandLine ParseCommandLine(int argc, const char* const* argv) {
  ParsedCommandLine r;
  CLI::App app{"ringd: a ringstore node. Serves clients and peers on --listen, and Prometheus\n"
               "metrics plus /health on --metrics-listen. Flags override the --config file."};
  app.set_version_flag("--version", "ringd 0.1.0");
  // A flag given twice takes its last value, as scripts that append overrides expect.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_file, listen, metrics_listen, data_dir, sync_policy, log_level, node_id;
  std::map<std::string, uint32_t> ints;
  app.add_option("--config", config_file, "TOML file with settings (keys are the flag names in snake_case)");
  app.add_option("--node-id", node_id, "Name of this node (default: the listen address)");
  app.add_option("--listen", listen, "HOST:PORT for clients and peers (default 127.0.0.1:7001; port 0 = any)");
  app.add_option("--metrics-listen", metrics_listen, "HOST:PORT for /metrics and /health, or \"off\" (default 127.0.0.1:9101)");
  app.add_option("--data-dir", data_dir, "Directory for the node's data (default ./ringd-data)");
  app.add_option("--sync-policy", sync_policy, "sync: fsync before acknowledging a write (default); async: no fsync, a crash can lose recent acknowledged writes");
  app.add_option("--log-level", log_level, "trace, debug, info (default), warn, error, critical, off");
  std::string peers, advertise, join;
  app.add_option("--peers", peers, "Every node of the cluster, HOST:PORT,HOST:PORT,... in the same order on each node (default: none, a one-node cluster)");
  app.add_option("--join", join, "Join the cluster these nodes belong to, HOST:PORT,...; a node that has not joined yet waits for one of them (or for `ringctl cluster init`). Not with --peers");
  app.add_option("--advertise", advertise, "The HOST:PORT the peers list for this node (default: --listen)");
  struct IntFlag { const char* flag; const char* key; const char* help; };
  const IntFlag int_flags[] = {
      {"--max-connections", "max_connections", "Connections served at once; more get Busy and are closed (default 10000)"},
      {"--idle-timeout-s", "idle_timeout_s", "Close connections idle this long; 0 = never (default 300)"},
      {"--max-inflight-per-connection", "max_inflight_per_connection", "Requests in flight per connection before the node stops reading it (default 1024)"},
      {"--shard-count", "shard_count", "Shards the hash space is split into (default 64)"},
      {"--replication-factor", "replication_factor", "Replicas per shard, 1..7, capped at the number of peers (default 3)"},
      {"--block-cache-mb", "block_cache_mb", "RocksDB block cache size (default 128)"},
      {"--reserve-disk-mb", "reserve_disk_mb", "Refuse writes while free disk space is below this (default 192)"},
      {"--shutdown-grace-s", "shutdown_grace_s", "On SIGTERM, wait this long for in-flight requests (default 10)"},
      {"--tick-ms", "tick_ms", "Length of one replication tick (default 50)"},
      {"--election-ticks", "election_ticks", "Election timeout in ticks; a follower waits 1x to 2x this before campaigning (default 10)"},
      {"--log-compact-after", "log_compact_after", "Compact a shard's log past a lagging follower once it holds this many applied entries (default 20000)"},
      {"--log-retain", "log_retain", "Applied entries kept when compacting past a lagging follower (default 10000)"},
      {"--snapshot-rate-mb", "snapshot_rate_mb", "Cap on the MB/s this node fetches shard snapshots at (moves, catch-up); 0 = unlimited (default 0)"},
      {"--snapshot-workers", "snapshot_workers", "Snapshot exports and fetches this node runs at once (default 4)"},
      {"--max-concurrent-moves", "max_concurrent_moves", "As metadata leader, shards with a replica move in flight at once (default 4)"},
      {"--down-after-s", "down_after_s", "As metadata leader, mark a member down after this many seconds of silence (default 10)"},
      {"--rereplicate-after-s", "rereplicate_after_s", "As metadata leader, re-create a silent member's replicas elsewhere after this many seconds (default 60)"},
  };
  for (const auto& f : int_flags) {
    app.add_option(f.flag, ints[f.key], f.help);
  }
  std::string ready_file;
  app.add_option("--ready-file", ready_file, "Write \"listen=HOST:PORT\\nmetrics=HOST:PORT\\n\" here once serving (for scripts and tests)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    r.exit_code = app.exit(e, out, err);
    r.output = out.str() + err.str();
    return r;
  }

  Config c;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    if (!in) {
      r.exit_code = 2;
      r.output = "ringd: cannot read config file " + config_file + ": " + std::strerror(errno) + "\n";
      return r;
    }
    std::stringstream text;
    text << in.rdbuf();
    Status s = ApplyToml(text.str(), config_file, &c);
    if (!s.ok()) {
      r.exit_code = 2;
      r.output = "ringd: invalid config: " + s.message() + "\n";
      return r;
    }
  }
  // Flags override the file. Only flags actually given are applied.
  auto given = [&](const char* flag) { return app.count(flag) > 0; };
  Status s;
  if (given("--node-id")) c.node_id = node_id;
  if (s.ok() && given("--listen")) {
    auto ep = ParseEndpoint(listen, true);
    if (ep.ok()) c.listen = *ep; else s = ep.status().WithContext("--listen");
  }
  if (s.ok() && given("--metrics-listen")) s = ParseMetricsListen(metrics_listen, &c).WithContext("--metrics-listen");
  if (s.ok() && given("--data-dir")) c.data_dir = data_dir;
  if (s.ok() && given("--sync-policy")) s = ParseSyncPolicy(sync_policy, &c.sync_policy).WithContext("--sync-policy");
  if (s.ok() && given("--log-level")) c.log_level = log_level;
  if (s.ok() && given("--peers")) {
    auto eps = ParseEndpointList(peers);
    if (eps.ok()) c.peers = *eps; else s = eps.status().WithContext("--peers");
  }
  if (s.ok() && given("--join")) {
    auto eps = ParseEndpointList(join);
    if (eps.ok()) c.join = *eps; else s = eps.status().WithContext("--join");
  }
  if (s.ok() && given("--advertise")) {
    auto ep = ParseEndpoint(advertise);
    if (ep.ok()) c.advertise = *ep; else s = ep.status().WithContext("--advertise");
  }
  for (const auto& f : int_flags) {
    if (!s.ok() || !given(f.flag)) continue;
    // Reuse the TOML range checks so a flag and a file key accept exactly the same values.
    std::string snippet = std::string(f.key) + " = " + std::to_string(ints[f.key]);
    s = ApplyToml(snippet, f.flag, &c);
    if (!s.ok()) s = Status::InvalidArgument(s.message().substr(s.message().find(": ") + 2)).WithContext(f.flag);
  }
  c.ready_file = ready_file;
  if (s.ok()) s = Validate(c);
  if (!s.ok()) {
    r.exit_code = 2;
    r.output = "ringd: invalid configuration: " + s.message() + "\n";
    return r;
  }
  r.run = true;
  r.config = std::move(c);
  return r;
}

}  // namespace ring::server
