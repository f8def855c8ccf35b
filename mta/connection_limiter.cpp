#include "mta/server_context.h"

#include <algorithm>

namespace tern {

ConnectionLimiter::Slot::~Slot() {
  if (owner_) owner_->release(ip_);
}

ConnectionLimiter::Slot ConnectionLimiter::acquire(const std::string& ip, unsigned max_total,
                                                   unsigned max_per_ip, Refusal* why) {
  std::lock_guard lock(mu_);
  if (total_.load(std::memory_order_relaxed) >= max_total) {
    *why = Refusal::total;
    return {};
  }
  unsigned& n = per_ip_[ip];
  if (n >= max_per_ip) {
    if (n == 0) per_ip_.erase(ip);
    *why = Refusal::per_ip;
    return {};
  }
  ++n;
  total_.fetch_add(1, std::memory_order_relaxed);
  *why = Refusal::none;
  return Slot(this, ip);
}

void ConnectionLimiter::release(const std::string& ip) {
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  total_.fetch_sub(1, std::memory_order_relaxed);
}

std::string_view listener_kind_name(ListenerKind kind) {
  switch (kind) {
    case ListenerKind::mta: return "mta";
    case ListenerKind::submission: return "submission";
    case ListenerKind::submissions: return "submissions";
    case ListenerKind::pop3: return "pop3";
    case ListenerKind::pop3s: return "pop3s";
  }
  return "mta";
}

bool MailboxLocks::try_lock(const std::string& user, unsigned max) {
  std::lock_guard lock(mu_);
  unsigned& n = open_[user];
  if (n >= max) return false;
  ++n;
  return true;
}

void MailboxLocks::unlock(const std::string& user) {
  std::lock_guard lock(mu_);
  auto it = open_.find(user);
  if (it == open_.end()) return;
  if (--it->second == 0) open_.erase(it);
}

void TemporaryBlocks::block(const std::string& ip, int64_t until_us) {
  std::lock_guard lock(mu_);
  if (until_.size() >= kMaxEntries) {
    // Full: forget the entry that ends first (the least useful to keep).
    auto first = std::min_element(until_.begin(), until_.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; });
    until_.erase(first);
  }
  until_[ip] = until_us;
}

bool TemporaryBlocks::blocked(const std::string& ip, int64_t now_us) {
  std::lock_guard lock(mu_);
  auto it = until_.find(ip);
  if (it == until_.end()) return false;
  if (it->second > now_us) return true;
  until_.erase(it);
  return false;
}

}  // namespace tern
