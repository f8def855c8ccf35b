#include "tools/tern_bench/options.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "mta/io/net.h"
#include "tools/tern_bench/pattern.h"

namespace tern::bench {

namespace {

bool parse_uint(const std::string& s, uint64_t max, uint64_t* out) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || n > max) return false;
  *out = n;
  return true;
}

bool parse_positive_double(const std::string& s, double max, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(d) || d <= 0 || d > max) return false;
  *out = d;
  return true;
}

}  // namespace

std::string auth_name(AuthMethod m) {
  switch (m) {
    case AuthMethod::plain: return "plain";
    case AuthMethod::login: return "login";
    case AuthMethod::none: break;
  }
  return "none";
}

std::string usage_text() {
  return "usage: tern-bench --target HOST:PORT [options]\n"
         "SMTP load generator: sends messages to any SMTP server and reports\n"
         "throughput, outcomes and latency percentiles.\n"
         "\n"
         "  --target HOST:PORT     server to load: IPv4 \"127.0.0.1:2525\" or \"[::1]:2525\" (required)\n"
         "  --messages N           messages in total (default 1000; with --duration: no count limit\n"
         "                         unless also given)\n"
         "  --duration SECONDS     run for this long instead of a message count (default: off)\n"
         "  --connections C        concurrent connections (default 10)\n"
         "  --per-connection M     messages per connection, then QUIT and reconnect\n"
         "                         (default 0: one connection for the whole run)\n"
         "  --recipients R         recipients per message (default 1)\n"
         "  --size SIZE            message size as sent, headers included: 1024, 1k, 100k, 1m, or a\n"
         "                         distribution SIZE:WEIGHT,... e.g. 1k:60,10k:30,100k:10 (default 1k)\n"
         "  --from ADDR            envelope and header sender (default bench@bench.test)\n"
         "  --to PATTERN           recipient pattern; {n} is a counter (every recipient distinct),\n"
         "                         {domain} one of --domains round-robin (default user{n}@sink.test)\n"
         "  --domains LIST         comma-separated domains for {domain} (default: none)\n"
         "  --no-pipelining        one command per round trip (default: pipeline when the server\n"
         "                         advertises PIPELINING)\n"
         "  --starttls             STARTTLS after EHLO, certificate not verified (default off)\n"
         "  --auth plain|login     authenticate with --user and --password (default: no AUTH)\n"
         "  --user U               AUTH user name\n"
         "  --password P           AUTH password\n"
         "  --bdat                 BDAT (CHUNKING) instead of DATA when the server advertises it\n"
         "                         (default off: DATA)\n"
         "  --rate MSGS_PER_S      paced message starts; latency measured from the scheduled start\n"
         "                         (default 0: open loop, as fast as the connections go)\n"
         "  --threads T            event loops (threads) (default min(2, CPUs))\n"
         "  --timeout SECONDS      limit for each reply, connect and send (default 30)\n"
         "  --helo NAME            EHLO/HELO name (default bench.test)\n"
         "  --seed N               seed for the size distribution's draws (default: random)\n"
         "  --json FILE            write the report as JSON to FILE (default: none)\n"
         "  --plot FILE.svg        write throughput over time and latency percentiles as SVG\n"
         "                         (default: none)\n"
         "  --quiet                no progress line and no text report (default off)\n"
         "  --help                 this text\n"
         "\n"
         "Exit status: 0 the run completed (whatever the server answered), 2 it could not run.\n";
}

Result<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  bool messages_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_inline = false;
    if (auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    auto need = [&]() -> bool {
      if (has_inline) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    auto flag = [&]() -> Status {
      if (has_inline) return Error{name + " takes no value"};
      return {};
    };
    auto bad = [&](const std::string& why) { return Error{name + ": " + why}; };
    static const char* const kFlags[] = {"--help", "-h", "--no-pipelining", "--starttls", "--bdat", "--quiet"};
    bool is_flag = false;
    for (const char* f : kFlags) is_flag = is_flag || name == f;
    if (is_flag) {
      if (auto st = flag(); !st) return Error{st.error()};
      if (name == "--help" || name == "-h") o.help = true;
      else if (name == "--no-pipelining") o.pipelining = false;
      else if (name == "--starttls") o.starttls = true;
      else if (name == "--bdat") o.bdat = true;
      else o.quiet = true;
      continue;
    }
    static const char* const kValued[] = {"--target", "--messages", "--duration", "--connections", "--per-connection",
                                          "--recipients", "--size", "--from", "--to", "--domains", "--auth",
                                          "--user", "--password", "--rate", "--threads", "--timeout", "--helo",
                                          "--json", "--plot", "--seed"};
    bool known = false;
    for (const char* v : kValued) known = known || name == v;
    if (!known) return Error{"unknown option " + name + " (see --help)"};
    if (!need()) return Error{name + " needs a value"};
    uint64_t n = 0;
    if (name == "--target") {
      auto ep = io::parse_endpoint(value);
      if (!ep) return bad(ep.error());
      o.target = value;
    } else if (name == "--messages") {
      if (!parse_uint(value, uint64_t{1} << 40, &n) || n == 0) return bad("want a positive integer");
      o.messages = n;
      messages_given = true;
    } else if (name == "--duration") {
      if (!parse_positive_double(value, 7 * 86400.0, &o.duration_s)) return bad("want seconds > 0");
    } else if (name == "--connections") {
      if (!parse_uint(value, 100'000, &n) || n == 0) return bad("want 1..100000");
      o.connections = static_cast<unsigned>(n);
    } else if (name == "--per-connection") {
      if (!parse_uint(value, uint64_t{1} << 40, &n)) return bad("want an integer >= 0");
      o.per_connection = n;
    } else if (name == "--recipients") {
      if (!parse_uint(value, 100'000, &n) || n == 0) return bad("want 1..100000");
      o.recipients = static_cast<unsigned>(n);
    } else if (name == "--size") {
      auto d = SizeDistribution::parse(value);
      if (!d) return bad(d.error());
      o.size = std::move(d.value());
      o.size_text = value;
    } else if (name == "--from") {
      if (auto st = check_pattern(value, 1); !st || value.find('{') != std::string::npos)
        return bad(st ? "placeholders are for --to" : st.error());
      o.from = value;
    } else if (name == "--to") {
      o.to = value;  // checked below, once --domains is known
    } else if (name == "--domains") {
      auto d = parse_domain_list(value);
      if (!d) return bad(d.error());
      o.domains = std::move(d.value());
    } else if (name == "--auth") {
      if (value == "plain" || value == "PLAIN") o.auth = AuthMethod::plain;
      else if (value == "login" || value == "LOGIN") o.auth = AuthMethod::login;
      else return bad("want plain or login");
    } else if (name == "--user") {
      o.user = value;
    } else if (name == "--password") {
      o.password = value;
    } else if (name == "--rate") {
      if (!parse_positive_double(value, 10'000'000.0, &o.rate)) return bad("want messages per second > 0");
    } else if (name == "--threads") {
      if (!parse_uint(value, 256, &n) || n == 0) return bad("want 1..256");
      o.threads = static_cast<unsigned>(n);
    } else if (name == "--timeout") {
      if (!parse_positive_double(value, 86400.0, &o.timeout_s)) return bad("want seconds > 0");
    } else if (name == "--helo") {
      if (value.empty() || value.find_first_of(" \t\r\n<>") != std::string::npos) return bad("want a host name");
      o.helo = value;
    } else if (name == "--json") {
      if (value.empty()) return bad("want a file name");
      o.json_path = value;
    } else if (name == "--plot") {
      if (value.empty()) return bad("want a file name");
      o.plot_path = value;
    } else if (name == "--seed") {
      if (!parse_uint(value, UINT64_MAX, &n)) return bad("want an integer");
      o.seed = n;
      o.seed_given = true;
    }
  }
  if (o.help) return o;
  if (o.target.empty()) return Error{"--target: required (HOST:PORT)"};
  if (auto st = check_pattern(o.to, o.domains.size()); !st) return Error{"--to: " + st.error()};
  if (o.auth != AuthMethod::none && (o.user.empty() || o.password.empty()))
    return Error{"--auth: needs --user and --password"};
  if (o.auth == AuthMethod::none && (!o.user.empty() || !o.password.empty()))
    return Error{o.user.empty() ? "--password: needs --auth" : "--user: needs --auth"};
  if (o.duration_s > 0 && !messages_given) o.messages = 0;
  return o;
}

}  // namespace tern::bench
