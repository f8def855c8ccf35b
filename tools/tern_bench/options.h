// tern-bench's command line. Pure: parse_options never prints or exits.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "queue/result.h"
#include "tools/tern_bench/size_dist.h"

namespace tern::bench {

enum class AuthMethod { none, plain, login };

struct Options {
  std::string target;                     // "127.0.0.1:2525" or "[::1]:2525" (required)
  uint64_t messages = 1000;               // 0 = unlimited (only with --duration)
  double duration_s = 0;                  // 0 = none
  unsigned connections = 10;
  uint64_t per_connection = 0;            // 0 = the whole run on one connection
  unsigned recipients = 1;
  SizeDistribution size = SizeDistribution::fixed(1024);
  std::string size_text = "1k";
  std::string from = "bench@bench.test";
  std::string to = "user{n}@sink.test";
  std::vector<std::string> domains;
  bool pipelining = true;                 // when the server advertises it
  bool starttls = false;
  AuthMethod auth = AuthMethod::none;
  std::string user;
  std::string password;
  bool bdat = false;                      // when the server advertises CHUNKING
  double rate = 0;                        // messages/s; 0 = open loop
  unsigned threads = 0;                   // 0 = min(2, CPUs), resolved by the caller
  double timeout_s = 30;
  std::string helo = "bench.test";
  std::string json_path;
  std::string plot_path;
  bool quiet = false;
  uint64_t seed = 0;                      // 0 = random
  bool seed_given = false;
  bool help = false;
};

// argv[1..]: "--name value" or "--name=value". The error names the option.
Result<Options> parse_options(const std::vector<std::string>& args);

// Every option with its default.
std::string usage_text();

std::string auth_name(AuthMethod m);

}  // namespace tern::bench
