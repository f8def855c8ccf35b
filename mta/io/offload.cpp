#include "mta/io/offload.h"

#include <string>

#include "queue/thread_name.h"

namespace tern::io {

OffloadThread::OffloadThread(std::string_view name)
    : thread_([this, name = std::string(name)] {
        name_this_thread(name);
        run();
      }) {}

OffloadThread::~OffloadThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void OffloadThread::submit(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void OffloadThread::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
      if (jobs_.empty()) return;  // stopping, and everything queued has run
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace tern::io
