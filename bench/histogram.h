// bench/histogram.h: a log-linear latency histogram with bounded relative error.
//
// The layout follows the idea of HdrHistogram: every power-of-two range [2^k, 2^(k+1)) is
// split into kSubBuckets / 2 equal-width buckets, and values below kSubBuckets get one
// bucket each. A bucket is therefore never wider than 1/128 of its lower bound, and a value
// reported from a bucket's midpoint is within 1/256 (0.4%) of every value recorded in it.
// The buckets cover the whole uint64_t range, so nothing is ever clamped: a latency of
// 100 s (1e11 ns) is as precise as one of 100 us.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ring::bench {

// Counts latencies (any unit; ringbench uses nanoseconds) and answers percentile, min, max
// and mean queries. Memory is fixed at construction (58 KiB); Record, Merge,
// Percentile and Reset cost a constant amount of work that does not grow with the number
// of values recorded.
//
// Thread-safety: not thread-safe. Callers serialize access; distinct objects may be used
// from different threads. Copying produces an independent snapshot.
class Histogram {
 public:
  // Values below kSubBuckets are counted exactly. Above, each power of two gets
  // kSubBuckets / 2 buckets: 128 keeps the reported error under 0.4%, comfortably inside
  // the 1% we promise, in 58 KiB, small enough to keep one per op type and per second.
  static constexpr int kSubBucketBits = 8;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBucketBits;
  // Bucket index = shift * kSubBuckets / 2 + (value >> shift), where shift is how many low
  // bits of the value are dropped; it runs up to 64 - kSubBucketBits for the largest values.
  static constexpr size_t kBucketCount = (kSubBuckets / 2) * (64 - kSubBucketBits + 2);

  Histogram();

  // Adds one occurrence of `value`.
  void Record(uint64_t value) { RecordN(value, 1); }
  // Adds `count` occurrences of `value`.
  void RecordN(uint64_t value, uint64_t count);

  // Adds every value recorded in `other` to this histogram.
  void Merge(const Histogram& other);

  // Forgets every recorded value.
  void Reset();

  uint64_t Count() const { return count_; }
  // Exact smallest and largest recorded values; 0 when empty.
  uint64_t Min() const { return count_ == 0 ? 0 : min_; }
  uint64_t Max() const { return max_; }
  // Exact arithmetic mean; 0 when empty.
  double Mean() const;

  // The value at percentile `p` (0..100, clamped): the smallest recorded value such that at
  // least p% of the values are at or below it, reported as the midpoint of its bucket and
  // clamped to [Min(), Max()]. Percentile(0) is Min() and Percentile(100) is Max(). 0 when
  // empty.
  uint64_t Percentile(double p) const;

  // Bucket geometry, exposed for tests.
  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLowest(size_t index);
  static uint64_t BucketHighest(size_t index);

 private:
  std::vector<uint64_t> counts_;  // kBucketCount entries, allocated once
  uint64_t count_ = 0;
  uint64_t min_ = 0;  // meaningful only when count_ > 0
  uint64_t max_ = 0;
  // Sum of values, as a 128-bit integer so the mean stays exact for any realistic run.
  unsigned __int128 sum_ = 0;
  // Lowest and highest non-empty bucket indexes, so Percentile scans only the occupied
  // span; meaningful only when count_ > 0.
  size_t lowest_index_ = 0;
  size_t highest_index_ = 0;
};

}  // namespace ring::bench
