#include "dns/hosts.h"

#include <algorithm>

#include "dns/message.h"

namespace tern::dns {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

Result<HostsTable> HostsTable::parse(std::string_view text) {
  HostsTable table;
  unsigned line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::vector<std::string_view> w = words(line);
    if (w.empty()) continue;
    auto address = IpAddress::parse(w[0]);
    if (!address)
      return Error{"hosts line " + std::to_string(line_no) + ": \"" + std::string(w[0]) + "\" is not an IP address"};
    if (w.size() < 2) return Error{"hosts line " + std::to_string(line_no) + ": an address without a name"};
    for (size_t i = 1; i < w.size(); ++i) table.add(w[i], *address);
  }
  return table;
}

void HostsTable::add(std::string_view name, const IpAddress& address) {
  auto& list = by_name_[normalize_name(name)];
  if (std::find(list.begin(), list.end(), address) == list.end()) list.push_back(address);
}

const std::vector<IpAddress>* HostsTable::find(std::string_view name) const {
  auto it = by_name_.find(normalize_name(name));
  return it == by_name_.end() ? nullptr : &it->second;
}

}  // namespace tern::dns
