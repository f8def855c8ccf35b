#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "tools/tern_sink/fault_plan.h"

namespace tern::sink {
namespace {

Fraction fraction(std::string_view text) {
  auto f = parse_fraction(text);
  EXPECT_TRUE(f.has_value()) << text;
  return f.value_or(Fraction{});
}

uint64_t hits_among(const Fraction& f, uint64_t events) {
  uint64_t hits = 0;
  for (uint64_t n = 0; n < events; ++n) hits += f.hits(n) ? 1 : 0;
  return hits;
}

TEST(SinkFraction, ParsesExactDecimals) {
  EXPECT_EQ(fraction("1").num, 1u);
  EXPECT_EQ(fraction("1").den, 1u);
  auto q = fraction("0.25");
  EXPECT_EQ(q.num, 25u);
  EXPECT_EQ(q.den, 100u);
  auto h = fraction(".5");
  EXPECT_EQ(h.num, 5u);
  EXPECT_EQ(h.den, 10u);
  EXPECT_EQ(fraction("0").num, 0u);
  EXPECT_EQ(fraction("1.000").num, 1000u);
}

TEST(SinkFraction, RejectsWhatIsNotAFractionOfOne) {
  for (std::string_view bad : {"", ".", "1.", "1.5", "2", "-0.5", "0.1234567891", "abc", "0,5", "10", "0.5x"})
    EXPECT_FALSE(parse_fraction(bad).has_value()) << bad;
}

TEST(SinkFraction, PrintsBackAsGiven) {
  EXPECT_EQ(fraction("0.25").str(), "0.25");
  EXPECT_EQ(fraction("0.005").str(), "0.005");
  EXPECT_EQ(fraction("0.500").str(), "0.5");
  EXPECT_EQ(fraction("1.0").str(), "1");
  EXPECT_EQ(fraction("0").str(), "0");
}

TEST(SinkFraction, EveryPrefixHasExactlyFloorOfNTimesF) {
  // Includes fractions that binary floating point cannot represent (0.1,
  // 0.57, 0.3): the counts must still be exact for every N.
  for (std::string_view text : {"0.1", "0.25", "0.3", "0.333", "0.57", "0.5", "0.999", "1", "0"}) {
    Fraction f = fraction(text);
    uint64_t hits = 0;
    for (uint64_t n = 0; n < 2000; ++n) {
      hits += f.hits(n) ? 1 : 0;
      EXPECT_EQ(hits, (n + 1) * f.num / f.den) << text << " after " << n + 1 << " events";
    }
  }
  EXPECT_EQ(hits_among(fraction("0.57"), 100), 57u);
  EXPECT_EQ(hits_among(fraction("0.1"), 10), 1u);
  EXPECT_EQ(hits_among(fraction("0.25"), 8), 2u);
}

TEST(SinkFraction, HitsAreSpreadNotBunched) {
  // With f = 0.25 the hits are events 3, 7, 11, ...: one in every four.
  Fraction f = fraction("0.25");
  std::vector<uint64_t> hit;
  for (uint64_t n = 0; n < 12; ++n)
    if (f.hits(n)) hit.push_back(n);
  EXPECT_EQ(hit, (std::vector<uint64_t>{3, 7, 11}));
}

TEST(SinkPoint, NamesRoundTrip) {
  for (Point p : kAllPoints) EXPECT_EQ(parse_point(point_name(p)), p);
  EXPECT_EQ(parse_point("EHLO"), Point::helo);
  EXPECT_EQ(parse_point("Rcpt"), Point::rcpt);
  EXPECT_FALSE(parse_point("quit").has_value());
  EXPECT_FALSE(parse_point("").has_value());
}

TEST(SinkFaultReply, EnhancedCodeFollowsTheClass) {
  auto r = fault_reply(450);
  EXPECT_EQ(r.code, 450);
  EXPECT_EQ(r.enhanced, "4.0.0");
  EXPECT_EQ(r.text, "tern-sink injected fault");
  EXPECT_EQ(fault_reply(554).enhanced, "5.0.0");
  EXPECT_EQ(fault_reply(421).enhanced, "4.0.0");
}

TEST(SinkFaultPlan, RulesAreDescribedAsOptions) {
  FaultRules rules{};
  EXPECT_EQ(describe_rules(rules), "");
  rules[static_cast<size_t>(Point::rcpt)].reply_code = 450;
  rules[static_cast<size_t>(Point::rcpt)].reply_fraction = fraction("0.25");
  rules[static_cast<size_t>(Point::rcpt)].delay_ms = 100;
  rules[static_cast<size_t>(Point::banner)].drop = true;
  EXPECT_EQ(describe_rules(rules), "--drop banner:1 --fault rcpt=450:0.25 --delay rcpt=100:1");
}

TEST(SinkFaultPlan, PointsWithoutRulesAreNeitherActiveNorCounted) {
  FaultRules rules{};
  rules[static_cast<size_t>(Point::rcpt)].reply_code = 450;
  FaultPlan plan(rules);
  EXPECT_TRUE(plan.active(Point::rcpt));
  EXPECT_FALSE(plan.active(Point::mail));
  for (int i = 0; i < 5; ++i) {
    auto d = plan.next(Point::mail);
    EXPECT_EQ(d.reply_code, 0);
    EXPECT_FALSE(d.drop);
    EXPECT_EQ(d.delay_ms, 0u);
  }
  EXPECT_EQ(plan.next(Point::rcpt).reply_code, 450);
}

TEST(SinkFaultPlan, EachRuleAppliesToItsOwnFraction) {
  FaultRules rules{};
  auto& r = rules[static_cast<size_t>(Point::dot)];
  r.reply_code = 554;
  r.reply_fraction = fraction("0.5");
  r.delay_ms = 20;
  r.delay_fraction = fraction("0.25");
  r.drop = true;
  r.drop_fraction = fraction("0.1");
  FaultPlan plan(rules);
  uint64_t replies = 0, delays = 0, drops = 0;
  for (int i = 0; i < 40; ++i) {
    auto d = plan.next(Point::dot);
    replies += d.reply_code == 554;
    delays += d.delay_ms == 20;
    drops += d.drop;
  }
  EXPECT_EQ(replies, 20u);
  EXPECT_EQ(delays, 10u);
  EXPECT_EQ(drops, 4u);
}

TEST(SinkFaultPlan, DecideIsTheSameAsNextForTheSameEvent) {
  FaultRules rules{};
  rules[static_cast<size_t>(Point::mail)].reply_code = 451;
  rules[static_cast<size_t>(Point::mail)].reply_fraction = fraction("0.3");
  FaultPlan plan(rules);
  for (uint64_t n = 0; n < 50; ++n)
    EXPECT_EQ(plan.next(Point::mail).reply_code, plan.decide(Point::mail, n).reply_code) << n;
}

TEST(SinkFaultPlan, CountsAreExactAcrossThreads) {
  // Workers share one counter per point: however events interleave, N
  // events give exactly floor(N * f) faults.
  FaultRules rules{};
  rules[static_cast<size_t>(Point::rcpt)].reply_code = 450;
  rules[static_cast<size_t>(Point::rcpt)].reply_fraction = fraction("0.37");
  FaultPlan plan(rules);
  constexpr int kThreads = 4, kEach = 2500;
  std::vector<uint64_t> faults(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&plan, &faults, t] {
      for (int i = 0; i < kEach; ++i) faults[t] += plan.next(Point::rcpt).reply_code == 450;
    });
  }
  for (auto& th : threads) th.join();
  uint64_t total = 0;
  for (auto f : faults) total += f;
  EXPECT_EQ(total, uint64_t{kThreads * kEach} * 37 / 100);
}

}  // namespace
}  // namespace tern::sink
