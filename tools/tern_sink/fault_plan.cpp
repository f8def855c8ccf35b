#include "tools/tern_sink/fault_plan.h"

namespace tern::sink {

std::string_view point_name(Point p) {
  switch (p) {
    case Point::banner: return "banner";
    case Point::helo: return "helo";
    case Point::mail: return "mail";
    case Point::rcpt: return "rcpt";
    case Point::data: return "data";
    case Point::dot: return "dot";
  }
  return "unknown";
}

std::optional<Point> parse_point(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (lower == "ehlo") return Point::helo;
  for (Point p : kAllPoints)
    if (lower == point_name(p)) return p;
  return std::nullopt;
}

bool Fraction::hits(uint64_t n) const {
  // 128-bit products: no overflow for any event count.
  using Wide = unsigned __int128;
  return (Wide{n + 1} * num) / den > (Wide{n} * num) / den;
}

std::string Fraction::str() const {
  if (num == den) return "1";
  if (num == 0) return "0";
  std::string digits = std::to_string(num);
  size_t decimals = std::to_string(den).size() - 1;  // den is a power of ten
  if (digits.size() < decimals) digits.insert(0, decimals - digits.size(), '0');
  while (!digits.empty() && digits.back() == '0') {
    digits.pop_back();
    --decimals;
  }
  digits.insert(0, "0.");
  return digits;
}

std::optional<Fraction> parse_fraction(std::string_view text) {
  constexpr size_t kMaxDecimals = 9;
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view decimals = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty() && decimals.empty()) return std::nullopt;
  if (dot != std::string_view::npos && decimals.empty()) return std::nullopt;  // "1."
  if (whole.size() > 1 || decimals.size() > kMaxDecimals) return std::nullopt;
  for (char c : whole)
    if (c < '0' || c > '9') return std::nullopt;
  for (char c : decimals)
    if (c < '0' || c > '9') return std::nullopt;
  Fraction f{0, 1};
  if (!whole.empty()) f.num = static_cast<uint64_t>(whole[0] - '0');
  for (char c : decimals) {
    f.num = f.num * 10 + static_cast<uint64_t>(c - '0');
    f.den *= 10;
  }
  if (f.num > f.den) return std::nullopt;
  return f;
}

smtp::Reply fault_reply(int code) {
  return smtp::Reply{code, code / 100 == 4 ? "4.0.0" : "5.0.0", "tern-sink injected fault"};
}

std::string describe_rules(const FaultRules& rules) {
  std::string out;
  // value < 0: the option has none (--drop).
  auto add = [&out](std::string_view option, Point p, int64_t value, const Fraction& f) {
    if (!out.empty()) out += ' ';
    out += option;
    out += ' ';
    out += point_name(p);
    if (value >= 0) {
      out += '=';
      out += std::to_string(value);
    }
    out += ':';
    out += f.str();
  };
  for (Point p : kAllPoints) {
    const PointRules& r = rules[static_cast<size_t>(p)];
    if (r.reply_code != 0) add("--fault", p, r.reply_code, r.reply_fraction);
    if (r.delay_ms != 0) add("--delay", p, r.delay_ms, r.delay_fraction);
    if (r.drop) add("--drop", p, -1, r.drop_fraction);
  }
  return out;
}

FaultDecision FaultPlan::decide(Point p, uint64_t n) const {
  const PointRules& r = rules_[index(p)];
  FaultDecision d;
  if (r.delay_ms != 0 && r.delay_fraction.hits(n)) d.delay_ms = r.delay_ms;
  if (r.drop && r.drop_fraction.hits(n)) d.drop = true;
  if (r.reply_code != 0 && r.reply_fraction.hits(n)) d.reply_code = r.reply_code;
  return d;
}

FaultDecision FaultPlan::next(Point p) {
  if (!active(p)) return {};
  uint64_t n = events_[index(p)].fetch_add(1, std::memory_order_relaxed);
  return decide(p, n);
}

}  // namespace tern::sink
