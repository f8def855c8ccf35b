// What every worker shares: the settings snapshot (replaced on SIGHUP), the
// spool, the storage guard, connection limits and the stop flag.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "mta/config.h"
#include "mta/io/tls.h"
#include "mta/relay_policy.h"
#include "mta/storage_guard.h"
#include "queue/spool.h"

namespace tern {

// Everything SIGHUP can change, immutable once built.
struct Settings {
  Config config;
  RelayPolicy relay;
  std::shared_ptr<const io::TlsContext> tls;  // null: no STARTTLS
  std::string hostname;
};

// Counts connections in total and per client IP. A lock is taken only at
// connect and disconnect, never per command.
class ConnectionLimiter {
 public:
  class Slot {
   public:
    Slot() = default;
    Slot(ConnectionLimiter* owner, std::string ip) : owner_(owner), ip_(std::move(ip)) {}
    Slot(Slot&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), ip_(std::move(o.ip_)) {}
    Slot& operator=(Slot&& o) noexcept {
      std::swap(owner_, o.owner_);
      std::swap(ip_, o.ip_);
      return *this;
    }
    ~Slot();
    explicit operator bool() const { return owner_ != nullptr; }

   private:
    ConnectionLimiter* owner_ = nullptr;
    std::string ip_;
  };
  enum class Refusal { none, total, per_ip };
  // An empty slot and the reason when a limit is reached.
  Slot acquire(const std::string& ip, unsigned max_total, unsigned max_per_ip, Refusal* why);
  unsigned total() const { return total_.load(std::memory_order_relaxed); }

 private:
  void release(const std::string& ip);
  std::mutex mu_;
  std::unordered_map<std::string, unsigned> per_ip_;
  std::atomic<unsigned> total_{0};
};

struct ServerContext {
  ServerContext(queue::Spool& s, StorageGuard& g) : spool(s), storage(g) {}
  queue::Spool& spool;
  StorageGuard& storage;
  ConnectionLimiter limiter;
  std::atomic<bool> stopping{false};
  // Called (thread-safe) after each message is committed: wakes the
  // delivery engine so new mail leaves at once, not at the next scan. Set
  // before the workers start; empty when ternd does not deliver.
  std::function<void()> queued;
  // ETRN: makes the mail for a target due now (delivery::DeliveryEngine::
  // flush); `done(n)` is called on another thread. Empty when ternd does
  // not deliver.
  std::function<void(std::string target, std::function<void(size_t)> done)> flush;
};

}  // namespace tern
