// Where one recipient's mail goes next, as the router decides it. Pure data.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace tern::delivery {

// STARTTLS policy towards a destination (the old system's per-host TLS).
enum class TlsPolicy : uint8_t {
  none,     // never STARTTLS
  may,      // STARTTLS when offered; a failed handshake falls back to plain text
  encrypt,  // STARTTLS required; certificate not checked
  verify,   // STARTTLS required; chain and name checked against the CA store
};

struct Credentials {
  std::string user;
  std::string password;
  bool operator==(const Credentials&) const = default;
};

struct NextHop {
  enum class Kind : uint8_t {
    local,  // a local domain: local delivery (its own issue)
    mx,     // look up the MX records of `host` (a domain)
    relay,  // deliver to `host` itself: a host name (A/AAAA, no MX) or an address literal
  } kind = Kind::mx;
  std::string host;  // lower case
  uint16_t port = 25;
  TlsPolicy tls = TlsPolicy::may;
  std::optional<Credentials> auth;
  // Why this hop: "local", "transport", "firewall", "forward", "mx",
  // "fallback" (the router after direct delivery found no route). Logged.
  std::string via;

  // Recipients whose hops have equal keys share transactions and
  // connections: kind, host, port, TLS policy and credentials. A connection
  // is set up as the first hop of its destination says, so a hop that
  // demands `verify` (or logs in as another user) must never ride on one
  // opened for a laxer policy.
  std::string key() const;
  bool operator==(const NextHop&) const = default;
};

}  // namespace tern::delivery
