// server/commit_pipeline.h: group commit of mutations on one node.
//
// Connections Submit() mutations from the I/O thread. A dedicated commit thread takes
// everything queued since its last cycle, applies it through the KvStateMachine into ONE
// WriteBatch, writes it with ONE fsync (under the sync policy), and only then invokes each
// mutation's callback. Mutations that arrive while a write is in progress wait for the next
// cycle, so under load the batch grows and fsync cost is shared across many clients.
//
// Acknowledgement rule: a callback with an OK result runs only after the write that holds
// the mutation returned OK (and, under sync, was fsynced). A failed write fails every
// mutation of its cycle with the write's Status; none of them is applied.
//
// This is the seam where replication slots in: the replicated driver accepts the same
// KvOp, orders it through the shard's log, and applies committed entries with the same
// KvStateMachine.
//
// Thread-safety: Submit() may be called from any thread. Callbacks run on the commit
// thread and must only hand the result off (e.g. post to an I/O executor).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "server/kv_state_machine.h"
#include "server/metrics.h"
#include "storage/engine.h"

namespace ring::server {

class CommitPipeline {
 public:
  using Done = std::function<void(KvResult)>;

  CommitPipeline(storage::Engine* engine, bool sync, Metrics* metrics);
  ~CommitPipeline();  // Stop()
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  void Submit(KvOp op, Done done);

  // Commits everything already submitted, then joins the commit thread. Later Submits
  // fail with Unavailable. Idempotent.
  void Stop();

 private:
  struct Pending {
    KvOp op;
    Done done;
  };
  void Loop();
  void CommitCycle(std::vector<Pending>* cycle);

  // Constant after construction.
  storage::Engine* const engine_;
  const bool sync_;
  Metrics* const metrics_;
  KvStateMachine state_machine_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_
  std::thread thread_;
};

}  // namespace ring::server
