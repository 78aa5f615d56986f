#include "bench/workload.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace ring::bench {

namespace {

constexpr std::string_view kChoices =
    "expected A, B, C, D, F, write, read, or a read fraction between 0 and 1 such as 0.9";

// Exact summation up to this many terms; beyond it the Euler-Maclaurin tail is accurate to
// far better than double rounding of the exact sum.
constexpr uint64_t kExactZetaTerms = 1'000'000;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string Percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", fraction * 100);
  return buf;
}

// A bijective 64-bit mixer (the finalizer of MurmurHash3). Scrambling zipfian ranks with it
// scatters the hot keys over the whole key space, and so over every shard, instead of
// crowding them at the low indexes, which would all hash wherever they happen to.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
// Mix64(0) is 0; salting the rank keeps the hottest key from always being key 0.
constexpr uint64_t kScrambleSalt = 0x9e3779b97f4a7c15ULL;

// Uniform in [0, n) from a 64-bit random number, by multiply-and-shift. The bias is at most
// n / 2^64, irrelevant here, and there is no division.
uint64_t Below(uint64_t random, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(random) * n) >> 64);
}

}  // namespace

const char* OpTypeName(OpType type) {
  switch (type) {
    case OpType::kRead: return "read";
    case OpType::kUpdate: return "update";
    case OpType::kInsert: return "insert";
    case OpType::kReadModifyWrite: return "rmw";
  }
  return "unknown";
}

const char* KeyDistributionName(KeyDistribution distribution) {
  switch (distribution) {
    case KeyDistribution::kUniform: return "uniform";
    case KeyDistribution::kZipfian: return "zipfian";
    case KeyDistribution::kLatest: return "latest";
  }
  return "unknown";
}

std::string WorkloadSpec::Describe() const {
  std::string out;
  auto add = [&out](double fraction, const char* what) {
    if (fraction <= 0) return;
    if (!out.empty()) out += ", ";
    out += Percent(fraction);
    out += ' ';
    out += what;
  };
  add(read, "read");
  add(update, "update");
  add(insert, "insert");
  add(read_modify_write, "read-modify-write");
  out += ", ";
  out += KeyDistributionName(distribution);
  out += " keys";
  return out;
}

Result<WorkloadSpec> ParseWorkload(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty workload: " + std::string(kChoices));
  std::string lower = Lower(text);
  WorkloadSpec spec;
  auto zipf = KeyDistribution::kZipfian;
  if (lower == "a") {
    spec = {"A", 0.5, 0.5, 0, 0, zipf};
  } else if (lower == "b") {
    spec = {"B", 0.95, 0.05, 0, 0, zipf};
  } else if (lower == "c") {
    spec = {"C", 1, 0, 0, 0, zipf};
  } else if (lower == "d") {
    spec = {"D", 0.95, 0, 0.05, 0, KeyDistribution::kLatest};
  } else if (lower == "e") {
    return Status::InvalidArgument(
        "workload E (short range scans) is not supported: ringstore partitions keys by hash, "
        "so it has no range scans; choose A, B, C, D, F, write, read, or a read fraction");
  } else if (lower == "f") {
    spec = {"F", 0.5, 0, 0, 0.5, zipf};
  } else if (lower == "write") {
    spec = {"write", 0, 1, 0, 0, KeyDistribution::kUniform};
  } else if (lower == "read") {
    spec = {"read", 1, 0, 0, 0, KeyDistribution::kUniform};
  } else if ((lower[0] >= '0' && lower[0] <= '9') || lower[0] == '.' || lower[0] == '-' ||
             lower[0] == '+') {
    // Looks like a number: anything wrong with it from here on is a bad fraction, which is
    // a more useful message than "unknown workload".
    std::string_view digits = lower;
    if (digits[0] == '+') digits.remove_prefix(1);
    double fraction = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fraction,
                                     std::chars_format::fixed);
    if (ec != std::errc() || end != digits.data() + digits.size() || !std::isfinite(fraction)) {
      return Status::InvalidArgument("malformed read fraction '" + std::string(text) +
                                     "': expected a number between 0 and 1 such as 0.9");
    }
    if (fraction < 0 || fraction > 1) {
      return Status::InvalidArgument("read fraction " + std::string(text) +
                                     " is outside [0, 1]");
    }
    spec = {std::string(text), fraction, 1 - fraction, 0, 0, KeyDistribution::kUniform};
  } else {
    return Status::InvalidArgument("unknown workload '" + std::string(text) +
                                   "': " + std::string(kChoices));
  }
  return spec;
}

std::string FormatKey(uint64_t i) {
  std::string out;
  FormatKey(i, &out);
  return out;
}

void FormatKey(uint64_t i, std::string* out) {
  // "key:" and at least 10 digits, zero-padded (printf's "key:%010llu", without its cost:
  // it was 5% of ringbench's CPU).
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + i % 10);
    i /= 10;
  } while (i > 0);
  out->assign("key:");
  out->append(n < 10 ? 10 - n : 0, '0');
  while (n > 0) out->push_back(digits[--n]);
}

// --- ZipfianGenerator ------------------------------------------------------------------

ZipfianGenerator::ZipfianGenerator(uint64_t n, double theta)
    : theta_(theta),
      alpha_(1.0 / (1.0 - theta)),
      zeta2_(Zeta(2, theta)),
      half_pow_theta_(std::pow(0.5, theta)),
      n_(std::max<uint64_t>(n, 1)),
      zetan_(Zeta(n_, theta)) {
  // theta == 1 would divide by zero in alpha; YCSB's skew is 0.99.
  assert(theta > 0 && theta < 1);
  ComputeEta();
}

double ZipfianGenerator::ZetaTail(uint64_t from, uint64_t to, double theta) {
  double sum = 0;
  uint64_t exact_end = to - from > kExactZetaTerms ? from + kExactZetaTerms : to;
  for (uint64_t i = from + 1; i <= exact_end; ++i) {
    sum += 1.0 / std::pow(static_cast<double>(i), theta);
  }
  if (exact_end == to) return sum;
  // Euler-Maclaurin for f(x) = x^-theta over [a, b]: the integral, plus half of each end
  // term, plus the first derivative correction. Here a > 10^6, where the next correction
  // is below 1e-30.
  auto a = static_cast<double>(exact_end + 1);
  auto b = static_cast<double>(to);
  double one_minus = 1.0 - theta;
  double integral = (std::pow(b, one_minus) - std::pow(a, one_minus)) / one_minus;
  double ends = (std::pow(a, -theta) + std::pow(b, -theta)) / 2;
  double derivative =
      (-theta * std::pow(b, -theta - 1) + theta * std::pow(a, -theta - 1)) / 12;
  return sum + integral + ends + derivative;
}

double ZipfianGenerator::Zeta(uint64_t n, double theta) { return ZetaTail(0, n, theta); }

void ZipfianGenerator::ComputeEta() {
  // With n <= 2, Next never reaches the formula that uses eta (and it would divide by 0).
  if (n_ <= 2) {
    eta_ = 0;
    return;
  }
  eta_ = (1 - std::pow(2.0 / static_cast<double>(n_), 1 - theta_)) / (1 - zeta2_ / zetan_);
}

void ZipfianGenerator::Grow(uint64_t n) {
  if (n <= n_) return;
  zetan_ += ZetaTail(n_, n, theta_);
  n_ = n;
  ComputeEta();
}

uint64_t ZipfianGenerator::Next(double u) {
  double uz = u * zetan_;
  if (uz < 1) return 0;
  if (uz < 1 + half_pow_theta_) return std::min<uint64_t>(1, n_ - 1);
  auto rank = static_cast<uint64_t>(static_cast<double>(n_) *
                                    std::pow(eta_ * u - eta_ + 1, alpha_));
  return std::min(rank, n_ - 1);
}

// --- WorkloadGenerator -----------------------------------------------------------------

WorkloadGenerator::WorkloadGenerator(const WorkloadSpec& spec, uint64_t key_count,
                                     uint64_t seed)
    : spec_(spec),
      key_count_(std::max<uint64_t>(key_count, 1)),
      rng_(seed),
      zipfian_(key_count_),
      next_insert_(key_count_),
      acknowledged_(key_count_) {}

double WorkloadGenerator::NextUnit() {
  // The top 53 bits fill a double's mantissa exactly.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

uint64_t WorkloadGenerator::ChooseKey() {
  switch (spec_.distribution) {
    case KeyDistribution::kUniform:
      return Below(rng_(), key_count_);
    case KeyDistribution::kZipfian:
      return Mix64(zipfian_.Next(NextUnit()) ^ kScrambleSalt) % key_count_;
    case KeyDistribution::kLatest:
      // Rank 0 is the newest key whose insert has completed.
      zipfian_.Grow(acknowledged_);
      return acknowledged_ - 1 - zipfian_.Next(NextUnit());
  }
  return 0;
}

WorkloadGenerator::Op WorkloadGenerator::Next() {
  double u = NextUnit();
  OpType type;
  if (u < spec_.read) {
    type = OpType::kRead;
  } else if (u < spec_.read + spec_.update) {
    type = OpType::kUpdate;
  } else if (u < spec_.read + spec_.update + spec_.insert) {
    type = OpType::kInsert;
  } else if (spec_.read_modify_write > 0) {
    type = OpType::kReadModifyWrite;
  } else {
    // Only rounding can get here (fractions summing to 0.9999...); give it to the last
    // operation the workload does use.
    type = spec_.insert > 0 ? OpType::kInsert
           : spec_.update > 0 ? OpType::kUpdate
                              : OpType::kRead;
  }
  if (type == OpType::kInsert) return {type, next_insert_++};
  return {type, ChooseKey()};
}

void WorkloadGenerator::AcknowledgeInsert(uint64_t key) {
  if (key < acknowledged_) return;
  if (key != acknowledged_) {
    acknowledged_ahead_.insert(key);
    return;
  }
  ++acknowledged_;
  // Inserts complete out of order; absorb those that were waiting for this one.
  while (!acknowledged_ahead_.empty() && *acknowledged_ahead_.begin() == acknowledged_) {
    acknowledged_ahead_.erase(acknowledged_ahead_.begin());
    ++acknowledged_;
  }
}

}  // namespace ring::bench
