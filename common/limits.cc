#include "common/limits.h"

#include <string>

namespace ring {

Status CheckKey(std::string_view key) {
  if (key.empty()) return Status::InvalidArgument("key is empty");
  if (key.size() > kMaxKeyBytes) {
    return Status::InvalidArgument("key of " + std::to_string(key.size()) +
                                   " bytes exceeds the " + std::to_string(kMaxKeyBytes) +
                                   "-byte limit");
  }
  return Status::OK();
}

Status CheckValue(std::string_view value) {
  if (value.size() > kMaxValueBytes) {
    return Status::InvalidArgument("value of " + std::to_string(value.size()) +
                                   " bytes exceeds the " + std::to_string(kMaxValueBytes) +
                                   "-byte limit");
  }
  return Status::OK();
}

Status CheckBatchSize(size_t entries) {
  if (entries == 0) return Status::InvalidArgument("batch is empty");
  if (entries > kMaxBatchEntries) {
    return Status::InvalidArgument("batch of " + std::to_string(entries) +
                                   " entries exceeds the " + std::to_string(kMaxBatchEntries) +
                                   "-entry limit");
  }
  return Status::OK();
}

}  // namespace ring
