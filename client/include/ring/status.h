// ring/status.h: the error type of the ringstore client API.
//
// A Status is either OK or a code plus a human-readable message that says what failed and
// where ("shard 17: value of 2097152 bytes exceeds the 1048576-byte limit"). Codes are
// stable and appear on the wire, in ringctl's JSON output and in metrics.
//
// Thread-safety: a Status is a value; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace ring {

// Values are part of the wire protocol (proto/ring.proto ErrorCode): never renumber.
enum class StatusCode : uint8_t {
  kOk = 0,
  kNotFound = 1,         // the key does not exist
  kInvalidArgument = 2,  // the request is malformed or breaks a limit; retrying won't help
  kCorruption = 3,       // stored or received data failed validation
  kIOError = 4,          // the node's disk failed (for example, it is full)
  kNotLeader = 5,        // this node does not lead the shard; the client re-routes
  kWrongShard = 6,       // this node does not hold the shard; the client re-routes
  kStaleEpoch = 7,       // the request named an old cluster-map version
  kTimeout = 8,          // the deadline passed; for a mutation, the outcome is unknown
  kUnavailable = 9,      // no node could be reached or none could serve the request
  kBusy = 10,            // the node is overloaded (connection or in-flight limit)
};

// Number of codes; codes at or above it are invalid on the wire.
inline constexpr int kStatusCodeCount = 11;

// Name of a code, such as "NotFound". Never null.
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) {
    return {StatusCode::kInvalidArgument, std::move(msg)};
  }
  static Status Corruption(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
  static Status IOError(std::string msg) { return {StatusCode::kIOError, std::move(msg)}; }
  static Status NotLeader(std::string msg) { return {StatusCode::kNotLeader, std::move(msg)}; }
  static Status WrongShard(std::string msg) { return {StatusCode::kWrongShard, std::move(msg)}; }
  static Status StaleEpoch(std::string msg) { return {StatusCode::kStaleEpoch, std::move(msg)}; }
  static Status Timeout(std::string msg) { return {StatusCode::kTimeout, std::move(msg)}; }
  static Status Unavailable(std::string msg) {
    return {StatusCode::kUnavailable, std::move(msg)};
  }
  static Status Busy(std::string msg) { return {StatusCode::kBusy, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsNotFound() const { return code_ == StatusCode::kNotFound; }
  bool IsInvalidArgument() const { return code_ == StatusCode::kInvalidArgument; }
  bool IsIOError() const { return code_ == StatusCode::kIOError; }
  bool IsTimeout() const { return code_ == StatusCode::kTimeout; }
  bool IsUnavailable() const { return code_ == StatusCode::kUnavailable; }
  bool IsBusy() const { return code_ == StatusCode::kBusy; }

  // Returns a copy whose message is "<context>: <message>", keeping the code.
  Status WithContext(std::string_view context) const;

  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

}  // namespace ring
