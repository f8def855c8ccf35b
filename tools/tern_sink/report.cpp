#include "tools/tern_sink/report.h"

#include <algorithm>
#include <cstdio>

#include "mta/log.h"

namespace tern::sink {
namespace {

constexpr std::array<double, 4> kPercentiles = {50.0, 90.0, 99.0, 99.9};

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string micros_as_ms(uint64_t us) { return fixed(static_cast<double>(us) / 1000.0, 3); }

// "50" → "p50", "99.9" → "p99.9".
std::string percentile_label(double p) {
  std::string s = fixed(p, 1);
  if (s.ends_with(".0")) s.resize(s.size() - 2);
  s.insert(0, 1, 'p');
  return s;
}

// "banner=0 helo=0 ..." for the summary.
std::string per_point_text(const std::array<uint64_t, kPointCount>& counts) {
  std::string out;
  for (Point p : kAllPoints) {
    if (!out.empty()) out += ' ';
    out += point_name(p);
    out += '=';
    out += std::to_string(counts[static_cast<size_t>(p)]);
  }
  return out;
}

// {"banner":0,"helo":0,...} for the JSON.
std::string per_point_json(const std::array<uint64_t, kPointCount>& counts) {
  std::string out = "{";
  for (Point p : kAllPoints) {
    if (out.size() > 1) out += ',';
    out += log::json_quote(point_name(p));
    out += ':';
    out += std::to_string(counts[static_cast<size_t>(p)]);
  }
  out += '}';
  return out;
}

}  // namespace

void SinkStats::record_message(int64_t arrival_us, uint64_t message_recipients, uint64_t message_bytes) {
  ++messages;
  recipients += message_recipients;
  bytes += message_bytes;
  if (first_message_us == 0 || arrival_us < first_message_us) first_message_us = arrival_us;
  if (arrival_us > last_message_us) last_message_us = arrival_us;
}

void SinkStats::merge(const SinkStats& o) {
  connections += o.connections;
  messages += o.messages;
  recipients += o.recipients;
  bytes += o.bytes;
  store_errors += o.store_errors;
  if (o.first_message_us != 0 && (first_message_us == 0 || o.first_message_us < first_message_us))
    first_message_us = o.first_message_us;
  last_message_us = std::max(last_message_us, o.last_message_us);
  for (size_t i = 0; i < kPointCount; ++i) {
    faults[i] += o.faults[i];
    delays[i] += o.delays[i];
    drops[i] += o.drops[i];
  }
  e2e_us.merge(o.e2e_us);
}

double SinkStats::active_seconds() const {
  if (messages < 2) return 0.0;
  return static_cast<double>(last_message_us - first_message_us) / 1e6;
}

double SinkStats::messages_per_second() const {
  double window = active_seconds();
  return window > 0 ? static_cast<double>(messages) / window : 0.0;
}

std::string format_summary(const SinkStats& s) {
  std::string out = "tern-sink summary\n";
  out += "  connections: " + std::to_string(s.connections) + "\n";
  out += "  messages:    " + std::to_string(s.messages) + "\n";
  out += "  recipients:  " + std::to_string(s.recipients) + "\n";
  out += "  bytes:       " + std::to_string(s.bytes) + "\n";
  out += "  throughput:  " + fixed(s.messages_per_second(), 1) + " msg/s over " + fixed(s.active_seconds(), 3) +
         " s (first to last message)\n";
  out += "  faults:      " + per_point_text(s.faults) + "\n";
  out += "  delays:      " + per_point_text(s.delays) + "\n";
  out += "  drops:       " + per_point_text(s.drops) + "\n";
  if (s.store_errors != 0) out += "  store errors: " + std::to_string(s.store_errors) + "\n";
  if (s.e2e_us.count() != 0) {
    out += "  e2e latency: " + std::to_string(s.e2e_us.count()) + " messages,";
    for (double p : kPercentiles) {
      out += ' ';
      out += percentile_label(p);
      out += ' ';
      out += micros_as_ms(s.e2e_us.percentile(p));
    }
    out += " max " + micros_as_ms(s.e2e_us.max()) + " ms\n";
  }
  return out;
}

std::string format_json(const SinkStats& s) {
  std::string out = "{";
  out += "\"connections\":" + std::to_string(s.connections);
  out += ",\"messages\":" + std::to_string(s.messages);
  out += ",\"recipients\":" + std::to_string(s.recipients);
  out += ",\"bytes\":" + std::to_string(s.bytes);
  out += ",\"store_errors\":" + std::to_string(s.store_errors);
  out += ",\"elapsed_s\":" + fixed(s.active_seconds(), 6);
  out += ",\"messages_per_s\":" + fixed(s.messages_per_second(), 3);
  out += ",\"faults\":" + per_point_json(s.faults);
  out += ",\"delays\":" + per_point_json(s.delays);
  out += ",\"drops\":" + per_point_json(s.drops);
  out += ",\"e2e_latency_ms\":{\"count\":" + std::to_string(s.e2e_us.count());
  const bool any = s.e2e_us.count() != 0;
  for (double p : kPercentiles) {
    out += ',';
    out += log::json_quote(percentile_label(p));
    out += ':';
    out += any ? micros_as_ms(s.e2e_us.percentile(p)) : "null";
  }
  out += ",\"max\":";
  out += any ? micros_as_ms(s.e2e_us.max()) : "null";
  out += "}}\n";
  return out;
}

}  // namespace tern::sink
