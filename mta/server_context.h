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
#include "mta/io/offload.h"
#include "mta/io/tls.h"
#include "mta/local/local_resolver.h"
#include "mta/policy/pop_window.h"
#include "mta/policy/rate_limiter.h"
#include "mta/policy/user_directory.h"
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
  std::shared_ptr<const policy::UserDirectory> users{};  // auth.users_file; null: no users, no AUTH
  std::vector<Network> deny{};                           // restrictions.deny
  // Local recipients (users, aliases, catch-alls); also handed to the
  // delivery engine. Checked at RCPT only when there is a recipient table
  // (some user, alias or catch-all): `check_local_recipients`.
  std::shared_ptr<const local::LocalResolver> local_recipients{};
  bool check_local_recipients = false;
};

// What a listener serves (smtp.listen, smtp.submission, smtp.submissions).
enum class ListenerKind : uint8_t {
  mta,          // port 25: relay rules, connection restrictions, AUTH as auth.require says
  submission,   // port 587 (RFC 6409): AUTH required, offered after STARTTLS
  submissions,  // port 465 (RFC 8314): TLS from the first byte, AUTH required
  pop3,         // port 110 (RFC 1939): STLS offered
  pop3s,        // port 995 (RFC 8314): TLS from the first byte
};
std::string_view listener_kind_name(ListenerKind kind);

// Open POP3 sessions per mailbox (RFC 1939 §8: one session per maildrop at
// a time). Thread-safe.
class MailboxLocks {
 public:
  // True and counted when `user` has fewer than `max` sessions open.
  bool try_lock(const std::string& user, unsigned max);
  void unlock(const std::string& user);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, unsigned> open_;
};

// Client IPs refused for a while (too many failed AUTH attempts). Thread-safe.
class TemporaryBlocks {
 public:
  void block(const std::string& ip, int64_t until_us);
  bool blocked(const std::string& ip, int64_t now_us);
  static constexpr size_t kMaxEntries = 100'000;

 private:
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> until_;
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
  policy::RateLimiter rate;  // per client IP; also failed logins per user ("user:NAME")
  TemporaryBlocks auth_blocks;
  ConnectionLimiter pop3_limiter;  // POP3 connections (pop3.max_connections_per_ip)
  MailboxLocks mailbox_locks;
  // The POP-before-SMTP window; null when the store could not be opened.
  policy::PopWindow* pop_window = nullptr;
  // Password hashing (crypt(3) is slow on purpose): off the loop threads.
  io::OffloadThread* auth_offload = nullptr;
  // Mailbox file I/O of POP3 sessions and POP-window writes: a thread of
  // their own, so that a burst of logins (hashes) does not stall reading mail.
  io::OffloadThread* mail_offload = nullptr;
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
