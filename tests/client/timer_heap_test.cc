#include "client/timer_heap.h"

#include <catch2/catch.hpp>
#include <random>
#include <map>
#include <set>

namespace ring {
namespace {

using Clock = TimerHeap::Clock;
using std::chrono::milliseconds;

TEST_CASE("timer heap: entries come due in time order, and only once due", "[client]") {
  TimerHeap h;
  const auto t0 = Clock::time_point{} + milliseconds(1000);
  auto live = [](const TimerHeap::Entry&) { return true; };
  h.Push({t0 + milliseconds(30), 3, 0}, 1, live);
  h.Push({t0 + milliseconds(10), 1, 0}, 2, live);
  h.Push({t0 + milliseconds(20), 2, 0}, 3, live);
  CHECK_FALSE(h.PopDue(t0 + milliseconds(9)));
  auto a = h.PopDue(t0 + milliseconds(25));
  auto b = h.PopDue(t0 + milliseconds(25));
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->id == 1);
  CHECK(b->id == 2);
  CHECK_FALSE(h.PopDue(t0 + milliseconds(25)));
  auto c = h.PopDue(t0 + milliseconds(30));
  REQUIRE(c);
  CHECK(c->id == 3);
  CHECK(h.size() == 0);
}

TEST_CASE("timer heap: stale entries are dropped by rebuilds and never lose a live one", "[client]") {
  // A client's life: calls armed and (mostly) disarmed out of order, with re-arms; the heap
  // stays within its bound, and every live timer comes due exactly at its time.
  TimerHeap h;
  std::mt19937_64 rng(42);
  const auto t0 = Clock::time_point{} + milliseconds(1);
  std::map<uint64_t, std::pair<uint64_t, Clock::time_point>> armed;  // id -> (arm, at)
  uint64_t next_id = 1;
  auto is_live = [&](const TimerHeap::Entry& e) {
    auto it = armed.find(e.id);
    return it != armed.end() && it->second.first == e.arm;
  };
  for (int step = 0; step < 200000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 5 || armed.empty()) {  // arm a new call
      uint64_t id = next_id++;
      auto at = t0 + milliseconds(rng() % 100000);
      armed[id] = {0, at};
      h.Push({at, id, 0}, armed.size(), is_live);
      REQUIRE(h.size() <= 2 * armed.size() + TimerHeap::kSlack);  // the bound, as of a push
    } else if (op < 9) {  // disarm one (answered)
      armed.erase(std::next(armed.begin(), static_cast<long>(rng() % std::min<size_t>(armed.size(), 64))));
    } else {  // re-arm one (sent again)
      auto it = armed.begin();
      it->second.first++;
      it->second.second = t0 + milliseconds(rng() % 100000);
      h.Push({it->second.second, it->first, it->second.first}, armed.size(), is_live);
    }
  }
  // Drain: exactly the live timers fire, each once, in time order, at their time.
  std::set<uint64_t> fired;
  Clock::time_point last{};
  const auto end = t0 + milliseconds(100000);
  while (auto e = h.PopDue(end)) {
    if (!is_live(*e)) continue;
    CHECK(e->at >= last);
    CHECK(e->at == armed.at(e->id).second);
    last = e->at;
    CHECK(fired.insert(e->id).second);
  }
  CHECK(fired.size() == armed.size());
  CHECK(h.size() == 0);
}

}  // namespace
}  // namespace ring
