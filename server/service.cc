#include "server/service.h"

#include "common/limits.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"

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

Status KvService::CheckShard(const pb::Request& req, std::string_view key) const {
  if (req.shard() == 0) return Status::OK();
  ShardId want = node_->shards.ShardOfKey(key);
  if (req.shard() - 1 != want) {
    return Status::WrongShard("key belongs to shard " + std::to_string(want) + ", not shard " +
                              std::to_string(req.shard() - 1));
  }
  return Status::OK();
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
  ns->set_shard_count(node_->shards.count());
  ns->set_connections(node_->metrics->connections_open.load());
  ns->set_requests_served(node_->metrics->total_requests());
  ns->set_keys_estimate(health.keys_estimate);
  ns->set_disk_bytes(health.live_bytes);
  ns->set_disk_ok(health.ok);
  ns->set_disk_error(health.error);
}

bool KvService::Handle(const pb::Request& req, pb::Response* resp, const Later& later) {
  Metrics* m = node_->metrics;
  RequestKind kind = KindOf(req);
  m->requests[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  resp->set_id(req.id());

  // Mutations: validate, then hand to the pipeline.
  KvOp op;
  Status s;
  switch (req.body_case()) {
    case pb::Request::kGet: {
      const std::string& key = req.get().key();
      s = CheckKey(key);
      if (s.ok()) s = CheckShard(req, key);
      if (s.ok()) s = node_->engine->Get(storage::Cf::kData, DataKey(key), resp->mutable_get()->mutable_value());
      if (!s.ok()) {
        resp->clear_get();
        Fail(s, m, resp);
      }
      return true;
    }
    case pb::Request::kBatchGet: {
      const auto& keys = req.batch_get().keys();
      s = CheckBatchSize(keys.size());
      std::vector<std::string> dkeys;
      for (int i = 0; s.ok() && i < keys.size(); ++i) {
        s = CheckKey(keys[i]).WithContext("key " + std::to_string(i));
        dkeys.push_back(DataKey(keys[i]));
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
        Fail(s, m, resp);
      }
      return true;
    }
    case pb::Request::kPing:
      resp->mutable_ping()->set_payload(req.ping().payload());
      return true;
    case pb::Request::kNodeStatus:
      HandleNodeStatus(resp);
      return true;
    case pb::Request::kPut:
      op.kind = KvOp::Kind::kPut;
      op.key = req.put().key();
      op.value = req.put().value();
      s = CheckKeyValue(op.key, op.value);
      break;
    case pb::Request::kDel:
      op.kind = KvOp::Kind::kDelete;
      op.key = req.del().key();
      s = CheckKey(op.key);
      break;
    case pb::Request::kCas:
      op.kind = KvOp::Kind::kCas;
      op.key = req.cas().key();
      op.value = req.cas().value();
      op.expected = req.cas().expected();
      op.expect_absent = req.cas().expect_absent();
      s = CheckKeyValue(op.key, op.value);
      if (s.ok() && op.expect_absent && !op.expected.empty()) {
        s = Status::InvalidArgument("cas: give either an expected value or expect_absent, not both");
      }
      break;
    case pb::Request::kBatchPut: {
      op.kind = KvOp::Kind::kBatchPut;
      const auto& pairs = req.batch_put().pairs();
      s = CheckBatchSize(pairs.size());
      op.pairs.reserve(pairs.size());
      for (int i = 0; s.ok() && i < pairs.size(); ++i) {
        s = CheckKeyValue(pairs[i].key(), pairs[i].value()).WithContext("pair " + std::to_string(i));
        op.pairs.emplace_back(pairs[i].key(), pairs[i].value());
      }
      if (s.ok() && req.shard() != 0) {
        for (const auto& [k, v] : op.pairs) {
          s = CheckShard(req, k);
          if (!s.ok()) break;
        }
      }
      break;
    }
    case pb::Request::BODY_NOT_SET: {
      std::string fields = UnknownFields(req);
      Fail(Status::InvalidArgument(fields.empty() ? "request names no operation"
                                                  : "unknown request type (field " + fields + ")"),
           m, resp);
      return true;
    }
  }
  if (s.ok() && op.kind != KvOp::Kind::kBatchPut) s = CheckShard(req, op.key);
  if (!s.ok()) {
    Fail(s, m, resp);
    return true;
  }

  auto body = req.body_case();
  uint64_t id = req.id();
  node_->pipeline->Submit(std::move(op), [later, body, id, m](KvResult r) {
    pb::Response out;
    out.set_id(id);
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
