// tests/sim/rng.h: the simulation's only source of randomness.
//
// A seeded xoshiro256** generator with its own bounded-integer helpers, so that a seed
// replays the same schedule on every platform and standard library (std:: distributions
// are implementation-defined).
//
// Thread-safety: none; each simulated schedule owns its Rng.
#pragma once

#include <cstdint>

namespace ring::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& s : s_) s = SplitMix(&x);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); n > 0. The modulo bias is irrelevant for test schedules.
  uint64_t Uniform(uint64_t n) { return Next() % n; }
  // Uniform in [lo, hi].
  int Range(int lo, int hi) { return lo + static_cast<int>(Uniform(static_cast<uint64_t>(hi - lo + 1))); }
  // True with probability percent/100.
  bool Percent(int percent) { return static_cast<int>(Uniform(100)) < percent; }

  static uint64_t SplitMix(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // A well-mixed combination of values, for deriving per-node seeds from a schedule seed.
  static uint64_t Mix(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b * 0xD6E8FEB86659FD93ull);
    return SplitMix(&x);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace ring::sim
