// Small text helpers: ASCII case folding for protocol names (domains,
// keywords; locale-free, non-ASCII octets such as UTF-8 U-labels pass
// unchanged), quoting for messages, and a hash that stays the same
// across builds.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace tern {

inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

inline bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// "text" with its double quotes, for error messages. Built by appending:
// g++ 12 -O2 warns falsely (-Wrestrict) on "\"" + std::string.
inline std::string quoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

// The parts joined. Also keeps g++ 12 quiet where "literal" + std::string
// chains warn falsely (-Wrestrict) at -O2 and above.
inline std::string concat(std::initializer_list<std::string_view> parts) {
  size_t size = 0;
  for (auto p : parts) size += p.size();
  std::string out;
  out.reserve(size);
  for (auto p : parts) out += p;
  return out;
}

// FNV-1a, 64 bits: the same on every build and platform (std::hash is
// not), for what must not change between runs or be guessable by a test:
// POP3 UIDs, the delivery loop that owns a destination.
inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace tern
