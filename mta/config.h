// ternd configuration: one TOML file, every key with a documented default
// (docs/configuration.md). Unknown keys and bad values are errors that name
// the line and the key.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mta/io/tls_profile.h"
#include "queue/result.h"

namespace tern {

struct Config {
  struct Server {
    std::string hostname;        // default: the machine's host name
    unsigned workers = 0;        // io_uring loops; 0 = one per CPU
    int64_t drain_timeout_ms = 30'000;  // graceful stop: time transactions get to finish
    std::string user;   // started as root: become this account after binding the listeners; "" = stay
    std::string group;  // its group; "" = the user's login group
  } server;

  struct Smtp {
    std::vector<std::string> listen{"127.0.0.1:2525"};  // "ip:port" or "[ipv6]:port": MTA (port 25) listeners
    std::vector<std::string> submission;   // RFC 6409 (port 587): STARTTLS, AUTH required
    std::vector<std::string> submissions;  // RFC 8314 (port 465): implicit TLS, AUTH required
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
    std::string ciphers{io::kIntermediateCiphers};            // TLS 1.2 suites (OpenSSL syntax)
    std::string ciphersuites{io::kIntermediateCiphersuites};  // TLS 1.3 suites; "" = no TLS 1.3
  } tls;

  struct Relay {
    // The old system's six relay modes: "allow_all", "block_all", "domains"
    // (recipients in relay_domains), "addresses" (clients in
    // trusted_networks), "domains_and_addresses" (either), "pop_before_smtp"
    // (clients within pop_window minutes of a POP login).
    std::string mode = "domains_and_addresses";
    std::vector<std::string> local_domains;
    std::vector<std::string> relay_domains;    // the nearby-domains list
    std::vector<std::string> trusted_networks{"127.0.0.0/8", "::1/128"};  // the relay-address list
    unsigned pop_window_minutes = 30;          // 15..65535
    bool percent_routing = false;              // user%domain@us, towards local domains only
  } relay;

  struct Auth {
    std::string users_file = "./var/users";  // the user directory; "" = no users, AUTH not offered
    bool allow_plaintext = false;            // offer AUTH without TLS
    std::string require = "none";            // port 25: "none", "relay" (to relay), "all" (any mail)
    std::string sender_check = "off";        // "off", "all", "unlisted": sender must be the user's
    std::vector<std::string> sender_check_exempt;  // users not checked under "unlisted"
    unsigned max_failures = 5;               // then disconnect and refuse the IP for failure_block_time
    unsigned user_failures_per_minute = 10;  // failed logins per user (SMTP and POP3); then every login fails
    int64_t failure_delay_ms = 1'000;        // each failed attempt waits this long
    int64_t failure_block_time_ms = 600'000;
  } auth;

  struct Local {
    std::string maildir_root = "./var/mail";  // user NAME's Maildir is <root>/NAME/{tmp,new,cur}
    uint64_t quota = 0;                       // bytes per mailbox; 0 = unlimited
    std::vector<std::pair<std::string, uint64_t>> user_quotas;  // user -> bytes, instead of quota
    bool quota_permanent = false;             // over quota: 552 5.2.2 (true) or 452 4.2.2 (false)
    std::string recipient_delimiter = "+";    // user+tag@domain -> user; "" = off
    std::vector<std::pair<std::string, std::string>> catch_all;  // domain -> user or address
  } local;

  struct Pop3 {
    std::vector<std::string> listen;      // RFC 1939 (port 110), STLS offered
    std::vector<std::string> listen_tls;  // RFC 8314 (port 995), implicit TLS
    bool allow_plaintext = false;         // USER/PASS and AUTH PLAIN without TLS
    int64_t login_timeout_ms = 60'000;    // before a successful login
    int64_t timeout_ms = 600'000;         // after it (RFC 1939: at least 10 minutes)
    unsigned max_connections = 1'000;     // POP3 connections in total
    unsigned max_connections_per_ip = 20;
    unsigned max_sessions_per_user = 1;   // a second gets -ERR [IN-USE] (RFC 2449)
    unsigned max_failures = 3;            // failed logins per session before it is closed
    int64_t failure_delay_ms = 2'000;
  } pop3;

  struct Restrictions {
    std::vector<std::string> deny;           // client networks refused at connect
    std::vector<std::string> dnsbl;          // blocklist zones
    int64_t dnsbl_timeout_ms = 2'000;        // a slower list is ignored (fail open)
    bool override = true;                    // POP window or AUTH lets a refused client through
    unsigned connections_per_minute = 0;     // per client IP; 0 = unlimited
    unsigned messages_per_minute = 0;
    unsigned recipients_per_minute = 0;
  } restrictions;

  struct Delivery {
    bool enabled = true;                       // false: receive and queue only
    unsigned smtp_port = 25;                   // port of MX hosts (tests use another)
    unsigned loops = 0;                        // delivery loops (threads); 0 = as many as the workers
    unsigned max_connections = 500;            // outbound, in total
    unsigned max_per_destination = 20;         // connections per next hop
    unsigned active_limit = 20'000;            // messages taken into memory at once
    // Of them for one next hop; 0 = no bound of its own; unset = a quarter
    // of active_limit.
    std::optional<unsigned> active_per_destination;
    unsigned destination_rate = 0;             // messages/s per next hop; 0 = unlimited
    unsigned max_messages_per_connection = 100;
    int64_t connection_cache_time_ms = 5'000;  // idle connections wait this long for more mail
    std::string bind_address;                  // outbound source IP; "" = the kernel's choice
    int64_t connect_timeout_ms = 30'000;
    int64_t greeting_timeout_ms = 300'000;     // RFC 5321 §4.5.3.2.1
    int64_t command_timeout_ms = 300'000;
    int64_t data_timeout_ms = 600'000;         // content and the final reply (§4.5.3.2.6: 10 minutes)
    std::string tls = "may";                   // "none", "may", "encrypt", "verify"
    std::string ca_file;                       // PEM CAs for "verify"; "" = the system's
    int64_t scan_interval_ms = 1'000;          // how often due mail is looked for
  } delivery;
  struct Retry {
    unsigned first_count = 3;                        // retry.first.count, 0..99
    int64_t first_interval_ms = 5 * 60'000;          // retry.first.interval, 0..99 minutes
    int64_t second_interval_ms = 3'600'000;          // retry.second.interval
    int64_t max_age_ms = 5LL * 86'400'000;           // then the recipients fail
    unsigned jitter = 10;                            // percent an interval may be stretched
  } retry;
  struct Dsn {
    std::string postmaster;                    // double bounces; "" = "postmaster@" + server.hostname
    std::string double_bounce = "postmaster";  // a failed message from <>: "postmaster" or "drop"
    std::string failure_copy;                  // copy of every failure report to this address; "" = none
    bool failure_copy_content = false;         // the copy returns the message too
    std::string delay_notice = "retry2";       // "off", "retry2" (entering retry2) or a duration ("4h")
    int64_t delay_notice_after_ms = 0;         // delay_notice as a duration
    int64_t delay_notice_interval_ms = 86'400'000;  // at most one delay notice per recipient per this
    uint64_t max_returned_size = 102'400;      // 100 KiB; larger messages come back as headers only
  } dsn;
  struct TransportRule {
    std::string domain;    // "example.test" or "*.example.test"
    std::string next_hop;  // see mta/delivery/hop_spec.h
    std::string tls;       // "" = delivery.tls
    std::string user;
    std::string password;
  };
  struct Routing {
    std::string router;           // the mail router (smarthost): "host[:port]" or "[ip]:port"
    std::string router_user;
    std::string router_password;
    std::string router_tls;       // "" = delivery.tls
    bool firewall = false;        // every non-local recipient through the router
    std::string forward_host;     // "forward mail domain": all non-local mail to this host
    std::vector<std::string> etrn_domains;
    std::vector<TransportRule> transport;
  } routing;
  struct Dns {
    std::vector<std::string> servers;  // "ip", "ip:port", "[ipv6]:port"; empty: /etc/resolv.conf
    int64_t timeout_ms = 5'000;
    unsigned tries = 2;
    unsigned cache_entries = 10'000;
    std::string hosts_file;                    // /etc/hosts format, overrides DNS
    std::vector<std::string> local_addresses;  // more addresses that are us (MX loop detection)
  } dns;
  struct Queue {
    std::string directory = "./var/spool";
    uint64_t min_free_space = 209'715'200;    // bytes; below it new transactions get 452 4.3.1
    int64_t space_check_interval_ms = 5'000;
    int64_t finished_retention_ms = 0;  // 0: no finished log in the spool; the event log is the record
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

// server.workers as it applies: 0 means one per CPU.
unsigned worker_count(const Config& config);
// delivery.loops as it applies: 0 means as many as the workers.
unsigned delivery_loop_count(const Config& config, unsigned workers);
// delivery.active_per_destination as it applies: unset means a quarter of
// active_limit (at least 1); 0 means no bound of its own.
unsigned active_per_destination(const Config& config);

// The embedded default configuration (what `make run` starts with).
std::string_view default_config_toml();
// A duration as the configuration writes it: "250ms", "30s", "5m", "2h", "7d".
std::optional<int64_t> duration_ms_from_text(std::string_view text);

// "line 12: smtp.max_errors: must be a positive integer"
std::string format_config_error(const ConfigError& e);

}  // namespace tern
