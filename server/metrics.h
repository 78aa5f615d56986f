// server/metrics.h: the node's counters, rendered in the Prometheus text format.
//
// Debian 12 ships no prometheus-cpp, so this is a deliberately small registry: fixed
// counters and gauges as atomics (cheap to bump on the hot path) plus fixed-bucket
// histograms. Names follow Prometheus conventions (ringd_*_total, *_seconds).
//
// Thread-safety: every member may be updated from any thread; Render() reads atomics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "ring/status.h"

namespace ring::server {

// A Prometheus histogram with fixed upper bounds in seconds.
class SecondsHistogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
  void Observe(double seconds);
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};  // last = +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_nanos_{0};
};

enum class RequestKind { kGet, kPut, kDelete, kCas, kBatchGet, kBatchPut, kPing, kNodeStatus, kClusterAdmin, kSnapshotChunk, kInvalid, kCount };
const char* RequestKindLabel(RequestKind k);

// Appends one unlabelled metric in the Prometheus text format: HELP, TYPE, value.
void AppendMetric(std::string* out, std::string_view name, std::string_view type, std::string_view help,
                  uint64_t value);

struct Metrics {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RequestKind::kCount)> requests{};
  std::array<std::atomic<uint64_t>, kStatusCodeCount> errors{};  // by StatusCode
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};  // over max_connections
  std::atomic<uint64_t> connections_idle_closed{0};
  std::atomic<uint64_t> frames_rejected{0};       // oversized or undecodable frames
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};

  uint64_t total_requests() const;
  // Renders every metric plus the gauges passed in.
  std::string Render(uint64_t uptime_ms, bool disk_ok, uint64_t disk_free_bytes,
                     uint64_t live_bytes, uint64_t keys_estimate) const;
};

}  // namespace ring::server
