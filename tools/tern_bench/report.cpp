#include "tools/tern_bench/report.h"

#include <cinttypes>
#include <cstdio>

#include "mta/log.h"

namespace tern::bench {

namespace {

constexpr double kPercentiles[] = {50, 90, 99, 99.9};

double ms(uint64_t micros) { return static_cast<double>(micros) / 1000.0; }

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string num(double v) { return fmt("%.3f", v); }

double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0; }

}  // namespace

const char* phase_name(unsigned phase) {
  static const char* const kNames[kPhaseCount] = {"connect", "banner", "envelope", "data", "message"};
  return phase < kPhaseCount ? kNames[phase] : "?";
}

void Stats::count_accepted_at(double seconds_since_start) {
  size_t second = seconds_since_start > 0 ? static_cast<size_t>(seconds_since_start) : 0;
  if (second >= accepted_per_second.size()) accepted_per_second.resize(second + 1, 0);
  ++accepted_per_second[second];
}

void Stats::merge(const Stats& o) {
  sent += o.sent;
  accepted += o.accepted;
  temp_failed += o.temp_failed;
  perm_failed += o.perm_failed;
  connection_errors += o.connection_errors;
  recipients_accepted += o.recipients_accepted;
  recipients_rejected += o.recipients_rejected;
  connections_opened += o.connections_opened;
  connect_failures += o.connect_failures;
  bytes_accepted += o.bytes_accepted;
  for (unsigned p = 0; p < kPhaseCount; ++p) latency[p].merge(o.latency[p]);
  if (o.accepted_per_second.size() > accepted_per_second.size())
    accepted_per_second.resize(o.accepted_per_second.size(), 0);
  for (size_t i = 0; i < o.accepted_per_second.size(); ++i) accepted_per_second[i] += o.accepted_per_second[i];
  for (const auto& [k, v] : o.errors) errors[k] += v;
}

double cpu_percent_of_one_core(const RunInfo& info) {
  return info.elapsed_s > 0 ? 100.0 * (info.cpu_user_s + info.cpu_sys_s) / info.elapsed_s : 0;
}

std::string format_text(const Stats& s, const RunInfo& info) {
  const Options& o = info.options;
  std::string out;
  char line[256];
  auto add = [&](const char* format, auto... args) {
    std::snprintf(line, sizeof line, format, args...);
    out += line;
  };
  add("tern-bench: %s, %u connections, %u threads, size %s, %u recipient(s)/message%s%s\n", o.target.c_str(),
      o.connections, info.threads, o.size_text.c_str(), o.recipients,
      o.rate > 0 ? fmt(", rate %.1f msg/s", o.rate).c_str() : ", open loop",
      info.pipelining_used ? ", pipelining" : "");
  add("elapsed        %.3f s\n", info.elapsed_s);
  add("messages       sent %" PRIu64 "  accepted %" PRIu64 "  temp-failed %" PRIu64 "  perm-failed %" PRIu64
      "  connection errors %" PRIu64 "\n",
      s.sent, s.accepted, s.temp_failed, s.perm_failed, s.connection_errors);
  add("recipients     accepted %" PRIu64 "  rejected %" PRIu64 "\n", s.recipients_accepted, s.recipients_rejected);
  add("connections    opened %" PRIu64 "  failed %" PRIu64 "\n", s.connections_opened, s.connect_failures);
  add("throughput     %.1f msg/s  %.3f MB/s\n", per_second(static_cast<double>(s.accepted), info.elapsed_s),
      per_second(static_cast<double>(s.bytes_accepted) / 1e6, info.elapsed_s));
  add("latency ms     %10s %10s %10s %10s %10s %10s\n", "count", "p50", "p90", "p99", "p99.9", "max");
  for (unsigned p = 0; p < kPhaseCount; ++p) {
    const auto& h = s.latency[p];
    add("  %-12s %10" PRIu64 " %10.3f %10.3f %10.3f %10.3f %10.3f\n", phase_name(p), h.count(), ms(h.percentile(50)),
        ms(h.percentile(90)), ms(h.percentile(99)), ms(h.percentile(99.9)), ms(h.max()));
  }
  add("bench cpu      user %.3f s  sys %.3f s  = %.1f%% of one core\n", info.cpu_user_s, info.cpu_sys_s,
      cpu_percent_of_one_core(info));
  for (const auto& [kind, count] : s.errors) {
    out += "error          ";
    out += kind;
    add(": %" PRIu64 "\n", count);
  }
  return out;
}

std::string format_json(const Stats& s, const RunInfo& info) {
  const Options& o = info.options;
  std::string j = "{\n";
  auto field = [&](const char* key, const std::string& value, bool last = false) {
    j += "  ";
    j += log::json_quote(key);
    j += ": ";
    j += value;
    j += last ? "\n" : ",\n";
  };
  auto u = [](uint64_t v) { return std::to_string(v); };
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  field("tool", log::json_quote("tern-bench"));
  field("target", log::json_quote(o.target));
  field("run_id", log::json_quote(info.run_id));
  field("messages_requested", u(o.messages));
  field("duration_requested_s", num(o.duration_s));
  field("connections", u(o.connections));
  field("per_connection", u(o.per_connection));
  field("recipients_per_message", u(o.recipients));
  field("size", log::json_quote(o.size_text));
  field("rate", num(o.rate));
  field("threads", u(info.threads));
  field("pipelining", b(info.pipelining_used));
  field("starttls", b(info.starttls_used));
  field("bdat", b(info.bdat_used));
  field("auth", log::json_quote(auth_name(o.auth)));
  field("elapsed_s", fmt("%.6f", info.elapsed_s));
  field("sent", u(s.sent));
  field("accepted", u(s.accepted));
  field("temp_failed", u(s.temp_failed));
  field("perm_failed", u(s.perm_failed));
  field("connection_errors", u(s.connection_errors));
  field("recipients_accepted", u(s.recipients_accepted));
  field("recipients_rejected", u(s.recipients_rejected));
  field("connections_opened", u(s.connections_opened));
  field("connect_failures", u(s.connect_failures));
  field("bytes_accepted", u(s.bytes_accepted));
  field("accepted_per_s", num(per_second(static_cast<double>(s.accepted), info.elapsed_s)));
  field("mb_per_s", num(per_second(static_cast<double>(s.bytes_accepted) / 1e6, info.elapsed_s)));
  std::string lat = "{";
  for (unsigned p = 0; p < kPhaseCount; ++p) {
    const auto& h = s.latency[p];
    lat += p ? ", " : "";
    lat += log::json_quote(phase_name(p));
    lat += ": {\"count\": " + u(h.count());
    static const char* const kKeys[] = {"p50", "p90", "p99", "p99_9"};
    for (size_t i = 0; i < std::size(kPercentiles); ++i)
      lat += std::string(", \"") + kKeys[i] + "\": " + num(ms(h.percentile(kPercentiles[i])));
    lat += ", \"max\": " + num(ms(h.max())) + ", \"mean\": " + num(h.mean() / 1000.0) + "}";
  }
  lat += "}";
  field("latency_ms", lat);
  field("cpu", "{\"user_s\": " + num(info.cpu_user_s) + ", \"sys_s\": " + num(info.cpu_sys_s) +
                   ", \"percent_of_one_core\": " + fmt("%.1f", cpu_percent_of_one_core(info)) + "}");
  std::string series = "[";
  for (size_t i = 0; i < s.accepted_per_second.size(); ++i) {
    if (i) series += ", ";
    series += u(s.accepted_per_second[i]);
  }
  series += "]";
  field("accepted_per_second", series);
  std::string errors = "{";
  bool first = true;
  for (const auto& [kind, count] : s.errors) {
    if (!first) errors += ", ";
    first = false;
    errors += log::json_quote(kind) + ": " + u(count);
  }
  errors += "}";
  field("errors", errors, true);
  j += "}\n";
  return j;
}

}  // namespace tern::bench
