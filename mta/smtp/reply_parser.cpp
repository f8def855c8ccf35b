#include "mta/smtp/reply_parser.h"

#include <charconv>

namespace tern::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string upper_copy(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = upper(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

// Splits on spaces/tabs, skipping empty fields.
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::vector<std::string_view> ParsedReply::lines() const {
  std::vector<std::string_view> out;
  std::string_view rest = text;
  for (;;) {
    size_t nl = rest.find('\n');
    out.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  return out;
}

void ReplyParser::reset() {
  reply_.code = 0;
  reply_.enhanced.clear();
  reply_.text.clear();  // keeps its capacity: no allocation per reply
  in_reply_ = false;
}

ReplyParser::State ReplyParser::feed(std::string_view line) {
  if (!in_reply_) reset();
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) || line[0] < '2' ||
      line[0] > '5' || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    in_reply_ = false;
    return State::malformed;
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  if (!in_reply_) {
    reply_.code = code;
    if (auto e = parse_enhanced_code(text)) reply_.enhanced.assign(*e);
    in_reply_ = true;
  } else {
    if (code != reply_.code) {
      in_reply_ = false;
      return State::malformed;
    }
    reply_.text.push_back('\n');
  }
  reply_.text.append(text);
  if (line.size() == 3 || line[3] == ' ') {
    in_reply_ = false;
    return State::complete;
  }
  return State::need_more;
}

std::optional<std::string_view> parse_enhanced_code(std::string_view text) {
  if (text.size() < 5) return std::nullopt;
  if (text[0] != '2' && text[0] != '4' && text[0] != '5') return std::nullopt;
  if (text[1] != '.') return std::nullopt;
  size_t i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    if (i == start || i - start > 3) return std::nullopt;
    if (part == 0) {
      if (i >= text.size() || text[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i < text.size() && text[i] != ' ' && text[i] != '\t') return std::nullopt;
  return text.substr(0, i);
}

bool EhloInfo::has(std::string_view keyword) const {
  for (const auto& k : keywords)
    if (iequals(k, keyword)) return true;
  return false;
}

bool EhloInfo::has_auth(std::string_view mechanism) const {
  for (const auto& m : auth)
    if (iequals(m, mechanism)) return true;
  return false;
}

EhloInfo parse_ehlo(const ParsedReply& reply) {
  EhloInfo info;
  auto lines = reply.lines();
  for (size_t i = 1; i < lines.size(); ++i) {
    auto w = words(lines[i]);
    if (w.empty()) continue;
    std::string kw = upper_copy(w[0]);
    // Some servers still send the pre-standard "AUTH=PLAIN LOGIN" form.
    if (kw.rfind("AUTH=", 0) == 0) {
      info.auth.push_back(kw.substr(5));
      for (size_t j = 1; j < w.size(); ++j) info.auth.push_back(upper_copy(w[j]));
      continue;
    }
    if (kw == "PIPELINING") info.pipelining = true;
    else if (kw == "CHUNKING") info.chunking = true;
    else if (kw == "STARTTLS") info.starttls = true;
    else if (kw == "ENHANCEDSTATUSCODES") info.enhanced_status_codes = true;
    else if (kw == "8BITMIME") info.eight_bit_mime = true;
    else if (kw == "SMTPUTF8") info.smtputf8 = true;
    else if (kw == "SIZE" && w.size() > 1) {
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(w[1].data(), w[1].data() + w[1].size(), n);
      if (ec == std::errc{} && end == w[1].data() + w[1].size()) info.size = n;
    } else if (kw == "AUTH") {
      for (size_t j = 1; j < w.size(); ++j) info.auth.push_back(upper_copy(w[j]));
    }
    info.keywords.push_back(std::move(kw));
  }
  return info;
}

}  // namespace tern::smtp
