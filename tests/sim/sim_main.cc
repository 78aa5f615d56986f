// tests/sim/sim_main.cc: ring_sim, the deterministic simulation runner.
//
//   ring_sim --seed 42                 replay one schedule, printing its full trace
//   ring_sim --seeds 2000              soak: schedules 1..2000, then a summary
//   ring_sim --seeds 100000 --first-seed 5000000 --jobs 2
//
// A failing schedule prints its seed, the broken invariant and the command that replays
// it. Exit status: 0 if every schedule passed, 1 if any failed, 2 for bad arguments.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/sim/schedule.h"

namespace {

using ring::sim::RunOptions;
using ring::sim::RunSchedule;
using ring::sim::ScheduleResult;
using ring::sim::Trace;

void PrintFailure(const ScheduleResult& r, const RunOptions& ro) {
  std::printf("FAILED seed %llu at step %llu: %s: %s\n", static_cast<unsigned long long>(r.seed),
              static_cast<unsigned long long>(r.failed_step), r.invariant.c_str(), r.detail.c_str());
  std::printf("  profile: %s\n", r.profile.c_str());
  std::printf("  replay:  ring_sim --seed %llu%s%s%s%s\n", static_cast<unsigned long long>(r.seed),
              ro.force_fig8 ? " --fig8" : "", ro.force_lease ? " --lease" : "",
              ro.max_drift_permille >= 0 ? (" --drift " + std::to_string(ro.max_drift_permille)).c_str() : "",
              ro.steps > 0 ? (" --steps " + std::to_string(ro.steps)).c_str() : "");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ring_sim: deterministic simulation of the replication core"};
  uint64_t seed = 0;
  uint64_t seeds = 0;
  uint64_t first_seed = 1;
  int jobs = 1;
  bool quiet = false;
  RunOptions ro;
  auto* seed_opt = app.add_option("--seed", seed, "replay one schedule and print its trace");
  auto* seeds_opt = app.add_option("--seeds", seeds, "run this many schedules and summarize");
  app.add_option("--first-seed", first_seed, "first seed of a soak (default 1)");
  app.add_option("--jobs", jobs, "schedules run in parallel during a soak (default 1)")
      ->check(CLI::Range(1, 64));
  app.add_option("--steps", ro.steps, "steps per schedule (default: chosen by the seed)");
  app.add_flag("--fig8", ro.force_fig8, "always use the figure 8 fault mode");
  app.add_flag("--lease", ro.force_lease, "always use the lease fault mode");
  app.add_option("--drift", ro.max_drift_permille,
                 "clock drift bound in per mille (default: below the lease margin)");
  app.add_flag("--quiet", quiet, "with --seed: print only the outcome");
  seed_opt->excludes(seeds_opt);
  CLI11_PARSE(app, argc, argv);
  if (seed_opt->count() == 0 && seeds_opt->count() == 0) {
    std::fprintf(stderr, "ring_sim: give --seed S or --seeds N (see --help)\n");
    return 2;
  }

  if (seed_opt->count() > 0) {
    Trace trace = quiet ? Trace() : Trace(stdout);
    ScheduleResult r = RunSchedule(seed, &trace, ro);
    if (!r.ok) {
      PrintFailure(r, ro);
      return 1;
    }
    std::printf("seed %llu passed: %llu steps, %llu proposals, %llu acked, %llu crashes, "
                "%llu snapshots installed, %llu membership changes, %llu leader changes, "
                "recovered in %llu ticks\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(r.stats.steps),
                static_cast<unsigned long long>(r.stats.proposals),
                static_cast<unsigned long long>(r.stats.acked),
                static_cast<unsigned long long>(r.stats.crashes),
                static_cast<unsigned long long>(r.stats.snapshots_installed),
                static_cast<unsigned long long>(r.stats.conf_changes),
                static_cast<unsigned long long>(r.stats.leader_changes),
                static_cast<unsigned long long>(r.recovery_ticks));
    return 0;
  }

  // Soak. Workers take seeds in order; results are reported in seed order, so the output
  // does not depend on --jobs.
  const auto start = std::chrono::steady_clock::now();
  std::vector<ScheduleResult> results(seeds);
  std::atomic<uint64_t> next{0};
  auto worker = [&] {
    for (uint64_t i = next++; i < seeds; i = next++) {
      Trace off;
      results[i] = RunSchedule(first_seed + i, &off, ro);
    }
  };
  std::vector<std::thread> threads;
  for (int j = 1; j < jobs; j++) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  ring::sim::ClusterStats total;
  uint64_t failures = 0;
  uint64_t max_recovery = 0;
  for (const ScheduleResult& r : results) {
    total.Add(r.stats);
    max_recovery = std::max(max_recovery, r.recovery_ticks);
    if (!r.ok) {
      if (failures < 10) PrintFailure(r, ro);
      failures++;
    }
  }
  std::printf("schedules:            %llu (seeds %llu..%llu), %llu failed\n",
              static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(first_seed),
              static_cast<unsigned long long>(first_seed + seeds - 1),
              static_cast<unsigned long long>(failures));
  std::printf("steps / ticks:        %llu / %llu\n", static_cast<unsigned long long>(total.steps),
              static_cast<unsigned long long>(total.ticks));
  std::printf("messages:             %llu delivered, %llu lost, %llu duplicated\n",
              static_cast<unsigned long long>(total.delivered),
              static_cast<unsigned long long>(total.dropped),
              static_cast<unsigned long long>(total.duplicated));
  std::printf("proposals acked:      %llu of %llu\n", static_cast<unsigned long long>(total.acked),
              static_cast<unsigned long long>(total.proposals));
  std::printf("reads:                %llu ReadIndex, %llu lease\n",
              static_cast<unsigned long long>(total.reads),
              static_cast<unsigned long long>(total.lease_reads));
  std::printf("crashes / restarts:   %llu / %llu\n", static_cast<unsigned long long>(total.crashes),
              static_cast<unsigned long long>(total.restarts));
  std::printf("snapshots:            %llu sent, %llu installed, %llu compactions\n",
              static_cast<unsigned long long>(total.snapshots_sent),
              static_cast<unsigned long long>(total.snapshots_installed),
              static_cast<unsigned long long>(total.compactions));
  std::printf("membership changes:   %llu committed\n",
              static_cast<unsigned long long>(total.conf_changes));
  std::printf("leader changes:       %llu (%llu transfers requested)\n",
              static_cast<unsigned long long>(total.leader_changes),
              static_cast<unsigned long long>(total.transfers));
  std::printf("recovery after heal:  at most %llu ticks\n",
              static_cast<unsigned long long>(max_recovery));
  std::printf("time:                 %.1f s (%.0f schedules/s)\n", secs,
              secs > 0 ? static_cast<double>(seeds) / secs : 0.0);
  return failures == 0 ? 0 : 1;
}
