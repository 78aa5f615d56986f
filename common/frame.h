// common/frame.h: length-prefixed framing (4-byte big-endian payload length + payload).
//
// FrameReader is a pure incremental parser: feed it whatever bytes arrived, then pull
// complete payloads out. It never allocates more than one frame beyond the limit check, so
// a hostile length prefix cannot make the reader reserve gigabytes.
//
// Thread-safety: none; one reader per connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/limits.h"
#include "common/status.h"

namespace ring {

// Appends the 4-byte big-endian header for a payload of `len` bytes.
void AppendFrameHeader(std::string* out, uint32_t len);

class FrameReader {
 public:
  explicit FrameReader(size_t max_payload = kMaxFrameBytes) : max_payload_(max_payload) {}

  // Appends received bytes.
  void Feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }

  // Next complete payload, nullopt if more bytes are needed, or InvalidArgument if the
  // stream announced a frame over the limit (the stream is then unusable). The payload
  // points into the reader's buffer: it is valid only until the next Feed() or Next().
  Result<std::optional<std::string_view>> Next();

  // Bytes received but not yet returned as a frame.
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;  // start of the first unconsumed byte in buf_
  size_t max_payload_;
};

}  // namespace ring
