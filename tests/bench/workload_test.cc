#include "bench/workload.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace ring::bench {
namespace {

WorkloadSpec MustParse(const std::string& text) {
  Result<WorkloadSpec> spec = ParseWorkload(text);
  INFO(text << ": " << spec.status().ToString());
  REQUIRE(spec.ok());
  return *spec;
}

// Fraction of each op type over `draws` operations.
std::array<double, kOpTypeCount> Mix(const WorkloadSpec& spec, int draws, uint64_t seed) {
  WorkloadGenerator gen(spec, 100000, seed);
  std::array<double, kOpTypeCount> counts{};
  for (int i = 0; i < draws; ++i) {
    WorkloadGenerator::Op op = gen.Next();
    counts[static_cast<int>(op.type)] += 1;
    if (op.type == OpType::kInsert) gen.AcknowledgeInsert(op.key);
  }
  for (double& c : counts) c /= draws;
  return counts;
}

}  // namespace

TEST_CASE("workload letters parse to the YCSB mixes", "[bench]") {
  struct Case {
    const char* text;
    const char* name;
    double read, update, insert, rmw;
    KeyDistribution distribution;
  };
  const Case cases[] = {
      {"A", "A", 0.5, 0.5, 0, 0, KeyDistribution::kZipfian},
      {"b", "B", 0.95, 0.05, 0, 0, KeyDistribution::kZipfian},
      {"C", "C", 1, 0, 0, 0, KeyDistribution::kZipfian},
      {"d", "D", 0.95, 0, 0.05, 0, KeyDistribution::kLatest},
      {"F", "F", 0.5, 0, 0, 0.5, KeyDistribution::kZipfian},
      {"write", "write", 0, 1, 0, 0, KeyDistribution::kUniform},
      {"READ", "read", 1, 0, 0, 0, KeyDistribution::kUniform},
      {"0.9", "0.9", 0.9, 0.1, 0, 0, KeyDistribution::kUniform},
      {"1", "1", 1, 0, 0, 0, KeyDistribution::kUniform},
      {"0", "0", 0, 1, 0, 0, KeyDistribution::kUniform},
      {".25", ".25", 0.25, 0.75, 0, 0, KeyDistribution::kUniform},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    WorkloadSpec spec = MustParse(c.text);
    REQUIRE(spec.name == c.name);
    REQUIRE(spec.read == Approx(c.read));
    REQUIRE(spec.update == Approx(c.update));
    REQUIRE(spec.insert == Approx(c.insert));
    REQUIRE(spec.read_modify_write == Approx(c.rmw));
    REQUIRE(spec.distribution == c.distribution);
  }
  REQUIRE(MustParse("A").Describe() == "50% read, 50% update, zipfian keys");
  REQUIRE(MustParse("D").Describe() == "95% read, 5% insert, latest keys");
}

TEST_CASE("workload E is refused because ringstore has no range scans", "[bench]") {
  for (const char* text : {"E", "e"}) {
    Result<WorkloadSpec> spec = ParseWorkload(text);
    REQUIRE_FALSE(spec.ok());
    REQUIRE(spec.status().IsInvalidArgument());
    REQUIRE_THAT(spec.status().message(), Catch::Contains("range scans"));
    REQUIRE_THAT(spec.status().message(), Catch::Contains("hash"));
  }
}

TEST_CASE("unknown workloads and bad fractions get clear errors", "[bench]") {
  struct Case {
    const char* text;
    const char* says;
  };
  const Case cases[] = {
      {"G", "unknown workload 'G'"},       {"scan", "unknown workload 'scan'"},
      {"nan", "unknown workload 'nan'"},   {"", "empty workload"},
      {"1.5", "outside [0, 1]"},           {"-0.1", "outside [0, 1]"},
      {"2", "outside [0, 1]"},             {"0.9x", "malformed read fraction '0.9x'"},
      {"1e-1", "malformed read fraction"}, {".", "malformed read fraction"},
      {"0.5.5", "malformed read fraction"},
  };
  for (const Case& c : cases) {
    INFO("'" << c.text << "'");
    Result<WorkloadSpec> spec = ParseWorkload(c.text);
    REQUIRE_FALSE(spec.ok());
    REQUIRE(spec.status().IsInvalidArgument());
    REQUIRE_THAT(spec.status().message(), Catch::Contains(c.says));
  }
  // The unknown-name message lists what would have worked.
  REQUIRE_THAT(ParseWorkload("G").status().message(), Catch::Contains("A, B, C, D, F, write"));
}

TEST_CASE("workload mixes match their fractions over many draws", "[bench]") {
  constexpr int kDraws = 200000;
  for (const char* text : {"A", "B", "C", "D", "F", "write", "read", "0.3"}) {
    INFO(text);
    WorkloadSpec spec = MustParse(text);
    std::array<double, kOpTypeCount> mix = Mix(spec, kDraws, 42);
    // Binomial standard deviation at 50% over 200k draws is 0.11%; allow 0.5%.
    REQUIRE(mix[static_cast<int>(OpType::kRead)] == Approx(spec.read).margin(0.005));
    REQUIRE(mix[static_cast<int>(OpType::kUpdate)] == Approx(spec.update).margin(0.005));
    REQUIRE(mix[static_cast<int>(OpType::kInsert)] == Approx(spec.insert).margin(0.005));
    REQUIRE(mix[static_cast<int>(OpType::kReadModifyWrite)] ==
            Approx(spec.read_modify_write).margin(0.005));
  }
}

TEST_CASE("the same seed gives the same operations and another seed does not", "[bench]") {
  for (const char* text : {"A", "D", "F", "0.5"}) {
    INFO(text);
    WorkloadSpec spec = MustParse(text);
    WorkloadGenerator a(spec, 5000, 99), b(spec, 5000, 99), c(spec, 5000, 100);
    int differences = 0;
    for (int i = 0; i < 10000; ++i) {
      WorkloadGenerator::Op x = a.Next(), y = b.Next(), z = c.Next();
      REQUIRE(x.type == y.type);
      REQUIRE(x.key == y.key);
      if (x.type != z.type || x.key != z.key) ++differences;
      if (x.type == OpType::kInsert) {
        a.AcknowledgeInsert(x.key);
        b.AcknowledgeInsert(y.key);
      }
      if (z.type == OpType::kInsert) c.AcknowledgeInsert(z.key);
    }
    REQUIRE(differences > 5000);
  }
}

TEST_CASE("keys stay inside the key space", "[bench]") {
  for (const char* text : {"A", "C", "F", "write", "read", "0.5"}) {
    INFO(text);
    WorkloadGenerator gen(MustParse(text), 777, 5);
    for (int i = 0; i < 50000; ++i) REQUIRE(gen.Next().key < 777);
  }
}

TEST_CASE("uniform workloads spread keys evenly", "[bench]") {
  constexpr int kDraws = 200000;
  WorkloadGenerator gen(MustParse("read"), 1000, 8);
  std::array<int, 10> deciles{};
  for (int i = 0; i < kDraws; ++i) ++deciles[gen.Next().key / 100];
  for (int count : deciles) REQUIRE(count == Approx(kDraws / 10).epsilon(0.05));
}

TEST_CASE("zipfian ranks follow 1/rank^0.99", "[bench]") {
  constexpr uint64_t kN = 1000;
  constexpr int kDraws = 500000;
  ZipfianGenerator zipf(kN);
  std::mt19937_64 rng(3);
  std::vector<int> counts(kN);
  for (int i = 0; i < kDraws; ++i) {
    uint64_t rank = zipf.Next(static_cast<double>(rng() >> 11) * 0x1.0p-53);
    REQUIRE(rank < kN);
    ++counts[rank];
  }
  double zetan = ZipfianGenerator::Zeta(kN, 0.99);
  // P(rank 0) = 1 / zeta(n); Gray et al.'s method is exact for ranks 0 and 1.
  REQUIRE(counts[0] / double(kDraws) == Approx(1 / zetan).epsilon(0.03));
  REQUIRE(counts[1] / double(kDraws) == Approx(std::pow(0.5, 0.99) / zetan).epsilon(0.04));
  // The top 1% of ranks take a large share, as the closed form predicts.
  int top = 0;
  for (int i = 0; i < 10; ++i) top += counts[i];
  double expected_top = ZipfianGenerator::Zeta(10, 0.99) / zetan;
  REQUIRE(top / double(kDraws) == Approx(expected_top).epsilon(0.05));
}

TEST_CASE("zipfian workloads make a few scattered keys hot", "[bench]") {
  constexpr int kDraws = 200000;
  constexpr uint64_t kKeys = 100000;
  WorkloadGenerator gen(MustParse("C"), kKeys, 17);
  std::map<uint64_t, int> counts;
  for (int i = 0; i < kDraws; ++i) ++counts[gen.Next().key];
  std::vector<std::pair<int, uint64_t>> by_count;
  for (auto [key, count] : counts) by_count.push_back({count, key});
  std::sort(by_count.rbegin(), by_count.rend());
  // The hottest 1% of keys get well over half of all reads (about 60% for theta 0.99).
  int top = 0;
  for (size_t i = 0; i < kKeys / 100 && i < by_count.size(); ++i) top += by_count[i].first;
  REQUIRE(top > kDraws / 2);
  // Scrambling spreads the hottest keys over the key space rather than the low indexes.
  int hot_in_low_half = 0;
  for (size_t i = 0; i < 20; ++i) hot_in_low_half += by_count[i].second < kKeys / 2;
  REQUIRE(hot_in_low_half > 3);
  REQUIRE(hot_in_low_half < 17);
}

TEST_CASE("zeta is accurate for key spaces too large to sum exactly", "[bench]") {
  constexpr uint64_t kN = 3'000'000;
  double exact = 0;
  for (uint64_t i = 1; i <= kN; ++i) exact += 1.0 / std::pow(double(i), 0.99);
  REQUIRE(ZipfianGenerator::Zeta(kN, 0.99) == Approx(exact).epsilon(1e-9));
  // Growing the domain gives the same constant as building it at the final size.
  ZipfianGenerator grown(10);
  grown.Grow(2'500'000);
  grown.Grow(kN);
  ZipfianGenerator direct(kN);
  for (double u : {0.0, 0.1, 0.5, 0.9, 0.999999}) REQUIRE(grown.Next(u) == direct.Next(u));
}

TEST_CASE("workload D reads recent inserts and only acknowledged ones", "[bench]") {
  constexpr uint64_t kKeys = 10000;
  WorkloadGenerator gen(MustParse("D"), kKeys, 23);
  // Nothing acknowledged yet: reads stay among the loaded keys, skewed to the newest.
  std::vector<uint64_t> pending;
  int recent = 0, reads = 0;
  for (int i = 0; i < 20000; ++i) {
    WorkloadGenerator::Op op = gen.Next();
    if (op.type == OpType::kInsert) {
      REQUIRE(op.key == kKeys + pending.size());
      pending.push_back(op.key);
    } else {
      REQUIRE(op.key < kKeys);
      ++reads;
      recent += op.key >= kKeys - 100;
    }
  }
  REQUIRE(recent > reads / 2);  // the newest 1% of keys get most reads
  REQUIRE(gen.acknowledged_keys() == kKeys);

  // Acknowledge out of order: only the contiguous prefix becomes readable.
  REQUIRE(pending.size() > 10);
  gen.AcknowledgeInsert(pending[1]);
  gen.AcknowledgeInsert(pending[2]);
  REQUIRE(gen.acknowledged_keys() == kKeys);
  gen.AcknowledgeInsert(pending[0]);
  REQUIRE(gen.acknowledged_keys() == kKeys + 3);
  for (size_t i = 3; i < pending.size(); ++i) gen.AcknowledgeInsert(pending[i]);
  REQUIRE(gen.acknowledged_keys() == kKeys + pending.size());
  bool read_new_key = false;
  for (int i = 0; i < 1000; ++i) {
    WorkloadGenerator::Op op = gen.Next();
    if (op.type == OpType::kRead) {
      REQUIRE(op.key < gen.acknowledged_keys());
      read_new_key |= op.key >= kKeys;
    } else {
      gen.AcknowledgeInsert(op.key);
    }
  }
  REQUIRE(read_new_key);
}

TEST_CASE("keys are named key: and ten digits", "[bench]") {
  REQUIRE(FormatKey(0) == "key:0000000000");
  REQUIRE(FormatKey(42) == "key:0000000042");
  std::string buf = "something long that gets replaced";
  FormatKey(1234567890, &buf);
  REQUIRE(buf == "key:1234567890");
  FormatKey(UINT64_MAX, &buf);  // more than ten digits: all of them, unpadded
  REQUIRE(buf == "key:18446744073709551615");
}

}  // namespace ring::bench
