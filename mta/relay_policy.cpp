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

namespace {
constexpr std::pair<RelayMode, std::string_view> kRelayModes[] = {
    {RelayMode::allow_all, "allow_all"},
    {RelayMode::block_all, "block_all"},
    {RelayMode::domains, "domains"},
    {RelayMode::addresses, "addresses"},
    {RelayMode::domains_and_addresses, "domains_and_addresses"},
    {RelayMode::pop_before_smtp, "pop_before_smtp"},
};
}  // namespace

std::optional<RelayMode> parse_relay_mode(std::string_view name) {
  for (const auto& [mode, text] : kRelayModes)
    if (text == name) return mode;
  return std::nullopt;
}

std::string_view relay_mode_name(RelayMode mode) {
  for (const auto& [m, text] : kRelayModes)
    if (m == mode) return text;
  return "unknown";
}

Result<RelayPolicy> RelayPolicy::build(const Config& config) {
  const Config::Relay& relay = config.relay;
  RelayPolicy policy;
  auto mode = parse_relay_mode(relay.mode);
  if (!mode) return Error{"relay.mode: unknown mode " + quoted(relay.mode)};
  policy.mode_ = *mode;
  policy.percent_routing_ = relay.percent_routing;
  policy.relay_needs_auth_ = config.auth.require != "none";
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

bool RelayPolicy::may_relay(const RelayClient& client) const {
  if (mode_ == RelayMode::block_all) return false;
  if (client.authenticated) return true;
  if (relay_needs_auth_) return false;
  switch (mode_) {
    case RelayMode::allow_all: return true;
    case RelayMode::addresses:
    case RelayMode::domains_and_addresses: return is_trusted(client.ip);
    case RelayMode::pop_before_smtp: return client.pop_window;
    case RelayMode::domains:
    case RelayMode::block_all: break;
  }
  return false;
}

RelayPolicy::Verdict RelayPolicy::decide(const RelayClient& client, const smtp::Address& rcpt) const {
  if (rcpt.domain.empty()) {
    // RFC 5321 §4.5.1: <postmaster> without a domain must always be accepted.
    if (ascii_iequals(rcpt.local_part, "postmaster")) return {Decision::local, {}};
    return {Decision::denied, "no domain"};
  }
  const bool relay_ok = may_relay(client);
  std::string_view domain = rcpt.domain;

  if (!relay_ok) {
    // Each of these makes the next hop (or a sloppy local delivery agent)
    // route the message somewhere other than the domain we checked:
    // "user%evil@ours", "evil!user@ours", "\"user@evil\"@ours", "user@evil."
    // resolving past our suffix checks, or a literal naming any host. A
    // source route ("<@ours:user@evil>") was stripped by the parser (RFC
    // 5321 §3.6.1): the final mailbox is what is decided here.
    if (rcpt.domain_literal) return {Decision::denied, "address literal"};
    if (domain.back() == '.') return {Decision::denied, "trailing dot"};
    const std::string_view local = rcpt.local_part;
    if (local.find('!') != std::string_view::npos) return {Decision::denied, "bang path"};
    if (local.find('@') != std::string_view::npos) return {Decision::denied, "quoted local part with @"};
    if (const size_t percent = local.find('%'); percent != std::string_view::npos) {
      // The old system's percent routing: "user%other@ours" is delivered
      // to user@other, and only when other is one of our domains too. One
      // hop only: "user%evil%other@ours" would leave through other.
      std::string_view user = local.substr(0, percent);
      std::string_view target = local.substr(percent + 1);
      if (user.starts_with('"')) user.remove_prefix(1);
      if (target.ends_with('"')) target.remove_suffix(1);
      const bool one_local_hop = percent_routing_ && !user.empty() &&
                                 target.find('%') == std::string_view::npos && is_local_domain(domain) &&
                                 is_local_domain(target);
      if (!one_local_hop) return {Decision::denied, "percent hack"};
    }
  } else if (domain.back() == '.') {
    domain.remove_suffix(1);
  }

  if (is_local_domain(domain)) return {Decision::local, {}};
  const bool nearby = mode_ == RelayMode::domains || mode_ == RelayMode::domains_and_addresses;
  if (nearby && !relay_needs_auth_ && is_relay_domain(domain)) return {Decision::relay_domain, {}};
  if (relay_ok) return {Decision::permitted, {}};
  return {Decision::denied, "relay not permitted"};
}

}  // namespace tern
