#include "mta/delivery/router.h"

#include <algorithm>

#include "mta/text.h"

namespace tern::delivery {

namespace {

std::string normalize_domain(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return ascii_lower(domain);
}

bool is_wildcard(const TransportEntry& e) { return e.pattern.starts_with("*."); }

// Exact entries first; among wildcards the longest (most specific) first.
bool before(const TransportEntry& a, const TransportEntry& b) {
  if (is_wildcard(a) != is_wildcard(b)) return !is_wildcard(a);
  return a.pattern.size() > b.pattern.size();
}

bool matches(const TransportEntry& e, std::string_view domain) {
  if (!is_wildcard(e)) return e.pattern == domain;
  const std::string_view parent = std::string_view(e.pattern).substr(1);  // ".example.test"
  return domain.size() > parent.size() && domain.ends_with(parent);
}

}  // namespace

Router::Router(RoutingTable table) : table_(std::move(table)) {
  for (auto& d : table_.local_domains) d = normalize_domain(d);
  for (auto& e : table_.transport) e.pattern = normalize_domain(e.pattern);
  std::stable_sort(table_.transport.begin(), table_.transport.end(), before);
}

NextHop Router::route(std::string_view recipient, bool router_usable) const {
  const size_t at = recipient.rfind('@');
  const std::string domain = normalize_domain(at == std::string_view::npos ? std::string_view() : recipient.substr(at + 1));
  if (std::find(table_.local_domains.begin(), table_.local_domains.end(), domain) != table_.local_domains.end()) {
    NextHop hop;
    hop.kind = NextHop::Kind::local;
    hop.host = domain;
    hop.via = "local";
    return hop;
  }
  for (const auto& entry : table_.transport) {
    if (!matches(entry, domain)) continue;
    NextHop hop = entry.hop;
    hop.via = "transport";
    return hop;
  }
  if (table_.firewall && table_.router && router_usable) {
    NextHop hop = *table_.router;
    hop.via = "firewall";
    return hop;
  }
  if (table_.forward) {
    NextHop hop = *table_.forward;
    hop.via = "forward";
    return hop;
  }
  NextHop hop;
  // An address literal is the host itself (RFC 5321 §4.1.3): no MX lookup.
  hop.kind = domain.starts_with('[') ? NextHop::Kind::relay : NextHop::Kind::mx;
  hop.host = domain;
  hop.via = "mx";
  return hop;
}

std::optional<NextHop> Router::fallback(bool router_usable) const {
  if (!table_.router || !router_usable || table_.firewall) return std::nullopt;
  NextHop hop = *table_.router;
  hop.via = "fallback";
  return hop;
}

}  // namespace tern::delivery
