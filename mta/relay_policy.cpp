#include "mta/relay_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "mta/text.h"

namespace tern {
namespace {

constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};




// An address without prefix, in the family it really belongs to: an
// IPv4-mapped IPv6 address is an IPv4 client that reached a dual-stack
// socket, and must be judged by the IPv4 rules (treating it as IPv6 is how
// IPv4 trust lists get bypassed).
struct IpAddress {
  bool v6 = false;
  unsigned char bytes[16] = {};
};

std::optional<IpAddress> parse_address(std::string_view text) {
  // inet_pton needs a NUL-terminated string; longer input is never an address.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buffer[INET6_ADDRSTRLEN] = {};
  std::memcpy(buffer, text.data(), text.size());
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buffer, a.bytes) != 1) return std::nullopt;
    return a;
  }
  if (inet_pton(AF_INET6, buffer, a.bytes) != 1) return std::nullopt;
  if (std::memcmp(a.bytes, kMappedPrefix, sizeof kMappedPrefix) == 0) {
    std::memmove(a.bytes, a.bytes + 12, 4);
    std::memset(a.bytes + 4, 0, 12);
    return a;
  }
  a.v6 = true;
  return a;
}

bool prefix_matches(const unsigned char* a, const unsigned char* b, unsigned prefix) {
  const unsigned whole = prefix / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

Result<Network> Network::parse(std::string_view text) {
  const auto slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  auto address = parse_address(address_text);
  if (!address) return Error{quoted(text) + " is not an IP address or network"};

  Network net;
  net.v6 = address->v6;
  std::memcpy(net.addr, address->bytes, sizeof net.addr);
  unsigned max_prefix = net.v6 ? 128 : 32;
  net.prefix = max_prefix;

  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Error{quoted(text) + ": prefix length must be a number"};
    }
    unsigned prefix = 0;
    for (char c : digits) prefix = prefix * 10 + unsigned(c - '0');
    const unsigned written_max = address_text.find(':') != std::string_view::npos ? 128 : 32;
    if (prefix > written_max) {
      return Error{quoted(text) + ": prefix length must be 0-" + std::to_string(written_max)};
    }
    // A mapped network (::ffff:10.0.0.0/104) was converted to IPv4 above, so
    // its prefix counts from the IPv4 part. One shorter than /96 reaches
    // beyond the mapped range and stays an IPv6 network.
    const bool was_mapped = !net.v6 && written_max == 128;
    if (was_mapped && prefix >= 96) {
      prefix -= 96;
    } else if (was_mapped) {
      std::memmove(net.addr + 12, net.addr, 4);
      std::memcpy(net.addr, kMappedPrefix, sizeof kMappedPrefix);
      net.v6 = true;
      max_prefix = 128;
    }
    net.prefix = prefix;
  }

  // Host bits are cleared so equal networks compare equal; contains() masks anyway.
  for (unsigned bit = net.prefix; bit < max_prefix; ++bit) {
    net.addr[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  }
  return net;
}

bool Network::contains(std::string_view ip) const {
  const auto address = parse_address(ip);
  if (!address || address->v6 != v6) return false;
  return prefix_matches(address->bytes, addr, prefix);
}

Result<RelayPolicy> RelayPolicy::build(const Config::Relay& relay) {
  RelayPolicy policy;
  for (const auto& domain : relay.local_domains) {
    if (domain.empty()) return Error{"relay.local_domains: empty domain"};
    policy.local_.push_back(ascii_lower(domain));
  }
  for (const auto& domain : relay.relay_domains) {
    if (domain.empty()) return Error{"relay.relay_domains: empty domain"};
    policy.relay_.push_back(ascii_lower(domain));
  }
  for (const auto& text : relay.trusted_networks) {
    auto net = Network::parse(text);
    if (!net) return Error{"relay.trusted_networks: " + net.error()};
    policy.trusted_.push_back(*net);
  }
  return policy;
}

bool RelayPolicy::is_trusted(std::string_view client_ip) const {
  return std::any_of(trusted_.begin(), trusted_.end(), [&](const Network& net) { return net.contains(client_ip); });
}

bool RelayPolicy::is_local_domain(std::string_view domain) const {
  return std::any_of(local_.begin(), local_.end(), [&](const std::string& d) { return ascii_iequals(d, domain); });
}

bool RelayPolicy::is_relay_domain(std::string_view domain) const {
  return std::any_of(relay_.begin(), relay_.end(), [&](const std::string& d) { return ascii_iequals(d, domain); });
}

RelayPolicy::Decision RelayPolicy::decide(std::string_view client_ip, const smtp::Address& rcpt) const {
  if (rcpt.domain.empty()) {
    // RFC 5321 §4.5.1: <postmaster> without a domain must always be accepted.
    return ascii_iequals(rcpt.local_part, "postmaster") ? Decision::local : Decision::denied;
  }
  const bool trusted = is_trusted(client_ip);
  std::string_view domain = rcpt.domain;

  if (!trusted) {
    // Each of these makes the next hop (or a sloppy local delivery agent)
    // route the message somewhere other than the domain we checked:
    // "user%evil@ours", "evil!user@ours", "\"user@evil\"@ours", "user@evil."
    // resolving past our suffix checks, or a literal naming any host.
    const bool routing_local_part = rcpt.local_part.find_first_of("%!@") != std::string::npos;
    if (rcpt.domain_literal || domain.back() == '.' || routing_local_part) return Decision::denied;
  } else if (domain.back() == '.') {
    domain.remove_suffix(1);
  }

  if (is_local_domain(domain)) return Decision::local;
  if (is_relay_domain(domain)) return Decision::relay_domain;
  return trusted ? Decision::trusted : Decision::denied;
}

}  // namespace tern
