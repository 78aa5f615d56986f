#include "server/metrics.h"

#include <cstdio>

namespace ring::server {

const char* RequestKindLabel(RequestKind k) {
  switch (k) {
    case RequestKind::kGet: return "get";
    case RequestKind::kPut: return "put";
    case RequestKind::kDelete: return "delete";
    case RequestKind::kCas: return "cas";
    case RequestKind::kBatchGet: return "batch_get";
    case RequestKind::kBatchPut: return "batch_put";
    case RequestKind::kPing: return "ping";
    case RequestKind::kNodeStatus: return "node_status";
    case RequestKind::kClusterAdmin: return "cluster_admin";
    case RequestKind::kSnapshotChunk: return "snapshot_chunk";
    case RequestKind::kInvalid: return "invalid";
    case RequestKind::kCount: break;
  }
  return "unknown";
}

void AppendMetric(std::string* out, std::string_view name, std::string_view type, std::string_view help,
                  uint64_t value) {
  std::string n(name);
  *out += "# HELP " + n + " " + std::string(help) + "\n# TYPE " + n + " " + std::string(type) + "\n" + n + " " +
          std::to_string(value) + "\n";
}

void SecondsHistogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void SecondsHistogram::Render(const std::string& name, const std::string& help,
                              std::string* out) const {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  char buf[64];
  for (size_t i = 0; i <= kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (i < kBounds.size()) std::snprintf(buf, sizeof buf, "%g", kBounds[i]);
    *out += name + "_bucket{le=\"" + (i < kBounds.size() ? std::string(buf) : "+Inf") + "\"} " +
            std::to_string(cumulative) + "\n";
  }
  std::snprintf(buf, sizeof buf, "%.9f", sum_nanos_.load(std::memory_order_relaxed) / 1e9);
  *out += name + "_sum " + buf + "\n";
  *out += name + "_count " + std::to_string(count_.load(std::memory_order_relaxed)) + "\n";
}

uint64_t Metrics::total_requests() const {
  uint64_t n = 0;
  for (const auto& r : requests) n += r.load(std::memory_order_relaxed);
  return n;
}

std::string Metrics::Render(uint64_t uptime_ms, bool disk_ok, uint64_t disk_free_bytes,
                            uint64_t live_bytes, uint64_t keys_estimate) const {
  std::string out;
  auto counter = [&](const std::string& name, const std::string& help, uint64_t v) {
    AppendMetric(&out, name, "counter", help, v);
  };
  auto gauge = [&](const std::string& name, const std::string& help, uint64_t v) {
    AppendMetric(&out, name, "gauge", help, v);
  };
  out += "# HELP ringd_requests_total Requests received, by kind.\n# TYPE ringd_requests_total counter\n";
  for (size_t i = 0; i < requests.size(); ++i) {
    out += std::string("ringd_requests_total{kind=\"") + RequestKindLabel(static_cast<RequestKind>(i)) +
           "\"} " + std::to_string(requests[i].load(std::memory_order_relaxed)) + "\n";
  }
  out += "# HELP ringd_errors_total Error replies, by code.\n# TYPE ringd_errors_total counter\n";
  for (int i = 1; i < kStatusCodeCount; ++i) {
    out += std::string("ringd_errors_total{code=\"") + StatusCodeName(static_cast<StatusCode>(i)) +
           "\"} " + std::to_string(errors[i].load(std::memory_order_relaxed)) + "\n";
  }
  gauge("ringd_connections_open", "Client and peer connections open now.", connections_open.load());
  counter("ringd_connections_accepted_total", "Connections accepted.", connections_accepted.load());
  counter("ringd_connections_rejected_total", "Connections refused over max_connections.", connections_rejected.load());
  counter("ringd_connections_idle_closed_total", "Connections closed after idle_timeout_s.", connections_idle_closed.load());
  counter("ringd_frames_rejected_total", "Frames that were oversized or did not decode.", frames_rejected.load());
  counter("ringd_received_bytes_total", "Bytes read from connections.", bytes_in.load());
  counter("ringd_sent_bytes_total", "Bytes written to connections.", bytes_out.load());
  gauge("ringd_uptime_milliseconds", "Time since the node started.", uptime_ms);
  gauge("ringd_disk_ok", "1 while the last storage write succeeded.", disk_ok ? 1 : 0);
  gauge("ringd_disk_free_bytes", "Free bytes on the data directory's filesystem.", disk_free_bytes);
  gauge("ringd_storage_live_bytes", "Approximate bytes in SST files and memtables.", live_bytes);
  gauge("ringd_keys_estimate", "RocksDB's estimate of the number of keys.", keys_estimate);
  return out;
}

}  // namespace ring::server
