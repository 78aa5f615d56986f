#include "server/service.h"

#include <any>

#include "common/limits.h"
#include "proto/ring.pb.h"
#include "sharding/cluster_map.h"
#include "sharding/meta_state_machine.h"
#include "proto/wire.h"
#include "server/replicated_kv.h"
#include "server/snapshot_store.h"

namespace ring::server {

namespace {

RequestKind KindOf(const pb::Request& req) {
  switch (req.body_case()) {
    case pb::Request::kGet: return RequestKind::kGet;
    case pb::Request::kPut: return RequestKind::kPut;
    case pb::Request::kDel: return RequestKind::kDelete;
    case pb::Request::kCas: return RequestKind::kCas;
    case pb::Request::kBatchGet: return RequestKind::kBatchGet;
    case pb::Request::kBatchPut: return RequestKind::kBatchPut;
    case pb::Request::kPing: return RequestKind::kPing;
    case pb::Request::kNodeStatus: return RequestKind::kNodeStatus;
    case pb::Request::kClusterAdmin: return RequestKind::kClusterAdmin;
    case pb::Request::kSnapshotChunk: return RequestKind::kSnapshotChunk;
    case pb::Request::kRaft:  // peer traffic is routed before the service; never counted here
    case pb::Request::kSplit:  // a log entry only; refused from the wire below
    case pb::Request::BODY_NOT_SET: break;
  }
  return RequestKind::kInvalid;
}

// The unknown field numbers of a request with no known body, for the error message.
std::string UnknownFields(const pb::Request& req) {
  const auto& unknown = req.GetReflection()->GetUnknownFields(req);
  std::string out;
  for (int i = 0; i < unknown.field_count(); ++i) {
    if (!out.empty()) out += ", ";
    out += std::to_string(unknown.field(i).number());
  }
  return out;
}

Status CheckKeyValue(std::string_view key, std::string_view value) {
  RETURN_IF_ERROR(CheckKey(key));
  return CheckValue(value);
}

void Fail(const Status& s, Metrics* m, pb::Response* resp) {
  SetResponseStatus(s, resp);
  m->errors[static_cast<size_t>(s.code())].fetch_add(1, std::memory_order_relaxed);
}

// Approximate protobuf overhead per BatchGet entry (tags and length prefixes).
constexpr size_t kEntryOverhead = 16;

}  // namespace

void KvService::UndecodableReply(size_t payload_bytes, pb::Response* resp) {
  SetResponseStatus(Status::InvalidArgument("frame of " + std::to_string(payload_bytes) +
                                            " bytes is not a valid Request message"),
                    resp);
}

Status KvService::CheckShard(const ShardRanges& shards, uint64_t map_version, const pb::Request& req,
                             std::string_view key) {
  if (req.shard() == 0) return Status::OK();
  ShardId want = shards.ShardOfKey(key);
  if (req.shard() - 1 == want) return Status::OK();
  std::string what = "key belongs to shard " + std::to_string(want) + ", not shard " + std::to_string(req.shard() - 1);
  // Routed with an older map than this node's: the shard's range changed since (a split).
  if (req.map_version() != 0 && req.map_version() < map_version) {
    return Status::StaleEpoch(what + " since map version " + std::to_string(req.map_version()) +
                              "; this node routes by version " + std::to_string(map_version));
  }
  return Status::WrongShard(what);
}

Result<ShardId> KvService::SingleShard(const ShardRanges& shards, const std::vector<std::string_view>& keys) {
  if (keys.empty()) return Status::InvalidArgument("request names no key");
  ShardId first = shards.ShardOfKey(keys.front());
  for (size_t i = 1; i < keys.size(); ++i) {
    ShardId s = shards.ShardOfKey(keys[i]);
    if (s != first) {
      return Status::InvalidArgument("batch spans shards " + std::to_string(first) + " and " + std::to_string(s) +
                                     " (key " + std::to_string(i) + "); keys of one batch must share a shard: use a {tag}");
    }
  }
  return first;
}

std::string MemberAddress(const sharding::ClusterMap* map, const Config& config, uint64_t id) {
  if (const sharding::Member* m = map ? map->FindMember(id) : nullptr) return m->address;
  return ReplicaAddress(config, id);
}

std::string NodeContext::AddressOf(uint64_t id) const {
  auto map = cluster_map ? cluster_map() : nullptr;
  return MemberAddress(map.get(), *config, id);
}

void KvService::Redirect(NodeContext* node, ShardId shard, pb::Response* resp) {
  replication::NodeId leader = node->driver->LeaderOf(shard);
  std::string address = leader == replication::kNoNode ? "" : node->AddressOf(leader);
  Status s;
  if (!node->driver->HasGroup(shard)) {
    // Not hosted here (the map put it elsewhere, or it moved away): point at a replica the
    // map names; one that does not lead it redirects again to the leader it knows.
    std::shared_ptr<const sharding::ClusterMap> map = node->cluster_map ? node->cluster_map() : nullptr;
    const sharding::ShardInfo* info = nullptr;
    if (map) {
      auto it = map->shards.find(shard);
      if (it != map->shards.end() && !it->second.voters.empty()) info = &it->second;
    }
    if (info) {
      replication::NodeId hint = info->leader_hint;
      if (hint == replication::kNoNode) {
        hint = info->voters[node->next_hint.fetch_add(1, std::memory_order_relaxed) % info->voters.size()];
      }
      address = node->AddressOf(hint);
    }
    s = Status::WrongShard("shard " + std::to_string(shard) + " has no replica on this node" +
                           (address.empty() ? "" : "; try " + address));
  } else if (leader == node->self_id) {
    s = Status::Unavailable("shard " + std::to_string(shard) + ": leader is confirming its read lease; retry");
  } else {
    s = Status::NotLeader("shard " + std::to_string(shard) + ": this node is not the leader" +
                          (address.empty() ? " and knows of none yet" : "; the leader is " + address));
  }
  Fail(s, node->metrics, resp);
  auto* r = resp->mutable_redirect();
  if (s.code() != StatusCode::kUnavailable) r->set_leader(address);
  r->set_shard(shard + 1);
  SetMapHints(node, r);
}

void KvService::SetMapHints(NodeContext* node, pb::Redirect* r) {
  r->set_shard_count(node->Shards()->count());
  if (node->cluster_map) r->set_map_version(node->cluster_map()->version);
}

void KvService::FailRouting(NodeContext* node, const Status& s, pb::Response* resp) {
  Fail(s, node->metrics, resp);
  if (s.code() == StatusCode::kWrongShard || s.code() == StatusCode::kStaleEpoch) {
    SetMapHints(node, resp->mutable_redirect());
  }
}

void KvService::HandleNodeStatus(pb::Response* resp) {
  auto* ns = resp->mutable_node_status();
  const Config& c = *node_->config;
  auto health = node_->engine->health();
  ns->set_node_id(c.node_id);
  ns->set_version("0.1.0");
  ns->set_listen(node_->listen_address);
  ns->set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - node_->started)
                        .count());
  ns->set_sync_policy(SyncPolicyName(c.sync_policy));
  ns->set_shard_count(node_->Shards()->count());
  ns->set_connections(node_->metrics->connections_open.load());
  ns->set_requests_served(node_->metrics->total_requests());
  ns->set_keys_estimate(health.keys_estimate);
  ns->set_disk_bytes(health.live_bytes);
  ns->set_disk_ok(health.ok);
  ns->set_disk_error(health.error);
  std::shared_ptr<const sharding::ClusterMap> map = node_->cluster_map ? node_->cluster_map() : nullptr;
  if (node_->driver == nullptr) return;  // waiting to join: no shards, no map
  const auto fetching = node_->snapshots ? node_->snapshots->Fetching() : std::map<uint64_t, SnapshotStore::FetchProgress>{};
  for (const auto& g : node_->driver->Groups()) {
    if (g.group == sharding::kMetaGroup) continue;  // the metadata log, not a shard
    auto* sh = ns->add_shards();
    sh->set_shard(static_cast<uint32_t>(g.group));
    if (g.leader != replication::kNoNode) sh->set_leader(MemberAddress(map.get(), c, g.leader));
    sh->set_role(replication::RoleName(g.role));
    sh->set_term(g.term);
    sh->set_commit_index(g.commit);
    sh->set_applied_index(g.applied);
    sh->set_last_index(g.last_index);
    for (uint64_t v : g.conf.voters) sh->add_replicas(MemberAddress(map.get(), c, v));
    for (uint64_t l : g.conf.learners) sh->add_replicas(MemberAddress(map.get(), c, l) + " (learner)");
    if (auto f = fetching.find(g.group); f != fetching.end()) {
      sh->set_snapshot_bytes_done(f->second.done);
      sh->set_snapshot_bytes_total(f->second.total);
    }
  }
  if (map && map->initialized()) sharding::MapToProto(*map, ns->mutable_cluster_map());
}

bool KvService::Handle(const pb::Request& req, pb::Response* resp, const Later& later) {
  Metrics* m = node_->metrics;
  RequestKind kind = KindOf(req);
  m->requests[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  resp->set_id(req.id());

  if (node_->driver == nullptr && req.body_case() != pb::Request::kPing &&
      req.body_case() != pb::Request::kNodeStatus && req.body_case() != pb::Request::kClusterAdmin) {
    Fail(Status::Unavailable("this node has not joined a cluster yet (it was started with --join; "
                             "a cluster is created once with `ringctl cluster init`)"),
         m, resp);
    return true;
  }
  const std::shared_ptr<const ShardRanges> shards = node_->Shards();
  const uint64_t map_version = node_->MapVersion();

  // Mutations: validate, then propose to the key's shard.
  std::vector<std::string_view> keys;
  Status s;
  switch (req.body_case()) {
    case pb::Request::kGet: {
      const std::string& key = req.get().key();
      s = CheckKey(key);
      if (s.ok()) s = CheckShard(*shards, map_version, req, key);
      ShardId shard = shards->ShardOfKey(key);
      if (s.ok() && !node_->driver->ReadLeaseValid(shard)) {
        if (node_->driver->LeaderOf(shard) != node_->self_id) {
          Redirect(node_, shard, resp);
          return true;
        }
        // Leader without a lease (just elected, or handing over): confirm leadership with
        // a heartbeat round, then read once everything committed before is applied.
        NodeContext* node = node_;
        std::string dkey = DataKey(key);
        uint64_t id = req.id();
        node_->driver->ReadIndex(shard, [node, dkey, id, later, m, shard](Status st) {
          pb::Response out;
          out.set_id(id);
          if (st.ok()) st = node->engine->Get(storage::Cf::kData, dkey, out.mutable_get()->mutable_value());
          if (!st.ok()) {
            out.clear_get();
            if (st.code() == StatusCode::kNotLeader) Redirect(node, shard, &out);
            else Fail(st, m, &out);
          }
          later(std::move(out));
        });
        return false;
      }
      if (s.ok()) s = node_->engine->Get(storage::Cf::kData, DataKey(key), resp->mutable_get()->mutable_value());
      if (!s.ok()) {
        resp->clear_get();
        FailRouting(node_, s, resp);
      }
      return true;
    }
    case pb::Request::kBatchGet: {
      const auto& keys = req.batch_get().keys();
      s = CheckBatchSize(keys.size());
      std::vector<std::string> dkeys;
      for (int i = 0; s.ok() && i < keys.size(); ++i) {
        s = CheckKey(keys[i]).WithContext("key " + std::to_string(i));
        if (s.ok()) s = CheckShard(*shards, map_version, req, keys[i]);
        dkeys.push_back(DataKey(keys[i]));
      }
      // Reads need no atomicity across shards: serve the batch if this node holds the
      // read lease of every shard it touches. Otherwise a single-shard batch is redirected
      // to its leader; a batch over several shards cannot be (no one node may lead them
      // all): WrongShard, with the shard count, tells the client to split it by shard.
      std::optional<ShardId> first_shard, missing;
      bool several = false;
      for (int i = 0; s.ok() && i < keys.size(); ++i) {
        ShardId shard = shards->ShardOfKey(keys[i]);
        if (!first_shard) first_shard = shard;
        if (shard != *first_shard) several = true;
        if (!missing && !node_->driver->ReadLeaseValid(shard)) missing = shard;
      }
      if (s.ok() && missing) {
        if (!several) {
          Redirect(node_, *missing, resp);
          return true;
        }
        FailRouting(node_,
                    Status::WrongShard("batch spans shards this node does not all lead (shard " +
                                       std::to_string(*missing) + " is led elsewhere); split it by shard"),
                    resp);
        return true;
      }
      std::vector<std::optional<std::string>> values;
      if (s.ok()) s = node_->engine->MultiGet(storage::Cf::kData, dkeys, &values);
      size_t reply_bytes = 0;
      for (size_t i = 0; s.ok() && i < values.size(); ++i) {
        reply_bytes += kEntryOverhead + (values[i] ? values[i]->size() : 0);
        if (reply_bytes > kMaxFrameBytes - 1024) {
          s = Status::InvalidArgument("reply would exceed the " + std::to_string(kMaxFrameBytes) +
                                      "-byte frame limit after " + std::to_string(i) +
                                      " of " + std::to_string(values.size()) +
                                      " keys; split the batch");
          break;
        }
        auto* e = resp->mutable_batch_get()->add_entries();
        e->set_found(values[i].has_value());
        if (values[i]) e->set_value(std::move(*values[i]));
      }
      if (!s.ok()) {
        resp->clear_batch_get();
        FailRouting(node_, s, resp);
      }
      return true;
    }
    case pb::Request::kPing:
      resp->mutable_ping()->set_payload(req.ping().payload());
      return true;
    case pb::Request::kNodeStatus:
      HandleNodeStatus(resp);
      return true;
    case pb::Request::kClusterAdmin:
      if (!node_->cluster_admin) {
        Fail(Status::InvalidArgument("this node does not manage a cluster map"), m, resp);
        return true;
      }
      return node_->cluster_admin(req, resp, later);
    case pb::Request::kSnapshotChunk: {
      if (node_->snapshots == nullptr) {
        Fail(Status::InvalidArgument("this node holds no shard snapshots"), m, resp);
        return true;
      }
      const auto& c = req.snapshot_chunk();
      std::string data;
      Status cs = node_->snapshots->ReadChunk(c.id(), c.file(), c.offset(), c.max_bytes(), &data);
      if (!cs.ok()) {
        Fail(cs, m, resp);
        return true;
      }
      *resp->mutable_snapshot_chunk()->mutable_data() = std::move(data);
      return true;
    }
    case pb::Request::kPut:
      s = CheckKeyValue(req.put().key(), req.put().value());
      keys.push_back(req.put().key());
      break;
    case pb::Request::kDel:
      s = CheckKey(req.del().key());
      keys.push_back(req.del().key());
      break;
    case pb::Request::kCas:
      s = CheckKeyValue(req.cas().key(), req.cas().value());
      if (s.ok() && req.cas().expect_absent() && !req.cas().expected().empty()) {
        s = Status::InvalidArgument("cas: give either an expected value or expect_absent, not both");
      }
      keys.push_back(req.cas().key());
      break;
    case pb::Request::kBatchPut: {
      const auto& pairs = req.batch_put().pairs();
      s = CheckBatchSize(pairs.size());
      for (int i = 0; s.ok() && i < pairs.size(); ++i) {
        s = CheckKeyValue(pairs[i].key(), pairs[i].value()).WithContext("pair " + std::to_string(i));
        keys.push_back(pairs[i].key());
      }
      break;
    }
    default:
      // Peer traffic (raft) is routed by the connection before it gets here; any other
      // body this service does not serve is refused rather than guessed at.
      Fail(Status::InvalidArgument(std::string("request type \"") + RequestKindName(req) +
                                   "\" is not served here"), m, resp);
      return true;
    case pb::Request::BODY_NOT_SET: {
      std::string fields = UnknownFields(req);
      Fail(Status::InvalidArgument(fields.empty() ? "request names no operation"
                                                  : "unknown request type (field " + fields + ")"),
           m, resp);
      return true;
    }
  }
  // One shard for the whole batch first (a caller's error), then the client's routing.
  Result<ShardId> shard = s.ok() ? SingleShard(*shards, keys) : Result<ShardId>(s);
  if (shard.ok()) {
    if (Status routed = CheckShard(*shards, map_version, req, keys.front()); !routed.ok()) shard = routed;
  }
  if (!shard.ok()) {
    FailRouting(node_, shard.status(), resp);
    return true;
  }

  // The command is the request itself, minus routing fields, stamped with the wall clock
  // (used only to expire idle clients' dedup records, identically on every replica).
  pb::Request cmd = req;
  cmd.clear_id();
  cmd.clear_shard();
  cmd.clear_map_version();
  uint64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  auto body = req.body_case();
  uint64_t id = req.id();
  ShardId sid = *shard;
  std::string command = EncodeCommand(cmd, now_ms);
  if (command.size() > kMaxCommandBytes) {
    Fail(Status::InvalidArgument("write of " + std::to_string(command.size()) + " bytes exceeds the " +
                                 std::to_string(kMaxCommandBytes) + "-byte replicated write limit; split the batch"),
         m, resp);
    return true;
  }
  if (!node_->driver->HasGroup(sid)) {
    Redirect(node_, sid, resp);
    return true;
  }
  NodeContext* node = node_;
  node_->driver->Propose(sid, std::move(command), [node, later, body, id, m, sid](Status st, std::any res) {
    pb::Response out;
    out.set_id(id);
    if (!st.ok()) {
      if (st.code() == StatusCode::kNotLeader) {
        Redirect(node, sid, &out);
      } else {
        Fail(st, m, &out);
      }
      later(std::move(out));
      return;
    }
    KvResult r = std::any_cast<KvResult>(std::move(res));
    if (!r.status.ok()) {
      Fail(r.status, m, &out);
    } else if (body == pb::Request::kPut) {
      out.mutable_put();
    } else if (body == pb::Request::kBatchPut) {
      out.mutable_batch_put();
    } else if (body == pb::Request::kDel) {
      out.mutable_del()->set_existed(r.existed);
    } else {
      auto* cas = out.mutable_cas();
      cas->set_swapped(r.swapped);
      if (r.current) {
        cas->set_current_present(true);
        cas->set_current(std::move(*r.current));
      }
    }
    later(std::move(out));
  });
  return false;
}

}  // namespace ring::server
