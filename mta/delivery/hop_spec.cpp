#include "mta/delivery/hop_spec.h"

#include <arpa/inet.h>

#include <charconv>

#include "mta/text.h"

namespace tern::delivery {

namespace {

bool valid_host_name(std::string_view name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || (label == 0 && c == '-') || ++label > 63) return false;
  }
  return name.back() != '-';
}

Result<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535)
    return Error{"port must be 1-65535"};
  return static_cast<uint16_t>(value);
}

}  // namespace

Result<HopSpec> parse_hop_spec(std::string_view text) {
  HopSpec spec;
  if (text.starts_with("mx:")) {
    text.remove_prefix(3);
    if (!valid_host_name(text)) return Error{"\"mx:\" must be followed by a domain"};
    spec.mx = true;
    spec.host = ascii_lower(text);
    return spec;
  }
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return Error{"missing ']'"};
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Error{"expected \":port\" after ']'"};
      port = rest.substr(1);
    }
    if (host.starts_with("IPv6:")) host.remove_prefix(5);
    unsigned char buf[16];
    const std::string address(host);
    const bool v4 = inet_pton(AF_INET, address.c_str(), buf) == 1;
    if (!v4 && inet_pton(AF_INET6, address.c_str(), buf) != 1) return Error{quoted(address) + " is not an IP address"};
    spec.host.reserve(address.size() + 7);
    spec.host.push_back('[');
    if (!v4) spec.host.append("IPv6:");
    spec.host.append(address);
    spec.host.push_back(']');
  } else {
    const size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
    if (!valid_host_name(host)) return Error{quoted(host) + " is not a host name (IPv6 goes in brackets)"};
    spec.host = ascii_lower(host);
  }
  if (!port.empty() || (text.size() > 0 && text.back() == ':')) {
    auto p = parse_port(port);
    if (!p) return Error{p.error()};
    spec.port = p.value();
  }
  return spec;
}

}  // namespace tern::delivery
