#include "mta/server_context.h"

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

}  // namespace tern
