#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ring::bench {

namespace {
constexpr uint64_t kHalf = Histogram::kSubBuckets / 2;
}  // namespace

Histogram::Histogram() : counts_(kBucketCount, 0) {}

size_t Histogram::BucketIndex(uint64_t value) {
  // Keep the top kSubBucketBits significant bits of the value; the bits dropped below them
  // are what makes wide buckets for large values.
  int width = std::bit_width(value);
  int shift = width > kSubBucketBits ? width - kSubBucketBits : 0;
  return static_cast<size_t>(shift) * kHalf + static_cast<size_t>(value >> shift);
}

uint64_t Histogram::BucketLowest(size_t index) {
  if (index < kSubBuckets) return index;
  uint64_t shift = index / kHalf - 1;
  uint64_t mantissa = index - shift * kHalf;  // in [kHalf, kSubBuckets)
  return mantissa << shift;
}

uint64_t Histogram::BucketHighest(size_t index) {
  if (index < kSubBuckets) return index;
  uint64_t shift = index / kHalf - 1;
  return BucketLowest(index) + ((uint64_t{1} << shift) - 1);
}

void Histogram::RecordN(uint64_t value, uint64_t count) {
  if (count == 0) return;
  size_t index = BucketIndex(value);
  counts_[index] += count;
  if (count_ == 0) {
    min_ = max_ = value;
    lowest_index_ = highest_index_ = index;
  } else {
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
    lowest_index_ = std::min(lowest_index_, index);
    highest_index_ = std::max(highest_index_, index);
  }
  count_ += count;
  sum_ += static_cast<unsigned __int128>(value) * count;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = other.lowest_index_; i <= other.highest_index_; ++i) {
    counts_[i] += other.counts_[i];
  }
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
    lowest_index_ = other.lowest_index_;
    highest_index_ = other.highest_index_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    lowest_index_ = std::min(lowest_index_, other.lowest_index_);
    highest_index_ = std::max(highest_index_, other.highest_index_);
  }
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::Reset() {
  if (count_ != 0) {
    std::fill(counts_.begin() + static_cast<std::ptrdiff_t>(lowest_index_),
              counts_.begin() + static_cast<std::ptrdiff_t>(highest_index_) + 1, 0);
  }
  count_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
  lowest_index_ = highest_index_ = 0;
}

double Histogram::Mean() const {
  if (count_ == 0) return 0;
  return static_cast<double>(sum_) / static_cast<double>(count_);
}

uint64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (!(p > 0)) return min_;  // also catches NaN
  if (p >= 100) return max_;
  // The rank (1-based) of the value we want: the smallest one with at least p% of all
  // values at or below it.
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = lowest_index_; i <= highest_index_; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      uint64_t lo = BucketLowest(i);
      uint64_t mid = lo + (BucketHighest(i) - lo) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;  // unreachable while counts_ and count_ agree
}

}  // namespace ring::bench
