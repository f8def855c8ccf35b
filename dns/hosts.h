// The local host table: names whose addresses are fixed here, checked
// before DNS (the old system's host table). Pure: no I/O.
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dns/address.h"
#include "queue/result.h"

namespace tern::dns {

class HostsTable {
 public:
  // /etc/hosts syntax: "address name [name...]" per line, '#' starts a
  // comment, blank lines are ignored; a name on several lines collects the
  // addresses of all of them, in order. Fails naming the line of the first
  // bad address or of an address without a name.
  static Result<HostsTable> parse(std::string_view text);

  void add(std::string_view name, const IpAddress& address);
  // The addresses for `name` (any case, trailing dot or not), or nullptr.
  const std::vector<IpAddress>* find(std::string_view name) const;
  bool empty() const { return by_name_.empty(); }

 private:
  std::unordered_map<std::string, std::vector<IpAddress>> by_name_;  // normalized names
};

}  // namespace tern::dns
