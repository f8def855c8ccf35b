#include "mta/smtp/sasl.h"

#include <cstdint>

#include "mta/smtp/address.h"

namespace tern::smtp {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The 6-bit value of a base64 symbol, or -1.
int symbol_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

constexpr size_t kMaxPlainField = 255;

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    size_t pad = 0;
    if (last) {
      if (text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    }
    uint32_t group = 0;
    for (size_t k = 0; k < 4; ++k) {
      int v = 0;
      if (k < 4 - pad) {
        v = symbol_value(text[i + k]);
        if (v < 0) return std::nullopt;  // bad character, or '=' where data belongs
      }
      group = (group << 6) | static_cast<uint32_t>(v);
    }
    // Non-canonical: bits past the data must be zero (RFC 4648 §3.5).
    if (pad == 1 && (group & 0xFF) != 0) return std::nullopt;
    if (pad == 2 && (group & 0xFFFF) != 0) return std::nullopt;
    out += static_cast<char>((group >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((group >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(group & 0xFF);
  }
  return out;
}

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t g = (uint32_t{static_cast<unsigned char>(data[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(data[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(data[i + 2])};
    out += kAlphabet[(g >> 18) & 63];
    out += kAlphabet[(g >> 12) & 63];
    out += kAlphabet[(g >> 6) & 63];
    out += kAlphabet[g & 63];
  }
  const size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t g = uint32_t{static_cast<unsigned char>(data[i])} << 16;
    if (rest == 2) g |= uint32_t{static_cast<unsigned char>(data[i + 1])} << 8;
    out += kAlphabet[(g >> 18) & 63];
    out += kAlphabet[(g >> 12) & 63];
    out += rest == 2 ? kAlphabet[(g >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<SaslPlain> parse_sasl_plain(std::string_view decoded) {
  const size_t first = decoded.find('\0');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = decoded.find('\0', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  if (decoded.find('\0', second + 1) != std::string_view::npos) return std::nullopt;
  const std::string_view authzid = decoded.substr(0, first);
  const std::string_view authcid = decoded.substr(first + 1, second - first - 1);
  const std::string_view password = decoded.substr(second + 1);
  if (authcid.empty() || password.empty()) return std::nullopt;
  for (const std::string_view field : {authzid, authcid, password}) {
    if (field.size() > kMaxPlainField || !valid_utf8(field)) return std::nullopt;
  }
  return SaslPlain{std::string(authzid), std::string(authcid), std::string(password)};
}

}  // namespace tern::smtp
