#include "mta/storage_guard.h"

#include <sys/statvfs.h>

#include "mta/log.h"

namespace tern {

StorageGuard::StorageGuard(std::string directory, uint64_t min_free_bytes, int64_t interval_ms)
    : directory_(std::move(directory)), min_free_(min_free_bytes), interval_ms_(interval_ms) {
  check();  // decided before the first connection is accepted
  thread_ = std::thread([this] { run(); });
}

StorageGuard::~StorageGuard() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void StorageGuard::configure(uint64_t min_free_bytes, int64_t interval_ms) {
  min_free_ = min_free_bytes;
  interval_ms_ = interval_ms;
  {
    std::lock_guard lock(mu_);
    recheck_ = true;
  }
  cv_.notify_all();
}

void StorageGuard::check() {
  struct statvfs st {};
  if (statvfs(directory_.c_str(), &st) != 0) return;  // keep the last verdict
  uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
  uint64_t min_free = min_free_.load();
  bool now_low = free_bytes < min_free;
  if (now_low != low_.exchange(now_low))
    log::event(now_low ? "storage_low" : "storage_ok",
               {{"directory", directory_}, {"free", free_bytes}, {"min_free", min_free}});
}

void StorageGuard::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_.load()), [this] { return stop_ || recheck_; });
    if (stop_) break;
    recheck_ = false;
    lock.unlock();
    check();
    lock.lock();
  }
}

}  // namespace tern
