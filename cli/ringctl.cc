// ringctl: data and admin commands for a ringstore cluster, built on libring.
//
//   ringctl [--cluster HOST:PORT[,HOST:PORT...]] [--json] [--timeout-ms N] COMMAND ...
//     get KEY                      print the value
//     put KEY VALUE | put KEY -    write (`-` reads the value from stdin, byte for byte)
//     del KEY                      delete (exit 0 whether or not it existed)
//     cas KEY EXPECTED NEW         write NEW if the value is EXPECTED
//     cas --expect-absent KEY NEW  write NEW if the key does not exist
//     status                       describe every node named in --cluster
//     ping                         round trip to the cluster
//     playground --nodes N ...     run a local cluster in the foreground (cli/playground.h)
//
// Exit codes (cli/exit_codes.h; also in the --help footer). Scripts rely on them, so they
// are stable:
//    0  success
//    1  get: the key does not exist
//    2  cas: not applied, the current value did not match
//   64  usage error: bad flags or arguments
//   65  input rejected by limits (InvalidArgument: empty key, key > 4096 bytes,
//       value > 1 MiB)
//   69  cluster unavailable, timed out or busy (Unavailable, Timeout, Busy)
//   70  any other error
//   74  a node's disk failed (IOError)
//
// Output: human text by default (a value is printed raw, then a newline); without --json,
// errors go to stderr as "ringctl: <Code>: <message>". With --json, exactly one JSON
// object goes to stdout whatever happens (errors: {"ok":false,"code":..,"error":..}), and
// stderr stays empty except for usage errors and playground's progress messages. JSON
// strings escape each byte that is not UTF-8 as \u00XX (common/json.h).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/exit_codes.h"
#include "cli/playground.h"
#include "common/endpoint.h"
#include "common/json.h"
#include "common/keyspace.h"
#include "common/limits.h"
#include "ring/client.h"

namespace ring::cli {
namespace {

constexpr char kDefaultCluster[] = "127.0.0.1:7001";

constexpr char kExitCodeTable[] = R"(Exit codes:
   0  success
   1  get: the key does not exist
   2  cas: not applied (the current value did not match)
  64  usage error (bad flags or arguments)
  65  input rejected by limits (empty key, key > 4096 bytes, value > 1 MiB)
  69  cluster unavailable, timed out or busy
  70  any other error
  74  a node's disk failed (IOError)
status exits 69 if a node is down, else 74 if a node reports a disk error.
playground exits 0 after Ctrl-C/SIGTERM, 70 if a node could not start or died.)";

constexpr char kExamples[] = R"(Examples:
  ringctl --cluster 127.0.0.1:7001 put greeting hello
  ringctl get greeting
  head -c 1000 /dev/urandom | ringctl put blob -
  ringctl --json cas greeting hello bonjour
  ringctl playground --nodes 1)";

struct GlobalFlags {
  std::string cluster = kDefaultCluster;
  bool json = false;
  int timeout_ms = 5000;
};

// --- output ------------------------------------------------------------------------------

void EmitJson(const JsonWriter& w) {
  std::string line = w.str();
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

void EmitLine(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

// A key as it appears in human-readable messages: quoted and escaped (keys may be binary)
// and shortened, because a 4 KiB key would drown the message it is part of.
std::string DisplayKey(std::string_view key) {
  constexpr size_t kShown = 48;
  std::string out;
  AppendJsonString(&out, key.substr(0, kShown));
  if (key.size() > kShown) out += "... (" + std::to_string(key.size()) + " bytes)";
  return out;
}

int UsageError(const GlobalFlags& flags, const std::string& message) {
  std::fprintf(stderr, "ringctl: %s\nRun 'ringctl --help' or 'ringctl COMMAND --help' for usage.\n",
               message.c_str());
  if (flags.json) {
    JsonWriter w;
    w.BeginObject().Key("ok").Bool(false).Key("code").String("UsageError");
    w.Key("error").String(message).EndObject();
    EmitJson(w);
  }
  return kExitUsage;
}

// Reports a failed call and returns its exit code. `key` (if any) is named in the output.
int ReportError(const GlobalFlags& flags, const Status& s, const std::string* key = nullptr) {
  // The node's NotFound says only "not found"; name the key instead.
  std::string message = s.message();
  if (key && s.IsNotFound()) message = "key " + DisplayKey(*key) + " does not exist";
  if (flags.json) {
    JsonWriter w;
    w.BeginObject().Key("ok").Bool(false).Key("code").String(StatusCodeName(s.code()));
    w.Key("error").String(message);
    if (key) {
      w.Key("key").String(*key);
      if (s.IsNotFound()) w.Key("found").Bool(false);
    }
    w.EndObject();
    EmitJson(w);
  } else {
    std::fprintf(stderr, "ringctl: %s: %s\n", StatusCodeName(s.code()), message.c_str());
  }
  return ExitCodeFor(s.code());
}

// --- helpers -----------------------------------------------------------------------------

// Reads all of stdin as one value, stopping one byte past the limit so that a runaway
// producer (`cat /dev/zero | ringctl put k -`) cannot exhaust memory.
Status ReadValueFromStdin(std::string* value) {
  value->clear();
  char buf[64 * 1024];
  for (;;) {
    size_t n = std::fread(buf, 1, sizeof buf, stdin);
    value->append(buf, n);
    if (value->size() > kMaxValueBytes) {
      return Status::InvalidArgument("value on stdin exceeds the " + std::to_string(kMaxValueBytes) +
                                     "-byte limit");
    }
    if (n < sizeof buf) break;
  }
  if (std::ferror(stdin)) return Status::IOError(std::string("reading stdin: ") + std::strerror(errno));
  return Status::OK();
}

// Resolves the `-` convention: the argument itself, or stdin's bytes.
Status ResolveValue(const std::string& arg, std::string* value) {
  if (arg != "-") {
    *value = arg;
    return Status::OK();
  }
  if (isatty(STDIN_FILENO)) std::fputs("ringctl: reading the value from stdin; end it with Ctrl-D\n", stderr);
  return ReadValueFromStdin(value);
}

std::string FormatDuration(uint64_t ms) {
  uint64_t s = ms / 1000;
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s / 3600 % 24));
  }
  return buf;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

// Prints rows under a header, columns padded to their widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    EmitLine(line);
  }
}

// --- commands ----------------------------------------------------------------------------

class Commands {
 public:
  Commands(const GlobalFlags& flags, std::unique_ptr<Client> client, std::vector<std::string> nodes)
      : flags_(flags), client_(std::move(client)), nodes_(std::move(nodes)) {
    call_.timeout = std::chrono::milliseconds(flags.timeout_ms);
  }

  int Get(const std::string& key) {
    std::string value;
    Status s = client_->Get(key, &value, call_);
    if (!s.ok()) return ReportError(flags_, s, &key);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("key").String(key).Key("found").Bool(true);
      w.Key("value").String(value).EndObject();
      EmitJson(w);
    } else {
      EmitLine(value);
    }
    return kExitOk;
  }

  int Put(const std::string& key, const std::string& value_arg) {
    std::string value;
    Status s = ResolveValue(value_arg, &value);
    if (s.ok()) s = client_->Put(key, value, call_);
    if (!s.ok()) return ReportError(flags_, s, &key);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("key").String(key);
      w.Key("bytes").Uint(value.size()).EndObject();
      EmitJson(w);
    } else {
      EmitLine("OK");
    }
    return kExitOk;
  }

  int Delete(const std::string& key) {
    bool existed = false;
    Status s = client_->Delete(key, &existed, call_);
    if (!s.ok()) return ReportError(flags_, s, &key);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("key").String(key);
      w.Key("existed").Bool(existed).EndObject();
      EmitJson(w);
    } else {
      EmitLine(existed ? "OK (deleted)" : "OK (the key did not exist)");
    }
    return kExitOk;
  }

  int CompareAndSet(const std::string& key, const std::optional<std::string>& expected,
                    const std::string& new_arg) {
    std::string value;
    CasResult result;
    Status s = ResolveValue(new_arg, &value);
    if (s.ok()) {
      std::optional<std::string_view> expected_view;
      if (expected) expected_view = *expected;
      s = client_->CompareAndSet(key, expected_view, value, &result, call_);
    }
    if (!s.ok()) return ReportError(flags_, s, &key);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("key").String(key).Key("swapped").Bool(result.swapped);
      if (!result.swapped) {
        w.Key("current");
        if (result.current) w.String(*result.current);
        else w.Null();
      }
      w.EndObject();
      EmitJson(w);
    } else if (result.swapped) {
      EmitLine("OK (swapped)");
    } else if (result.current) {
      std::string shown;
      AppendJsonString(&shown, *result.current);
      EmitLine("not swapped: the current value is " + shown);
    } else {
      EmitLine("not swapped: the key does not exist");
    }
    return result.swapped ? kExitOk : kExitCasMismatch;
  }

  int Ping() {
    auto start = std::chrono::steady_clock::now();
    Status s = client_->Ping(call_);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!s.ok()) return ReportError(flags_, s);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("latency_ms").Double(ms).EndObject();
      EmitJson(w);
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "OK (%.2f ms)", ms);
      EmitLine(buf);
    }
    return kExitOk;
  }

  // The shard that owns `key`, by the same keyspace code the nodes use, and the cluster
  // map of the first node that answers (its range, epoch and replicas).
  int Locate(const std::string& key) {
    if (Status s = CheckKey(key); !s.ok()) return ReportError(flags_, s);
    NodeInfo info;
    Status s = client_->NodeStatus("", &info, call_);
    if (!s.ok()) return ReportError(flags_, s);
    const ClusterMapInfo& map = info.cluster_map;
    std::vector<std::pair<uint64_t, ShardId>> starts;
    for (const auto& sh : map.shards) starts.emplace_back(sh.start, sh.id);
    auto ranges = ShardRanges::FromStarts(std::move(starts));
    if (!ranges.ok()) return ReportError(flags_, Status::Unavailable("the node holds no cluster map yet; retry"));
    const uint64_t hash = KeyHash(key);
    const ShardId shard = ranges->ShardOf(hash);
    const ClusterMapInfo::Shard* info_shard = nullptr;
    for (const auto& sh : map.shards) {
      if (sh.id == shard) info_shard = &sh;
    }
    char hex[24];
    std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(hash));
    std::string voters;
    for (uint64_t v : info_shard->voters) voters += (voters.empty() ? "" : ",") + std::to_string(v);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("key").String(key).Key("shard").Uint(shard);
      w.Key("hash").String(hex).Key("hashed_part").String(HashTag(key)).Key("shard_count").Uint(ranges->count());
      w.Key("start").Uint(info_shard->start).Key("end").Uint(info_shard->end).Key("epoch").Uint(info_shard->epoch);
      w.Key("voters").BeginArray();
      for (uint64_t v : info_shard->voters) w.Uint(v);
      w.EndArray().Key("map_version").Uint(map.version).EndObject();
      EmitJson(w);
    } else {
      EmitLine("shard " + std::to_string(shard) + " of " + std::to_string(ranges->count()) + " (hash " + hex +
               "), epoch " + std::to_string(info_shard->epoch) + ", on nodes " + voters);
    }
    return kExitOk;
  }

  // drain | undrain | remove of member `id`. With `wait` (drain only), polls the map until
  // the node holds no replica, printing progress, within --timeout-ms.
  int Member(const std::string& verb, uint64_t id, bool wait) {
    Client::MemberChange change = verb == "drain"     ? Client::MemberChange::kDrain
                                  : verb == "undrain" ? Client::MemberChange::kUndrain
                                                      : Client::MemberChange::kRemove;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(flags_.timeout_ms);
    uint64_t version = 0;
    Status s = client_->ChangeMember(id, change, &version, call_);
    if (!s.ok()) return ReportError(flags_, s);
    size_t left = 0;
    if (wait && change == Client::MemberChange::kDrain) {
      for (;;) {
        NodeInfo info;
        s = client_->NodeStatus("", &info, call_);
        if (s.ok()) {
          left = 0;
          for (const auto& sh : info.cluster_map.shards) {
            for (const auto* v : {&sh.voters, &sh.learners}) left += std::count(v->begin(), v->end(), id);
          }
          version = info.cluster_map.version;
          if (left == 0) break;
          if (!flags_.json) std::fprintf(stderr, "ringctl: node %llu still holds %zu replica(s)\n",
                                         static_cast<unsigned long long>(id), left);
        }
        if (std::chrono::steady_clock::now() + std::chrono::milliseconds(500) > deadline) {
          return ReportError(flags_, Status::Timeout("node " + std::to_string(id) + " still holds " +
                                                     std::to_string(left) + " replica(s); the drain goes on"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("node").Uint(id).Key("change").String(verb);
      w.Key("map_version").Uint(version).EndObject();
      EmitJson(w);
    } else {
      const std::string done = verb == "remove" ? "removed" : verb == "drain" && wait ? "drained" : verb;
      EmitLine("OK: node " + std::to_string(id) + " " + done + " (map version " + std::to_string(version) + ")");
    }
    return kExitOk;
  }

  // shard split ID.
  int Split(uint32_t shard) {
    uint64_t version = 0;
    Status s = client_->SplitShard(shard, &version, call_);
    if (!s.ok()) return ReportError(flags_, s);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("shard").Uint(shard).Key("map_version").Uint(version).EndObject();
      EmitJson(w);
    } else {
      EmitLine("OK: shard " + std::to_string(shard) + " split at the midpoint of its range (map version " +
               std::to_string(version) + "); see `ringctl shard locate` and `status`");
    }
    return kExitOk;
  }

  // cluster init: on the first node of --cluster.
  int Init(uint32_t shards, uint32_t replication_factor) {
    Client::InitResult r;
    Status s = client_->InitCluster(nodes_.front(), shards, replication_factor, &r, call_);
    if (!s.ok()) return ReportError(flags_, s);
    char id[32];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(r.cluster_id));
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("cluster_id").String(id).Key("node").Uint(r.node_id);
      w.Key("already_initialized").Bool(r.already_initialized).Key("map_version").Uint(r.map_version).EndObject();
      EmitJson(w);
    } else if (r.already_initialized) {
      EmitLine("OK: " + nodes_.front() + " already belongs to cluster " + id + " (member " +
               std::to_string(r.node_id) + "); nothing changed");
    } else {
      EmitLine("OK: created cluster " + std::string(id) + " on " + nodes_.front() +
               " (member 1); nodes started with --join " + nodes_.front() + " now join it");
    }
    return kExitOk;
  }

  // moves pause | resume.
  int Moves(const std::string& verb) {
    uint64_t version = 0;
    Status s = client_->PauseMoves(verb == "pause", &version, call_);
    if (!s.ok()) return ReportError(flags_, s);
    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(true).Key("moves_paused").Bool(verb == "pause");
      w.Key("map_version").Uint(version).EndObject();
      EmitJson(w);
    } else {
      EmitLine(std::string("OK: replica moves ") + (verb == "pause" ? "paused" : "resumed") + " (map version " +
               std::to_string(version) + ")");
    }
    return kExitOk;
  }

  struct Report {
    Status status;
    NodeInfo info;
  };
  // A replica being added to a shard (a learner in the map), and how far it has come.
  struct MoveProgress {
    uint32_t shard = 0;
    uint64_t to = 0;
    std::string address;
    std::string phase;  // "snapshot" (fetching its data), "log" (catching up), "unknown"
    uint64_t bytes_done = 0, bytes_total = 0;
  };
  // Reads each learner's own status (from `reports`, or asked now if it was not in
  // --cluster): a running snapshot fetch reports its bytes.
  std::vector<MoveProgress> MovesInProgress(const ClusterMapInfo& map, const std::vector<Report>& reports) {
    std::map<std::string, const NodeInfo*> by_address;
    for (size_t i = 0; i < reports.size(); ++i) {
      if (reports[i].status.ok()) by_address[nodes_[i]] = &reports[i].info;
    }
    std::map<std::string, NodeInfo> asked;
    std::vector<MoveProgress> out;
    for (const auto& sh : map.shards) {
      for (uint64_t l : sh.learners) {
        MoveProgress mv{sh.id, l, "", "unknown", 0, 0};
        for (const auto& m : map.members) {
          if (m.id == l) mv.address = m.address;
        }
        const NodeInfo* info = nullptr;
        if (auto it = by_address.find(mv.address); it != by_address.end()) {
          info = it->second;
        } else if (!mv.address.empty()) {
          auto [a, fresh] = asked.try_emplace(mv.address);
          if (fresh && !client_->NodeStatus(mv.address, &a->second, call_).ok()) a->second = NodeInfo{};
          if (!a->second.listen.empty()) info = &a->second;
        }
        for (const ShardInfo& s : info ? info->shards : std::vector<ShardInfo>{}) {
          if (s.shard != sh.id) continue;
          mv.phase = s.snapshot_bytes_total > 0 ? "snapshot" : "log";
          mv.bytes_done = s.snapshot_bytes_done;
          mv.bytes_total = s.snapshot_bytes_total;
        }
        out.push_back(std::move(mv));
      }
    }
    return out;
  }

  // Asks every node in --cluster at once, so a dead node costs one timeout, not one each.
  int NodeStatus() {
    std::vector<Report> reports(nodes_.size());
    std::vector<std::thread> threads;
    threads.reserve(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) {
      threads.emplace_back([this, &reports, i] {
        reports[i].status = client_->NodeStatus(nodes_[i], &reports[i].info, call_);
      });
    }
    for (auto& t : threads) t.join();

    // A node that is down outranks a disk error: it is the more urgent page.
    int exit_code = kExitOk;
    for (const auto& r : reports) {
      int code = !r.status.ok() ? ExitCodeFor(r.status.code()) : r.info.disk_ok ? kExitOk : kExitIOError;
      if (code != kExitOk && (exit_code == kExitOk || code == kExitUnavailable)) exit_code = code;
    }

    // The newest cluster map any node reported.
    const ClusterMapInfo* map = nullptr;
    for (const auto& r : reports) {
      if (r.status.ok() && r.info.cluster_map.version > 0 && (!map || r.info.cluster_map.version > map->version)) {
        map = &r.info.cluster_map;
      }
    }

    // Each shard's leader, as the nodes asked see it.
    std::map<uint32_t, std::string> leaders;
    for (size_t i = 0; i < reports.size(); ++i) {
      if (!reports[i].status.ok()) continue;
      for (const ShardInfo& sh : reports[i].info.shards) {
        if (sh.role == "leader") leaders[sh.shard] = nodes_[i];
        else if (!sh.leader.empty()) leaders.emplace(sh.shard, sh.leader);
      }
    }
    std::vector<MoveProgress> moves = map ? MovesInProgress(*map, reports) : std::vector<MoveProgress>{};

    if (flags_.json) {
      JsonWriter w;
      w.BeginObject().Key("ok").Bool(exit_code == kExitOk);
      w.Key("cluster_map");
      if (!map) {
        w.Null();
      } else {
        w.BeginObject().Key("version").Uint(map->version).Key("cluster_id").Uint(map->cluster_id);
        w.Key("replication_factor").Uint(map->replication_factor).Key("moves_paused").Bool(map->moves_paused);
        w.Key("members").BeginArray();
        for (const auto& m : map->members) {
          w.BeginObject().Key("id").Uint(m.id).Key("address").String(m.address).Key("state").String(m.state);
          w.Key("weight").Double(m.weight).EndObject();
        }
        w.EndArray().Key("shards").BeginArray();
        for (const auto& sh : map->shards) {
          w.BeginObject().Key("id").Uint(sh.id).Key("start").Uint(sh.start).Key("end").Uint(sh.end);
          w.Key("epoch").Uint(sh.epoch).Key("leader").String(leaders[sh.id]).Key("voters").BeginArray();
          for (uint64_t v : sh.voters) w.Uint(v);
          w.EndArray().Key("learners").BeginArray();
          for (uint64_t l : sh.learners) w.Uint(l);
          w.EndArray().EndObject();
        }
        w.EndArray().Key("moves").BeginArray();
        for (const auto& mv : moves) {
          w.BeginObject().Key("shard").Uint(mv.shard).Key("to").Uint(mv.to).Key("address").String(mv.address);
          w.Key("phase").String(mv.phase).Key("bytes_done").Uint(mv.bytes_done).Key("bytes_total").Uint(mv.bytes_total);
          w.Key("bytes_left").Uint(mv.bytes_total - mv.bytes_done).EndObject();
        }
        w.EndArray().EndObject();
      }
      w.Key("nodes").BeginArray();
      for (size_t i = 0; i < nodes_.size(); ++i) {
        const auto& r = reports[i];
        w.BeginObject().Key("address").String(nodes_[i]).Key("up").Bool(r.status.ok());
        if (!r.status.ok()) {
          w.Key("code").String(StatusCodeName(r.status.code())).Key("error").String(r.status.message());
        } else {
          const NodeInfo& n = r.info;
          w.Key("node_id").String(n.node_id).Key("version").String(n.version);
          w.Key("listen").String(n.listen).Key("uptime_ms").Uint(n.uptime_ms);
          w.Key("sync_policy").String(n.sync_policy).Key("shard_count").Uint(n.shard_count);
          w.Key("connections").Uint(n.connections).Key("requests_served").Uint(n.requests_served);
          w.Key("keys_estimate").Uint(n.keys_estimate).Key("disk_bytes").Uint(n.disk_bytes);
          w.Key("disk_ok").Bool(n.disk_ok).Key("disk_error");
          if (n.disk_ok) w.Null();
          else w.String(n.disk_error);
          w.Key("shards").BeginArray();
          for (const ShardInfo& sh : n.shards) {
            w.BeginObject().Key("shard").Uint(sh.shard).Key("leader").String(sh.leader).Key("role").String(sh.role);
            w.Key("term").Uint(sh.term).Key("commit_index").Uint(sh.commit_index);
            w.Key("applied_index").Uint(sh.applied_index).Key("last_index").Uint(sh.last_index);
            w.Key("replicas").BeginArray();
            for (const auto& rep : sh.replicas) w.String(rep);
            w.EndArray().EndObject();
          }
          w.EndArray();
        }
        w.EndObject();
      }
      w.EndArray().EndObject();
      EmitJson(w);
      return exit_code;
    }

    std::vector<std::vector<std::string>> rows = {{"NODE", "ADDRESS", "STATE", "UPTIME", "VERSION", "SYNC",
                                                   "SHARDS", "LEADS", "CONNS", "REQUESTS", "KEYS~", "DISK", "DISK STATE"}};
    std::vector<std::string> problems;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const auto& r = reports[i];
      if (!r.status.ok()) {
        rows.push_back({"-", nodes_[i], "down", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"});
        problems.push_back(nodes_[i] + ": " + r.status.ToString());
        continue;
      }
      const NodeInfo& n = r.info;
      size_t leads = std::count_if(n.shards.begin(), n.shards.end(), [](const ShardInfo& sh) { return sh.role == "leader"; });
      rows.push_back({n.node_id, nodes_[i], "up", FormatDuration(n.uptime_ms), n.version, n.sync_policy,
                      std::to_string(n.shard_count), std::to_string(leads), std::to_string(n.connections),
                      std::to_string(n.requests_served), std::to_string(n.keys_estimate),
                      FormatBytes(n.disk_bytes), n.disk_ok ? "ok" : "ERROR"});
      if (!n.disk_ok) problems.push_back(nodes_[i] + " (" + n.node_id + "): disk error: " + n.disk_error);
    }
    PrintTable(rows);
    if (map) {
      std::printf("cluster map: version %llu, %zu members, %zu shards, replication factor %u%s\n",
                  static_cast<unsigned long long>(map->version), map->members.size(), map->shards.size(),
                  map->replication_factor, map->moves_paused ? ", replica moves PAUSED" : "");
      for (const auto& mv : moves) {
        std::string what = mv.phase == "snapshot" ? "fetching a snapshot, " + FormatBytes(mv.bytes_done) + " of " +
                                                        FormatBytes(mv.bytes_total) + " (" +
                                                        FormatBytes(mv.bytes_total - mv.bytes_done) + " left)"
                           : mv.phase == "log"   ? "catching up from the log"
                                                 : "waiting for the learner's status";
        std::printf("move: shard %u -> node %llu (%s): %s\n", mv.shard, static_cast<unsigned long long>(mv.to),
                    mv.address.c_str(), what.c_str());
      }
    }
    if (!problems.empty()) {
      std::fflush(stdout);
      for (const auto& p : problems) std::fprintf(stderr, "ringctl: %s\n", p.c_str());
    }
    return exit_code;
  }

 private:
  const GlobalFlags& flags_;
  std::unique_ptr<Client> client_;
  std::vector<std::string> nodes_;  // --cluster, normalized to HOST:PORT
  CallOptions call_;
};

// True if argv asks for JSON before any "--" (which ends the flags). Used to format
// parse errors, which CLI11 may report before it stores --json.
bool WantsJson(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--json") == 0) return true;
  }
  return false;
}

int Main(int argc, char** argv) {
  GlobalFlags flags;
  CLI::App app{"ringctl: data and admin commands for a ringstore cluster."};
  app.footer(std::string(kExitCodeTable) + "\n\n" + kExamples);
  app.set_version_flag("--version", "ringctl 0.1.0");
  app.require_subcommand(1);
  app.add_option("--cluster", flags.cluster,
                 "Nodes to talk to, HOST:PORT[,HOST:PORT...] (default: $RING_CLUSTER, else " +
                     std::string(kDefaultCluster) + ")")
      ->envname("RING_CLUSTER");
  app.add_flag("--json", flags.json, "Print exactly one JSON object on stdout");
  app.add_option("--timeout-ms", flags.timeout_ms, "Deadline for the command, in milliseconds (default 5000)")
      ->check(CLI::Range(1, 3600 * 1000));

  // Global flags are accepted after the command too (`ringctl get k --json`).
  auto command = [&app](const char* name, const char* help) {
    CLI::App* sub = app.add_subcommand(name, help);
    sub->fallthrough();
    sub->footer(kExitCodeTable);
    return sub;
  };

  std::string key, value, value_new;
  CLI::App* get = command("get", "Print KEY's value, raw, then a newline (exit 1 if it does not exist)");
  get->add_option("KEY", key, "The key")->required();

  CLI::App* put = command("put", "Set KEY to VALUE; VALUE '-' reads the value from stdin, byte for byte");
  put->add_option("KEY", key, "The key")->required();
  put->add_option("VALUE", value, "The value, or '-' for stdin (binary-safe; up to 1 MiB)")->required();

  CLI::App* del = command("del", "Delete KEY (exit 0 whether or not it existed)");
  del->add_option("KEY", key, "The key")->required();

  bool expect_absent = false;
  std::vector<std::string> cas_args;
  CLI::App* cas = command("cas",
                          "Compare-and-set: set KEY to NEW only if its value is EXPECTED, or with\n"
                          "--expect-absent only if KEY does not exist (exit 2 if not applied).\n"
                          "  ringctl cas KEY EXPECTED NEW\n"
                          "  ringctl cas --expect-absent KEY NEW\n"
                          "NEW '-' reads the new value from stdin.");
  cas->add_flag("--expect-absent", expect_absent, "Apply only if KEY does not exist");
  cas->add_option("ARGS", cas_args, "KEY EXPECTED NEW, or KEY NEW with --expect-absent")->required();

  CLI::App* status = command("status", "Describe every node in --cluster (exit 69 if one is down)");
  CLI::App* ping = command("ping", "Round trip to the cluster");
  CLI::App* shard = command("shard", "Shard commands");
  shard->require_subcommand(1);
  CLI::App* locate = shard->add_subcommand("locate", "Print the shard that owns KEY (and the key's hash)");
  locate->fallthrough();
  locate->add_option("KEY", key, "The key")->required();
  uint32_t split_id = 0;
  CLI::App* split = shard->add_subcommand("split", "Split shard ID at the midpoint of its hash range (the upper half becomes a new shard)");
  split->fallthrough();
  split->add_option("ID", split_id, "The shard's id (see `ringctl shard locate` or `status --json`)")->required()
      ->check(CLI::Range(uint32_t{0}, uint32_t{1} << 20));

  CLI::App* node = command("node", "Cluster membership: drain, undrain or remove a node by id");
  node->require_subcommand(1);
  uint64_t node_id = 0;
  bool wait = false;
  std::vector<CLI::App*> node_verbs;
  for (const char* verb : {"drain", "undrain", "remove"}) {
    const char* help = std::string_view(verb) == "drain"
                           ? "Move every replica off node ID (in the background; --wait to wait for it)"
                       : std::string_view(verb) == "undrain" ? "Make a draining node ID a placement target again"
                                                             : "Retire node ID for good (it must hold no replicas)";
    CLI::App* sub = node->add_subcommand(verb, help);
    sub->fallthrough();
    sub->add_option("ID", node_id, "The node's id (see `ringctl status`)")->required()->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
    if (std::string_view(verb) == "drain") sub->add_flag("--wait", wait, "Wait (within --timeout-ms) until the node holds nothing");
    node_verbs.push_back(sub);
  }

  CLI::App* moves = command("moves", "Pause or resume replica moves cluster-wide");
  moves->require_subcommand(1);
  std::vector<CLI::App*> move_verbs;
  move_verbs.push_back(moves->add_subcommand("pause", "Start no further replica move step (the map records it)"));
  move_verbs.push_back(moves->add_subcommand("resume", "Start replica move steps again"));
  for (CLI::App* sub : move_verbs) sub->fallthrough();

  CLI::App* cluster = command("cluster", "Create the cluster");
  cluster->require_subcommand(1);
  uint32_t init_shards = 0, init_rf = 0;
  CLI::App* init = cluster->add_subcommand(
      "init", "Create the cluster on the first node of --cluster (started with --join, not yet a member);\n"
              "the other nodes join it. Idempotent: a node already in a cluster is left as it is");
  init->fallthrough();
  init->add_option("--shards", init_shards, "Shards to split the hash space into, 1-65536 (default: the node's shard_count)")
      ->check(CLI::Range(1, 65536));
  init->add_option("--replication-factor", init_rf, "Replicas per shard, 1-7 (default: the node's replication_factor)")
      ->check(CLI::Range(1, 7));

  PlaygroundOptions pg;
  CLI::App* playground = command("playground",
                                 "Run a local cluster of ringd nodes in the foreground; Ctrl-C stops it");
  playground->add_option("--nodes", pg.nodes, "Number of nodes, 1-9 (default 1)")->check(CLI::Range(1, 9));
  playground->add_option("--dir", pg.dir, "Directory for the nodes' data and logs (default: a new /tmp/ring-playground-*)");
  playground->add_option("--base-port", pg.base_port, "Client port of the first node; node i uses base+i-1 (default 7001)")
      ->check(CLI::Range(1, 65535));
  playground->add_option("--metrics-base-port", pg.metrics_base_port,
                         "Metrics port of the first node; 0 turns metrics off (default 9101)")
      ->check(CLI::Range(0, 65535));
  playground->add_flag("--keep", pg.keep, "Keep the directory when stopping");
  playground->add_option("--sync-policy", pg.sync_policy, "sync (default) or async")
      ->check(CLI::IsMember({"sync", "async"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    flags.json = flags.json || WantsJson(argc, argv);
    std::string message = e.what();
    if (app.get_subcommands().empty()) {
      // CLI11 reports a misspelled command as "a subcommand is required"; name it instead.
      std::string unknown;
      for (const auto& arg : app.remaining()) {
        if (!arg.empty() && arg[0] != '-') {
          unknown = arg;
          break;
        }
      }
      if (!unknown.empty()) message = "unknown command \"" + unknown + "\"";
      else if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) message = "no command given";
      message += "; commands: get, put, del, cas, status, ping, shard locate|split, node drain|undrain|remove, moves pause|resume, cluster init, playground";
    }
    return UsageError(flags, message);
  }

  if (playground->parsed()) {
    pg.json = flags.json;
    return RunPlayground(pg);
  }

  auto endpoints = ParseEndpointList(flags.cluster);
  if (!endpoints.ok()) return UsageError(flags, "--cluster: " + endpoints.status().message());
  ClientOptions options;
  std::vector<std::string> nodes;
  for (const auto& ep : *endpoints) nodes.push_back(ep.ToString());
  options.seeds = nodes;
  // One request per run: a second connection per node would only cost a handshake.
  options.connections_per_node = 1;
  options.default_timeout = std::chrono::milliseconds(flags.timeout_ms);
  options.connect_timeout = std::min(options.connect_timeout, options.default_timeout);
  std::unique_ptr<Client> client;
  Status s = Client::Open(options, &client);
  if (!s.ok()) return UsageError(flags, "--cluster: " + s.message());
  Commands commands(flags, std::move(client), std::move(nodes));

  if (get->parsed()) return commands.Get(key);
  if (put->parsed()) return commands.Put(key, value);
  if (del->parsed()) return commands.Delete(key);
  if (cas->parsed()) {
    size_t want = expect_absent ? 2 : 3;
    if (cas_args.size() != want) {
      return UsageError(flags, "cas takes " + std::string(expect_absent ? "KEY NEW with --expect-absent"
                                                                          : "KEY EXPECTED NEW") +
                                   ", got " + std::to_string(cas_args.size()) + " argument(s)");
    }
    std::optional<std::string> expected;
    if (!expect_absent) expected = cas_args[1];
    return commands.CompareAndSet(cas_args[0], expected, cas_args.back());
  }
  if (status->parsed()) return commands.NodeStatus();
  if (ping->parsed()) return commands.Ping();
  if (locate->parsed()) return commands.Locate(key);
  if (split->parsed()) return commands.Split(split_id);
  for (CLI::App* verb : node_verbs) {
    if (verb->parsed()) return commands.Member(verb->get_name(), node_id, wait);
  }
  for (CLI::App* verb : move_verbs) {
    if (verb->parsed()) return commands.Moves(verb->get_name());
  }
  if (init->parsed()) return commands.Init(init_shards, init_rf);
  return UsageError(flags, "no command given");
}

}  // namespace
}  // namespace ring::cli

int main(int argc, char** argv) {
  int code = ring::cli::Main(argc, argv);
  // Exit codes promise the outcome; a full disk or closed pipe on stdout must not turn a
  // failure into an apparent success, nor a success silently lose its output.
  if (std::fflush(stdout) != 0 && code == ring::cli::kExitOk) code = ring::cli::kExitSoftware;
  return code;
}
