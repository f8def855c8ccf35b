#include "mta/delivery/flush_target.h"

#include "mta/text.h"

namespace tern::delivery {

namespace {

// `domain` is `wanted`, or with subdomains allowed ends in ".wanted".
bool domain_matches(std::string_view domain, std::string_view wanted, bool subdomains) {
  if (ascii_iequals(domain, wanted)) return true;
  if (!subdomains || domain.size() <= wanted.size() + 1) return false;
  return domain[domain.size() - wanted.size() - 1] == '.' && ascii_iequals(domain.substr(domain.size() - wanted.size()), wanted);
}

}  // namespace

bool flush_matches(const queue::Envelope& envelope, std::string_view target) {
  using queue::QueueName;
  if (envelope.queue != QueueName::incoming && envelope.queue != QueueName::retry1 &&
      envelope.queue != QueueName::retry2)
    return false;
  if (target.empty()) return false;
  if (target == envelope.id) return true;
  const bool subdomains = target.front() == '@';
  if (subdomains) target.remove_prefix(1);
  if (target.empty()) return false;
  for (const auto& r : envelope.recipients) {
    if (r.state != queue::RecipientState::pending) continue;
    const size_t at = r.address.rfind('@');
    if (at == std::string::npos) continue;
    if (domain_matches(std::string_view(r.address).substr(at + 1), target, subdomains)) return true;
  }
  return false;
}

}  // namespace tern::delivery
