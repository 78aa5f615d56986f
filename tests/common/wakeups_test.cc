// Tests for common/wakeups.h: WakeupBatch defers a thread's wakeups to the end of its burst.
#include "common/wakeups.h"

#include <catch2/catch.hpp>
#include <string>
#include <thread>

namespace ring {
namespace {

TEST_CASE("a wakeup outside any batch runs at once", "[common][wakeups]") {
  int woken = 0;
  WakeupBatch::Wake([&] { ++woken; });
  CHECK(woken == 1);
}

TEST_CASE("a batch runs its wakeups in order when it closes, nested ones at the innermost close",
          "[common][wakeups]") {
  std::string log;
  {
    WakeupBatch outer;
    WakeupBatch::Wake([&] { log += "a"; });
    {
      WakeupBatch inner;
      WakeupBatch::Wake([&] { log += "b"; });
      WakeupBatch::Wake([&] { log += "c"; });
      CHECK(log.empty());
    }
    CHECK(log == "bc");
    WakeupBatch::Wake([&] { log += "d"; });
    CHECK(log == "bc");
  }
  CHECK(log == "bcad");
  WakeupBatch::Wake([&] { log += "e"; });  // no batch open any more
  CHECK(log == "bcade");
}

TEST_CASE("Flush runs the wakeups held so far, and the batch goes on deferring", "[common][wakeups]") {
  std::string log;
  WakeupBatch::Flush();  // no batch open: nothing to do
  {
    WakeupBatch batch;
    WakeupBatch::Wake([&] { log += "a"; });
    WakeupBatch::Flush();
    CHECK(log == "a");
    WakeupBatch::Wake([&] { log += "b"; });
    CHECK(log == "a");
  }
  CHECK(log == "ab");
}

TEST_CASE("a batch defers only its own thread's wakeups", "[common][wakeups]") {
  int woken = 0;
  WakeupBatch batch;
  std::thread other([&] { WakeupBatch::Wake([&] { ++woken; }); });
  other.join();
  CHECK(woken == 1);
}

}  // namespace
}  // namespace ring
