// Watches free space on the spool's filesystem from its own thread (statvfs
// can block on a sick disk; a loop thread must not). Below the threshold new
// transactions are refused with 452 4.3.1 until space returns.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace tern {

class StorageGuard {
 public:
  StorageGuard(std::string directory, uint64_t min_free_bytes, int64_t interval_ms);
  ~StorageGuard();
  StorageGuard(const StorageGuard&) = delete;
  StorageGuard& operator=(const StorageGuard&) = delete;

  bool low() const { return low_.load(std::memory_order_relaxed); }
  // SIGHUP: new threshold and interval; checked at once.
  void configure(uint64_t min_free_bytes, int64_t interval_ms);

 private:
  void check();
  void run();
  std::string directory_;
  std::atomic<uint64_t> min_free_;
  std::atomic<int64_t> interval_ms_;
  std::atomic<bool> low_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool recheck_ = false;
  std::thread thread_;
};

}  // namespace tern
