#include "mta/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pwd.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <thread>

#include "mta/text.h"
#include "mta/delivery/hop_spec.h"
#include "mta/relay_policy.h"
#include "mta/smtp/address.h"

namespace tern {
namespace {

constexpr std::string_view kDefaultConfig =
    R"toml(# ternd configuration. Every key is optional; the values below are the
# defaults. Durations are whole seconds or a string such as "250ms", "30s",
# "5m", "2h", "7d". Sizes are bytes or a string such as "512K", "50M", "1G"
# (1K = 1024). Unknown keys are errors. Reference: docs/configuration.md.

[server]
# Name used in the greeting, EHLO reply and Received: headers.
# Default: the machine's host name (gethostname).
# hostname = "mx.example.com"
# io_uring event loops; 0 = one per CPU.
workers = 0
# On SIGTERM, how long open transactions get to finish before connections close.
drain_timeout = "30s"
# Started as root, ternd binds its listeners, gives the spool and its other
# directories to this account and becomes it for good before it reads any
# network input. "" = keep running as whoever started it.
user = ""
# The account's group; "" = the user's login group.
group = ""

[smtp]
# MTA listeners (port 25 in production): "ip:port" or "[ipv6]:port".
listen = ["127.0.0.1:2525"]
# Message submission (RFC 6409, port 587): STARTTLS, then AUTH is required.
submission = []
# Message submission over implicit TLS (RFC 8314, port 465); needs [tls].
submissions = []
# Larger messages get 552 5.3.4 (advertised in EHLO SIZE).
max_message_size = "50M"
# RCPT beyond this gets 452 4.5.3.
max_recipients = 1000
# Longest command line in octets including CRLF (RFC minimum 512); 500 5.5.2 beyond.
max_command_line = 512
# Longest text line of a message in octets including CRLF (RFC minimum 1000); 500 5.5.2 beyond.
max_line_length = 1000
# Failed commands per session before 421 4.7.0 and disconnect.
max_errors = 20
# Connections in total; 421 4.7.0 beyond.
max_connections = 20000
# Connections from one client address; 421 4.7.0 beyond.
max_connections_per_ip = 100
# A message with more Received: headers is a mail loop: 554 5.4.6.
max_received_headers = 100
# Accept bare LF or CR line endings in message data (otherwise 550 5.6.0).
allow_bare_lf = false
# Idle time allowed while waiting for a command (RFC 5321 4.5.3.2.7).
command_timeout = "5m"
# Idle time allowed between blocks of message data (RFC 5321 4.5.3.2.5).
data_timeout = "3m"
# Time a client gets to accept a reply before the connection is closed.
write_timeout = "5m"

[tls]
# PEM certificate chain and private key; STARTTLS is offered only when both are set.
certificate = ""
private_key = ""
# "TLSv1.2" or "TLSv1.3".
min_version = "TLSv1.2"
# Suites accepted on every listener, in OpenSSL's syntax. The defaults are
# Mozilla's "intermediate" profile: for TLS 1.2 only forward secrecy (ECDHE,
# DHE) with AEAD ciphers, and all of TLS 1.3.
ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
# TLS 1.3 suites; "" turns TLS 1.3 off.
ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

[relay]
# Who may relay (send to domains that are not local): "allow_all",
# "block_all", "domains" (recipients in relay_domains), "addresses" (clients
# in trusted_networks), "domains_and_addresses" (either), "pop_before_smtp"
# (clients within pop_window minutes of a POP login). Authenticated clients
# may relay in every mode but "block_all".
mode = "domains_and_addresses"
# Mail for these domains is delivered here, whoever sends it.
local_domains = []
# The nearby domains: relayed for anyone in modes "domains" and
# "domains_and_addresses".
relay_domains = []
# The relay addresses (networks) of modes "addresses" and "domains_and_addresses".
trusted_networks = ["127.0.0.0/8", "::1/128"]
# The POP-before-SMTP window in minutes (15-65535).
pop_window = 30
# "user%domain@here" delivered to user@domain, only when both domains are local.
percent_routing = false

[auth]
# The user directory (ternctl user add ...); "" = no users, AUTH not offered.
users_file = "./var/users"
# Offer AUTH PLAIN/LOGIN without TLS (passwords in the clear).
allow_plaintext = false
# On MTA listeners: "none", "relay" (relaying needs AUTH) or "all" (all mail does).
# Submission listeners always require AUTH.
require = "none"
# Envelope senders of authenticated clients must be their own addresses:
# "off", "all" users, or "unlisted" (all but sender_check_exempt).
sender_check = "off"
sender_check_exempt = []
# Failed AUTH attempts wait failure_delay each; after max_failures the client
# is disconnected and refused for failure_block_time.
max_failures = 5
failure_delay = "1s"
failure_block_time = "10m"
# Failed logins (SMTP AUTH and POP3) per user and minute, from any address;
# beyond it every login of that user fails for the rest of the minute.
user_failures_per_minute = 10

[local]
# Mail for users of relay.local_domains goes into <maildir_root>/<user>/ (Maildir).
maildir_root = "./var/mail"
# Bytes per mailbox; 0 = unlimited. Over quota: 452 4.2.2, or 552 5.2.2
# when quota_permanent is true.
quota = 0
# Quotas of particular users, instead of quota: { "alice" = "1G", "bob" = 0 }
user_quotas = {}
quota_permanent = false
# user+tag@domain is delivered to user; "" turns plus-addressing off.
recipient_delimiter = "+"
# Per domain, where mail for unknown local parts goes (a user or an address):
# catch_all = { "example.org" = "postmaster" }
catch_all = {}

[pop3]
# POP3 listeners (RFC 1939, port 110, with STLS) and over implicit TLS (port 995).
listen = []
listen_tls = []
# Accept USER/PASS and AUTH PLAIN without TLS.
allow_plaintext = false
# Inactivity allowed before and after login.
login_timeout = "1m"
timeout = "10m"
# POP3 connections in total, and from one address.
max_connections = 1000
max_connections_per_ip = 20
# Sessions per mailbox; another gets -ERR [IN-USE].
max_sessions_per_user = 1
# Failed logins per session (each delayed) before the session is closed.
max_failures = 3
failure_delay = "2s"

[restrictions]
# Clients refused at connect (MTA listeners): networks, and DNS blocklists.
deny = []
dnsbl = []
# A blocklist slower than this is ignored (the client is let in).
dnsbl_timeout = "2s"
# A refused client inside the POP-before-SMTP window, or one that
# authenticates, is let through.
override = true
# Per client IP and minute; 0 = unlimited (421/451 4.7.0 beyond).
connections_per_minute = 0
messages_per_minute = 0
recipients_per_minute = 0

[delivery]
# false: receive and queue only; nothing leaves.
enabled = true
# Port of MX hosts (and of next hops written without a port).
smtp_port = 25
# Delivery threads, each with its io_uring loop and its share of the next
# hops; 0 = as many as server.workers.
loops = 0
# Outbound connections in total, and per next hop.
max_connections = 500
max_per_destination = 20
# Messages being delivered at once (in memory); the rest wait in the spool.
active_limit = 20000
# Of them for one next hop, so that a slow destination cannot take them
# all; 0 = no bound of its own. Default: a quarter of active_limit.
# active_per_destination = 5000
# Messages per second per next hop; 0 = unlimited.
destination_rate = 0
# Messages one connection carries (RSET between) before it is closed.
max_messages_per_connection = 100
# How long an idle connection waits for more mail to the same next hop.
connection_cache_time = "5s"
# Outbound source address (for NAT); "" = the kernel's choice.
bind_address = ""
# RFC 5321 4.5.3.2 timeouts.
connect_timeout = "30s"
greeting_timeout = "5m"
command_timeout = "5m"
data_timeout = "10m"
# STARTTLS towards other servers: "none", "may", "encrypt" or "verify".
tls = "may"
# CA certificates (PEM) for "verify"; "" = the system's.
ca_file = ""
# How often the queues are searched for due mail (new mail leaves at once).
scan_interval = "1s"

[retry]
# After this age the remaining recipients fail.
max_age = "5d"
# Each retry interval is stretched by up to this percentage, so that a
# burst of failures does not retry in lockstep.
jitter = 10

[retry.first]
# First-level retries (0-99), every interval (0-99 minutes).
count = 3
interval = "5m"

[retry.second]
# Then second-level retries every interval (hours or days: "2h", "1d").
interval = "1h"

[dsn]
# Delivery status notifications (RFC 3464) go from <> to the sender.
# The postmaster: double bounces go here; "" = postmaster@<server.hostname>.
postmaster = ""
# A failed message from <> (itself a notice): "postmaster" or "drop".
double_bounce = "postmaster"
# Copy of every failure report to this address (a non-delivery mailbox); "" = none.
failure_copy = ""
# Whether that copy returns the failed message too (else only the report).
failure_copy_content = false
# Delay notices: "off", "retry2" (when a recipient enters the second-level
# retry queue) or a duration ("4h": once the message has waited that long).
delay_notice = "retry2"
# At most one delay notice per recipient per this period.
delay_notice_interval = "1d"
# Messages larger than this are returned as their header only.
max_returned_size = "100K"

[routing]
# The mail router (smarthost): "host", "host:port" or "[ip]:port".
router = ""
# AUTH credentials for the router (both or neither).
router_user = ""
router_password = ""
# STARTTLS policy towards the router; "" = delivery.tls.
router_tls = ""
# Send every non-local recipient through the router (firewall mode).
firewall = false
# "Forward mail domain": all non-local mail to this host.
forward_host = ""
# Domains clients may ask for with ETRN (RFC 1985).
etrn_domains = []
# Transport table, first match wins (exact domains before "*.domain"):
# [[routing.transport]]
# domain = "*.corp.example"
# next_hop = "[10.0.0.5]:25"     # or "mx:other.example", "host", "host:port"
# tls = "encrypt"                 # optional
# user = "u"                      # optional, with password
# password = "p"

[dns]
# DNS servers: "ip", "ip:port" or "[ipv6]:port"; [] = /etc/resolv.conf.
servers = []
# Per try, and tries per server.
timeout = "5s"
tries = 2
# Record sets kept in the cache (TTLs honoured); 0 disables it.
cache_entries = 10000
# Local host table in /etc/hosts format, checked before DNS; "" = none.
hosts_file = ""
# Addresses that are this server besides smtp.listen (an MX pointing at
# one of them is a mail loop).
local_addresses = []

[queue]
# Spool directory (RocksDB), created if missing.
directory = "./var/spool"
# Below this much free disk space new transactions get 452 4.3.1. Never
# less than RocksDB's write reserve (about 75M) plus smtp.max_message_size:
# a lower value is raised to that (min_free_space_raised in the log).
min_free_space = "200M"
# How often free disk space is measured while no mail arrives.
space_check_interval = "5s"
# How long the spool keeps a summary of each finished message; "0s": none
# (the event log is the record, as with Postfix).
finished_retention = "0s"

[log]
# "kv" (key=value) or "json".
format = "kv"
# "stderr", "file" or "syslog" (facility mail).
target = "stderr"
# Path of the log file when target = "file".
file = ""

[control]
# UNIX socket that ternctl talks to.
socket = "./var/ternd.sock"
)toml";

constexpr std::array<std::string_view, 4> kTlsPolicies = {"none", "may", "encrypt", "verify"};
// For a hop's own policy: "" takes delivery.tls.
constexpr std::array<std::string_view, 5> kHopTlsPolicies = {"", "none", "may", "encrypt", "verify"};

bool ip_address(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// Ten years. Durations are converted to microseconds and added to clock
// readings elsewhere; this keeps every such sum far from overflowing.
constexpr int64_t kMaxDurationMs = 3650LL * 86'400'000;

unsigned line_of(const toml::node& node) {
  return static_cast<unsigned>(node.source().begin.line);
}

// Implicitly created tables ([a.b] creating a) carry no position of their
// own; their key still has one.
unsigned line_of(const toml::key& name, const toml::node& node) {
  const unsigned line = line_of(node);
  return line != 0 ? line : static_cast<unsigned>(name.source().begin.line);
}


bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Non-empty decimal digits that fit in uint64_t.
std::optional<uint64_t> parse_digits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    const uint64_t digit = uint64_t(c - '0');
    if (n > (UINT64_MAX - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
  }
  return n;
}

std::optional<uint64_t> checked_multiply(uint64_t a, uint64_t b, uint64_t limit) {
  if (a != 0 && b > limit / a) return std::nullopt;
  return a * b;
}

// Whether OpenSSL takes `list` as TLS 1.2 ciphers (SSL_CTX_set_cipher_list)
// or as TLS 1.3 suites (SSL_CTX_set_ciphersuites). Asked on a scratch
// context, so that a list it refuses is an error in the file, not a failed
// start or reload.
bool openssl_takes(const std::string& list, bool tls13) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_method()), SSL_CTX_free);
  const bool taken = ctx && (tls13 ? SSL_CTX_set_ciphersuites(ctx.get(), list.c_str())
                                   : SSL_CTX_set_cipher_list(ctx.get(), list.c_str())) == 1;
  ERR_clear_error();  // the refusal's reasons, which nobody else must find in this thread's queue
  return taken;
}

}  // namespace

// "250ms", "30s", "5m", "2h", "7d" -> milliseconds.
std::optional<int64_t> duration_ms_from_text(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  const auto number = parse_digits(text.substr(0, digits));
  if (!number) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  uint64_t ms_per_unit = 0;
  if (unit == "ms")
    ms_per_unit = 1;
  else if (unit == "s")
    ms_per_unit = 1000;
  else if (unit == "m")
    ms_per_unit = 60'000;
  else if (unit == "h")
    ms_per_unit = 3'600'000;
  else if (unit == "d")
    ms_per_unit = 86'400'000;
  else
    return std::nullopt;
  const auto ms = checked_multiply(*number, ms_per_unit, INT64_MAX);
  if (!ms) return std::nullopt;
  return static_cast<int64_t>(*ms);
}

namespace {

// "1048576", "512K", "50M", "50MB", "50MiB", "1G", "2T" -> bytes (1K = 1024).
std::optional<uint64_t> size_from_text(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  const auto number = parse_digits(text.substr(0, digits));
  if (!number) return std::nullopt;
  std::string unit;
  for (char c : text.substr(digits)) unit += ascii_lower(c);
  if (unit.empty() || unit == "b") return number;
  static constexpr std::string_view kPrefixes = "kmgt";
  const size_t power = kPrefixes.find(unit[0]);
  if (power == std::string_view::npos) return std::nullopt;
  const std::string_view rest = std::string_view(unit).substr(1);
  if (!rest.empty() && rest != "b" && rest != "ib") return std::nullopt;
  uint64_t multiplier = 1;
  for (size_t i = 0; i <= power; ++i) multiplier *= 1024;
  return checked_multiply(*number, multiplier, UINT64_MAX);
}

// Why `entry` is not "ip:port" or "[ipv6]:port"; empty when it is.
std::string listen_problem(std::string_view entry) {
  std::string_view host;
  std::string_view port;
  int family = AF_INET;
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find("]:");
    if (close == std::string_view::npos) return quoted(entry) + " is not ip:port or [ipv6]:port";
    host = entry.substr(1, close - 1);
    port = entry.substr(close + 2);
    family = AF_INET6;
  } else {
    const auto colon = entry.rfind(':');
    if (colon == std::string_view::npos) return quoted(entry) + " is not ip:port or [ipv6]:port";
    host = entry.substr(0, colon);
    port = entry.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return quoted(entry) + ": an IPv6 address must be in brackets, e.g. \"[::1]:25\"";
    }
  }
  char buffer[INET6_ADDRSTRLEN] = {};
  unsigned char address[16];
  if (host.size() >= sizeof buffer) return quoted(entry) + ": " + quoted(host) + " is not an IP address";
  std::memcpy(buffer, host.data(), host.size());
  if (inet_pton(family, buffer, address) != 1) return quoted(entry) + ": " + quoted(host) + " is not an IP address";
  const auto number = port.size() <= 5 ? parse_digits(port) : std::nullopt;
  if (!number || *number < 1 || *number > 65535) return quoted(entry) + ": port must be 1-65535";
  return {};
}

// Domains in the relay lists are compared with recipient domains as they
// are written in RCPT TO, so anything that can never appear there is a typo.
bool plausible_domain(std::string_view domain) {
  if (domain.empty() || domain.front() == '.' || domain.back() == '.') return false;
  if (domain.find("..") != std::string_view::npos) return false;
  for (unsigned char c : domain) {
    if (c <= ' ' || c == 0x7f || c == '@' || c == '[' || c == ']') return false;
  }
  return true;
}

// RFC 1123 host name: it goes verbatim into the greeting and Received: headers.
bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool allowed = is_digit(c) || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!allowed || ++label > 63) return false;
  }
  return label != 0;
}

std::string system_hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

class ConfigReader {
 public:
  ConfigReader(Config& config, std::vector<ConfigError>& errors) : config_(config), errors_(errors) {}

  void read(const toml::table& root) {
    for (auto&& [name, node] : root) {
      const std::string key(name.str());
      const toml::table* table = node.as_table();
      if (key == "server" || key == "smtp" || key == "tls" || key == "relay" || key == "queue" || key == "log" ||
          key == "control" || key == "delivery" || key == "retry" || key == "routing" || key == "dns" ||
          key == "dsn" || key == "auth" || key == "restrictions" || key == "local" || key == "pop3") {
        if (!table) {
          fail(line_of(name, node), key, "must be a table ([" + key + "])");
          continue;
        }
        read_section(key, *table);
      } else {
        fail(line_of(name, node), key,
             table ? "unknown table" : "unknown key (settings belong in a table such as [server])");
      }
    }
    check_combinations();
    if (!lines_.contains("server.hostname")) config_.server.hostname = system_hostname();
    if (config_.dsn.postmaster.empty()) config_.dsn.postmaster = "postmaster@" + config_.server.hostname;
  }

 private:
  void fail(unsigned line, std::string key, std::string message) {
    errors_.push_back(ConfigError{line, std::move(key), std::move(message)});
  }

  void read_section(const std::string& section, const toml::table& table) {
    for (auto&& [name, node] : table) {
      const std::string key = section + "." + std::string(name.str());
      lines_[key] = line_of(name, node);
      if (key == "retry.first" || key == "retry.second") {
        if (const toml::table* sub = node.as_table()) {
          read_section(key, *sub);
        } else {
          fail(lines_[key], key, "must be a table ([" + key + "])");
        }
        continue;
      }
      if (!read_key(key, node)) fail(lines_[key], key, "unknown key");
    }
  }

  // False when `key` is not a configuration key.
  bool read_key(const std::string& key, const toml::node& node) {
    auto& server = config_.server;
    auto& smtp = config_.smtp;
    auto& tls = config_.tls;
    auto& relay = config_.relay;
    auto& queue = config_.queue;
    auto& log = config_.log;
    auto& delivery = config_.delivery;
    auto& retry = config_.retry;
    auto& routing = config_.routing;

    // One line per key reads as a table.
    // clang-format off
    if (key == "server.hostname") read_hostname(key, node);
    else if (key == "server.workers") read_count(key, node, 0, server.workers);
    else if (key == "server.drain_timeout") read_duration(key, node, true, server.drain_timeout_ms);
    else if (key == "server.user") read_account(key, node, false, server.user);
    else if (key == "server.group") read_account(key, node, true, server.group);

    else if (key == "smtp.listen") read_listen(key, node, false, smtp.listen);
    else if (key == "smtp.submission") read_listen(key, node, true, smtp.submission);
    else if (key == "smtp.submissions") read_listen(key, node, true, smtp.submissions);
    else if (key == "smtp.max_message_size") read_size(key, node, false, smtp.max_message_size);
    else if (key == "smtp.max_recipients") read_count(key, node, 1, smtp.max_recipients);
    // RFC 5321 §4.5.3.1.4 and §4.5.3.1.6 minimums: smaller limits refuse
    // conforming clients.
    else if (key == "smtp.max_command_line") read_count(key, node, 512, smtp.max_command_line);
    else if (key == "smtp.max_line_length") read_count(key, node, 1000, smtp.max_line_length);
    else if (key == "smtp.max_errors") read_count(key, node, 1, smtp.max_errors);
    else if (key == "smtp.max_connections") read_count(key, node, 1, smtp.max_connections);
    else if (key == "smtp.max_connections_per_ip") read_count(key, node, 1, smtp.max_connections_per_ip);
    else if (key == "smtp.max_received_headers") read_count(key, node, 1, smtp.max_received_headers);
    else if (key == "smtp.allow_bare_lf") read_bool(key, node, smtp.allow_bare_lf);
    else if (key == "smtp.command_timeout") read_duration(key, node, false, smtp.command_timeout_ms);
    else if (key == "smtp.data_timeout") read_duration(key, node, false, smtp.data_timeout_ms);
    else if (key == "smtp.write_timeout") read_duration(key, node, false, smtp.write_timeout_ms);

    else if (key == "tls.certificate") read_string(key, node, tls.certificate);
    else if (key == "tls.private_key") read_string(key, node, tls.private_key);
    else if (key == "tls.min_version") read_choice(key, node, {"TLSv1.2", "TLSv1.3"}, tls.min_version);
    else if (key == "tls.ciphers") read_cipher_list(key, node, false, tls.ciphers);
    else if (key == "tls.ciphersuites") read_cipher_list(key, node, true, tls.ciphersuites);

    else if (key == "relay.mode") read_choice(key, node, {"allow_all", "block_all", "domains", "addresses", "domains_and_addresses", "pop_before_smtp"}, relay.mode);
    else if (key == "relay.pop_window") read_bounded(key, node, 15, 65535, relay.pop_window_minutes);
    else if (key == "relay.percent_routing") read_bool(key, node, relay.percent_routing);
    else if (key == "relay.local_domains") read_domains(key, node, relay.local_domains);
    else if (key == "relay.relay_domains") read_domains(key, node, relay.relay_domains);
    else if (key == "relay.trusted_networks") read_networks(key, node, relay.trusted_networks);

    else if (key == "auth.users_file") read_string(key, node, config_.auth.users_file);
    else if (key == "auth.allow_plaintext") read_bool(key, node, config_.auth.allow_plaintext);
    else if (key == "auth.require") read_choice(key, node, {"none", "relay", "all"}, config_.auth.require);
    else if (key == "auth.sender_check") read_choice(key, node, {"off", "all", "unlisted"}, config_.auth.sender_check);
    else if (key == "auth.sender_check_exempt") read_user_names(key, node, config_.auth.sender_check_exempt);
    else if (key == "auth.max_failures") read_bounded(key, node, 1, 1000, config_.auth.max_failures);
    else if (key == "auth.user_failures_per_minute") read_bounded(key, node, 1, 100000, config_.auth.user_failures_per_minute);
    else if (key == "auth.failure_delay") read_duration(key, node, true, config_.auth.failure_delay_ms);
    else if (key == "auth.failure_block_time") read_duration(key, node, true, config_.auth.failure_block_time_ms);

    else if (key == "local.maildir_root") read_path(key, node, config_.local.maildir_root);
    else if (key == "local.quota") read_size(key, node, true, config_.local.quota);
    else if (key == "local.quota_permanent") read_bool(key, node, config_.local.quota_permanent);
    else if (key == "local.recipient_delimiter") read_delimiter(key, node);
    else if (key == "local.catch_all") read_catch_all(key, node);
    else if (key == "local.user_quotas") read_user_quotas(key, node);

    else if (key == "pop3.listen") read_listen(key, node, true, config_.pop3.listen);
    else if (key == "pop3.listen_tls") read_listen(key, node, true, config_.pop3.listen_tls);
    else if (key == "pop3.allow_plaintext") read_bool(key, node, config_.pop3.allow_plaintext);
    else if (key == "pop3.login_timeout") read_duration(key, node, false, config_.pop3.login_timeout_ms);
    else if (key == "pop3.timeout") read_duration(key, node, false, config_.pop3.timeout_ms);
    else if (key == "pop3.max_connections") read_count(key, node, 1, config_.pop3.max_connections);
    else if (key == "pop3.max_connections_per_ip") read_count(key, node, 1, config_.pop3.max_connections_per_ip);
    else if (key == "pop3.max_sessions_per_user") read_count(key, node, 1, config_.pop3.max_sessions_per_user);
    else if (key == "pop3.max_failures") read_bounded(key, node, 1, 100, config_.pop3.max_failures);
    else if (key == "pop3.failure_delay") read_duration(key, node, true, config_.pop3.failure_delay_ms);

    else if (key == "restrictions.deny") read_networks(key, node, config_.restrictions.deny);
    else if (key == "restrictions.dnsbl") read_domains(key, node, config_.restrictions.dnsbl);
    else if (key == "restrictions.dnsbl_timeout") read_duration(key, node, false, config_.restrictions.dnsbl_timeout_ms);
    else if (key == "restrictions.override") read_bool(key, node, config_.restrictions.override);
    else if (key == "restrictions.connections_per_minute") read_count(key, node, 0, config_.restrictions.connections_per_minute);
    else if (key == "restrictions.messages_per_minute") read_count(key, node, 0, config_.restrictions.messages_per_minute);
    else if (key == "restrictions.recipients_per_minute") read_count(key, node, 0, config_.restrictions.recipients_per_minute);

    else if (key == "queue.directory") read_path(key, node, queue.directory);
    else if (key == "queue.min_free_space") read_size(key, node, true, queue.min_free_space);
    else if (key == "queue.space_check_interval") read_duration(key, node, false, queue.space_check_interval_ms);
    else if (key == "queue.finished_retention") read_duration(key, node, true, queue.finished_retention_ms);

    else if (key == "log.format") read_choice(key, node, {"kv", "json"}, log.format);
    else if (key == "log.target") read_choice(key, node, {"stderr", "file", "syslog"}, log.target);
    else if (key == "log.file") read_string(key, node, log.file);

    else if (key == "delivery.enabled") read_bool(key, node, delivery.enabled);
    else if (key == "delivery.smtp_port") read_port(key, node, delivery.smtp_port);
    else if (key == "delivery.loops") read_count(key, node, 0, delivery.loops);
    else if (key == "delivery.max_connections") read_count(key, node, 1, delivery.max_connections);
    else if (key == "delivery.max_per_destination") read_count(key, node, 1, delivery.max_per_destination);
    else if (key == "delivery.active_limit") read_count(key, node, 1, delivery.active_limit);
    else if (key == "delivery.active_per_destination") read_count(key, node, 0, delivery.active_per_destination.emplace());
    else if (key == "delivery.destination_rate") read_count(key, node, 0, delivery.destination_rate);
    else if (key == "delivery.max_messages_per_connection") read_count(key, node, 1, delivery.max_messages_per_connection);
    else if (key == "delivery.connection_cache_time") read_duration(key, node, true, delivery.connection_cache_time_ms);
    else if (key == "delivery.bind_address") read_ip(key, node, true, delivery.bind_address);
    else if (key == "delivery.connect_timeout") read_duration(key, node, false, delivery.connect_timeout_ms);
    else if (key == "delivery.greeting_timeout") read_duration(key, node, false, delivery.greeting_timeout_ms);
    else if (key == "delivery.command_timeout") read_duration(key, node, false, delivery.command_timeout_ms);
    else if (key == "delivery.data_timeout") read_duration(key, node, false, delivery.data_timeout_ms);
    else if (key == "delivery.tls") read_choice(key, node, kTlsPolicies, delivery.tls);
    else if (key == "delivery.ca_file") read_string(key, node, delivery.ca_file);
    else if (key == "delivery.scan_interval") read_duration(key, node, false, delivery.scan_interval_ms);

    // The old system's ranges: 0-99 first-level retries, 0-99 minutes apart.
    else if (key == "retry.first.count") read_bounded(key, node, 0, 99, retry.first_count);
    else if (key == "retry.first.interval") read_duration_at_most(key, node, 99 * 60'000, "\"99m\"", retry.first_interval_ms);
    else if (key == "retry.second.interval") read_duration(key, node, false, retry.second_interval_ms);
    else if (key == "retry.max_age") read_duration(key, node, false, retry.max_age_ms);
    else if (key == "retry.jitter") read_bounded(key, node, 0, 100, retry.jitter);

    else if (key == "routing.router") read_hop(key, node, false, routing.router);
    else if (key == "routing.router_user") read_string(key, node, routing.router_user);
    else if (key == "routing.router_password") read_string(key, node, routing.router_password);
    else if (key == "routing.router_tls") read_choice(key, node, kHopTlsPolicies, routing.router_tls);
    else if (key == "routing.firewall") read_bool(key, node, routing.firewall);
    else if (key == "routing.forward_host") read_hop(key, node, false, routing.forward_host);
    else if (key == "routing.etrn_domains") read_domains(key, node, routing.etrn_domains);
    else if (key == "routing.transport") read_transport(key, node);

    else if (key == "dns.servers") read_dns_servers(key, node);
    else if (key == "dns.timeout") read_duration(key, node, false, config_.dns.timeout_ms);
    else if (key == "dns.tries") read_bounded(key, node, 1, 10, config_.dns.tries);
    else if (key == "dns.cache_entries") read_count(key, node, 0, config_.dns.cache_entries);
    else if (key == "dns.hosts_file") read_string(key, node, config_.dns.hosts_file);
    else if (key == "dns.local_addresses") read_ips(key, node, config_.dns.local_addresses);

    else if (key == "dsn.postmaster") read_address(key, node, config_.dsn.postmaster);
    else if (key == "dsn.double_bounce") read_choice(key, node, {"postmaster", "drop"}, config_.dsn.double_bounce);
    else if (key == "dsn.failure_copy") read_address(key, node, config_.dsn.failure_copy);
    else if (key == "dsn.failure_copy_content") read_bool(key, node, config_.dsn.failure_copy_content);
    else if (key == "dsn.delay_notice") read_delay_notice(key, node);
    else if (key == "dsn.delay_notice_interval") read_duration(key, node, false, config_.dsn.delay_notice_interval_ms);
    else if (key == "dsn.max_returned_size") read_size(key, node, false, config_.dsn.max_returned_size);

    else if (key == "control.socket") read_path(key, node, config_.control.socket);
    else return false;
    // clang-format on
    return true;
  }

  // An address without angle brackets ("user@domain"); "" allowed.
  // A user or group name that exists on this machine ("" = none).
  void read_account(const std::string& key, const toml::node& node, bool is_group, std::string& out) {
    std::string name;
    if (!read_string(key, node, name)) return;
    if (!name.empty()) {
      bool exists = is_group ? getgrnam(name.c_str()) != nullptr : getpwnam(name.c_str()) != nullptr;
      if (!exists) {
        fail(line_of(node), key, std::string("no such ") + (is_group ? "group " : "user ") + quoted(name));
        return;
      }
    }
    out = std::move(name);
  }

  void read_address(const std::string& key, const toml::node& node, std::string& out) {
    std::string text;
    if (!read_string(key, node, text)) return;
    if (!text.empty()) {
      auto parsed = smtp::parse_path(concat({"<", text, ">"}), false, "5.1.3");
      const auto* address = std::get_if<smtp::Address>(&parsed);
      if (!address || address->domain.empty()) {
        fail(line_of(node), key, quoted(text) + " is not an address like \"user@example.org\"");
        return;
      }
    }
    out = text;
  }

  // "off", "retry2" or a duration.
  void read_delay_notice(const std::string& key, const toml::node& node) {
    std::string text;
    if (!read_string(key, node, text)) return;
    if (text == "off" || text == "retry2") {
      config_.dsn.delay_notice = text;
      return;
    }
    const std::optional<int64_t> ms = duration_ms_from_text(text);
    if (!ms || *ms == 0 || *ms > kMaxDurationMs) {
      fail(line_of(node), key, "must be \"off\", \"retry2\" or a duration like \"4h\"");
      return;
    }
    config_.dsn.delay_notice = text;
    config_.dsn.delay_notice_after_ms = *ms;
  }

  void read_count(const std::string& key, const toml::node& node, unsigned minimum, unsigned& out) {
    const auto* integer = node.as_integer();
    if (!integer || integer->get() < int64_t(minimum)) {
      fail(line_of(node), key,
           minimum == 0   ? "must be a non-negative integer"
           : minimum == 1 ? "must be a positive integer"
                          : "must be an integer of at least " + std::to_string(minimum));
      return;
    }
    if (integer->get() > int64_t(UINT_MAX)) {
      fail(line_of(node), key, "must be at most " + std::to_string(UINT_MAX));
      return;
    }
    out = static_cast<unsigned>(integer->get());
  }

  void read_bounded(const std::string& key, const toml::node& node, unsigned minimum, unsigned maximum,
                    unsigned& out) {
    const auto* integer = node.as_integer();
    if (!integer || integer->get() < int64_t(minimum) || integer->get() > int64_t(maximum)) {
      fail(line_of(node), key,
           "must be an integer from " + std::to_string(minimum) + " to " + std::to_string(maximum));
      return;
    }
    out = static_cast<unsigned>(integer->get());
  }

  void read_port(const std::string& key, const toml::node& node, unsigned& out) {
    read_bounded(key, node, 1, 65535, out);
  }

  void read_duration_at_most(const std::string& key, const toml::node& node, int64_t max_ms, std::string_view shown,
                             int64_t& out_ms) {
    int64_t ms = out_ms;
    const size_t errors_before = errors_.size();
    read_duration(key, node, true, ms);
    if (errors_.size() != errors_before) return;
    if (ms > max_ms) {
      fail(line_of(node), key, "must be at most " + std::string(shown));
      return;
    }
    out_ms = ms;
  }

  void read_ip(const std::string& key, const toml::node& node, bool allow_empty, std::string& out) {
    std::string text;
    if (!read_string(key, node, text)) return;
    if (text.empty() && allow_empty) {
      out.clear();
      return;
    }
    if (!ip_address(text)) {
      fail(line_of(node), key, quoted(text) + " is not an IP address");
      return;
    }
    out = std::move(text);
  }

  void read_ips(const std::string& key, const toml::node& node, std::vector<std::string>& out) {
    auto values = read_strings(key, node, [](const std::string& text) -> std::string {
      return ip_address(text) ? std::string() : quoted(text) + " is not an IP address";
    });
    if (values) out = std::move(*values);
  }

  void read_dns_servers(const std::string& key, const toml::node& node) {
    auto values = read_strings(key, node, [](const std::string& text) -> std::string {
      if (ip_address(text)) return {};
      if (listen_problem(text).empty()) return {};  // "ip:port", "[ipv6]:port"
      return quoted(text) + " is not \"ip\", \"ip:port\" or \"[ipv6]:port\"";
    });
    if (values) config_.dns.servers = std::move(*values);
  }

  // A next hop: "host", "host:port", "[ip]:port" and, when `allow_mx`, "mx:domain".
  bool hop_ok(const std::string& key, unsigned line, const std::string& text, bool allow_mx) {
    if (text.empty()) return true;
    auto spec = delivery::parse_hop_spec(text);
    if (!spec) {
      fail(line, key, quoted(text) + ": " + spec.error());
      return false;
    }
    if (spec->mx && !allow_mx) {
      fail(line, key, quoted(text) + ": must be a host, not \"mx:\"");
      return false;
    }
    return true;
  }

  void read_hop(const std::string& key, const toml::node& node, bool allow_mx, std::string& out) {
    std::string text;
    if (!read_string(key, node, text)) return;
    if (hop_ok(key, line_of(node), text, allow_mx)) out = std::move(text);
  }

  // [[routing.transport]] entries: domain, next_hop, and optionally tls,
  // user and password.
  void read_transport(const std::string& key, const toml::node& node) {
    const auto* array = node.as_array();
    if (!array) {
      fail(line_of(node), key, "must be an array of tables ([[routing.transport]])");
      return;
    }
    std::vector<Config::TransportRule> rules;
    for (const toml::node& element : *array) {
      const toml::table* entry = element.as_table();
      const unsigned line = line_of(element) != 0 ? line_of(element) : line_of(node);
      if (!entry) {
        fail(line, key, "must be an array of tables ([[routing.transport]])");
        return;
      }
      Config::TransportRule rule;
      bool ok = true;
      for (auto&& [name, value] : *entry) {
        const std::string field = key + "." + std::string(name.str());
        const unsigned field_line = line_of(name, value);
        std::string text;
        if (!value.as_string()) {
          fail(field_line, field, name.str() == "domain" || name.str() == "next_hop" || name.str() == "tls" ||
                                          name.str() == "user" || name.str() == "password"
                                      ? "must be a string"
                                      : "unknown key");
          ok = false;
          continue;
        }
        text = value.as_string()->get();
        if (name.str() == "domain") {
          std::string_view bare = text;
          if (bare.starts_with("*.")) bare.remove_prefix(2);
          if (!plausible_domain(bare)) {
            fail(field_line, field, quoted(text) + " is not a domain or \"*.domain\"");
            ok = false;
          }
          rule.domain = ascii_lower(text);
        } else if (name.str() == "next_hop") {
          ok = hop_ok(field, field_line, text, true) && ok;
          rule.next_hop = text;
        } else if (name.str() == "tls") {
          if (std::find(kTlsPolicies.begin(), kTlsPolicies.end(), text) == kTlsPolicies.end()) {
            fail(field_line, field, "must be \"none\", \"may\", \"encrypt\" or \"verify\"");
            ok = false;
          }
          rule.tls = text;
        } else if (name.str() == "user") {
          rule.user = text;
        } else if (name.str() == "password") {
          rule.password = text;
        } else {
          fail(field_line, field, "unknown key");
          ok = false;
        }
      }
      if (rule.domain.empty() || rule.next_hop.empty()) {
        fail(line, key, "every entry needs domain and next_hop");
        ok = false;
      }
      if (rule.user.empty() != rule.password.empty()) {
        fail(line, key, "user and password go together");
        ok = false;
      }
      if (ok) rules.push_back(std::move(rule));
    }
    config_.routing.transport = std::move(rules);
  }

  void read_duration(const std::string& key, const toml::node& node, bool allow_zero, int64_t& out_ms) {
    std::optional<int64_t> ms;
    if (const auto* seconds = node.as_integer(); seconds && seconds->get() >= 0) {
      const auto product = checked_multiply(uint64_t(seconds->get()), 1000, INT64_MAX);
      if (product) ms = static_cast<int64_t>(*product);
    } else if (const auto* text = node.as_string()) {
      ms = duration_ms_from_text(text->get());
    }
    if (!ms || (*ms == 0 && !allow_zero)) {
      fail(line_of(node), key,
           std::string("must be a ") + (allow_zero ? "" : "positive ") +
               "duration: whole seconds or a string like \"250ms\", \"30s\", \"5m\", \"2h\", \"7d\"");
      return;
    }
    if (*ms > kMaxDurationMs) {
      fail(line_of(node), key, "must be at most \"3650d\"");
      return;
    }
    out_ms = *ms;
  }

  void read_size(const std::string& key, const toml::node& node, bool allow_zero, uint64_t& out) {
    std::optional<uint64_t> bytes;
    if (const auto* integer = node.as_integer(); integer && integer->get() >= 0) {
      bytes = uint64_t(integer->get());
    } else if (const auto* text = node.as_string()) {
      bytes = size_from_text(text->get());
    }
    if (!bytes || (*bytes == 0 && !allow_zero)) {
      fail(line_of(node), key,
           std::string("must be a ") + (allow_zero ? "" : "positive ") +
               "size: bytes or a string like \"512K\", \"50M\", \"50MiB\", \"1G\"");
      return;
    }
    out = *bytes;
  }

  void read_bool(const std::string& key, const toml::node& node, bool& out) {
    const auto* boolean = node.as_boolean();
    if (!boolean) {
      fail(line_of(node), key, "must be true or false");
      return;
    }
    out = boolean->get();
  }

  bool read_string(const std::string& key, const toml::node& node, std::string& out) {
    const auto* text = node.as_string();
    if (!text) {
      fail(line_of(node), key, "must be a string");
      return false;
    }
    out = text->get();
    return true;
  }

  void read_path(const std::string& key, const toml::node& node, std::string& out) {
    std::string path;
    if (!read_string(key, node, path)) return;
    if (path.empty()) {
      fail(line_of(node), key, "must not be empty");
      return;
    }
    out = std::move(path);
  }

  // TLS 1.2 ciphers or TLS 1.3 suites in OpenSSL's syntax, which OpenSSL
  // must take; "" is allowed for TLS 1.3 only (no TLS 1.3).
  void read_cipher_list(const std::string& key, const toml::node& node, bool tls13, std::string& out) {
    std::string list;
    if (!read_string(key, node, list)) return;
    if (!openssl_takes(list, tls13)) {
      fail(line_of(node), key,
           tls13 ? quoted(list) + " is not a list of TLS 1.3 suites OpenSSL knows, such as \"TLS_AES_128_GCM_SHA256\""
                 : "OpenSSL finds no cipher in " + quoted(list) + ", such as \"ECDHE-RSA-AES128-GCM-SHA256\"");
      return;
    }
    out = std::move(list);
  }

  void read_choice(const std::string& key, const toml::node& node, std::initializer_list<std::string_view> choices,
                   std::string& out) {
    read_choice(key, node, std::span<const std::string_view>(choices.begin(), choices.size()), out);
  }

  void read_choice(const std::string& key, const toml::node& node, std::span<const std::string_view> choices,
                   std::string& out) {
    std::string value;
    if (!read_string(key, node, value)) return;
    for (auto choice : choices) {
      if (value == choice) {
        out = std::move(value);
        return;
      }
    }
    std::string allowed;
    for (auto choice : choices) allowed += (allowed.empty() ? "" : " or ") + quoted(choice);
    fail(line_of(node), key, "must be " + allowed);
  }

  void read_hostname(const std::string& key, const toml::node& node) {
    std::string name;
    if (!read_string(key, node, name)) return;
    if (!valid_hostname(name)) {
      fail(line_of(node), key, "must be a host name (letters, digits, '-' and '.')");
      return;
    }
    config_.server.hostname = std::move(name);
  }

  // Calls `check` on every element of a string array; it returns why an
  // element is wrong (empty when it is fine). Returns the elements, or
  // nothing when any is wrong.
  template <typename Check>
  std::optional<std::vector<std::string>> read_strings(const std::string& key, const toml::node& node, Check check) {
    const auto* array = node.as_array();
    if (!array) {
      fail(line_of(node), key, "must be an array of strings");
      return std::nullopt;
    }
    std::vector<std::string> values;
    bool all_valid = true;
    for (const toml::node& element : *array) {
      const auto* text = element.as_string();
      const unsigned line = line_of(element) != 0 ? line_of(element) : line_of(node);
      if (!text) {
        fail(line, key, "must be an array of strings");
        all_valid = false;
        continue;
      }
      std::string value = text->get();
      if (std::string problem = check(value); !problem.empty()) {
        fail(line, key, std::move(problem));
        all_valid = false;
        continue;
      }
      values.push_back(std::move(value));
    }
    if (!all_valid) return std::nullopt;
    return values;
  }

  void read_listen(const std::string& key, const toml::node& node, bool allow_empty, std::vector<std::string>& out) {
    std::set<std::string> seen;
    auto values = read_strings(key, node, [&](const std::string& entry) -> std::string {
      if (std::string problem = listen_problem(entry); !problem.empty()) return problem;
      if (!seen.insert(entry).second) return quoted(entry) + " is listed twice";
      return {};
    });
    if (!values) return;
    if (values->empty() && !allow_empty) {
      fail(line_of(node), key, "must list at least one address");
      return;
    }
    out = std::move(*values);
  }

  void read_domains(const std::string& key, const toml::node& node, std::vector<std::string>& out) {
    auto values = read_strings(key, node, [](std::string& domain) -> std::string {
      if (domain.empty()) return "a domain must not be empty";
      if (!plausible_domain(domain)) return quoted(domain) + " is not a domain name";
      for (char& c : domain) c = ascii_lower(c);
      return {};
    });
    if (values) out = std::move(*values);
  }

  void read_networks(const std::string& key, const toml::node& node, std::vector<std::string>& out) {
    auto values = read_strings(key, node, [](const std::string& text) -> std::string {
      auto network = Network::parse(text);
      return network ? std::string() : network.error();
    });
    if (values) out = std::move(*values);
  }

  void read_delimiter(const std::string& key, const toml::node& node) {
    std::string text;
    if (!read_string(key, node, text)) return;
    if (text.size() > 1 || (text.size() == 1 && (text[0] == '@' || text[0] == '"' || text[0] <= ' '))) {
      fail(line_of(node), key, "must be one character such as \"+\" or \"-\", or \"\"");
      return;
    }
    config_.local.recipient_delimiter = text;
  }

  // { "user" = size, ... }
  void read_user_quotas(const std::string& key, const toml::node& node) {
    const toml::table* table = node.as_table();
    if (!table) {
      fail(line_of(node), key, "must be a table such as { \"alice\" = \"1G\" }");
      return;
    }
    std::vector<std::pair<std::string, uint64_t>> out;
    for (auto&& [name, value] : *table) {
      const std::string user(name.str());
      const bool name_ok = !user.empty() && user.size() <= 64 &&
                           std::all_of(user.begin(), user.end(), [](char c) {
                             return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                           });
      if (!name_ok) {
        fail(line_of(name, value), key, quoted(user) + " is not a user name (a-z 0-9 . _ -)");
        continue;
      }
      uint64_t bytes = 0;
      const size_t errors_before = errors_.size();
      read_size(key, value, true, bytes);
      if (errors_.size() == errors_before) out.emplace_back(user, bytes);
    }
    config_.local.user_quotas = std::move(out);
  }

  // { "domain" = "user or address", ... }
  void read_catch_all(const std::string& key, const toml::node& node) {
    const toml::table* table = node.as_table();
    if (!table) {
      fail(line_of(node), key, "must be a table such as { \"example.org\" = \"postmaster\" }");
      return;
    }
    std::vector<std::pair<std::string, std::string>> out;
    for (auto&& [name, value] : *table) {
      const std::string domain = ascii_lower(name.str());
      const auto* target = value.as_string();
      if (!plausible_domain(domain)) {
        fail(line_of(name, value), key, quoted(domain) + " is not a domain name");
        continue;
      }
      if (!target || target->get().empty()) {
        fail(line_of(name, value), key, "the catch-all of " + quoted(domain) + " must be a user or an address");
        continue;
      }
      out.emplace_back(domain, target->get());
    }
    config_.local.catch_all = std::move(out);
  }

  void read_user_names(const std::string& key, const toml::node& node, std::vector<std::string>& out) {
    auto values = read_strings(key, node, [](const std::string& name) -> std::string {
      const bool ok = !name.empty() && name.size() <= 64 &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                      });
      return ok ? std::string() : quoted(name) + " is not a user name (a-z 0-9 . _ -)";
    });
    if (values) out = std::move(*values);
  }

  unsigned line_for(const std::string& key, const std::string& related_key) const {
    if (auto it = lines_.find(key); it != lines_.end()) return it->second;
    if (auto it = lines_.find(related_key); it != lines_.end()) return it->second;
    return 0;
  }

  void check_combinations() {
    if (!config_.server.group.empty() && config_.server.user.empty()) {
      fail(line_for("server.group", "server.group"), "server.group", "needs server.user");
    }
    const auto& tls = config_.tls;
    if (!tls.certificate.empty() && tls.private_key.empty()) {
      fail(line_for("tls.private_key", "tls.certificate"), "tls.private_key",
           "must be set when tls.certificate is set");
    }
    if (tls.certificate.empty() && !tls.private_key.empty()) {
      fail(line_for("tls.certificate", "tls.private_key"), "tls.certificate",
           "must be set when tls.private_key is set");
    }
    if (tls.min_version == "TLSv1.3" && tls.ciphersuites.empty()) {
      fail(line_for("tls.ciphersuites", "tls.min_version"), "tls.ciphersuites",
           "must not be \"\" (no TLS 1.3) when tls.min_version is \"TLSv1.3\"");
    }
    if (!config_.pop3.listen_tls.empty() && tls.certificate.empty()) {
      fail(line_for("pop3.listen_tls", "tls.certificate"), "pop3.listen_tls",
           "needs tls.certificate and tls.private_key (implicit TLS)");
    }
    if (!config_.smtp.submissions.empty() && tls.certificate.empty()) {
      fail(line_for("smtp.submissions", "tls.certificate"), "smtp.submissions",
           "needs tls.certificate and tls.private_key (implicit TLS)");
    }
    if (!config_.smtp.submission.empty() && tls.certificate.empty() && !config_.auth.allow_plaintext) {
      fail(line_for("smtp.submission", "tls.certificate"), "smtp.submission",
           "needs tls.certificate (AUTH is offered only after STARTTLS) or auth.allow_plaintext = true");
    }
    std::set<std::string> endpoints;
    for (const auto* list : {&config_.smtp.listen, &config_.smtp.submission, &config_.smtp.submissions,
                             &config_.pop3.listen, &config_.pop3.listen_tls}) {
      for (const auto& endpoint : *list) {
        if (!endpoints.insert(endpoint).second)
          fail(line_for("smtp.submission", "smtp.submissions"), "smtp.submission",
               quoted(endpoint) + " is used by two listeners");
      }
    }
    const auto& routing = config_.routing;
    if (routing.router_user.empty() != routing.router_password.empty()) {
      fail(line_for("routing.router_user", "routing.router_password"), "routing.router_user",
           "routing.router_user and routing.router_password go together");
    }
    if (routing.firewall && routing.router.empty()) {
      fail(line_for("routing.firewall", "routing.router"), "routing.firewall", "needs routing.router");
    }
    if (config_.log.target == "file" && config_.log.file.empty()) {
      fail(line_for("log.file", "log.target"), "log.file", "must be set when log.target is \"file\"");
    }
  }

  Config& config_;
  std::vector<ConfigError>& errors_;
  std::map<std::string, unsigned> lines_;  // every key present in the file
};

// Closes a file descriptor when it goes out of scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

ConfigParse parse_config(std::string_view toml_text, std::string_view source_name) {
  ConfigParse parse;
  toml::parse_result document = toml::parse(toml_text, source_name);
  if (!document) {
    const auto& error = document.error();
    parse.errors.push_back(
        ConfigError{static_cast<unsigned>(error.source().begin.line), "", std::string(error.description())});
    return parse;
  }
  ConfigReader(parse.config, parse.errors).read(document.table());
  // toml++ tables iterate in key order; the reader wants them in file order.
  std::stable_sort(parse.errors.begin(), parse.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return parse;
}

ConfigParse load_config_file(const std::string& path) {
  FileDescriptor file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string text;
  int read_errno = file.get() < 0 ? errno : 0;
  while (read_errno == 0) {
    char buffer[16384];
    const ssize_t n = read(file.get(), buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno != EINTR) read_errno = errno;
      continue;
    }
    text.append(buffer, size_t(n));
  }
  if (read_errno != 0) {
    ConfigParse parse;
    parse.errors.push_back(ConfigError{0, "", "cannot read " + path + ": " + std::strerror(read_errno)});
    return parse;
  }
  return parse_config(text, path);
}

unsigned worker_count(const Config& config) {
  return config.server.workers ? config.server.workers : std::max(1u, std::thread::hardware_concurrency());
}

unsigned delivery_loop_count(const Config& config, unsigned workers) {
  return config.delivery.loops ? config.delivery.loops : workers;
}

unsigned active_per_destination(const Config& config) {
  return config.delivery.active_per_destination.value_or(std::max(1u, config.delivery.active_limit / 4));
}

std::string_view default_config_toml() {
  return kDefaultConfig;
}

std::string format_config_error(const ConfigError& e) {
  std::string out;
  if (e.line != 0) out += "line " + std::to_string(e.line) + ": ";
  if (!e.key.empty()) out += e.key + ": ";
  return out + e.message;
}

}  // namespace tern
