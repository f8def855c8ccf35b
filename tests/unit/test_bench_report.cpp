#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tools/tern_bench/plot.h"
#include "tools/tern_bench/report.h"

namespace tern::bench {
namespace {

// Known stats: 100 sent, 90 accepted (1 KiB each) over 2 s, latencies 1..90 ms
// (percentiles are reported as the top of their histogram bucket: < 0.8% above).
void known(Stats* s, RunInfo* info) {
  auto o = parse_options({"--target", "127.0.0.1:2525", "--messages", "100"});
  ASSERT_TRUE(o);
  info->options = o.value();
  info->threads = 2;
  info->run_id = "00000000deadbeef";
  info->elapsed_s = 2.0;
  info->cpu_user_s = 0.25;
  info->cpu_sys_s = 0.25;
  info->pipelining_used = true;
  s->sent = 100;
  s->accepted = 90;
  s->temp_failed = 5;
  s->perm_failed = 3;
  s->connection_errors = 2;
  s->recipients_accepted = 90;
  s->recipients_rejected = 8;
  s->connections_opened = 10;
  s->connect_failures = 2;
  s->bytes_accepted = 90 * 1024;
  for (uint64_t ms = 1; ms <= 90; ++ms) {
    s->latency[kMessage].record(ms * 1000);
    s->latency[kData].record(ms * 500);
    s->latency[kEnvelope].record(ms * 100);
    s->count_accepted_at(ms <= 60 ? 0.5 : 1.5);
  }
  s->latency[kConnect].record(200);
  s->errors["connect: Connection refused"] = 2;
}

// The value after "key": in a flat part of the JSON text (std::regex is
// avoided: GCC 12 warns inside it under the sanitizer build).
std::string json_value(const std::string& j, const std::string& key) {
  std::string needle = "\"" + key + "\": ";
  size_t pos = j.find(needle);
  if (pos == std::string::npos) return "";
  pos += needle.size();
  size_t end = j.find_first_of(",}\n", pos);
  return j.substr(pos, end - pos);
}

// The points="..." attribute of the element with id="id".
std::string points_of(const std::string& svg, const std::string& id) {
  size_t pos = svg.find("id=\"" + id + "\"");
  if (pos == std::string::npos) return "";
  size_t tag_end = svg.find('>', pos);
  size_t p = svg.find("points=\"", pos);
  if (p == std::string::npos || p > tag_end) return "";
  p += 8;
  return svg.substr(p, svg.find('"', p) - p);
}

TEST(BenchReport, JsonOnKnownStats) {
  Stats s;
  RunInfo info;
  known(&s, &info);
  std::string j = format_json(s, info);
  EXPECT_EQ(json_value(j, "sent"), "100");
  EXPECT_EQ(json_value(j, "accepted"), "90");
  EXPECT_EQ(json_value(j, "temp_failed"), "5");
  EXPECT_EQ(json_value(j, "perm_failed"), "3");
  EXPECT_EQ(json_value(j, "connection_errors"), "2");
  EXPECT_EQ(json_value(j, "recipients_accepted"), "90");
  EXPECT_EQ(json_value(j, "recipients_rejected"), "8");
  EXPECT_EQ(json_value(j, "elapsed_s"), "2.000000");
  EXPECT_EQ(json_value(j, "accepted_per_s"), "45.000");
  EXPECT_EQ(json_value(j, "mb_per_s"), "0.046");
  EXPECT_EQ(json_value(j, "bytes_accepted"), "92160");
  EXPECT_EQ(json_value(j, "target"), "\"127.0.0.1:2525\"");
  EXPECT_EQ(json_value(j, "pipelining"), "true");
  EXPECT_EQ(json_value(j, "percent_of_one_core"), "25.0");
  EXPECT_NE(j.find("\"message\": {\"count\": 90, \"p50\": 45.055, \"p90\": 81.407, \"p99\": 90.000, \"p99_9\": 90.000, "
                   "\"max\": 90.000"),
            std::string::npos)
      << j;
  EXPECT_NE(j.find("\"accepted_per_second\": [60, 30]"), std::string::npos) << j;
  EXPECT_NE(j.find("\"errors\": {\"connect: Connection refused\": 2}"), std::string::npos) << j;
  for (const char* phase : {"connect", "banner", "envelope", "data", "message"})
    EXPECT_NE(j.find(std::string("\"") + phase + "\": {\"count\""), std::string::npos) << phase;
  // Balanced braces and brackets, no trailing comma.
  int depth = 0;
  for (char c : j) {
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') --depth;
    EXPECT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);
  EXPECT_EQ(j.find(",\n}"), std::string::npos);
}

TEST(BenchReport, TextOnKnownStats) {
  Stats s;
  RunInfo info;
  known(&s, &info);
  std::string t = format_text(s, info);
  EXPECT_NE(t.find("sent 100  accepted 90  temp-failed 5  perm-failed 3  connection errors 2"), std::string::npos) << t;
  EXPECT_NE(t.find("45.0 msg/s"), std::string::npos) << t;
  EXPECT_NE(t.find("25.0% of one core"), std::string::npos) << t;
  EXPECT_NE(t.find("message"), std::string::npos);
  EXPECT_NE(t.find("connect: Connection refused: 2"), std::string::npos);
}

TEST(BenchReport, MergeAddsEverything) {
  Stats a, b;
  RunInfo info;
  known(&a, &info);
  known(&b, &info);
  b.count_accepted_at(4.2);
  a.merge(b);
  EXPECT_EQ(a.sent, 200u);
  EXPECT_EQ(a.accepted, 180u);
  EXPECT_EQ(a.latency[kMessage].count(), 180u);
  EXPECT_EQ(a.errors["connect: Connection refused"], 4u);
  ASSERT_EQ(a.accepted_per_second.size(), 5u);
  EXPECT_EQ(a.accepted_per_second[0], 120u);
  EXPECT_EQ(a.accepted_per_second[4], 1u);
}

TEST(BenchPlot, SvgIsWellFormedAndHasTheSeries) {
  Stats s;
  RunInfo info;
  known(&s, &info);
  std::string svg = render_svg(s, info);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  // Balanced tags: every <name ...> is closed by </name> or is self-closing.
  std::vector<std::string> stack;
  size_t pos = 0;
  int elements = 0;
  while ((pos = svg.find('<', pos)) != std::string::npos) {
    size_t end = svg.find('>', pos);
    ASSERT_NE(end, std::string::npos);
    std::string tag = svg.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty() || tag[0] == '?') continue;  // the XML declaration
    ++elements;
    if (tag.back() == '/') continue;  // <x ... />
    bool closing = tag[0] == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \t\n"));
    if (closing) {
      ASSERT_FALSE(stack.empty()) << "unexpected </" << name << ">";
      EXPECT_EQ(stack.back(), name);
      stack.pop_back();
    } else {
      stack.push_back(name);
    }
  }
  EXPECT_TRUE(stack.empty());
  EXPECT_GT(elements, 20);
  EXPECT_EQ(svg.find("</svg>"), svg.size() - 7);
  // The series: throughput with one step per second, and the percentile curves.
  const std::string points = points_of(svg, "throughput");
  EXPECT_EQ(std::count(points.begin(), points.end(), ','), 4);  // 2 seconds x 2 points
  for (const char* id : {"latency-message", "latency-data", "latency-envelope"}) {
    const std::string curve = points_of(svg, id);
    EXPECT_GT(std::count(curve.begin(), curve.end(), ','), 10) << id;
  }
  EXPECT_NE(svg.find("99%"), std::string::npos);
}

TEST(BenchPlot, EmptyRunStillRenders) {
  Stats s;
  RunInfo info;
  info.options.target = "127.0.0.1:1";
  std::string svg = render_svg(s, info);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

}  // namespace
}  // namespace tern::bench
