// tests/integration/wire_util.h: building request frames and reading reply frames over raw
// sockets, for tests that must speak (or abuse) the protocol below the client library.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/frame.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"

namespace ring::test {

inline std::string Frame(const pb::Request& req) {
  std::string out;
  AppendRequestFrame(req, &out);
  return out;
}

inline pb::Request PutReq(uint64_t id, const std::string& k, const std::string& v) {
  pb::Request r;
  r.set_id(id);
  r.mutable_put()->set_key(k);
  r.mutable_put()->set_value(v);
  return r;
}

inline pb::Request GetReq(uint64_t id, const std::string& k) {
  pb::Request r;
  r.set_id(id);
  r.mutable_get()->set_key(k);
  return r;
}

inline pb::Request PingReq(uint64_t id) {
  pb::Request r;
  r.set_id(id);
  r.mutable_ping();
  return r;
}

// Every complete reply frame in `bytes`.
inline std::vector<pb::Response> ParseReplies(const std::string& bytes) {
  std::vector<pb::Response> out;
  FrameReader reader;
  reader.Feed(bytes);
  for (;;) {
    auto f = reader.Next();
    if (!f.ok() || !f->has_value()) break;
    pb::Response r;
    if (!r.ParseFromArray((*f)->data(), static_cast<int>((*f)->size()))) break;
    out.push_back(std::move(r));
  }
  return out;
}

// A SendRaw predicate: stop once `n` reply frames have arrived.
inline std::function<bool(const std::string&)> Replies(size_t n) {
  return [n](const std::string& bytes) { return ParseReplies(bytes).size() >= n; };
}

}  // namespace ring::test
