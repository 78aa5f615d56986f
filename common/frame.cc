#include "common/frame.h"

namespace ring {

void AppendFrameHeader(std::string* out, uint32_t len) {
  char h[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16),
               static_cast<char>(len >> 8), static_cast<char>(len)};
  out->append(h, 4);
}

Result<std::optional<std::string_view>> FrameReader::Next() {
  // Compact lazily: only when the consumed prefix dominates the buffer, so the common case
  // of many small frames per read does no memmove per frame.
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  if (buf_.size() - pos_ < kFrameHeaderBytes) return std::optional<std::string_view>();
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
  uint32_t len = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  if (len > max_payload_) {
    return Status::InvalidArgument("frame of " + std::to_string(len) + " bytes exceeds the " +
                                   std::to_string(max_payload_) + "-byte limit");
  }
  if (buf_.size() - pos_ - kFrameHeaderBytes < len) return std::optional<std::string_view>();
  std::string_view payload(buf_.data() + pos_ + kFrameHeaderBytes, len);
  pos_ += kFrameHeaderBytes + len;
  return std::optional<std::string_view>(payload);
}

}  // namespace ring
