#include "tools/tern_sink/options.h"

#include <array>
#include <charconv>
#include <optional>
#include <utility>

namespace tern::sink {
namespace {

constexpr std::array<std::pair<std::string_view, Extension>, 8> kExtensionNames = {{
    {"PIPELINING", kPipelining},
    {"DSN", kDsn},
    {"STARTTLS", kStartTls},
    {"8BITMIME", k8BitMime},
    {"CHUNKING", kChunking},
    {"SIZE", kSize},
    {"SMTPUTF8", kSmtpUtf8},
    {"ENHANCEDSTATUSCODES", kEnhancedStatusCodes},
}};

constexpr uint32_t kMaxDelayMs = 3'600'000;
constexpr unsigned kMaxThreads = 1024;

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

template <typename N>
std::optional<N> parse_number(std::string_view s) {
  N n{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return n;
}

// "POINT=VALUE[:FRACTION]" → point, value text, fraction (1 when absent).
struct PointSpec {
  Point point;
  std::string_view value;
  Fraction fraction;
};

std::optional<std::string> split_point_spec(std::string_view spec, bool has_value, PointSpec* out) {
  std::string_view rest = spec;
  std::string_view point_text;
  if (has_value) {
    size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return "expected POINT=VALUE, got '" + std::string(spec) + "'";
    point_text = rest.substr(0, eq);
    rest = rest.substr(eq + 1);
  }
  size_t colon = rest.find(':');
  std::string_view fraction_text;
  if (colon != std::string_view::npos) {
    fraction_text = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (has_value) {
    out->value = rest;
  } else {
    point_text = rest;
  }
  auto point = parse_point(point_text);
  if (!point) return "unknown point '" + std::string(point_text) + "' (banner, helo, mail, rcpt, data, dot)";
  out->point = *point;
  out->fraction = Fraction{};
  if (colon != std::string_view::npos) {
    auto f = parse_fraction(fraction_text);
    if (!f) return "bad fraction '" + std::string(fraction_text) + "' (a decimal from 0 to 1, e.g. 0.25)";
    out->fraction = *f;
  }
  return std::nullopt;
}

// One option's effect on `o`; an error message when its value is bad.
using Apply = std::optional<std::string> (*)(SinkOptions& o, std::string_view value);

struct OptionSpec {
  std::string_view name;
  bool takes_value;
  Apply apply;
};

std::optional<std::string> apply_fault(SinkOptions& o, std::string_view v) {
  PointSpec s{};
  if (auto err = split_point_spec(v, true, &s)) return err;
  auto code = parse_number<int>(s.value);
  if (!code || *code < 400 || *code > 599) return "fault code must be 400..599, got '" + std::string(s.value) + "'";
  auto& r = o.faults[static_cast<size_t>(s.point)];
  if (r.reply_code != 0) return "more than one --fault for " + std::string(point_name(s.point));
  r.reply_code = *code;
  r.reply_fraction = s.fraction;
  return std::nullopt;
}

std::optional<std::string> apply_delay(SinkOptions& o, std::string_view v) {
  PointSpec s{};
  if (auto err = split_point_spec(v, true, &s)) return err;
  auto ms = parse_number<uint32_t>(s.value);
  if (!ms || *ms == 0 || *ms > kMaxDelayMs)
    return "delay must be 1.." + std::to_string(kMaxDelayMs) + " ms, got '" + std::string(s.value) + "'";
  auto& r = o.faults[static_cast<size_t>(s.point)];
  if (r.delay_ms != 0) return "more than one --delay for " + std::string(point_name(s.point));
  r.delay_ms = *ms;
  r.delay_fraction = s.fraction;
  return std::nullopt;
}

std::optional<std::string> apply_drop(SinkOptions& o, std::string_view v) {
  PointSpec s{};
  if (auto err = split_point_spec(v, false, &s)) return err;
  auto& r = o.faults[static_cast<size_t>(s.point)];
  if (r.drop) return "more than one --drop for " + std::string(point_name(s.point));
  r.drop = true;
  r.drop_fraction = s.fraction;
  return std::nullopt;
}

std::optional<std::string> apply_hide(SinkOptions& o, std::string_view v) {
  while (true) {
    size_t comma = v.find(',');
    std::string name = upper(v.substr(0, comma));
    bool found = false;
    for (const auto& [ext_name, bit] : kExtensionNames) {
      if (name == ext_name) {
        o.extensions &= ~static_cast<uint32_t>(bit);
        found = true;
      }
    }
    if (!found) return "unknown extension '" + name + "'";
    if (comma == std::string_view::npos) return std::nullopt;
    v.remove_prefix(comma + 1);
  }
}

const std::array<OptionSpec, 16> kOptions = {{
    {"--listen", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.listen.emplace_back(v);
       return std::nullopt;
     }},
    {"--threads", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       auto n = parse_number<unsigned>(v);
       if (!n || *n == 0 || *n > kMaxThreads)
         return "--threads must be 1.." + std::to_string(kMaxThreads) + ", got '" + std::string(v) + "'";
       o.threads = *n;
       return std::nullopt;
     }},
    {"--hostname", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       if (v.empty() || v.find_first_of(" \t\r\n") != std::string_view::npos)
         return "--hostname must be a name without spaces";
       o.hostname = v;
       return std::nullopt;
     }},
    {"--cert", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.cert = v;
       return std::nullopt;
     }},
    {"--key", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.key = v;
       return std::nullopt;
     }},
    {"--json", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.json_path = v;
       return std::nullopt;
     }},
    {"--maildir", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.maildir = v;
       return std::nullopt;
     }},
    {"--mbox", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       o.mbox = v;
       return std::nullopt;
     }},
    {"--max-size", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       auto n = parse_number<uint64_t>(v);
       if (!n || *n == 0) return "--max-size must be a positive number of bytes, got '" + std::string(v) + "'";
       o.max_size = *n;
       return std::nullopt;
     }},
    {"--timeout", true,
     [](SinkOptions& o, std::string_view v) -> std::optional<std::string> {
       auto n = parse_number<unsigned>(v);
       if (!n || *n == 0 || *n > 86'400) return "--timeout must be 1..86400 seconds, got '" + std::string(v) + "'";
       o.timeout_s = *n;
       return std::nullopt;
     }},
    {"--quiet", false,
     [](SinkOptions& o, std::string_view) -> std::optional<std::string> {
       o.quiet = true;
       return std::nullopt;
     }},
    {"--fault", true, apply_fault},
    {"--delay", true, apply_delay},
    {"--drop", true, apply_drop},
    {"--hide", true, apply_hide},
    {"--help", false, nullptr},  // no apply: parse_options answers HelpRequested
}};

}  // namespace

ParsedOptions parse_options(std::span<const std::string_view> args) {
  SinkOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h") arg = "--help";
    std::string_view name = arg.substr(0, arg.find('='));
    const OptionSpec* spec = nullptr;
    for (const auto& s : kOptions)
      if (s.name == name) spec = &s;
    if (!spec) return OptionError{"unknown option '" + std::string(arg) + "' (see --help)"};
    if (!spec->apply) return HelpRequested{};
    std::string_view value;
    if (name.size() < arg.size()) {
      if (!spec->takes_value) return OptionError{std::string(name) + " takes no value"};
      value = arg.substr(name.size() + 1);
    } else if (spec->takes_value) {
      if (i + 1 >= args.size()) return OptionError{std::string(name) + " needs a value"};
      value = args[++i];
    }
    if (auto err = spec->apply(o, value)) return OptionError{std::string(name) + ": " + *err};
  }
  if (o.listen.empty()) o.listen.emplace_back(kDefaultListen);
  if (o.cert.empty() != o.key.empty()) return OptionError{"--cert and --key go together"};
  if (!o.maildir.empty() && !o.mbox.empty()) return OptionError{"--maildir and --mbox are exclusive"};
  return o;
}

std::string usage_text() {
  return "usage: tern-sink [options]\n"
         "A fast receiving SMTP server for load tests: counts what arrives, measures\n"
         "end-to-end latency (X-Tern-Bench-Sent), optionally stores, injects faults.\n"
         "Runs until SIGINT/SIGTERM; SIGUSR1 prints the summary and rewrites --json.\n"
         "\n"
         "  --listen HOST:PORT     address to listen on, repeatable; [IPv6]:PORT (default 127.0.0.1:2526)\n"
         "  --threads N            worker threads, one io_uring loop each (default: number of CPUs)\n"
         "  --hostname NAME        name in the banner and EHLO reply (default sink.test)\n"
         "  --cert FILE --key FILE certificate chain and key for STARTTLS (default: a generated\n"
         "                         self-signed certificate for --hostname)\n"
         "  --json FILE            write the report here at exit and on SIGUSR1 (default: none)\n"
         "  --maildir DIR          store each message in DIR/new (default: discard bodies)\n"
         "  --mbox FILE            append each message to FILE, mboxrd (default: discard bodies)\n"
         "  --max-size BYTES       SIZE limit, 552 5.3.4 beyond (default 52428800)\n"
         "  --timeout SECONDS      deadline of every read and write (default 300)\n"
         "  --quiet                no summary on SIGUSR1, only at exit (default: off)\n"
         "  --fault POINT=CODE[:FRACTION]  reply CODE (400..599) to FRACTION of the events at\n"
         "                         POINT (default fraction 1); repeatable, one per point\n"
         "  --delay POINT=MS[:FRACTION]    delay the reply by MS milliseconds (default fraction 1)\n"
         "  --drop POINT[:FRACTION]        close the connection without replying (default fraction 1)\n"
         "  --hide EXT[,EXT...]    do not advertise these extensions (default: advertise all of\n"
         "                         PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, DSN,\n"
         "                         STARTTLS, CHUNKING)\n"
         "  --help                 this text\n"
         "\n"
         "POINT is banner, helo, mail, rcpt, data (DATA or a BDAT chunk) or dot (after the content).\n"
         "Fractions are exact: of N events at a point, floor(N*FRACTION) get the fault.\n";
}

}  // namespace tern::sink
