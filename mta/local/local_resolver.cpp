#include "mta/local/local_resolver.h"

#include <algorithm>

#include "mta/text.h"

namespace tern::local {

namespace {}  // namespace

// The state of one resolve(): the addresses being expanded (to see cycles),
// the targets found so far, and the first error.
struct LocalResolver::Walk {
  std::vector<std::string> path;  // lower-cased addresses, outermost first
  std::vector<LocalTarget> targets;
  std::string error;

  bool on_path(std::string_view key) const { return std::find(path.begin(), path.end(), key) != path.end(); }

  void add(LocalTarget::Kind kind, std::string value) {
    for (const auto& t : targets) {
      if (t.kind != kind) continue;
      if (kind == LocalTarget::Kind::mailbox ? t.value == value : ascii_iequals(t.value, value)) return;
    }
    targets.push_back({kind, std::move(value)});
  }

  bool fail(std::string_view message) {
    if (error.empty()) error = std::string(message);
    return false;
  }
};

LocalResolver::LocalResolver(std::shared_ptr<const policy::UserDirectory> users, std::vector<std::string> local_domains,
                             std::string delimiter, std::vector<std::pair<std::string, std::string>> catch_all)
    : users_(std::move(users)),
      local_domains_(std::move(local_domains)),
      delimiter_(std::move(delimiter)),
      catch_all_(std::move(catch_all)) {
  for (auto& d : local_domains_) d = ascii_lower(d);
  for (auto& [domain, target] : catch_all_) domain = ascii_lower(domain);
}

bool LocalResolver::is_local_domain(std::string_view domain) const {
  for (const auto& d : local_domains_)
    if (ascii_iequals(d, domain)) return true;
  return false;
}

Resolution LocalResolver::resolve(std::string_view address) const {
  std::string full(address);
  if (address.find('@') == std::string_view::npos) {
    // RFC 5321 §4.1.1.3: the bare "Postmaster" must be accepted.
    if (!ascii_iequals(address, "postmaster")) return {false, {}, "not a local address"};
    if (local_domains_.empty()) return {true, {{LocalTarget::Kind::mailbox, "postmaster"}}, {}};
    full = concat({address, "@", local_domains_.front()});
  }
  const size_t at = full.rfind('@');
  if (at == 0) return {false, {}, "not a local address"};
  if (!is_local_domain(std::string_view(full).substr(at + 1))) return {false, {}, "not a local domain"};
  // Percent routing (relay.percent_routing; the relay decision allows it
  // only between local domains): "user%other@ours" is user@other.
  if (const std::string_view local = std::string_view(full).substr(0, at); local.find('%') != std::string_view::npos) {
    const size_t percent = local.find('%');
    const std::string_view user = local.substr(0, percent), target = local.substr(percent + 1);
    if (!user.empty() && target.find('%') == std::string_view::npos && is_local_domain(target))
      full = concat({user, "@", target});
  }
  Walk walk;
  if (!resolve_into(full, 0, walk) || walk.targets.empty()) {
    return {false, {}, walk.error.empty() ? std::string("no such user") : std::move(walk.error)};
  }
  return {true, std::move(walk.targets), {}};
}

// Resolves `address` (in a local domain) by all rules, adding its targets.
bool LocalResolver::resolve_into(std::string_view address, int depth, Walk& walk) const {
  if (depth > kMaxDepth) return walk.fail(kAliasLoop);
  std::string key = ascii_lower(address);
  if (walk.on_path(key)) return walk.fail(kAliasLoop);
  walk.path.push_back(key);

  const size_t at = address.rfind('@');
  const std::string_view local = address.substr(0, at);
  const std::string domain = ascii_lower(address.substr(at + 1));

  enum class Match { none, ok, failed };
  auto attempt = [&](std::string_view addr, std::string_view lp) -> Match {
    // (a) an alias.
    if (users_) {
      auto targets = users_->alias_targets(addr);
      if (!targets.empty()) {
        std::string alias_key = ascii_lower(addr);
        const bool pushed = !walk.on_path(alias_key);
        if (pushed) walk.path.push_back(std::move(alias_key));
        for (const auto& t : targets)
          if (!expand_target(t, depth + 1, walk)) return Match::failed;
        if (pushed) walk.path.pop_back();
        return Match::ok;
      }
      // (b) a user who owns the address.
      bool owned = false;
      for (const policy::User* u : users_->users()) {
        for (const auto& a : u->addresses) {
          if (ascii_iequals(a, addr)) {
            walk.add(LocalTarget::Kind::mailbox, u->name);
            owned = true;
            break;
          }
        }
      }
      if (owned) return Match::ok;
      // (c) a user named like the local part.
      if (const policy::User* u = users_->find(ascii_lower(lp))) {
        walk.add(LocalTarget::Kind::mailbox, u->name);
        return Match::ok;
      }
    }
    return Match::none;
  };

  Match m = attempt(address, local);
  std::string_view base;  // the local part before the delimiter, if any
  if (m == Match::none && !delimiter_.empty()) {
    const size_t cut = local.find(delimiter_);
    if (cut != std::string_view::npos && cut > 0) {
      base = local.substr(0, cut);
      m = attempt(concat({base, "@", domain}), base);
    }
  }
  if (m == Match::failed) return false;
  if (m == Match::none) {
    // (d) the domain's catch-all.
    const auto it =
        std::find_if(catch_all_.begin(), catch_all_.end(), [&](const auto& entry) { return entry.first == domain; });
    if (it != catch_all_.end()) {
      if (!expand_target(it->second, depth + 1, walk)) return false;
    } else if (ascii_iequals(local, "postmaster") || ascii_iequals(base, "postmaster")) {
      // (e) RFC 5321 §4.5.1.
      walk.add(LocalTarget::Kind::mailbox, "postmaster");
    } else {
      return walk.fail(depth == 0 ? std::string("no such user")
                                  : concat({"no such user (alias target ", address, ")"}));
    }
  }
  walk.path.pop_back();
  return true;
}

// One alias or catch-all target: a user name, a local address, or a forward.
bool LocalResolver::expand_target(std::string_view target, int depth, Walk& walk) const {
  const size_t at = target.rfind('@');
  if (at == std::string_view::npos) {
    walk.add(LocalTarget::Kind::mailbox, ascii_lower(target));
    return true;
  }
  if (at > 0 && is_local_domain(target.substr(at + 1))) return resolve_into(target, depth, walk);
  walk.add(LocalTarget::Kind::address, std::string(target));
  return true;
}

}  // namespace tern::local
