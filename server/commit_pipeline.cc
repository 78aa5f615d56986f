#include "server/commit_pipeline.h"

#include <chrono>

namespace ring::server {

CommitPipeline::CommitPipeline(storage::Engine* engine, bool sync, Metrics* metrics)
    : engine_(engine), sync_(sync), metrics_(metrics), state_machine_(engine) {
  thread_ = std::thread([this] { Loop(); });
}

CommitPipeline::~CommitPipeline() { Stop(); }

void CommitPipeline::Submit(KvOp op, Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(Pending{std::move(op), std::move(done)});
      if (queue_.size() == 1) cv_.notify_one();
      return;
    }
  }
  KvResult r;
  r.status = Status::Unavailable("node is shutting down");
  done(std::move(r));
}

void CommitPipeline::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void CommitPipeline::Loop() {
  std::vector<Pending> cycle;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything submitted is committed
      cycle.swap(queue_);
    }
    CommitCycle(&cycle);
    cycle.clear();
  }
}

void CommitPipeline::CommitCycle(std::vector<Pending>* cycle) {
  std::vector<const KvOp*> ops;
  ops.reserve(cycle->size());
  for (const auto& p : *cycle) ops.push_back(&p.op);

  storage::WriteBatch batch;
  std::vector<KvResult> results;
  state_machine_.Apply(ops, &batch, &results);

  Status write_status;
  if (batch.count() > 0) {
    auto start = std::chrono::steady_clock::now();
    write_status = engine_->Write(batch, sync_);
    metrics_->commit_write_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    metrics_->commit_cycles.fetch_add(1, std::memory_order_relaxed);
    metrics_->commit_ops.fetch_add(cycle->size(), std::memory_order_relaxed);
  }
  for (size_t i = 0; i < cycle->size(); ++i) {
    KvResult& r = results[i];
    if (!write_status.ok()) {
      // Nothing of this cycle reached storage: no mutation in it may report success,
      // and a failed CAS comparison is not reported either, since its read was fine but
      // the client should retry the whole operation once the disk recovers.
      r = KvResult{};
      r.status = write_status;
    }
    (*cycle)[i].done(std::move(r));
  }
}

}  // namespace ring::server
