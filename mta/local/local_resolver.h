// Who a local recipient is: a user's mailbox, aliases, catch-all, plus addressing.
//
// resolve("local@domain") for a domain in relay.local_domains (compared
// case-insensitively), trying in this order:
//
//   For the full address, then — when the recipient delimiter is non-empty
//   and occurs in the local part — for the address with the local part cut
//   at the first delimiter ("bob+lists@d" → "bob@d"):
//     (a) an alias for the address: each target is expanded in turn — a user
//         name is that user's mailbox, an address in a local domain is
//         resolved again by all of these rules, any other address is a
//         forward (Kind::address);
//     (b) a user who owns the address (one of the user's addresses,
//         case-insensitive) → that user's mailbox;
//     (c) a user whose name equals the local part (case-insensitive) →
//         that user's mailbox.
//   Then:
//     (d) the domain's catch-all target (local.catch_all; a user name or an
//         address), expanded as an alias target;
//     (e) "postmaster" (any case) → mailbox "postmaster". RFC 5321 §4.5.1
//         requires every domain to accept its postmaster; point an alias
//         (alias postmaster@d  NAME) at a person, or create the user
//         "postmaster", so the mail is read.
//   Otherwise: known = false, error "no such user".
//
// The bare RFC 5321 recipient "postmaster" (no domain) is resolved as
// postmaster@<first local domain>.
//
// Alias expansion nests at most 10 deep. An address that comes back into its
// own expansion (a cycle), or an expansion deeper than that, resolves to
// known = false with error "alias loop": the SMTP session refuses such a
// recipient at RCPT with 550 5.4.6 (RFC 3463: routing loop detected). An
// alias target in a local domain that resolves to nobody fails the whole
// recipient (known = false, the error names the target) rather than losing
// that copy silently. Targets are de-duplicated, first occurrence kept
// (mailboxes by name, addresses case-insensitively), so an alias that fans
// out to a user twice delivers once.
//
// Pure: no I/O. Thread safety: a LocalResolver is immutable after
// construction; const members may be called from any thread. A reload of the
// user directory builds a new resolver.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mta/policy/user_directory.h"

namespace tern::local {

struct LocalTarget {
  enum class Kind { mailbox, address } kind;
  std::string value;  // mailbox: a user name; address: where the mail is forwarded to
  bool operator==(const LocalTarget&) const = default;
};

// Resolution::error of an alias cycle or an expansion too deep (5.4.6).
inline constexpr std::string_view kAliasLoop = "alias loop";

struct Resolution {
  bool known = false;
  std::vector<LocalTarget> targets;  // when known: at least one
  std::string error;                 // when not known: "no such user", "alias loop", ...
};

class LocalResolver {
 public:
  // `users` may be null (no users, no aliases). Domains, catch-all domains
  // and the delimiter are taken as configured (domains compared
  // case-insensitively).
  LocalResolver(std::shared_ptr<const policy::UserDirectory> users, std::vector<std::string> local_domains,
                std::string delimiter, std::vector<std::pair<std::string, std::string>> catch_all);

  Resolution resolve(std::string_view address) const;
  bool is_local_domain(std::string_view domain) const;

  static constexpr int kMaxDepth = 10;

 private:
  struct Walk;
  bool resolve_into(std::string_view address, int depth, Walk& walk) const;
  bool expand_target(std::string_view target, int depth, Walk& walk) const;
  bool try_candidate(std::string_view address, std::string_view local, std::string_view domain, int depth,
                     Walk& walk) const;

  std::shared_ptr<const policy::UserDirectory> users_;
  std::vector<std::string> local_domains_;  // lower-cased
  std::string delimiter_;
  std::vector<std::pair<std::string, std::string>> catch_all_;  // domain lower-cased
};

}  // namespace tern::local
