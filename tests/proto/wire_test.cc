// Tests for proto/wire.{h,cc}: Request/Response frames round-trip through FrameReader,
// Status <-> wire code mapping, and request kind names.
#include "proto/wire.h"

#include <google/protobuf/util/message_differencer.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/frame.h"
#include "proto/ring.pb.h"

namespace ring {
namespace {

using google::protobuf::util::MessageDifferencer;

// One request of every body kind, with non-default routing fields and binary bytes.
std::vector<pb::Request> RequestsOfEveryKind() {
  std::vector<pb::Request> out;
  auto add = [&](uint64_t id) -> pb::Request& {
    pb::Request& r = out.emplace_back();
    r.set_id(id);
    r.set_shard(static_cast<uint32_t>(id % 3));
    r.set_map_version(id * 1000);
    r.set_client_id(0xDEADBEEFCAFEull);
    r.set_seq(id + 7);
    return r;
  };
  add(1).mutable_get()->set_key("user:1");
  {
    pb::PutRequest* put = add(2).mutable_put();
    put->set_key(std::string("k\0\xff", 3));
    put->set_value(std::string(1000, '\x80'));
  }
  add(3).mutable_del()->set_key("{tag}.x");
  {
    pb::CasRequest* cas = add(4).mutable_cas();
    cas->set_key("counter");
    cas->set_expected("1");
    cas->set_value("2");
  }
  {
    pb::CasRequest* cas = add(5).mutable_cas();
    cas->set_key("lock");
    cas->set_expect_absent(true);
    cas->set_value("owner");
  }
  {
    pb::BatchGetRequest* bg = add(6).mutable_batch_get();
    bg->add_keys("a");
    bg->add_keys("");
    bg->add_keys("c");
  }
  {
    pb::BatchPutRequest* bp = add(7).mutable_batch_put();
    for (int i = 0; i < 3; ++i) {
      pb::KeyValue* kv = bp->add_pairs();
      kv->set_key("k" + std::to_string(i));
      kv->set_value("v" + std::to_string(i));
    }
  }
  add(8).mutable_ping()->set_payload("hello");
  add(9).mutable_node_status();
  add(0);  // no body at all
  return out;
}

std::vector<pb::Response> ResponsesOfEveryKind() {
  std::vector<pb::Response> out;
  out.emplace_back().mutable_get()->set_value(std::string("v\0v", 3));
  out.emplace_back().mutable_put();
  out.emplace_back().mutable_del()->set_existed(true);
  {
    pb::CasResponse* cas = out.emplace_back().mutable_cas();
    cas->set_current_present(true);
    cas->set_current("old");
  }
  {
    pb::BatchGetResponse* bg = out.emplace_back().mutable_batch_get();
    bg->add_entries()->set_found(false);
    pb::BatchGetResponse::Entry* e = bg->add_entries();
    e->set_found(true);
    e->set_value("x");
  }
  out.emplace_back().mutable_batch_put();
  out.emplace_back().mutable_ping()->set_payload("pong");
  {
    pb::NodeStatusResponse* ns = out.emplace_back().mutable_node_status();
    ns->set_node_id("n1");
    ns->set_version("0.1.0");
    ns->set_listen("127.0.0.1:7000");
    ns->set_uptime_ms(123456);
    ns->set_shard_count(64);
    ns->set_disk_bytes(1ull << 40);
    ns->set_disk_ok(false);
    ns->set_disk_error("No space left on device");
  }
  {
    pb::Response& redirect = out.emplace_back();
    redirect.set_code(pb::NOT_LEADER);
    redirect.set_message("shard 3: not the leader");
    redirect.mutable_redirect()->set_leader("[::1]:7001");
    redirect.mutable_redirect()->set_map_version(42);
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].set_id(100 + i);
  return out;
}

// Feeds `stream` to a reader in pieces of `piece` bytes and returns every payload.
std::vector<std::string> Reassemble(const std::string& stream, size_t piece) {
  FrameReader reader;
  std::vector<std::string> frames;
  for (size_t pos = 0; pos < stream.size(); pos += piece) {
    reader.Feed(std::string_view(stream).substr(pos, piece));
    while (true) {
      auto next = reader.Next();
      REQUIRE(next.ok());
      if (!next->has_value()) break;
      frames.emplace_back(**next);
    }
  }
  CHECK(reader.buffered() == 0);
  return frames;
}

}  // namespace

TEST_CASE("requests of every kind round-trip through frames", "[wire]") {
  std::vector<pb::Request> requests = RequestsOfEveryKind();
  std::string stream;
  for (const pb::Request& r : requests) AppendRequestFrame(r, &stream);
  for (size_t piece : {size_t{1}, size_t{7}, stream.size()}) {
    INFO("piece " << piece);
    std::vector<std::string> frames = Reassemble(stream, piece);
    REQUIRE(frames.size() == requests.size());
    for (size_t i = 0; i < frames.size(); ++i) {
      pb::Request parsed;
      REQUIRE(parsed.ParseFromArray(frames[i].data(), static_cast<int>(frames[i].size())));
      INFO(parsed.ShortDebugString());
      CHECK(MessageDifferencer::Equals(parsed, requests[i]));
    }
  }
}

TEST_CASE("responses of every kind round-trip through frames", "[wire]") {
  std::vector<pb::Response> responses = ResponsesOfEveryKind();
  std::string stream;
  for (const pb::Response& r : responses) AppendResponseFrame(r, &stream);
  std::vector<std::string> frames = Reassemble(stream, 5);
  REQUIRE(frames.size() == responses.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    pb::Response parsed;
    REQUIRE(parsed.ParseFromArray(frames[i].data(), static_cast<int>(frames[i].size())));
    INFO(parsed.ShortDebugString());
    CHECK(MessageDifferencer::Equals(parsed, responses[i]));
  }
}

TEST_CASE("a frame's header holds the serialized size and the frame appends", "[wire]") {
  pb::Request req;
  req.set_id(9);
  req.mutable_get()->set_key("k");
  std::string out = "previous";
  AppendRequestFrame(req, &out);
  REQUIRE(out.size() == 8 + kFrameHeaderBytes + req.ByteSizeLong());
  CHECK(out.compare(0, 8, "previous") == 0);
  std::string expected_header;
  AppendFrameHeader(&expected_header, static_cast<uint32_t>(req.ByteSizeLong()));
  CHECK(out.compare(8, 4, expected_header) == 0);
  CHECK(out.substr(12) == req.SerializeAsString());
}

TEST_CASE("an empty request is a zero-length frame", "[wire]") {
  std::string out;
  AppendRequestFrame(pb::Request(), &out);
  CHECK(out == std::string(4, '\0'));
  pb::Request parsed;
  CHECK(parsed.ParseFromArray(out.data() + 4, 0));
  CHECK(RequestKindName(parsed) == std::string("unknown"));
}

TEST_CASE("a put of the largest key and value fits one frame", "[wire]") {
  pb::Request req;
  req.set_id(~uint64_t{0});
  req.mutable_put()->set_key(std::string(kMaxKeyBytes, 'k'));
  req.mutable_put()->set_value(std::string(kMaxValueBytes, 'v'));
  std::string stream;
  AppendRequestFrame(req, &stream);
  std::vector<std::string> frames = Reassemble(stream, 64 * 1024);
  REQUIRE(frames.size() == 1);
  pb::Request parsed;
  REQUIRE(parsed.ParseFromString(frames[0]));
  CHECK(MessageDifferencer::Equals(parsed, req));
}

TEST_CASE("the wire error codes mirror the status codes", "[wire]") {
  // proto/ring.proto ErrorCode mirrors ring::StatusCode; the numbers must never drift.
  CHECK(pb::ErrorCode_ARRAYSIZE == kStatusCodeCount);
  CHECK(pb::OK == static_cast<int>(StatusCode::kOk));
  CHECK(pb::NOT_FOUND == static_cast<int>(StatusCode::kNotFound));
  CHECK(pb::INVALID_ARGUMENT == static_cast<int>(StatusCode::kInvalidArgument));
  CHECK(pb::CORRUPTION == static_cast<int>(StatusCode::kCorruption));
  CHECK(pb::IO_ERROR == static_cast<int>(StatusCode::kIOError));
  CHECK(pb::NOT_LEADER == static_cast<int>(StatusCode::kNotLeader));
  CHECK(pb::WRONG_SHARD == static_cast<int>(StatusCode::kWrongShard));
  CHECK(pb::STALE_EPOCH == static_cast<int>(StatusCode::kStaleEpoch));
  CHECK(pb::TIMEOUT == static_cast<int>(StatusCode::kTimeout));
  CHECK(pb::UNAVAILABLE == static_cast<int>(StatusCode::kUnavailable));
  CHECK(pb::BUSY == static_cast<int>(StatusCode::kBusy));
}

TEST_CASE("every status code maps to the wire and back", "[wire]") {
  for (int c = 0; c < kStatusCodeCount; ++c) {
    auto code = static_cast<StatusCode>(c);
    INFO(StatusCodeName(code));
    Status s = code == StatusCode::kOk ? Status::OK() : Status(code, "shard 2: detail");
    pb::Response resp;
    SetResponseStatus(s, &resp);
    CHECK(static_cast<int>(resp.code()) == c);
    CHECK(pb::ErrorCode_IsValid(resp.code()));
    if (s.ok()) CHECK(resp.message().empty());
    CHECK(StatusFromResponse(resp) == s);

    // And through a serialized frame.
    std::string stream;
    AppendResponseFrame(resp, &stream);
    std::vector<std::string> frames = Reassemble(stream, stream.size());
    REQUIRE(frames.size() == 1);
    pb::Response parsed;
    REQUIRE(parsed.ParseFromString(frames[0]));
    CHECK(StatusFromResponse(parsed) == s);
  }
}

TEST_CASE("an unknown wire code becomes Corruption naming the number", "[wire]") {
  for (int wire : {kStatusCodeCount, 42, 1000000, -1}) {
    INFO("wire code " << wire);
    pb::Response resp;
    resp.set_code(static_cast<pb::ErrorCode>(wire));
    resp.set_message("from a newer node");
    // Proto3 enums are open: the unknown number survives a round trip.
    pb::Response parsed;
    REQUIRE(parsed.ParseFromString(resp.SerializeAsString()));
    REQUIRE(static_cast<int>(parsed.code()) == wire);
    Status s = StatusFromResponse(parsed);
    CHECK(s.code() == StatusCode::kCorruption);
    CHECK(s.message() ==
          "reply carries unknown error code " + std::to_string(wire) + ": from a newer node");
  }
}

TEST_CASE("an OK response ignores any message", "[wire]") {
  pb::Response resp;
  resp.set_message("leftover");
  CHECK(StatusFromResponse(resp) == Status::OK());
}

TEST_CASE("every request kind has a name", "[wire]") {
  pb::Request r;
  CHECK(RequestKindName(r) == std::string("unknown"));
  r.mutable_get();
  CHECK(RequestKindName(r) == std::string("get"));
  r.mutable_put();
  CHECK(RequestKindName(r) == std::string("put"));
  r.mutable_del();
  CHECK(RequestKindName(r) == std::string("delete"));
  r.mutable_cas();
  CHECK(RequestKindName(r) == std::string("cas"));
  r.mutable_batch_get();
  CHECK(RequestKindName(r) == std::string("batch_get"));
  r.mutable_batch_put();
  CHECK(RequestKindName(r) == std::string("batch_put"));
  r.mutable_ping();
  CHECK(RequestKindName(r) == std::string("ping"));
  r.mutable_node_status();
  CHECK(RequestKindName(r) == std::string("node_status"));
  r.clear_body();
  CHECK(RequestKindName(r) == std::string("unknown"));
}

TEST_CASE("request kind names cover the sample of every kind", "[wire]") {
  std::vector<std::string> names;
  for (const pb::Request& r : RequestsOfEveryKind()) names.push_back(RequestKindName(r));
  CHECK(names == std::vector<std::string>{"get", "put", "delete", "cas", "cas", "batch_get",
                                          "batch_put", "ping", "node_status", "unknown"});
}

}  // namespace ring
