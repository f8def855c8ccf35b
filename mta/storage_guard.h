// Whether the spool can take new mail: free space on its filesystem against
// the threshold, and whether RocksDB is writing at all. The threshold is
// never below floor(): what RocksDB writes on its own in one step plus one
// message of the largest size accepted, so that a transaction admitted at
// MAIL can finish and RocksDB never meets a full disk. The spool's writer
// measures free space while mail arrives; this guard's thread measures it
// when none does (statvfs can block on a sick disk; a loop thread must not)
// and logs each change once (storage_low / storage_ok).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "queue/spool.h"

namespace tern {

class StorageGuard {
 public:
  StorageGuard(queue::Spool& spool, uint64_t min_free_bytes, uint64_t max_message_size, int64_t interval_ms);
  ~StorageGuard();
  StorageGuard(const StorageGuard&) = delete;
  StorageGuard& operator=(const StorageGuard&) = delete;

  // The lowest threshold for a given largest message size.
  static uint64_t floor(uint64_t max_message_size);

  // New transactions are refused (452 4.3.1).
  bool low() const;
  // A message of `size` octets (the MAIL SIZE parameter) fits above the threshold.
  bool admits(uint64_t size) const;
  uint64_t threshold() const { return threshold_.load(std::memory_order_relaxed); }
  // Start and SIGHUP: new threshold (raised to the floor, logged when it
  // is) and interval; checked at once.
  void configure(uint64_t min_free_bytes, uint64_t max_message_size, int64_t interval_ms);

 private:
  void check();
  void run();
  queue::Spool& spool_;
  std::atomic<uint64_t> threshold_{0};
  std::atomic<int64_t> interval_ms_{0};
  std::atomic<bool> low_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool recheck_ = false;
  std::thread thread_;
};

}  // namespace tern
