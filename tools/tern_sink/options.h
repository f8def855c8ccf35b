// tern-sink's command line. Pure: parsing and the help text, no I/O.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tools/tern_sink/fault_plan.h"

namespace tern::sink {

// ESMTP extensions tern-sink advertises (all by default), as bits.
enum Extension : uint32_t {
  kPipelining = 1u << 0,
  kDsn = 1u << 1,
  kStartTls = 1u << 2,
  k8BitMime = 1u << 3,
  kChunking = 1u << 4,
  kSize = 1u << 5,
  kSmtpUtf8 = 1u << 6,
  kEnhancedStatusCodes = 1u << 7,
};
inline constexpr uint32_t kAllExtensions = (1u << 8) - 1;

struct SinkOptions {
  std::vector<std::string> listen;  // "127.0.0.1:2526", "[::1]:2526"
  unsigned threads = 0;             // 0: one per CPU
  std::string hostname = "sink.test";
  std::string cert;  // both or neither; neither: a generated self-signed certificate
  std::string key;
  std::string json_path;
  std::string maildir;
  std::string mbox;
  uint64_t max_size = 52'428'800;  // SIZE limit; 552 5.3.4 beyond
  unsigned timeout_s = 300;        // every read and write has this deadline
  bool quiet = false;              // no summary on SIGUSR1 (the JSON is still written)
  FaultRules faults{};
  uint32_t extensions = kAllExtensions;  // advertised; --hide clears bits

  bool advertises(Extension e) const { return (extensions & e) != 0; }
};

inline constexpr std::string_view kDefaultListen = "127.0.0.1:2526";

struct HelpRequested {};
struct OptionError {
  std::string message;  // one line, for stderr
};
using ParsedOptions = std::variant<SinkOptions, HelpRequested, OptionError>;

// `args` excludes the program name. Options take their value as the next
// argument or after '=' (--threads=4).
ParsedOptions parse_options(std::span<const std::string_view> args);

// Every option with its default.
std::string usage_text();

}  // namespace tern::sink
