// The deterministic simulation as Catch2 tests: a few hundred randomized schedules (the
// CI soak of 2,000 and more runs through ring_sim), replay determinism, and the golden
// scenarios in tests/sim/golden/*.txt.
//
// To regenerate the golden files after an intended behaviour change, run
//   RING_SIM_REWRITE=1 build/bin/ring_tests "[sim][golden]"
// and review the diff: it is the change in behaviour.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/scenario.h"
#include "tests/sim/schedule.h"

namespace ring::sim {
namespace {

void RequirePasses(const ScheduleResult& r, const RunOptions& ro) {
  INFO("seed " << r.seed << " (" << r.profile << ") failed at step " << r.failed_step << ": "
               << r.invariant << ": " << r.detail << "\nreplay: ring_sim --seed " << r.seed
               << (ro.force_fig8 ? " --fig8" : ""));
  REQUIRE(r.ok);
}

TEST_CASE("randomized fault schedules keep every invariant", "[sim]") {
  ClusterStats total;
  for (uint64_t seed = 1; seed <= 300; seed++) {
    Trace off;
    ScheduleResult r = RunSchedule(seed, &off);
    RequirePasses(r, {});
    total.Add(r.stats);
  }
  // The schedules must actually exercise the faults they claim to.
  CHECK(total.acked > 1000);
  CHECK(total.crashes > 100);
  CHECK(total.snapshots_installed > 20);
  CHECK(total.conf_changes > 20);
  CHECK(total.leader_changes > 300);
  CHECK(total.lease_reads > 50);
  CHECK(total.reads > 100);
}

TEST_CASE("figure 8 fault schedules keep every invariant", "[sim]") {
  RunOptions ro;
  ro.force_fig8 = true;
  for (uint64_t seed = 1; seed <= 150; seed++) {
    Trace off;
    RequirePasses(RunSchedule(seed, &off, ro), ro);
  }
}

TEST_CASE("lease fault schedules keep every invariant", "[sim]") {
  RunOptions ro;
  ro.force_lease = true;
  ClusterStats total;
  for (uint64_t seed = 1; seed <= 150; seed++) {
    Trace off;
    ScheduleResult r = RunSchedule(seed, &off, ro);
    INFO("seed " << r.seed << " (" << r.profile << ") failed at step " << r.failed_step << ": "
                 << r.invariant << ": " << r.detail << "\nreplay: ring_sim --seed " << r.seed
                 << " --lease");
    REQUIRE(r.ok);
    total.Add(r.stats);
  }
  CHECK(total.lease_reads > 1000);
}

TEST_CASE("a seed replays exactly the same schedule", "[sim]") {
  for (uint64_t seed : {7, 1234, 99999}) {
    Trace a = Trace::Collecting();
    Trace b = Trace::Collecting();
    ScheduleResult ra = RunSchedule(seed, &a);
    ScheduleResult rb = RunSchedule(seed, &b);
    const std::string ta = a.Take();
    const std::string tb = b.Take();
    CHECK(ta.size() > 10000);
    CHECK(ta == tb);
    CHECK(ra.stats.acked == rb.stats.acked);
    // Tracing must not change what happens.
    Trace off;
    ScheduleResult rc = RunSchedule(seed, &off);
    CHECK(rc.stats.delivered == ra.stats.delivered);
    CHECK(rc.stats.proposals == ra.stats.proposals);
  }
}

std::vector<std::filesystem::path> GoldenFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(RING_SIM_GOLDEN_DIR)) {
    if (e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST_CASE("golden scenarios play out as recorded", "[sim][golden]") {
  const bool rewrite = std::getenv("RING_SIM_REWRITE") != nullptr;
  const auto files = GoldenFiles();
  REQUIRE(files.size() >= 2);
  for (const auto& path : files) {
    SECTION(path.filename().string()) {
      std::ifstream in(path);
      std::stringstream buf;
      buf << in.rdbuf();
      const std::string expected = buf.str();
      Result<std::string> actual = RunScenario(expected);
      INFO(path.string() << ": " << actual.status().ToString());
      REQUIRE(actual.ok());
      if (rewrite) {
        std::ofstream(path) << *actual;
        continue;
      }
      // Report the first differing line, which is much easier to read than two files.
      std::istringstream e(expected), a(*actual);
      std::string el, al;
      int line = 0;
      while (true) {
        const bool more_e = static_cast<bool>(std::getline(e, el));
        const bool more_a = static_cast<bool>(std::getline(a, al));
        line++;
        if (!more_e && !more_a) break;
        INFO(path.filename().string() << ":" << line << "\n  expected: " << (more_e ? el : "<eof>")
                                      << "\n  actual:   " << (more_a ? al : "<eof>"));
        REQUIRE(more_e == more_a);
        REQUIRE(el == al);
      }
    }
  }
}

}  // namespace
}  // namespace ring::sim
