#include "bench/histogram.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ring::bench {
namespace {

// The exact value at percentile p of sorted values, by the same definition Histogram uses:
// the smallest value with at least p% of the values at or below it.
uint64_t ExactPercentile(const std::vector<uint64_t>& sorted, double p) {
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

double RelativeError(uint64_t got, uint64_t want) {
  if (want == 0) return got == 0 ? 0 : 1;
  return std::abs(static_cast<double>(got) - static_cast<double>(want)) /
         static_cast<double>(want);
}

// Values spread log-uniformly from 1 ns to 100 s, the range a latency can take.
std::vector<uint64_t> LogUniformValues(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> values;
  values.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    double exponent = static_cast<double>(rng() >> 11) * 0x1.0p-53 * 11;  // 10^0..10^11
    values.push_back(static_cast<uint64_t>(std::pow(10.0, exponent)));
  }
  return values;
}

const double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};

}  // namespace

TEST_CASE("histogram buckets tile the whole uint64 range without gaps", "[bench]") {
  REQUIRE(Histogram::BucketLowest(0) == 0);
  for (size_t i = 0; i + 1 < Histogram::kBucketCount; ++i) {
    INFO("bucket " << i);
    REQUIRE(Histogram::BucketLowest(i) <= Histogram::BucketHighest(i));
    REQUIRE(Histogram::BucketHighest(i) + 1 == Histogram::BucketLowest(i + 1));
    REQUIRE(Histogram::BucketIndex(Histogram::BucketLowest(i)) == i);
    REQUIRE(Histogram::BucketIndex(Histogram::BucketHighest(i)) == i);
  }
  REQUIRE(Histogram::BucketHighest(Histogram::kBucketCount - 1) ==
          std::numeric_limits<uint64_t>::max());
  REQUIRE(Histogram::BucketIndex(std::numeric_limits<uint64_t>::max()) ==
          Histogram::kBucketCount - 1);
}

TEST_CASE("histogram buckets are never wider than 1/128 of their values", "[bench]") {
  for (size_t i = 0; i < Histogram::kBucketCount; ++i) {
    uint64_t lo = Histogram::BucketLowest(i);
    uint64_t width = Histogram::BucketHighest(i) - lo + 1;
    if (lo < Histogram::kSubBuckets) {
      REQUIRE(width == 1);  // small values are exact
    } else {
      INFO("bucket " << i << " lowest " << lo << " width " << width);
      REQUIRE(static_cast<double>(width) / static_cast<double>(lo) <= 1.0 / 128);
    }
  }
}

TEST_CASE("histogram reports any single value from 1 ns to 100 s within 1%", "[bench]") {
  // With one value, min and max clamp the answer to the truth, so put the value between
  // two far-away ones and ask for the median.
  for (uint64_t v : LogUniformValues(20000, 7)) {
    Histogram h;
    h.Record(0);
    h.Record(v);
    h.Record(std::numeric_limits<uint64_t>::max());
    INFO("value " << v);
    REQUIRE(RelativeError(h.Percentile(50), v) < 0.01);
  }
  Histogram h;
  h.Record(0);
  h.Record(100'000'000'000);  // 100 s
  h.Record(std::numeric_limits<uint64_t>::max());
  REQUIRE(RelativeError(h.Percentile(50), 100'000'000'000) < 0.005);
}

TEST_CASE("histogram percentiles of a log-uniform distribution are within 1%", "[bench]") {
  std::vector<uint64_t> values = LogUniformValues(200000, 11);
  Histogram h;
  for (uint64_t v : values) h.Record(v);
  std::sort(values.begin(), values.end());
  for (double p : kPercentiles) {
    INFO("p" << p);
    REQUIRE(RelativeError(h.Percentile(p), ExactPercentile(values, p)) < 0.01);
  }
}

TEST_CASE("histogram percentiles of a uniform distribution are within 1%", "[bench]") {
  // 1..100000 us in ns: p50 is 50 ms, p99 99 ms, and so on.
  Histogram h;
  for (uint64_t us = 1; us <= 100000; ++us) h.Record(us * 1000);
  REQUIRE(h.Count() == 100000);
  REQUIRE(RelativeError(h.Percentile(50), 50'000'000) < 0.01);
  REQUIRE(RelativeError(h.Percentile(95), 95'000'000) < 0.01);
  REQUIRE(RelativeError(h.Percentile(99), 99'000'000) < 0.01);
  REQUIRE(RelativeError(h.Percentile(99.9), 99'900'000) < 0.01);
  REQUIRE(h.Percentile(100) == 100'000'000);
  REQUIRE(h.Percentile(0) == 1000);
}

TEST_CASE("histogram counts values below 256 exactly", "[bench]") {
  Histogram h;
  for (uint64_t v = 0; v < 200; ++v) h.Record(v);
  REQUIRE(h.Percentile(50) == 99);  // 100th of 200 values 0..199
  REQUIRE(h.Percentile(1) == 1);
  REQUIRE(h.Percentile(100) == 199);
}

TEST_CASE("histogram min, max, mean and count are exact", "[bench]") {
  Histogram h;
  REQUIRE(h.Count() == 0);
  REQUIRE(h.Min() == 0);
  REQUIRE(h.Max() == 0);
  REQUIRE(h.Mean() == 0);
  REQUIRE(h.Percentile(99) == 0);

  h.Record(1'234'567);
  h.Record(7);
  h.RecordN(1000, 3);
  h.Record(100'000'000'123);
  REQUIRE(h.Count() == 6);
  REQUIRE(h.Min() == 7);
  REQUIRE(h.Max() == 100'000'000'123);
  REQUIRE(h.Mean() == Approx((1'234'567.0 + 7 + 3000 + 100'000'000'123.0) / 6));
}

TEST_CASE("histogram percentile is monotonic in p", "[bench]") {
  Histogram h;
  for (uint64_t v : LogUniformValues(5000, 3)) h.Record(v);
  uint64_t last = 0;
  for (double p = 0; p <= 100; p += 0.25) {
    uint64_t got = h.Percentile(p);
    REQUIRE(got >= last);
    last = got;
  }
}

TEST_CASE("merged histograms answer like one that saw every value", "[bench]") {
  std::vector<uint64_t> a = LogUniformValues(30000, 1);
  std::vector<uint64_t> b = LogUniformValues(10000, 2);
  for (uint64_t& v : b) v = v / 1000 + 5;  // a different, narrower range
  Histogram ha, hb, all;
  for (uint64_t v : a) {
    ha.Record(v);
    all.Record(v);
  }
  for (uint64_t v : b) {
    hb.Record(v);
    all.Record(v);
  }
  Histogram merged;
  merged.Merge(ha);
  merged.Merge(hb);
  merged.Merge(Histogram());  // merging an empty histogram changes nothing
  REQUIRE(merged.Count() == all.Count());
  REQUIRE(merged.Min() == all.Min());
  REQUIRE(merged.Max() == all.Max());
  REQUIRE(merged.Mean() == Approx(all.Mean()));
  for (double p : kPercentiles) {
    INFO("p" << p);
    REQUIRE(merged.Percentile(p) == all.Percentile(p));
  }
}

TEST_CASE("a reset histogram is empty and can be reused", "[bench]") {
  Histogram h;
  for (uint64_t v = 1000; v < 100000; v += 7) h.Record(v);
  h.Reset();
  REQUIRE(h.Count() == 0);
  REQUIRE(h.Max() == 0);
  REQUIRE(h.Percentile(50) == 0);
  h.Record(5);
  h.Record(50);
  REQUIRE(h.Count() == 2);
  REQUIRE(h.Min() == 5);
  REQUIRE(h.Max() == 50);
  REQUIRE(h.Percentile(50) == 5);
  REQUIRE(h.Percentile(100) == 50);
}

}  // namespace ring::bench
