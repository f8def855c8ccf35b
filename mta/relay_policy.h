// The relay decision of the core: recipients in local or relay domains are
// accepted from anyone; other domains only from trusted networks. Pure logic
// (no I/O), rebuilt on SIGHUP. Classic relay tricks are refused for untrusted
// clients even when the domain is ours.
#pragma once
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

class RelayPolicy {
 public:
  enum class Decision {
    local,         // recipient in a local domain (or <postmaster>)
    relay_domain,  // recipient in a relay domain
    trusted,       // other domain, client in a trusted network
    denied,        // 554 5.7.1 relay access denied
  };
  static Result<RelayPolicy> build(const Config::Relay& relay);
  // Domain matching is case-insensitive, exact (no implicit subdomains), and
  // ignores one trailing dot only for trusted clients: an untrusted recipient
  // whose domain ends in '.', whose local part carries '%', '!' or '@'
  // (percent hack, bang path, quoted '@'), or whose domain is an address
  // literal, is denied unless the client is trusted.
  Decision decide(std::string_view client_ip, const smtp::Address& rcpt) const;
  bool is_trusted(std::string_view client_ip) const;
  bool is_local_domain(std::string_view domain) const;
  bool is_relay_domain(std::string_view domain) const;

 private:
  std::vector<std::string> local_, relay_;  // lower-case
  std::vector<Network> trusted_;
};

}  // namespace tern
