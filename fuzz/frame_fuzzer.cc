// fuzz/frame_fuzzer.cc: libFuzzer target for the frame reader and the message decoder,
// the code that reads bytes straight off a client's socket.
//
// Input layout (fuzz/make_corpus.py writes seeds in it):
//   byte 0       low 4 bits: n, the number of chunk-size bytes that follow;
//                high 4 bits: k, the payload limit: kMaxFrameBytes if k is 0, else 2^(k+1)
//                (4 .. 65536 bytes, so inputs can reach and cross the limit).
//   bytes 1..n   chunk sizes, used in a cycle; 0 means "all the rest". With n = 0 the
//                stream is fed in one piece.
//   the rest     the byte stream a peer sent.
//
// Each chunk is fed to a FrameReader, and every frame it returns is checked against a
// reference split of the whole stream, then parsed as a Request and as a Response. Each
// message that parses is re-encoded with AppendRequestFrame / AppendResponseFrame, read
// back through a fresh FrameReader and reparsed; the two must be identical. Any mismatch
// aborts.
//
// Nothing here allocates from a length read out of the input: the reference split keeps
// views into the input, and chunk sizes are clamped to the bytes that remain.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/frame.h"
#include "common/limits.h"
#include "common/status.h"
#include "proto/ring.pb.h"
#include "proto/wire.h"

namespace {

using google::protobuf::util::MessageDifferencer;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "frame_fuzzer: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Fail(what);
}

// What a correct reader must produce for `stream`: the payloads of the complete frames in
// order, then either an oversized header (an error) or a possibly partial tail.
struct Expected {
  std::vector<std::string_view> frames;
  bool oversized = false;
  size_t consumed = 0;  // bytes of the complete frames, headers included
};

Expected SplitStream(std::string_view stream, size_t limit) {
  Expected e;
  size_t pos = 0;
  while (stream.size() - pos >= ring::kFrameHeaderBytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(stream.data() + pos);
    uint32_t len = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    if (len > limit) {
      e.oversized = true;
      break;
    }
    if (stream.size() - pos - ring::kFrameHeaderBytes < len) break;
    e.frames.push_back(stream.substr(pos + ring::kFrameHeaderBytes, len));
    pos += ring::kFrameHeaderBytes + len;
  }
  e.consumed = pos;
  return e;
}

// Reads the single frame in `framed` back through a fresh reader.
std::string_view ReadSingleFrame(ring::FrameReader* reader, const std::string& framed) {
  reader->Feed(framed);
  auto next = reader->Next();
  Check(next.ok() && next->has_value(), "re-encoded frame did not come back as one frame");
  Check(reader->buffered() == 0, "re-encoded frame left bytes behind");
  return **next;
}

template <typename Message, typename AppendFn>
void CheckRoundTrip(const Message& parsed, AppendFn append) {
  std::string framed;
  append(parsed, &framed);
  Check(framed.size() == ring::kFrameHeaderBytes + parsed.ByteSizeLong(),
        "frame header disagrees with the message size");
  ring::FrameReader reader(framed.size());
  std::string_view payload = ReadSingleFrame(&reader, framed);
  Message again;
  Check(again.ParseFromArray(payload.data(), static_cast<int>(payload.size())),
        "re-encoded message does not parse");
  Check(MessageDifferencer::Equals(parsed, again), "re-encoded message differs");
  Check(again.SerializeAsString() == parsed.SerializeAsString(),
        "re-encoded message serializes differently");
}

void CheckPayload(std::string_view payload) {
  const int size = static_cast<int>(payload.size());

  ring::pb::Request req;
  if (req.ParseFromArray(payload.data(), size)) {
    Check(ring::RequestKindName(req) != nullptr, "RequestKindName returned null");
    CheckRoundTrip(req, [](const ring::pb::Request& m, std::string* out) {
      ring::AppendRequestFrame(m, out);
    });
  }

  ring::pb::Response resp;
  if (resp.ParseFromArray(payload.data(), size)) {
    CheckRoundTrip(resp, [](const ring::pb::Response& m, std::string* out) {
      ring::AppendResponseFrame(m, out);
    });
    // Wire code -> Status: known codes keep their number, unknown ones become Corruption.
    ring::Status s = ring::StatusFromResponse(resp);
    const int code = resp.code();
    if (code >= 0 && code < ring::kStatusCodeCount) {
      Check(static_cast<int>(s.code()) == code, "known wire code changed");
    } else {
      Check(s.code() == ring::StatusCode::kCorruption, "unknown wire code not Corruption");
      Check(s.message().find(std::to_string(code)) != std::string::npos,
            "Corruption does not name the unknown code");
    }
    // Status -> wire -> Status is the identity.
    ring::pb::Response copy;
    ring::SetResponseStatus(s, &copy);
    Check(ring::StatusFromResponse(copy) == s, "status did not survive the wire");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Parsing garbage makes protobuf log invalid-UTF-8 string fields; that is expected here.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t n_sizes = std::min<size_t>(data[0] & 0x0F, size - 1);
  const unsigned k = data[0] >> 4;
  const size_t limit = k == 0 ? ring::kMaxFrameBytes : size_t{1} << (k + 1);
  const uint8_t* sizes = data + 1;
  std::string_view stream(reinterpret_cast<const char*>(data + 1 + n_sizes), size - 1 - n_sizes);

  const Expected expected = SplitStream(stream, limit);

  ring::FrameReader reader(limit);
  reader.Feed(std::string_view());  // an empty read is harmless
  size_t fed = 0;
  size_t next_frame = 0;
  bool failed = false;
  for (size_t i = 0; fed < stream.size() && !failed; ++i) {
    size_t chunk = stream.size() - fed;
    if (n_sizes > 0 && sizes[i % n_sizes] != 0) {
      chunk = std::min<size_t>(chunk, sizes[i % n_sizes]);
    }
    reader.Feed(stream.substr(fed, chunk));
    fed += chunk;
    while (true) {
      auto next = reader.Next();
      if (!next.ok()) {
        Check(next.status().IsInvalidArgument(), "framing error is not InvalidArgument");
        Check(expected.oversized && next_frame == expected.frames.size(),
              "framing error where the stream has a valid frame");
        failed = true;
        break;
      }
      if (!next->has_value()) break;
      // Use the view before the next call to Next(), which may compact the buffer.
      std::string_view payload = **next;
      Check(payload.size() <= limit, "frame longer than the limit");
      Check(next_frame < expected.frames.size(), "more frames than the stream holds");
      Check(payload == expected.frames[next_frame], "frame differs from the stream");
      ++next_frame;
      CheckPayload(payload);
    }
    if (!failed) {
      Check(fed - reader.buffered() <= expected.consumed, "reader consumed a partial frame");
    }
  }
  if (expected.oversized) {
    Check(failed, "oversized frame was not rejected");
  } else {
    Check(next_frame == expected.frames.size(), "reader missed a complete frame");
    Check(reader.buffered() == stream.size() - expected.consumed, "buffered() is wrong");
  }
  return 0;
}
