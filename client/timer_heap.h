// client/timer_heap.h: the client's call timers (deadlines, per-send attempt timeouts).
//
// A binary min-heap of (time, call id, arm number) with lazy removal. Disarming a timer
// costs nothing here: its owner stops counting the entry as live, and a stale entry is
// dropped when it comes due (PopDue returns it; the owner sees it is stale and skips it)
// or by a rebuild, once stale entries outnumber live ones by more than kSlack. Unlike a
// tree of timers, arming and disarming neither allocate nor rebalance: under pipelined
// load the trees were a tenth of the client's CPU.
//
// Not thread-safe: the client's I/O thread owns it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace ring {

class TimerHeap {
 public:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Clock::time_point at;
    uint64_t id = 0;   // the call
    uint64_t arm = 0;  // which arming of the call's timer (the owner's counter)
  };
  static constexpr size_t kSlack = 1024;

  // Adds `e`. `live` is how many entries the owner counts as armed, after this one;
  // `is_live(entry)` tells them apart, for a rebuild.
  template <typename IsLive>
  void Push(const Entry& e, size_t live, IsLive&& is_live) {
    if (heap_.size() >= 2 * live + kSlack) {
      std::erase_if(heap_, [&](const Entry& x) { return !is_live(x); });
      std::make_heap(heap_.begin(), heap_.end(), Later);
    }
    heap_.push_back(e);
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }

  // Removes and returns the earliest entry due at `now` (live or stale), if any.
  std::optional<Entry> PopDue(Clock::time_point now) {
    if (heap_.empty() || heap_.front().at > now) return std::nullopt;
    std::pop_heap(heap_.begin(), heap_.end(), Later);
    Entry e = heap_.back();
    heap_.pop_back();
    return e;
  }

  size_t size() const { return heap_.size(); }  // live and stale entries

 private:
  static bool Later(const Entry& a, const Entry& b) { return a.at > b.at; }
  std::vector<Entry> heap_;
};

}  // namespace ring
