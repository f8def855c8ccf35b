#include "mta/storage_guard.h"

#include "mta/log.h"
#include "queue/thread_name.h"

namespace tern {

StorageGuard::StorageGuard(queue::Spool& spool, uint64_t min_free_bytes, uint64_t max_message_size,
                           int64_t interval_ms)
    : spool_(spool) {
  configure(min_free_bytes, max_message_size, interval_ms);
  check();  // decided before the first connection is accepted
  thread_ = std::thread([this] {
    name_this_thread("tern-storage");
    run();
  });
}

StorageGuard::~StorageGuard() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t StorageGuard::floor(uint64_t max_message_size) {
  return queue::Spool::write_reserve_bytes() + max_message_size;
}

bool StorageGuard::low() const {
  return !spool_.writable() || spool_.free_bytes() < threshold();
}

bool StorageGuard::admits(uint64_t size) const {
  uint64_t free_bytes = spool_.free_bytes();
  return spool_.writable() && free_bytes >= size && free_bytes - size >= threshold();
}

void StorageGuard::configure(uint64_t min_free_bytes, uint64_t max_message_size, int64_t interval_ms) {
  uint64_t lowest = floor(max_message_size);
  if (min_free_bytes < lowest) {
    log::event("min_free_space_raised", {{"configured", min_free_bytes},
                                         {"effective", lowest},
                                         {"rocksdb_reserve", queue::Spool::write_reserve_bytes()},
                                         {"max_message_size", max_message_size}});
  }
  threshold_ = std::max(min_free_bytes, lowest);
  interval_ms_ = interval_ms;
  {
    std::lock_guard lock(mu_);
    recheck_ = true;
  }
  cv_.notify_all();
}

void StorageGuard::check() {
  spool_.measure_free_space();
  bool now_low = low();
  if (now_low != low_.exchange(now_low))
    log::event(now_low ? "storage_low" : "storage_ok", {{"directory", spool_.directory()},
                                                        {"free", spool_.free_bytes()},
                                                        {"min_free", threshold()},
                                                        {"spool", spool_.writable() ? "writable" : "failed"}});
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
