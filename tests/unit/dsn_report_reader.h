// A small, strict reader of the reports the DSN builder writes, for the
// unit tests: checks the syntax it reads (CRLF lines within 998 octets,
// "Name: value" fields, MIME boundaries) with GoogleTest expectations.
#pragma once
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mta/text.h"

namespace tern::dsn::report_reader {

struct Field {
  std::string name;
  std::string value;  // unfolded (CRLF before WSP removed), leading WSP after ':' removed
};

// RFC 5322 unfolding: remove every CRLF that is followed by WSP.
inline std::string unfold(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 2 < s.size() && s[i + 1] == '\n' && (s[i + 2] == ' ' || s[i + 2] == '\t')) {
      ++i;
      continue;
    }
    out += s[i];
  }
  return out;
}

inline std::vector<std::string> split_lines(std::string_view s) {  // by CRLF; a last line without CRLF is kept
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find("\r\n", pos);
    if (end == std::string_view::npos) {
      lines.emplace_back(s.substr(pos));
      break;
    }
    lines.emplace_back(s.substr(pos, end - pos));
    pos = end + 2;
  }
  return lines;
}

inline bool valid_field_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const auto o = static_cast<unsigned char>(c);
    if (o < 33 || o > 126 || c == ':') return false;
  }
  return true;
}

// Checks the syntax of a block of fields (every line "Name: value" or a
// continuation starting with WSP; CRLF line ends) and returns the fields.
inline std::vector<Field> parse_fields(std::string_view block) {
  std::vector<Field> fields;
  const std::string text(block);
  EXPECT_TRUE(text.empty() || text.ends_with("\r\n")) << "field block must end with CRLF: " << text;
  for (const std::string& line : split_lines(text)) {
    EXPECT_FALSE(line.empty()) << "empty line inside a field block";
    if (line.empty()) continue;
    EXPECT_LE(line.size(), 998u);
    if (line[0] == ' ' || line[0] == '\t') {
      EXPECT_FALSE(fields.empty()) << "continuation line without a field: " << line;
      EXPECT_NE(line.find_first_not_of(" \t"), std::string::npos) << "whitespace-only continuation line";
      if (!fields.empty()) fields.back().value += line;
      continue;
    }
    const size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << "not a field: " << line;
    if (colon == std::string::npos) continue;
    const std::string name = line.substr(0, colon);
    EXPECT_TRUE(valid_field_name(name)) << "bad field name: " << name;
    EXPECT_TRUE(line.compare(colon, 2, ": ") == 0) << "expected \"Name: value\": " << line;
    std::string value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    fields.push_back({name, value});
  }
  return fields;
}

inline std::optional<std::string> get(const std::vector<Field>& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name == name) return f.value;
  return std::nullopt;
}

inline size_t count(const std::vector<Field>& fields, std::string_view name) {
  size_t n = 0;
  for (const auto& f : fields) n += f.name == name;
  return n;
}

struct Part {
  std::vector<Field> headers;
  std::string raw_headers;
  std::string body;
};

struct Message {
  std::vector<Field> headers;
  std::string raw_headers;  // without the blank line
  std::string boundary;
  std::string preamble;
  std::vector<Part> parts;
  bool closed = false;  // saw the close delimiter
};

// Every line ends in CRLF, no bare CR or LF, none over 998 octets.
inline void check_lines(std::string_view content) {
  ASSERT_TRUE(content.ends_with("\r\n"));
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] == '\r') {
      ASSERT_TRUE(i + 1 < content.size() && content[i + 1] == '\n') << "bare CR at " << i;
    } else if (content[i] == '\n') {
      ASSERT_TRUE(i > 0 && content[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  for (const std::string& line : split_lines(content)) EXPECT_LE(line.size(), 998u) << line.substr(0, 80);
}

inline Part parse_part(std::string_view text) {
  Part p;
  size_t end;
  if (text.starts_with("\r\n")) {
    end = 0;
  } else {
    end = text.find("\r\n\r\n");
    EXPECT_NE(end, std::string_view::npos) << "part without a header section end";
    if (end == std::string_view::npos) return p;
    end += 2;
  }
  p.raw_headers = std::string(text.substr(0, end));
  p.headers = parse_fields(p.raw_headers);
  p.body = std::string(text.substr(end + 2));
  return p;
}

inline std::string boundary_of(const std::string& content_type) {
  const std::string key = "boundary=\"";
  const size_t at = content_type.find(key);
  if (at == std::string::npos) return {};
  const size_t end = content_type.find('"', at + key.size());
  if (end == std::string::npos) return {};
  return content_type.substr(at + key.size(), end - at - key.size());
}

inline Message parse_message(std::string_view content) {
  Message m;
  const size_t end = content.find("\r\n\r\n");
  EXPECT_NE(end, std::string_view::npos);
  if (end == std::string_view::npos) return m;
  m.raw_headers = std::string(content.substr(0, end + 2));
  m.headers = parse_fields(m.raw_headers);
  const auto ct = get(m.headers, "Content-Type");
  EXPECT_TRUE(ct.has_value());
  if (!ct) return m;
  m.boundary = boundary_of(*ct);
  EXPECT_FALSE(m.boundary.empty());
  EXPECT_LE(m.boundary.size(), 70u);  // RFC 2046 §5.1.1
  const std::string delimiter = concat({"--", m.boundary});
  const std::string_view body = content.substr(end + 4);
  // Lines; a part is the lines between delimiter lines, joined by CRLF (the
  // CRLF before a delimiter belongs to the delimiter).
  const std::vector<std::string> lines = split_lines(body);
  std::vector<std::string> current;
  bool in_part = false;
  auto flush = [&] {
    std::string text;
    for (size_t i = 0; i < current.size(); ++i) {
      if (i) text += "\r\n";
      text += current[i];
    }
    if (in_part) {
      m.parts.push_back(parse_part(text));
    } else {
      m.preamble = text;
    }
    current.clear();
  };
  for (const std::string& line : lines) {
    if (m.closed) {
      EXPECT_TRUE(line.empty()) << "epilogue: " << line;
      continue;
    }
    if (line == delimiter) {
      flush();
      in_part = true;
    } else if (line == delimiter + "--") {
      flush();
      m.closed = true;
    } else {
      current.push_back(line);
    }
  }
  EXPECT_TRUE(m.closed) << "no close delimiter";
  return m;
}

// The status part's groups: per-message fields first, then one per recipient.
inline std::vector<std::vector<Field>> status_groups(std::string_view status) {
  std::vector<std::vector<Field>> groups;
  EXPECT_TRUE(status.ends_with("\r\n"));
  std::string block;
  for (const std::string& line : split_lines(status)) {
    if (line.empty()) {
      EXPECT_FALSE(block.empty()) << "two blank lines in a row in the status part";
      groups.push_back(parse_fields(block));
      block.clear();
      continue;
    }
    block += line;
    block += "\r\n";
  }
  if (!block.empty()) groups.push_back(parse_fields(block));
  return groups;
}

inline std::string part_type(const Part& p) {
  return get(p.headers, "Content-Type").value_or("");
}

}  // namespace tern::dsn::report_reader
