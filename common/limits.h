// common/limits.h: protocol limits, shared by ringd and libring so they always agree.
// Documented in proto/ring.proto and the README.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace ring {

inline constexpr size_t kFrameHeaderBytes = 4;
inline constexpr size_t kMaxFrameBytes = 8u << 20;  // 8 MiB payload
inline constexpr size_t kMaxKeyBytes = 4096;
inline constexpr size_t kMaxValueBytes = 1u << 20;  // 1 MiB
inline constexpr size_t kMaxBatchEntries = 10000;
// A replicated command (a mutation as it is stored in the log) must leave room in a peer
// frame for the Append message around it, or it could never reach a follower.
inline constexpr size_t kMaxCommandBytes = kMaxFrameBytes - (64u << 10);

// InvalidArgument naming the limit a key breaks, or OK.
Status CheckKey(std::string_view key);
// InvalidArgument naming the limit a value breaks, or OK.
Status CheckValue(std::string_view value);
// InvalidArgument if a batch has no entries or more than kMaxBatchEntries.
Status CheckBatchSize(size_t entries);

}  // namespace ring
