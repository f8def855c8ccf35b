// The relay decision: which recipients a client may give, by the relay
// mode, its authentication and the POP-before-SMTP window. Pure logic (no
// I/O), rebuilt on SIGHUP. Classic relay tricks are refused for clients that
// may not relay, even when the domain is ours.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/config.h"
#include "mta/smtp/address.h"
#include "queue/result.h"

namespace tern {

// An IPv4 or IPv6 network: "10.0.0.0/8", "::1/128", "192.0.2.7" (a host).
struct Network {
  bool v6 = false;
  unsigned char addr[16] = {};
  unsigned prefix = 0;
  static Result<Network> parse(std::string_view text);
  bool contains(std::string_view ip) const;  // ip as text (IPv4-mapped IPv6 matches IPv4 nets)
};

// The old system's six relay modes (relay.mode).
enum class RelayMode {
  allow_all,              // anyone may relay (a relay behind a firewall only)
  block_all,              // nobody, not even authenticated clients: local domains only
  domains,                // recipients in relay_domains (the nearby domains)
  addresses,              // clients in trusted_networks (the relay addresses)
  domains_and_addresses,  // either
  pop_before_smtp,        // clients within relay.pop_window_minutes of a POP login
};
std::optional<RelayMode> parse_relay_mode(std::string_view name);
std::string_view relay_mode_name(RelayMode mode);

// Who is asking, as far as relaying goes.
struct RelayClient {
  std::string_view ip;
  bool authenticated = false;  // SMTP AUTH succeeded
  bool pop_window = false;     // inside the POP-before-SMTP window
};

class RelayPolicy {
 public:
  enum class Decision {
    local,         // recipient in a local domain (or <postmaster>)
    relay_domain,  // recipient in a relay domain (modes domains, domains_and_addresses)
    permitted,     // another domain, and this client may relay
    denied,        // 554 5.7.1 relay access denied
  };
  struct Verdict {
    Decision decision = Decision::denied;
    std::string_view reason;  // why denied: for the log line
  };
  // From [relay] and auth.require ("relay" or "all": only authenticated
  // clients may relay, whatever the mode allows otherwise).
  static Result<RelayPolicy> build(const Config& config);
  // Domains match case-insensitively and exactly (no implicit subdomains).
  // Authenticated clients may relay in every mode but block_all. A client
  // that may not relay is denied any recipient that could route elsewhere
  // than the domain checked: a percent hack ("user%evil@ours", unless
  // relay.percent_routing is on and both domains are local), a bang path,
  // a quoted local part with '@', a trailing dot, an address literal. A
  // source route is ignored (RFC 5321 §3.6.1): the final mailbox decides.
  Verdict decide(const RelayClient& client, const smtp::Address& rcpt) const;
  bool may_relay(const RelayClient& client) const;
  bool is_trusted(std::string_view client_ip) const;
  bool is_local_domain(std::string_view domain) const;
  bool is_relay_domain(std::string_view domain) const;
  RelayMode mode() const { return mode_; }

 private:
  RelayMode mode_ = RelayMode::domains_and_addresses;
  bool percent_routing_ = false;
  bool relay_needs_auth_ = false;
  std::vector<std::string> local_, relay_;  // lower-case
  std::vector<Network> trusted_;
};

}  // namespace tern
