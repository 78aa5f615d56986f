// common/wakeups.h: WakeupBatch, for a thread that hands work to other threads in bursts.
//
// Handing a reply to an idle I/O thread wakes it, and on a busy machine the woken thread
// often takes this very core at once: the burst that was still handing off is switched
// out in the middle. A thread that opens a WakeupBatch around a burst (the replication
// driver, around each cycle) has every wakeup made during it run when the batch closes,
// so each receiver is woken once, after the burst, and the burst runs uninterrupted.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace ring {

class WakeupBatch {
 public:
  WakeupBatch() : outer_(current_) { current_ = this; }
  ~WakeupBatch() {
    current_ = outer_;
    for (auto& wake : wakes_) wake();
  }
  WakeupBatch(const WakeupBatch&) = delete;
  WakeupBatch& operator=(const WakeupBatch&) = delete;

  // Runs the wakeups the innermost open batch on this thread holds so far, now: for a
  // thread about to block (an fsync), during which the woken threads cost it nothing.
  static void Flush() {
    if (current_ == nullptr) return;
    std::vector<std::function<void()>> wakes;
    wakes.swap(current_->wakes_);
    for (auto& wake : wakes) wake();
  }

  // Runs `wake` now if no batch is open on this thread, else when the innermost one
  // closes (or is flushed). Whatever `wake` refers to must outlive that batch.
  static void Wake(std::function<void()> wake) {
    if (current_ != nullptr) {
      current_->wakes_.push_back(std::move(wake));
    } else {
      wake();
    }
  }

 private:
  static inline thread_local WakeupBatch* current_ = nullptr;
  WakeupBatch* const outer_;
  std::vector<std::function<void()>> wakes_;
};

}  // namespace ring
