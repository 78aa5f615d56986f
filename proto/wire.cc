#include "proto/wire.h"

#include "common/frame.h"
#include "proto/ring.pb.h"

namespace ring {

namespace {
template <typename M>
void AppendFrame(const M& m, std::string* out) {
  size_t len = m.ByteSizeLong();
  AppendFrameHeader(out, static_cast<uint32_t>(len));
  size_t at = out->size();
  out->resize(at + len);
  m.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out->data() + at));
}
}  // namespace

void AppendRequestFrame(const pb::Request& req, std::string* out) { AppendFrame(req, out); }
void AppendResponseFrame(const pb::Response& resp, std::string* out) { AppendFrame(resp, out); }

Status StatusFromResponse(const pb::Response& resp) {
  int code = resp.code();
  if (code == 0) return Status::OK();
  if (code < 0 || code >= kStatusCodeCount) {
    return Status::Corruption("reply carries unknown error code " + std::to_string(code) + ": " +
                              resp.message());
  }
  return Status(static_cast<StatusCode>(code), resp.message());
}

void SetResponseStatus(const Status& s, pb::Response* resp) {
  resp->set_code(static_cast<pb::ErrorCode>(static_cast<int>(s.code())));
  if (!s.ok()) resp->set_message(s.message());
}

const char* RequestKindName(const pb::Request& req) {
  switch (req.body_case()) {
    case pb::Request::kGet: return "get";
    case pb::Request::kPut: return "put";
    case pb::Request::kDel: return "delete";
    case pb::Request::kCas: return "cas";
    case pb::Request::kBatchGet: return "batch_get";
    case pb::Request::kBatchPut: return "batch_put";
    case pb::Request::kPing: return "ping";
    case pb::Request::kNodeStatus: return "node_status";
    case pb::Request::kRaft: return "raft";
    case pb::Request::kClusterAdmin: return "cluster_admin";
    case pb::Request::kSnapshotChunk: return "snapshot_chunk";
    case pb::Request::kSplit: return "split";
    case pb::Request::BODY_NOT_SET: break;
  }
  return "unknown";
}

}  // namespace ring
