// ternd configuration: one TOML file, every key with a documented default
// (docs/configuration.md). Unknown keys and bad values are errors that name
// the line and the key.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "queue/result.h"

namespace tern {

struct Config {
  struct Server {
    std::string hostname;        // default: the machine's host name
    unsigned workers = 0;        // io_uring loops; 0 = one per CPU
    int64_t drain_timeout_ms = 30'000;  // graceful stop: time transactions get to finish
  } server;

  struct Smtp {
    std::vector<std::string> listen{"127.0.0.1:2525"};  // "ip:port" or "[ipv6]:port"
    uint64_t max_message_size = 52'428'800;  // bytes, 552 5.3.4 beyond
    unsigned max_recipients = 1000;          // 452 4.5.3 beyond
    unsigned max_command_line = 512;         // octets incl. CRLF, 500 5.5.2 beyond
    unsigned max_line_length = 1000;        // text line octets incl. CRLF, 500 5.5.2 beyond
    unsigned max_errors = 20;                // then 421 4.7.0 and close
    unsigned max_connections = 20'000;       // in total, 421 4.7.0 beyond
    unsigned max_connections_per_ip = 100;   // 421 4.7.0 beyond
    unsigned max_received_headers = 100;     // 554 5.4.6 beyond (mail loop)
    bool allow_bare_lf = false;              // else 550 5.6.0 for bare LF/CR in DATA
    int64_t command_timeout_ms = 300'000;    // RFC 5321 §4.5.3.2.7
    int64_t data_timeout_ms = 180'000;       // §4.5.3.2.5: between data blocks
    int64_t write_timeout_ms = 300'000;      // a reply must be accepted by the client within this
  } smtp;

  struct Tls {
    std::string certificate;  // PEM chain; STARTTLS is offered only when set
    std::string private_key;  // PEM
    std::string min_version = "TLSv1.2";  // "TLSv1.2" or "TLSv1.3"
  } tls;

  struct Relay {
    std::vector<std::string> local_domains;
    std::vector<std::string> relay_domains;
    std::vector<std::string> trusted_networks{"127.0.0.0/8", "::1/128"};
  } relay;

  struct Queue {
    std::string directory = "./var/spool";
    uint64_t min_free_space = 104'857'600;    // bytes; below it new transactions get 452 4.3.1
    int64_t space_check_interval_ms = 5'000;
    int64_t finished_retention_ms = 7LL * 24 * 3600 * 1000;
  } queue;

  struct Log {
    std::string format = "kv";      // "kv" (key=value) or "json"
    std::string target = "stderr";  // "stderr", "file" or "syslog"
    std::string file;               // path when target = "file"
  } log;

  struct Control {
    std::string socket = "./var/ternd.sock";  // ternctl's UNIX socket
  } control;
};

// One problem found in a configuration file.
struct ConfigError {
  unsigned line = 0;  // 1-based; 0 when not tied to a line
  std::string key;    // dotted, e.g. "smtp.max_errors"
  std::string message;
};

// Parse TOML text. On failure, every error found (not just the first).
struct ConfigParse {
  Config config;
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty(); }
};
ConfigParse parse_config(std::string_view toml_text, std::string_view source_name);
ConfigParse load_config_file(const std::string& path);

// The embedded default configuration (what `make run` starts with).
std::string_view default_config_toml();

// "line 12: smtp.max_errors: must be a positive integer"
std::string format_config_error(const ConfigError& e);

}  // namespace tern
