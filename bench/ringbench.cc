// bench/ringbench.cc: ringbench, the ringstore load generator.
//
// Drives a cluster through one ring::Client with YCSB-style workloads (bench/workload.h)
// and reports throughput and latency percentiles (bench/histogram.h), every second while
// it runs and in total at the end, as text or as one JSON object (--json).
//
// Load model: --clients logical clients each have --pipeline calls outstanding through
// the client's asynchronous API. Every outstanding call is a "slot". With the default
// --pipeline-style batch, a client issues its P calls together and the next P once all
// of them completed, as redis-benchmark -P does, so the two tools load a server the same
// way. With window, a slot issues its next call as soon as its last one completes, which
// keeps exactly P calls in flight. No thread per client is needed, so 50 x 16 calls in
// flight cost no more threads than one. This is a closed loop: latency is measured from
// issuing a call to its completion.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench/histogram.h"
#include "bench/workload.h"
#include "common/endpoint.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/status.h"
#include "ring/client.h"

namespace ring::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 64;         // EX_USAGE from sysexits.h
constexpr int kExitInterrupted = 130;  // the shell's convention for SIGINT

constexpr int64_t kMaxKeys = 1'000'000'000;  // FormatKey's ten digits, with room for inserts
constexpr int64_t kMaxClients = 10'000;
constexpr int64_t kMaxPipeline = 1'024;
constexpr int64_t kMaxInFlight = 100'000;  // clients x pipeline: each costs a slot's memory
constexpr double kMaxDurationSeconds = 7 * 24 * 3600;
// Values are slices of one random buffer this much longer than a value, starting at a
// random offset, so consecutive writes differ without generating bytes per call.
constexpr size_t kValueWindow = 4096;
// The longest we wait, after a phase ends, for calls still outstanding.
constexpr auto kMaxGrace = 5s;

// Set from the signal handler: the number of SIGINT/SIGTERM received. A signal handler can
// only touch a lock-free atomic, which is why this one piece of state is global.
std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void OnInterrupt(int) {
  // The second Ctrl-C means "now": skip the report and the wait for outstanding calls.
  if (g_interrupts.fetch_add(1) >= 1) std::_Exit(kExitInterrupted);
}

struct Config {
  std::string cluster;
  std::vector<std::string> seeds;
  std::string workload_text = "A";
  WorkloadSpec workload;
  int64_t keys = 100'000;
  int64_t value_size = 100;
  int64_t clients = 50;
  int64_t pipeline = 1;
  bool pipeline_window = false;  // --pipeline-style window (default batch)
  double duration_s = 10;
  bool load = false;
  bool json = false;
  uint64_t seed = 1;
  int64_t connections = ClientOptions{}.connections_per_node;
  int64_t timeout_ms = ClientOptions{}.default_timeout.count();
};

double NsToMs(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

enum class Phase { kLoad, kRun };

const char* PhaseName(Phase phase) { return phase == Phase::kLoad ? "load" : "run"; }

// Outcomes of one phase.
struct PhaseStats {
  std::array<Histogram, kOpTypeCount> latency;  // successful calls, by op type
  Histogram all;                                // successful calls of every type
  uint64_t ops = 0;                             // successful calls
  uint64_t not_found = 0;      // reads of absent keys: successful, but worth knowing
  uint64_t cas_conflicts = 0;  // read-modify-writes whose CompareAndSet lost a race
  uint64_t errors = 0;
  std::array<uint64_t, kStatusCodeCount> errors_by_code{};
  std::array<std::string, kStatusCodeCount> first_error;  // a sample message per code
};

// One line of the per-second report.
struct Interval {
  double t = 0;  // seconds since the phase started, at the end of the interval
  double ops_per_sec = 0;
  double p99_ms = 0;
  uint64_t errors = 0;
};

struct PhaseResult {
  Phase phase = Phase::kRun;
  double seconds = 0;  // the measured window
  PhaseStats stats;
  std::vector<Interval> timeline;
  uint64_t abandoned = 0;  // calls still outstanding when we stopped waiting for them
  bool interrupted = false;
};

// Runs the phases of a benchmark against one client.
//
// Owns the slots of every phase and the statistics they feed. The client must be destroyed
// before the Runner: the client completes abandoned calls on destruction, and their
// callbacks point into the Runner.
//
// Thread-safety: Run is called from one thread (main). Completion callbacks may run on any
// thread, usually the client's I/O thread; everything they share with Run is guarded by
// mu_, which is never held while calling into the client, because a call may complete
// inline and re-enter.
class Runner {
 public:
  explicit Runner(const Config& config)
      : config_(config),
        generator_(config.workload, static_cast<uint64_t>(config.keys), config.seed),
        value_rng_(config.seed ^ 0x5bd1e9955bd1e995ULL) {
    call_.timeout = std::chrono::milliseconds(config.timeout_ms);
    // Random bytes, not a repeated pattern, so that compression on the node cannot make
    // the benchmark look better than real data would.
    value_pool_.resize(static_cast<size_t>(config.value_size) + kValueWindow);
    std::mt19937_64 bytes(config.seed);
    for (char& c : value_pool_) c = static_cast<char>(bytes());
  }

  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  void Attach(Client* client) { client_ = client; }

  // Runs one phase to its end: every key written (load), --duration elapsed (run), or an
  // interrupt. Prints a line per second to `progress`. Then waits a bounded time for calls
  // still outstanding.
  PhaseResult Run(Phase phase, std::FILE* progress);

 private:
  struct PhaseContext;

  // One outstanding call's worth of a logical client. Its fields belong to whichever
  // thread is issuing or completing its current call; the client's completion hand-off
  // orders the two.
  struct Batch;
  struct Slot {
    Runner* runner = nullptr;
    PhaseContext* context = nullptr;
    Batch* batch = nullptr;  // with --pipeline-style batch: the logical client's calls
    bool retired = false;    // guarded by Runner::mu_: its phase is over for it
    WorkloadGenerator::Op op{};
    std::string key;         // outlives the call: the client may keep a view of it
    std::string_view value;  // a slice of value_pool_
    std::string read_value;  // read-modify-write: what the Get returned
    Clock::time_point start;
  };

  // A logical client's slots under --pipeline-style batch: issued together, and again
  // once all have completed.
  struct Batch {
    std::vector<Slot*> slots;
    size_t outstanding = 0;  // guarded by Runner::mu_
  };

  // One phase's slots and progress. Phases are kept until the Runner dies, because a phase
  // may end with calls outstanding whose callbacks still refer to it.
  struct PhaseContext {
    Phase phase = Phase::kRun;
    Clock::time_point start;  // set before the first call, constant after
    std::vector<std::unique_ptr<Slot>> slots;
    std::vector<std::unique_ptr<Batch>> batches;

    // Guarded by Runner::mu_.
    // No new calls from then on, and completions no longer count: for a run, the end of
    // --duration; for a load, set once every key is issued.
    Clock::time_point deadline = Clock::time_point::max();
    bool stopping = false;   // no new calls
    bool recording = true;   // completions still count
    size_t active = 0;       // slots whose chain of calls has not ended
    Clock::time_point finished_at;  // when active reached 0
    uint64_t next_load_key = 0;
    PhaseStats stats;
    Histogram interval_latency;  // the current second
    uint64_t interval_ops = 0;
    uint64_t interval_errors = 0;
  };

  // Issues the slot's next call, or retires the slot when its phase is over.
  void Issue(Slot* slot);
  void IssueOne(Slot* slot);
  void OnGetForReadModifyWrite(Slot* slot, Status status, std::string value);
  // Records a completed call and issues the slot's next one.
  void Complete(Slot* slot, const Status& status, bool cas_conflict);
  // Moves the current second's figures into the result and prints them.
  void EndInterval(PhaseContext* context, Clock::time_point from, Clock::time_point to,
                   PhaseResult* result, std::FILE* progress);

  // Constant after construction (client_ after Attach).
  const Config config_;
  Client* client_ = nullptr;
  CallOptions call_;
  std::string value_pool_;

  std::mutex mu_;
  std::condition_variable cv_;  // signalled when a phase's last slot retires
  WorkloadGenerator generator_;                        // guarded by mu_
  std::mt19937_64 value_rng_;                          // guarded by mu_
  std::vector<std::unique_ptr<PhaseContext>> phases_;  // guarded by mu_
};

void Runner::Issue(Slot* slot) {
  // A call may complete inline (for example, an error detected before anything is sent),
  // and its callback issues the next call, which may complete inline too. Unchecked, a
  // run of fast failures would recurse until the stack overflows. Instead, calls issued
  // from inside Issue on the same thread are queued and issued by the outermost Issue.
  thread_local std::vector<Slot*>* pending = nullptr;
  if (pending != nullptr) {
    pending->push_back(slot);
    return;
  }
  std::vector<Slot*> queue{slot};
  pending = &queue;
  while (!queue.empty()) {
    Slot* next = queue.back();
    queue.pop_back();
    IssueOne(next);
  }
  pending = nullptr;
}

void Runner::IssueOne(Slot* slot) {
  PhaseContext* context = slot->context;
  {
    std::lock_guard lock(mu_);
    bool more = !context->stopping && Clock::now() < context->deadline;
    if (more && context->phase == Phase::kLoad) {
      more = context->next_load_key < static_cast<uint64_t>(config_.keys);
      if (more) {
        slot->op = {OpType::kInsert, context->next_load_key++};
        // With the last key issued, every call ends within its deadline, so the phase
        // ends by then too, even if a call is lost.
        if (context->next_load_key == static_cast<uint64_t>(config_.keys)) {
          context->deadline = Clock::now() + call_.timeout + 1s;
        }
      }
    } else if (more) {
      slot->op = generator_.Next();
    }
    if (!more) {
      slot->retired = true;
      if (slot->batch != nullptr) --slot->batch->outstanding;  // it will not complete
      if (--context->active == 0) {
        context->finished_at = Clock::now();
        cv_.notify_all();
      }
      return;
    }
    size_t offset = static_cast<size_t>(value_rng_() % (kValueWindow + 1));
    slot->value = std::string_view(value_pool_).substr(offset, config_.value_size);
  }
  FormatKey(slot->op.key, &slot->key);
  slot->start = Clock::now();
  switch (slot->op.type) {
    case OpType::kRead:
      client_->GetAsync(
          slot->key,
          [slot](Status s, std::string) { slot->runner->Complete(slot, s, false); }, call_);
      break;
    case OpType::kUpdate:
    case OpType::kInsert:
      client_->PutAsync(
          slot->key, slot->value,
          [slot](Status s) { slot->runner->Complete(slot, s, false); }, call_);
      break;
    case OpType::kReadModifyWrite:
      client_->GetAsync(
          slot->key,
          [slot](Status s, std::string value) {
            slot->runner->OnGetForReadModifyWrite(slot, std::move(s), std::move(value));
          },
          call_);
      break;
  }
}

void Runner::OnGetForReadModifyWrite(Slot* slot, Status status, std::string value) {
  if (!status.ok() && !status.IsNotFound()) {
    Complete(slot, status, false);
    return;
  }
  // Write back only if nobody changed the key since we read it, as an application doing a
  // read-modify-write would. An absent key is expected to stay absent.
  std::optional<std::string_view> expected;
  if (status.ok()) {
    slot->read_value = std::move(value);
    expected = slot->read_value;
  }
  client_->CompareAndSetAsync(
      slot->key, expected, slot->value,
      [slot](Status s, CasResult result) {
        bool conflict = s.ok() && !result.swapped;
        slot->runner->Complete(slot, s, conflict);
      },
      call_);
}

void Runner::Complete(Slot* slot, const Status& status, bool cas_conflict) {
  Clock::time_point now = Clock::now();
  PhaseContext* context = slot->context;
  std::vector<Slot*> next;  // batch style: the client's calls to issue again
  {
    std::lock_guard lock(mu_);
    const WorkloadGenerator::Op& op = slot->op;
    if (context->recording && now < context->deadline) {
      PhaseStats& stats = context->stats;
      bool is_read = op.type == OpType::kRead || op.type == OpType::kReadModifyWrite;
      if (status.ok() || (status.IsNotFound() && is_read)) {
        auto ns = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - slot->start).count());
        stats.latency[static_cast<int>(op.type)].Record(ns);
        stats.all.Record(ns);
        context->interval_latency.Record(ns);
        ++stats.ops;
        ++context->interval_ops;
        if (status.IsNotFound()) ++stats.not_found;
        if (cas_conflict) ++stats.cas_conflicts;
      } else {
        auto code = static_cast<size_t>(status.code());
        if (code >= stats.errors_by_code.size()) code = 0;  // never: codes are validated
        ++stats.errors;
        ++stats.errors_by_code[code];
        ++context->interval_errors;
        if (stats.first_error[code].empty()) stats.first_error[code] = status.ToString();
      }
    }
    // Acknowledge failed inserts too: otherwise one failure would freeze workload D's
    // notion of the newest key forever. Reads of that key then find nothing, which counts
    // as NotFound rather than an error.
    if (op.type == OpType::kInsert && context->phase == Phase::kRun) {
      generator_.AcknowledgeInsert(op.key);
    }
    if (Batch* b = slot->batch) {
      if (--b->outstanding > 0) return;  // the client waits for the rest of its batch
      for (Slot* s : b->slots) {
        if (!s->retired) next.push_back(s);
      }
      b->outstanding = next.size();
    }
  }
  if (slot->batch == nullptr) return Issue(slot);
  for (Slot* s : next) Issue(s);
}

void Runner::EndInterval(PhaseContext* context, Clock::time_point from, Clock::time_point to,
                         PhaseResult* result, std::FILE* progress) {
  Histogram latency;
  uint64_t ops, errors, next_load_key;
  {
    std::lock_guard lock(mu_);
    std::swap(latency, context->interval_latency);  // O(1): histograms own their buckets
    ops = context->interval_ops;
    errors = context->interval_errors;
    context->interval_ops = context->interval_errors = 0;
    next_load_key = context->next_load_key;
  }
  double seconds = Seconds(to - from);
  if (seconds <= 0) return;
  Interval line;
  line.t = Seconds(to - context->start);
  line.ops_per_sec = static_cast<double>(ops) / seconds;
  line.p99_ms = NsToMs(latency.Percentile(99));
  line.errors = errors;
  result->timeline.push_back(line);
  if (progress == nullptr) return;
  std::fprintf(progress, "%-4s %6.1fs %10.0f ops/s   p99 %8.3f ms   %llu errors",
               PhaseName(context->phase), line.t, line.ops_per_sec, line.p99_ms,
               static_cast<unsigned long long>(errors));
  if (context->phase == Phase::kLoad) {
    std::fprintf(progress, "   %llu/%lld keys issued",
                 static_cast<unsigned long long>(next_load_key),
                 static_cast<long long>(config_.keys));
  }
  std::fprintf(progress, "\n");
  std::fflush(progress);
}

PhaseResult Runner::Run(Phase phase, std::FILE* progress) {
  PhaseResult result;
  result.phase = phase;
  auto owned = std::make_unique<PhaseContext>();
  PhaseContext* context = owned.get();
  context->phase = phase;
  size_t slot_count = static_cast<size_t>(config_.clients * config_.pipeline);
  for (size_t i = 0; i < slot_count; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->runner = this;
    slot->context = context;
    if (!config_.pipeline_window && config_.pipeline > 1) {
      if (i % static_cast<size_t>(config_.pipeline) == 0) context->batches.push_back(std::make_unique<Batch>());
      slot->batch = context->batches.back().get();
      slot->batch->slots.push_back(slot.get());
      ++slot->batch->outstanding;
    }
    context->slots.push_back(std::move(slot));
  }
  {
    std::lock_guard lock(mu_);
    context->active = slot_count;
    context->start = Clock::now();
    if (phase == Phase::kRun) {
      context->deadline = context->start + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(config_.duration_s));
    }
    phases_.push_back(std::move(owned));
  }
  for (auto& slot : context->slots) Issue(slot.get());

  // Report every second until the phase ends by itself or is interrupted. The wait wakes
  // at least every 100 ms because a signal handler cannot notify a condition variable.
  Clock::time_point interval_start = context->start;
  Clock::time_point next_tick = context->start + 1s;
  Clock::time_point end;
  while (true) {
    std::unique_lock lock(mu_);
    Clock::time_point wake = std::min({next_tick, Clock::now() + 100ms, context->deadline});
    cv_.wait_until(lock, wake, [context] { return context->active == 0; });
    Clock::time_point now = Clock::now();
    bool interrupted = g_interrupts.load() > 0;
    bool finished = context->active == 0 || now >= context->deadline;
    if (interrupted || finished) {
      // Stop issuing; stop counting what completes from now on.
      context->stopping = true;
      context->recording = false;
      result.interrupted = interrupted && !finished;
      end = phase == Phase::kLoad && context->active == 0 ? context->finished_at
                                                          : std::min(now, context->deadline);
      result.stats = context->stats;
      break;
    }
    if (now >= next_tick) {
      lock.unlock();
      EndInterval(context, interval_start, next_tick, &result, progress);
      interval_start = next_tick;
      next_tick += 1s;
    }
  }
  // The last, partial second, unless it is too short to mean anything.
  if (Seconds(end - interval_start) >= 0.1) {
    EndInterval(context, interval_start, end, &result, progress);
  }
  result.seconds = Seconds(end - context->start);

  // Calls still outstanding end within their deadline; wait for them, within reason.
  auto grace = std::min<Clock::duration>(call_.timeout + 1s, kMaxGrace);
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, Clock::now() + grace, [context] { return context->active == 0; });
  result.abandoned = context->active;
  return result;
}

// --- Reporting -------------------------------------------------------------------------

// Op types a phase can produce, in report order.
std::vector<OpType> OpTypesOf(Phase phase, const WorkloadSpec& spec) {
  if (phase == Phase::kLoad) return {OpType::kInsert};
  std::vector<OpType> types;
  if (spec.read > 0) types.push_back(OpType::kRead);
  if (spec.update > 0) types.push_back(OpType::kUpdate);
  if (spec.insert > 0) types.push_back(OpType::kInsert);
  if (spec.read_modify_write > 0) types.push_back(OpType::kReadModifyWrite);
  return types;
}

double Throughput(const PhaseResult& r) {
  return r.seconds > 0 ? static_cast<double>(r.stats.ops) / r.seconds : 0;
}

void PrintLatencyRow(const char* name, const Histogram& h) {
  std::printf("  %-7s %10llu %9.3f %9.3f %9.3f %9.3f %9.3f\n", name,
              static_cast<unsigned long long>(h.Count()), NsToMs(h.Percentile(50)),
              NsToMs(h.Percentile(95)), NsToMs(h.Percentile(99)), NsToMs(h.Percentile(99.9)),
              NsToMs(h.Max()));
}

void PrintPhase(const PhaseResult& r, const WorkloadSpec& spec) {
  const PhaseStats& s = r.stats;
  std::printf("\n%s: %llu ops in %.2f s: %.0f ops/s, %llu errors%s\n", PhaseName(r.phase),
              static_cast<unsigned long long>(s.ops), r.seconds, Throughput(r),
              static_cast<unsigned long long>(s.errors), r.interrupted ? " (interrupted)" : "");
  std::printf("  %-7s %10s %9s %9s %9s %9s %9s\n", "op", "ops", "p50 ms", "p95 ms", "p99 ms",
              "p99.9 ms", "max ms");
  std::vector<OpType> types = OpTypesOf(r.phase, spec);
  for (OpType t : types) PrintLatencyRow(OpTypeName(t), s.latency[static_cast<int>(t)]);
  if (types.size() > 1) PrintLatencyRow("all", s.all);
  if (s.not_found > 0) {
    std::printf("  reads of absent keys (NotFound, not errors): %llu\n",
                static_cast<unsigned long long>(s.not_found));
  }
  if (s.cas_conflicts > 0) {
    std::printf("  read-modify-writes that lost a CompareAndSet race: %llu\n",
                static_cast<unsigned long long>(s.cas_conflicts));
  }
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (s.errors_by_code[code] == 0) continue;
    std::printf("  error %s: %llu (first: %s)\n", StatusCodeName(static_cast<StatusCode>(code)),
                static_cast<unsigned long long>(s.errors_by_code[code]),
                s.first_error[code].c_str());
  }
  if (r.abandoned > 0) {
    std::printf("  %llu calls were still outstanding when ringbench stopped waiting\n",
                static_cast<unsigned long long>(r.abandoned));
  }
}

void WriteLatencyJson(JsonWriter& w, const Histogram& h) {
  w.BeginObject();
  w.Key("count").Uint(h.Count());
  w.Key("mean").Double(h.Mean() / 1e6);
  w.Key("p50").Double(NsToMs(h.Percentile(50)));
  w.Key("p95").Double(NsToMs(h.Percentile(95)));
  w.Key("p99").Double(NsToMs(h.Percentile(99)));
  w.Key("p999").Double(NsToMs(h.Percentile(99.9)));
  w.Key("max").Double(NsToMs(h.Max()));
  w.EndObject();
}

void WritePhaseJson(JsonWriter& w, const PhaseResult& r, const WorkloadSpec& spec) {
  const PhaseStats& s = r.stats;
  w.BeginObject();
  w.Key("ops").Uint(s.ops);
  w.Key("seconds").Double(r.seconds);
  w.Key("ops_per_sec").Double(Throughput(r));
  w.Key("errors").Uint(s.errors);
  w.Key("errors_by_code").BeginObject();
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (s.errors_by_code[code] == 0) continue;
    w.Key(StatusCodeName(static_cast<StatusCode>(code))).Uint(s.errors_by_code[code]);
  }
  w.EndObject();
  w.Key("first_errors").BeginObject();
  for (int code = 0; code < kStatusCodeCount; ++code) {
    if (s.errors_by_code[code] == 0) continue;
    w.Key(StatusCodeName(static_cast<StatusCode>(code))).String(s.first_error[code]);
  }
  w.EndObject();
  w.Key("not_found").Uint(s.not_found);
  w.Key("cas_conflicts").Uint(s.cas_conflicts);
  w.Key("abandoned").Uint(r.abandoned);
  w.Key("interrupted").Bool(r.interrupted);
  w.Key("latency_ms").BeginObject();
  for (OpType t : OpTypesOf(r.phase, spec)) {
    w.Key(OpTypeName(t));
    WriteLatencyJson(w, s.latency[static_cast<int>(t)]);
  }
  w.Key("all");
  WriteLatencyJson(w, s.all);
  w.EndObject();
  w.Key("timeline").BeginArray();
  for (const Interval& i : r.timeline) {
    w.BeginObject();
    w.Key("t").Double(i.t);
    w.Key("ops_per_sec").Double(i.ops_per_sec);
    w.Key("p99_ms").Double(i.p99_ms);
    w.Key("errors").Uint(i.errors);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void PrintJson(const Config& c, const std::optional<PhaseResult>& load,
               const std::optional<PhaseResult>& run) {
  JsonWriter w;
  w.BeginObject();
  w.Key("cluster").String(c.cluster);
  w.Key("workload").String(c.workload.name);
  w.Key("workload_description").String(c.workload.Describe());
  w.Key("keys").Int(c.keys);
  w.Key("value_size").Int(c.value_size);
  w.Key("clients").Int(c.clients);
  w.Key("pipeline").Int(c.pipeline);
  w.Key("pipeline_style").String(c.pipeline_window ? "window" : "batch");
  w.Key("duration_s").Double(c.duration_s);
  w.Key("connections").Int(c.connections);
  w.Key("timeout_ms").Int(c.timeout_ms);
  w.Key("seed").Uint(c.seed);
  w.Key("load");
  if (load) {
    WritePhaseJson(w, *load, c.workload);
  } else {
    w.Null();
  }
  w.Key("run");
  if (run) {
    WritePhaseJson(w, *run, c.workload);
  } else {
    w.Null();
  }
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
}

// --- Command line ----------------------------------------------------------------------

// Checks the parsed flags; on error returns a message for the user.
std::optional<std::string> Validate(Config* c) {
  Result<std::vector<Endpoint>> endpoints = ParseEndpointList(c->cluster);
  if (!endpoints.ok()) return "--cluster '" + c->cluster + "': " + endpoints.status().message();
  c->seeds.clear();
  for (const Endpoint& e : *endpoints) c->seeds.push_back(e.ToString());

  Result<WorkloadSpec> workload = ParseWorkload(c->workload_text);
  if (!workload.ok()) return "--workload: " + workload.status().message();
  c->workload = *workload;

  auto range = [](const char* flag, int64_t v, int64_t lo,
                  int64_t hi) -> std::optional<std::string> {
    if (v >= lo && v <= hi) return std::nullopt;
    return std::string(flag) + " " + std::to_string(v) + " is out of range: expected " +
           std::to_string(lo) + " to " + std::to_string(hi);
  };
  if (auto e = range("--keys", c->keys, 1, kMaxKeys)) return e;
  if (c->value_size < 0) return "--value-size " + std::to_string(c->value_size) + " is negative";
  if (c->value_size > static_cast<int64_t>(kMaxValueBytes)) {
    return "--value-size " + std::to_string(c->value_size) + " exceeds the 1 MiB value limit (" +
           std::to_string(kMaxValueBytes) + " bytes)";
  }
  if (auto e = range("--clients", c->clients, 1, kMaxClients)) return e;
  if (auto e = range("--pipeline", c->pipeline, 1, kMaxPipeline)) return e;
  if (c->clients * c->pipeline > kMaxInFlight) {
    return "--clients x --pipeline = " + std::to_string(c->clients * c->pipeline) +
           " calls in flight exceeds the limit of " + std::to_string(kMaxInFlight);
  }
  if (!(c->duration_s > 0 && c->duration_s <= kMaxDurationSeconds)) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", c->duration_s);
    return "--duration " + std::string(seconds) +
           " is out of range: expected more than 0 and at most a week (604800)";
  }
  if (auto e = range("--connections", c->connections, 1, 1024)) return e;
  if (auto e = range("--timeout-ms", c->timeout_ms, 1, 3'600'000)) return e;
  return std::nullopt;
}

int Main(int argc, char** argv) {
  Config config;
  CLI::App app{"ringbench: YCSB-style load generator for a ringstore cluster.\n"
               "Prints one line per second, then throughput and latency percentiles per "
               "operation."};
  app.get_formatter()->column_width(34);
  app.add_option("--cluster", config.cluster, "Seed nodes, HOST:PORT[,HOST:PORT...]")
      ->required()
      ->type_name("HOST:PORT[,...]");
  app.add_option("--workload", config.workload_text,
                 "A-F (E is refused), write, read, or a read fraction such as 0.9")
      ->capture_default_str()
      ->type_name("NAME");
  app.add_option("--keys", config.keys, "Key space: key:0000000000 up to key:N-1")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--value-size", config.value_size, "Bytes per value (random), at most 1048576")
      ->capture_default_str()
      ->type_name("BYTES");
  app.add_option("--clients", config.clients, "Concurrent logical clients")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--pipeline", config.pipeline,
                 "Calls each logical client has outstanding (asynchronous API)")
      ->capture_default_str()
      ->type_name("P");
  std::string pipeline_style = "batch";
  app.add_option("--pipeline-style", pipeline_style,
                 "batch: issue P calls, then the next P once all completed (like redis-benchmark -P); "
                 "window: issue the next call as soon as one completes")
      ->capture_default_str()
      ->check(CLI::IsMember({"batch", "window"}));
  app.add_option("--duration", config.duration_s, "Length of the measured run")
      ->capture_default_str()
      ->type_name("SECONDS");
  app.add_flag("--load", config.load,
               "First write every key once (pipelined) and report the load throughput");
  app.add_flag("--json", config.json,
               "Print one JSON object at the end; per-second lines go to stderr");
  app.add_option("--seed", config.seed, "Seed of the operation, key and value choices")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--connections", config.connections, "Connections per node")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--timeout-ms", config.timeout_ms, "Deadline of each call")
      ->capture_default_str()
      ->type_name("MS");
  app.footer(
      "Workloads (YCSB):\n"
      "  A      50% read, 50% update               zipfian keys\n"
      "  B      95% read,  5% update               zipfian keys\n"
      "  C     100% read                           zipfian keys\n"
      "  D      95% read,  5% insert               reads favour the newest keys\n"
      "  E      scans: not supported (keys are hash-partitioned, no range scans)\n"
      "  F      50% read, 50% read-modify-write    zipfian keys (Get, then CompareAndSet)\n"
      "  write 100% update, uniform keys;  read 100% read, uniform keys\n"
      "  0.9    that fraction of reads, the rest updates, uniform keys\n"
      "Throughput counts successful calls; errors are counted apart, by status code. Reads\n"
      "of absent keys count as successful (use --load to write every key first).\n"
      "Exit status: 0 done, 1 cluster unreachable, 64 usage error, 130 interrupted.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "ringbench: %s\nRun with --help for more information.\n", e.what());
    return kExitUsage;
  }
  config.pipeline_window = pipeline_style == "window";
  if (std::optional<std::string> error = Validate(&config)) {
    std::fprintf(stderr, "ringbench: %s\n", error->c_str());
    return kExitUsage;
  }

  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  std::signal(SIGPIPE, SIG_IGN);  // a node closing a connection is an error, not our death

  // Everything but the final JSON object goes to stderr in --json mode.
  std::FILE* info = config.json ? stderr : stdout;
  std::fprintf(info,
               "ringbench: cluster %s, workload %s (%s), %lld keys, %lld-byte values, "
               "%lld clients x pipeline %lld, %g s%s\n",
               config.cluster.c_str(), config.workload.name.c_str(),
               config.workload.Describe().c_str(), static_cast<long long>(config.keys),
               static_cast<long long>(config.value_size), static_cast<long long>(config.clients),
               static_cast<long long>(config.pipeline), config.duration_s,
               config.load ? ", after loading every key" : "");
  std::fflush(info);

  // The Runner outlives the client: destroying the client completes outstanding calls,
  // whose callbacks refer to the Runner.
  Runner runner(config);
  std::unique_ptr<Client> client;
  ClientOptions options;
  options.seeds = config.seeds;
  options.connections_per_node = static_cast<int>(config.connections);
  options.default_timeout = std::chrono::milliseconds(config.timeout_ms);
  Status s = Client::Open(options, &client);
  if (!s.ok()) {
    std::fprintf(stderr, "ringbench: cannot create a client for %s: %s\n",
                 config.cluster.c_str(), s.ToString().c_str());
    return kExitFailure;
  }
  // Fail fast and clearly, rather than measure a second of errors from a cluster that is
  // not there.
  CallOptions ping;
  ping.timeout = std::chrono::milliseconds(config.timeout_ms);
  s = client->Ping(ping);
  if (!s.ok()) {
    std::fprintf(stderr, "ringbench: cannot reach the cluster at %s: %s\n",
                 config.cluster.c_str(), s.ToString().c_str());
    return kExitFailure;
  }
  runner.Attach(client.get());

  std::optional<PhaseResult> load, run;
  if (config.load) load = runner.Run(Phase::kLoad, info);
  if (g_interrupts.load() == 0) run = runner.Run(Phase::kRun, info);
  client.reset();  // completes abandoned calls; their phases no longer record

  if (config.json) {
    PrintJson(config, load, run);
  } else {
    if (load) PrintPhase(*load, config.workload);
    if (run) PrintPhase(*run, config.workload);
  }
  std::fflush(stdout);
  return g_interrupts.load() > 0 ? kExitInterrupted : kExitOk;
}

}  // namespace
}  // namespace ring::bench

int main(int argc, char** argv) { return ring::bench::Main(argc, argv); }
