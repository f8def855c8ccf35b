#include "tools/tern_bench/pattern.h"

#include <charconv>

namespace tern::bench {

Status check_pattern(std::string_view pattern, size_t domain_count) {
  if (pattern.empty()) return Error{"empty address"};
  size_t i = 0;
  while (i < pattern.size()) {
    char c = pattern[i];
    if (c == '{') {
      size_t close = pattern.find('}', i);
      if (close == std::string_view::npos) return Error{"unclosed '{' in \"" + std::string(pattern) + "\""};
      std::string_view name = pattern.substr(i + 1, close - i - 1);
      if (name == "domain") {
        if (domain_count == 0) return Error{"{domain} in \"" + std::string(pattern) + "\" needs --domains"};
      } else if (name != "n") {
        return Error{"unknown placeholder {" + std::string(name) + "} (want {n} or {domain})"};
      }
      i = close + 1;
      continue;
    }
    if (c == '}') return Error{"stray '}' in \"" + std::string(pattern) + "\""};
    if (c == '<' || c == '>' || c == ' ' || c == '\r' || c == '\n' || static_cast<unsigned char>(c) < 0x20)
      return Error{"invalid character in address \"" + std::string(pattern) + "\""};
    ++i;
  }
  return {};
}

void expand_pattern(std::string_view pattern, uint64_t n, const std::vector<std::string>& domains, std::string* out) {
  size_t i = 0;
  while (i < pattern.size()) {
    size_t brace = pattern.find('{', i);
    if (brace == std::string_view::npos) {
      out->append(pattern.substr(i));
      return;
    }
    out->append(pattern.substr(i, brace - i));
    size_t close = pattern.find('}', brace);
    if (close == std::string_view::npos) {  // check_pattern rejects this; copy verbatim
      out->append(pattern.substr(brace));
      return;
    }
    std::string_view name = pattern.substr(brace + 1, close - brace - 1);
    if (name == "n") {
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
      out->append(buf, end);
    } else if (name == "domain" && !domains.empty()) {
      out->append(domains[n % domains.size()]);
    } else {
      out->append(pattern.substr(brace, close - brace + 1));
    }
    i = close + 1;
  }
}

Result<std::vector<std::string>> parse_domain_list(std::string_view text) {
  std::vector<std::string> out;
  for (;;) {
    size_t comma = text.find(',');
    std::string_view d = text.substr(0, comma);
    if (d.empty()) return Error{"empty domain in list"};
    for (char c : d)
      if (c == '@' || c == '<' || c == '>' || c == ' ' || c == '{' || c == '}' || static_cast<unsigned char>(c) < 0x21)
        return Error{"invalid domain \"" + std::string(d) + "\""};
    out.emplace_back(d);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace tern::bench
