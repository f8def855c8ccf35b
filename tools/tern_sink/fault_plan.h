// tern-sink's fault injection: which events at which points of the SMTP
// dialogue get a reply code, a delay or a dropped connection. Pure logic (no
// I/O) so the exact counts the tests rely on are unit-tested.
//
// Fractions are deterministic, never random: event n (0-based, counted per
// point across every worker of the process) is hit when
// floor((n+1)*f) > floor(n*f), so N events give exactly floor(N*f) hits.
// f is kept as an exact decimal (num/den), so 0.1 means one in ten exactly.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mta/smtp/reply.h"

namespace tern::sink {

// Where a fault can be injected.
enum class Point : uint8_t {
  banner,  // the greeting
  helo,    // the reply to EHLO / HELO
  mail,    // the reply to MAIL
  rcpt,    // the reply to RCPT
  data,    // the reply to DATA (instead of 354) or to a BDAT chunk
  dot,     // the reply after the message content ("after DATA", BDAT LAST)
};
inline constexpr size_t kPointCount = 6;
inline constexpr std::array<Point, kPointCount> kAllPoints = {Point::banner, Point::helo, Point::mail,
                                                              Point::rcpt,   Point::data, Point::dot};

std::string_view point_name(Point p);
// "banner", "helo" (or "ehlo"), "mail", "rcpt", "data", "dot"; case-insensitive.
std::optional<Point> parse_point(std::string_view name);

// An exact decimal fraction in [0, 1].
struct Fraction {
  uint64_t num = 1;
  uint64_t den = 1;
  // Whether event n (0-based) is one of the floor(N*f) hit among N events.
  bool hits(uint64_t n) const;
  std::string str() const;  // "0.25", "1"
};
// "1", "0.25", ".5", "0" (never); at most 9 decimals.
std::optional<Fraction> parse_fraction(std::string_view text);

// What may happen at one point; each part applies to its own fraction of
// the point's events.
struct PointRules {
  int reply_code = 0;  // 0: none; else 400..599
  Fraction reply_fraction;
  uint32_t delay_ms = 0;  // 0: none
  Fraction delay_fraction;
  bool drop = false;
  Fraction drop_fraction;
  bool any() const { return reply_code != 0 || delay_ms != 0 || drop; }
};
using FaultRules = std::array<PointRules, kPointCount>;

// What to do with one event. Applied in this order: delay, then drop (the
// connection closes without a reply), else the injected reply.
struct FaultDecision {
  uint32_t delay_ms = 0;
  bool drop = false;
  int reply_code = 0;
};

// The injected reply: "<code> <class>.0.0 tern-sink injected fault" (a
// generic enhanced code of the reply's class, RFC 3463 "other or undefined").
smtp::Reply fault_reply(int code);

// The rules in command-line form ("--fault rcpt=450:0.25 --drop dot:1"),
// for the start-up line; empty when there are none.
std::string describe_rules(const FaultRules& rules);

// The rules plus one event counter per point, shared by every worker.
class FaultPlan {
 public:
  explicit FaultPlan(const FaultRules& rules) : rules_(rules) {}
  FaultPlan(const FaultPlan&) = delete;
  FaultPlan& operator=(const FaultPlan&) = delete;

  bool active(Point p) const { return rules_[index(p)].any(); }
  // Counts one event at `p` and decides its fate. Points without rules are
  // not counted, so the common case touches no shared cache line.
  FaultDecision next(Point p);
  // The decision for event n at `p`, without counting (for tests).
  FaultDecision decide(Point p, uint64_t n) const;

 private:
  static size_t index(Point p) { return static_cast<size_t>(p); }
  FaultRules rules_;
  std::array<std::atomic<uint64_t>, kPointCount> events_{};
};

}  // namespace tern::sink
