// bench/workload.h: YCSB-style workloads for ringbench.
//
// A workload is an operation mix plus a key distribution:
//
//   A      50% read, 50% update               zipfian
//   B      95% read,  5% update               zipfian
//   C     100% read                           zipfian
//   D      95% read,  5% insert               latest (reads favour recent inserts)
//   E      scans: refused, ringstore partitions keys by hash and has no range scans
//   F      50% read, 50% read-modify-write    zipfian (RMW = Get then CompareAndSet)
//   write 100% update (put)                   uniform
//   read  100% read (get)                     uniform
//   0.9   that fraction of reads, the rest updates, uniform
//
// Keys are indexes in [0, key_count), named by FormatKey. Inserts (workload D) take fresh
// indexes from key_count upward.
#pragma once

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ring::bench {

enum class OpType : uint8_t {
  kRead = 0,             // Get
  kUpdate = 1,           // Put to an existing key
  kInsert = 2,           // Put to a new key
  kReadModifyWrite = 3,  // Get, then CompareAndSet against what was read
};
inline constexpr int kOpTypeCount = 4;

// "read", "update", "insert" or "rmw". Never null.
const char* OpTypeName(OpType type);

enum class KeyDistribution : uint8_t {
  kUniform,  // every key equally likely
  kZipfian,  // a few keys are hot; hot keys are scattered over the key space
  kLatest,   // the most recently inserted keys are hot
};

// "uniform", "zipfian" or "latest". Never null.
const char* KeyDistributionName(KeyDistribution distribution);

// What a workload does. The four fractions are non-negative and sum to 1.
struct WorkloadSpec {
  std::string name;  // canonical: "A".."F" (no "E"), "write", "read", or the fraction
  double read = 0;
  double update = 0;
  double insert = 0;
  double read_modify_write = 0;
  KeyDistribution distribution = KeyDistribution::kUniform;

  // One line, such as "50% read, 50% update, zipfian keys".
  std::string Describe() const;
};

// Parses a --workload value: a letter A-F (either case), "write", "read", or a read
// fraction in [0, 1] such as "0.9". InvalidArgument, with a message fit for the user, for
// workload E, an unknown name, or a fraction that is malformed or out of range.
Result<WorkloadSpec> ParseWorkload(std::string_view text);

// The key for index `i`: "key:" and the index zero-padded to ten digits.
std::string FormatKey(uint64_t i);
// Same, reusing `out`'s buffer.
void FormatKey(uint64_t i, std::string* out);

// Draws ranks in [0, n) with probability proportional to 1 / (rank + 1)^theta, rank 0 the
// most likely, using the method of Gray et al., "Quickly Generating Billion-Record
// Synthetic Databases" (SIGMOD 1994), as YCSB does. n may grow between draws (workload D
// adds keys); the normalizing constant is then extended incrementally.
//
// Thread-safety: not thread-safe.
class ZipfianGenerator {
 public:
  // YCSB's default skew.
  static constexpr double kDefaultTheta = 0.99;

  // n >= 1. Construction costs O(min(n, 10^6)) to compute the normalizing constant.
  explicit ZipfianGenerator(uint64_t n, double theta = kDefaultTheta);

  // A rank in [0, n), given a uniform draw u in [0, 1).
  uint64_t Next(double u);
  // Grows the domain to [0, n); n below the current size is ignored.
  void Grow(uint64_t n);

  uint64_t n() const { return n_; }

  // zeta(n, theta) = sum of 1 / i^theta for i in [1, n]. Exact up to 10^6 terms; beyond,
  // the tail is approximated with the Euler-Maclaurin formula (relative error < 1e-12),
  // so a large key space does not make startup slow.
  static double Zeta(uint64_t n, double theta);

 private:
  // Adds the terms for i in (from, to] to a zeta sum.
  static double ZetaTail(uint64_t from, uint64_t to, double theta);
  void ComputeEta();

  const double theta_;
  const double alpha_;  // 1 / (1 - theta)
  const double zeta2_;  // zeta(2, theta)
  const double half_pow_theta_;  // 0.5^theta: the probability of rank 1 relative to rank 0
  uint64_t n_;
  double zetan_;
  double eta_;
};

// Generates the operations of one workload run: which operation, on which key. The
// sequence is a pure function of (spec, key_count, seed) and of the AcknowledgeInsert calls.
//
// Thread-safety: not thread-safe; ringbench calls it under its own lock.
class WorkloadGenerator {
 public:
  struct Op {
    OpType type;
    uint64_t key;  // an index for FormatKey
  };

  // key_count >= 1: the keys [0, key_count) are assumed loaded.
  WorkloadGenerator(const WorkloadSpec& spec, uint64_t key_count, uint64_t seed);

  Op Next();

  // Reports that the insert of `key` (an index returned by Next) completed, successfully
  // or not. Workload D reads only keys whose inserts have completed, as YCSB does, so reads
  // do not race ahead of writes still in flight.
  void AcknowledgeInsert(uint64_t key);

  // Keys known to exist: key_count plus acknowledged inserts, counting contiguously.
  uint64_t acknowledged_keys() const { return acknowledged_; }

 private:
  double NextUnit();  // uniform in [0, 1)
  uint64_t ChooseKey();

  const WorkloadSpec spec_;
  const uint64_t key_count_;
  std::mt19937_64 rng_;  // its output sequence is fixed by the standard, unlike distributions
  ZipfianGenerator zipfian_;
  uint64_t next_insert_;   // index the next insert writes
  uint64_t acknowledged_;  // every index below this has been acknowledged
  std::set<uint64_t> acknowledged_ahead_;  // acknowledged indexes above acknowledged_
};

}  // namespace ring::bench
