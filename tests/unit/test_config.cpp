#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "mta/config.h"

namespace tern {
namespace {

ConfigParse parse(std::string_view text) {
  return parse_config(text, "test.toml");
}

std::string all_errors(const ConfigParse& p) {
  std::string out;
  for (const auto& e : p.errors) out += format_config_error(e) + "\n";
  return out;
}

std::string machine_hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  gethostname(name, sizeof name - 1);
  return name[0] ? name : "localhost";
}

// Every field, so a default that drifts from the struct is caught by name.
void expect_default_values(const Config& c) {
  const Config d;
  EXPECT_EQ(c.server.hostname, machine_hostname());
  EXPECT_EQ(c.server.workers, d.server.workers);
  EXPECT_EQ(c.server.drain_timeout_ms, d.server.drain_timeout_ms);
  EXPECT_EQ(c.smtp.listen, d.smtp.listen);
  EXPECT_EQ(c.smtp.max_message_size, d.smtp.max_message_size);
  EXPECT_EQ(c.smtp.max_recipients, d.smtp.max_recipients);
  EXPECT_EQ(c.smtp.max_command_line, d.smtp.max_command_line);
  EXPECT_EQ(c.smtp.max_line_length, d.smtp.max_line_length);
  EXPECT_EQ(c.smtp.max_errors, d.smtp.max_errors);
  EXPECT_EQ(c.smtp.max_connections, d.smtp.max_connections);
  EXPECT_EQ(c.smtp.max_connections_per_ip, d.smtp.max_connections_per_ip);
  EXPECT_EQ(c.smtp.max_received_headers, d.smtp.max_received_headers);
  EXPECT_EQ(c.smtp.allow_bare_lf, d.smtp.allow_bare_lf);
  EXPECT_EQ(c.smtp.command_timeout_ms, d.smtp.command_timeout_ms);
  EXPECT_EQ(c.smtp.data_timeout_ms, d.smtp.data_timeout_ms);
  EXPECT_EQ(c.smtp.write_timeout_ms, d.smtp.write_timeout_ms);
  EXPECT_EQ(c.tls.certificate, d.tls.certificate);
  EXPECT_EQ(c.tls.private_key, d.tls.private_key);
  EXPECT_EQ(c.tls.min_version, d.tls.min_version);
  EXPECT_EQ(c.tls.ciphers, d.tls.ciphers);
  EXPECT_EQ(c.tls.ciphersuites, d.tls.ciphersuites);
  EXPECT_EQ(c.relay.local_domains, d.relay.local_domains);
  EXPECT_EQ(c.relay.relay_domains, d.relay.relay_domains);
  EXPECT_EQ(c.relay.trusted_networks, d.relay.trusted_networks);
  EXPECT_EQ(c.queue.directory, d.queue.directory);
  EXPECT_EQ(c.queue.min_free_space, d.queue.min_free_space);
  EXPECT_EQ(c.queue.space_check_interval_ms, d.queue.space_check_interval_ms);
  EXPECT_EQ(c.queue.finished_retention_ms, d.queue.finished_retention_ms);
  EXPECT_EQ(c.smtp.submission, d.smtp.submission);
  EXPECT_EQ(c.smtp.submissions, d.smtp.submissions);
  EXPECT_EQ(c.relay.mode, d.relay.mode);
  EXPECT_EQ(c.relay.pop_window_minutes, d.relay.pop_window_minutes);
  EXPECT_EQ(c.relay.percent_routing, d.relay.percent_routing);
  EXPECT_EQ(c.auth.users_file, d.auth.users_file);
  EXPECT_EQ(c.auth.allow_plaintext, d.auth.allow_plaintext);
  EXPECT_EQ(c.auth.require, d.auth.require);
  EXPECT_EQ(c.auth.sender_check, d.auth.sender_check);
  EXPECT_EQ(c.auth.sender_check_exempt, d.auth.sender_check_exempt);
  EXPECT_EQ(c.auth.max_failures, d.auth.max_failures);
  EXPECT_EQ(c.auth.failure_delay_ms, d.auth.failure_delay_ms);
  EXPECT_EQ(c.auth.failure_block_time_ms, d.auth.failure_block_time_ms);
  EXPECT_EQ(c.auth.user_failures_per_minute, d.auth.user_failures_per_minute);
  EXPECT_EQ(c.local.maildir_root, d.local.maildir_root);
  EXPECT_EQ(c.local.quota, d.local.quota);
  EXPECT_EQ(c.local.user_quotas, d.local.user_quotas);
  EXPECT_EQ(c.local.quota_permanent, d.local.quota_permanent);
  EXPECT_EQ(c.local.recipient_delimiter, d.local.recipient_delimiter);
  EXPECT_EQ(c.local.catch_all, d.local.catch_all);
  EXPECT_EQ(c.pop3.listen, d.pop3.listen);
  EXPECT_EQ(c.pop3.listen_tls, d.pop3.listen_tls);
  EXPECT_EQ(c.pop3.allow_plaintext, d.pop3.allow_plaintext);
  EXPECT_EQ(c.pop3.login_timeout_ms, d.pop3.login_timeout_ms);
  EXPECT_EQ(c.pop3.timeout_ms, d.pop3.timeout_ms);
  EXPECT_EQ(c.pop3.max_connections, d.pop3.max_connections);
  EXPECT_EQ(c.pop3.max_connections_per_ip, d.pop3.max_connections_per_ip);
  EXPECT_EQ(c.pop3.max_sessions_per_user, d.pop3.max_sessions_per_user);
  EXPECT_EQ(c.pop3.max_failures, d.pop3.max_failures);
  EXPECT_EQ(c.pop3.failure_delay_ms, d.pop3.failure_delay_ms);
  EXPECT_EQ(c.restrictions.deny, d.restrictions.deny);
  EXPECT_EQ(c.restrictions.dnsbl, d.restrictions.dnsbl);
  EXPECT_EQ(c.restrictions.dnsbl_timeout_ms, d.restrictions.dnsbl_timeout_ms);
  EXPECT_EQ(c.restrictions.override, d.restrictions.override);
  EXPECT_EQ(c.restrictions.connections_per_minute, d.restrictions.connections_per_minute);
  EXPECT_EQ(c.restrictions.messages_per_minute, d.restrictions.messages_per_minute);
  EXPECT_EQ(c.restrictions.recipients_per_minute, d.restrictions.recipients_per_minute);
  EXPECT_EQ(c.dsn.postmaster, "postmaster@" + machine_hostname());
  EXPECT_EQ(c.dsn.double_bounce, d.dsn.double_bounce);
  EXPECT_EQ(c.dsn.failure_copy, d.dsn.failure_copy);
  EXPECT_EQ(c.dsn.failure_copy_content, d.dsn.failure_copy_content);
  EXPECT_EQ(c.dsn.delay_notice, d.dsn.delay_notice);
  EXPECT_EQ(c.dsn.delay_notice_after_ms, d.dsn.delay_notice_after_ms);
  EXPECT_EQ(c.dsn.delay_notice_interval_ms, d.dsn.delay_notice_interval_ms);
  EXPECT_EQ(c.dsn.max_returned_size, d.dsn.max_returned_size);
  EXPECT_EQ(c.log.format, d.log.format);
  EXPECT_EQ(c.log.target, d.log.target);
  EXPECT_EQ(c.log.file, d.log.file);
  EXPECT_EQ(c.control.socket, d.control.socket);
  EXPECT_EQ(c.delivery.enabled, d.delivery.enabled);
  EXPECT_EQ(c.delivery.smtp_port, d.delivery.smtp_port);
  EXPECT_EQ(c.delivery.loops, d.delivery.loops);
  EXPECT_EQ(c.delivery.max_connections, d.delivery.max_connections);
  EXPECT_EQ(c.delivery.max_per_destination, d.delivery.max_per_destination);
  EXPECT_EQ(c.delivery.active_limit, d.delivery.active_limit);
  EXPECT_EQ(c.delivery.active_per_destination, d.delivery.active_per_destination);
  EXPECT_EQ(c.delivery.destination_rate, d.delivery.destination_rate);
  EXPECT_EQ(c.delivery.max_messages_per_connection, d.delivery.max_messages_per_connection);
  EXPECT_EQ(c.delivery.connection_cache_time_ms, d.delivery.connection_cache_time_ms);
  EXPECT_EQ(c.delivery.bind_address, d.delivery.bind_address);
  EXPECT_EQ(c.delivery.connect_timeout_ms, d.delivery.connect_timeout_ms);
  EXPECT_EQ(c.delivery.greeting_timeout_ms, d.delivery.greeting_timeout_ms);
  EXPECT_EQ(c.delivery.command_timeout_ms, d.delivery.command_timeout_ms);
  EXPECT_EQ(c.delivery.data_timeout_ms, d.delivery.data_timeout_ms);
  EXPECT_EQ(c.delivery.tls, d.delivery.tls);
  EXPECT_EQ(c.delivery.ca_file, d.delivery.ca_file);
  EXPECT_EQ(c.delivery.scan_interval_ms, d.delivery.scan_interval_ms);
  EXPECT_EQ(c.retry.first_count, d.retry.first_count);
  EXPECT_EQ(c.retry.first_interval_ms, d.retry.first_interval_ms);
  EXPECT_EQ(c.retry.second_interval_ms, d.retry.second_interval_ms);
  EXPECT_EQ(c.retry.max_age_ms, d.retry.max_age_ms);
  EXPECT_EQ(c.retry.jitter, d.retry.jitter);
  EXPECT_EQ(c.routing.router, d.routing.router);
  EXPECT_EQ(c.routing.router_user, d.routing.router_user);
  EXPECT_EQ(c.routing.router_password, d.routing.router_password);
  EXPECT_EQ(c.routing.router_tls, d.routing.router_tls);
  EXPECT_EQ(c.routing.firewall, d.routing.firewall);
  EXPECT_EQ(c.routing.forward_host, d.routing.forward_host);
  EXPECT_EQ(c.routing.etrn_domains, d.routing.etrn_domains);
  EXPECT_TRUE(c.routing.transport.empty());
  EXPECT_EQ(c.dns.servers, d.dns.servers);
  EXPECT_EQ(c.dns.timeout_ms, d.dns.timeout_ms);
  EXPECT_EQ(c.dns.tries, d.dns.tries);
  EXPECT_EQ(c.dns.cache_entries, d.dns.cache_entries);
  EXPECT_EQ(c.dns.hosts_file, d.dns.hosts_file);
  EXPECT_EQ(c.dns.local_addresses, d.dns.local_addresses);
}

TEST(ConfigDefaults, EmbeddedDefaultFileParsesToTheStructDefaults) {
  const auto p = parse(default_config_toml());
  ASSERT_TRUE(p.ok()) << all_errors(p);
  expect_default_values(p.config);
}

TEST(ConfigDefaults, EmptyFileGivesTheStructDefaults) {
  const auto p = parse("");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  expect_default_values(p.config);
}

TEST(ConfigDefaults, EmbeddedDefaultFileNamesEveryKey) {
  const std::string text(default_config_toml());
  for (const char* key : {"workers",
                          "drain_timeout",
                          "listen",
                          "max_message_size",
                          "max_recipients",
                          "max_command_line",
                          "max_line_length",
                          "max_errors",
                          "max_connections",
                          "max_connections_per_ip",
                          "max_received_headers",
                          "allow_bare_lf",
                          "command_timeout",
                          "data_timeout",
                          "write_timeout",
                          "certificate",
                          "private_key",
                          "min_version",
                          "ciphers",
                          "ciphersuites",
                          "local_domains",
                          "relay_domains",
                          "trusted_networks",
                          "directory",
                          "min_free_space",
                          "space_check_interval",
                          "finished_retention",
                          "format",
                          "target",
                          "file",
                          "socket",
                          "enabled",
                          "smtp_port",
                          "loops",
                          "max_per_destination",
                          "active_limit",
                          "destination_rate",
                          "max_messages_per_connection",
                          "connection_cache_time",
                          "bind_address",
                          "connect_timeout",
                          "greeting_timeout",
                          "tls",
                          "ca_file",
                          "scan_interval",
                          "max_age",
                          "jitter",
                          "count",
                          "interval",
                          "router",
                          "router_user",
                          "router_password",
                          "router_tls",
                          "firewall",
                          "forward_host",
                          "etrn_domains",
                          "servers",
                          "timeout",
                          "tries",
                          "cache_entries",
                          "hosts_file",
                          "local_addresses",
                          "postmaster",
                          "double_bounce",
                          "failure_copy",
                          "failure_copy_content",
                          "delay_notice",
                          "delay_notice_interval",
                          "max_returned_size",
                          "submission",
                          "submissions",
                          "mode",
                          "pop_window",
                          "percent_routing",
                          "users_file",
                          "allow_plaintext",
                          "require",
                          "sender_check",
                          "sender_check_exempt",
                          "max_failures",
                          "failure_delay",
                          "failure_block_time",
                          "deny",
                          "dnsbl",
                          "dnsbl_timeout",
                          "override",
                          "connections_per_minute",
                          "messages_per_minute",
                          "recipients_per_minute",
                          "user_failures_per_minute",
                          "maildir_root",
                          "quota",
                          "quota_permanent",
                          "recipient_delimiter",
                          "catch_all",
                          "user_quotas",
                          "listen_tls",
                          "login_timeout",
                          "max_sessions_per_user"}) {
    const std::string assignment = std::string("\n").append(key).append(" = ");
    EXPECT_NE(text.find(assignment), std::string::npos) << key;
  }
  // Commented out, so each machine defaults to its own name, and a share
  // follows active_limit.
  EXPECT_NE(text.find("\n# hostname = "), std::string::npos);
  EXPECT_NE(text.find("\n# active_per_destination = "), std::string::npos);
  EXPECT_EQ(text.find("\nhostname"), std::string::npos);
}

constexpr std::string_view kEveryKey = R"([server]
hostname = "mx.example.com"
workers = 4
drain_timeout = 10

[smtp]
listen = ["0.0.0.0:25", "[::]:25", "[2001:db8::1]:587"]
max_message_size = "10M"
max_recipients = 50
max_command_line = 2048
max_line_length = 4096
max_errors = 5
max_connections = 300
max_connections_per_ip = 7
max_received_headers = 30
allow_bare_lf = true
command_timeout = "1m"
data_timeout = "2m"
write_timeout = "45s"

[tls]
certificate = "/etc/tern/cert.pem"
private_key = "/etc/tern/key.pem"
min_version = "TLSv1.3"
ciphers = "ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA"
ciphersuites = "TLS_AES_256_GCM_SHA384"

[relay]
local_domains = ["Example.COM", "mail.example.com"]
relay_domains = ["Backup.Example.NET"]
trusted_networks = ["192.168.0.0/16", "2001:db8::/32", "203.0.113.9"]

[queue]
directory = "/var/spool/tern"
min_free_space = "1G"
space_check_interval = "250ms"
finished_retention = "2h"

[log]
format = "json"
target = "file"
file = "/var/log/tern.log"

[control]
socket = "/run/tern/ternd.sock"
)";

TEST(ConfigParse, EveryKeyIsRead) {
  const auto p = parse(kEveryKey);
  ASSERT_TRUE(p.ok()) << all_errors(p);
  const Config& c = p.config;
  EXPECT_EQ(c.server.hostname, "mx.example.com");
  EXPECT_EQ(c.server.workers, 4u);
  EXPECT_EQ(c.server.drain_timeout_ms, 10'000);
  EXPECT_EQ(c.smtp.listen, (std::vector<std::string>{"0.0.0.0:25", "[::]:25", "[2001:db8::1]:587"}));
  EXPECT_EQ(c.smtp.max_message_size, 10u * 1024 * 1024);
  EXPECT_EQ(c.smtp.max_recipients, 50u);
  EXPECT_EQ(c.smtp.max_command_line, 2048u);
  EXPECT_EQ(c.smtp.max_line_length, 4096u);
  EXPECT_EQ(c.smtp.max_errors, 5u);
  EXPECT_EQ(c.smtp.max_connections, 300u);
  EXPECT_EQ(c.smtp.max_connections_per_ip, 7u);
  EXPECT_EQ(c.smtp.max_received_headers, 30u);
  EXPECT_TRUE(c.smtp.allow_bare_lf);
  EXPECT_EQ(c.smtp.command_timeout_ms, 60'000);
  EXPECT_EQ(c.smtp.data_timeout_ms, 120'000);
  EXPECT_EQ(c.smtp.write_timeout_ms, 45'000);
  EXPECT_EQ(c.tls.certificate, "/etc/tern/cert.pem");
  EXPECT_EQ(c.tls.private_key, "/etc/tern/key.pem");
  EXPECT_EQ(c.tls.min_version, "TLSv1.3");
  EXPECT_EQ(c.tls.ciphers, "ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA");
  EXPECT_EQ(c.tls.ciphersuites, "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(c.relay.local_domains, (std::vector<std::string>{"example.com", "mail.example.com"}));
  EXPECT_EQ(c.relay.relay_domains, (std::vector<std::string>{"backup.example.net"}));
  EXPECT_EQ(c.relay.trusted_networks, (std::vector<std::string>{"192.168.0.0/16", "2001:db8::/32", "203.0.113.9"}));
  EXPECT_EQ(c.queue.directory, "/var/spool/tern");
  EXPECT_EQ(c.queue.min_free_space, 1024u * 1024 * 1024);
  EXPECT_EQ(c.queue.space_check_interval_ms, 250);
  EXPECT_EQ(c.queue.finished_retention_ms, 2 * 3600 * 1000);
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.log.target, "file");
  EXPECT_EQ(c.log.file, "/var/log/tern.log");
  EXPECT_EQ(c.control.socket, "/run/tern/ternd.sock");
}

TEST(ConfigParse, LowestAllowedValues) {
  const auto p = parse(R"([server]
workers = 0
drain_timeout = 0
[smtp]
max_command_line = 512
max_line_length = 1000
max_errors = 1
max_recipients = 1
max_message_size = 1
listen = ["[::1]:65535", "192.0.2.1:1"]
[queue]
min_free_space = 0
finished_retention = "0s"
space_check_interval = "1ms"
)");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.server.drain_timeout_ms, 0);
  EXPECT_EQ(p.config.smtp.max_message_size, 1u);
  EXPECT_EQ(p.config.queue.min_free_space, 0u);
  EXPECT_EQ(p.config.queue.finished_retention_ms, 0);
  EXPECT_EQ(p.config.queue.space_check_interval_ms, 1);
  EXPECT_EQ(p.config.smtp.listen, (std::vector<std::string>{"[::1]:65535", "192.0.2.1:1"}));
}

TEST(ConfigParse, LargestUnsignedValue) {
  const auto p = parse("[smtp]\nmax_connections = 4294967295\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.smtp.max_connections, 4294967295u);
}

int64_t duration_ms(const std::string& toml_value) {
  const auto p = parse("[smtp]\ncommand_timeout = " + toml_value + "\n");
  EXPECT_TRUE(p.ok()) << toml_value << ": " << all_errors(p);
  return p.config.smtp.command_timeout_ms;
}

TEST(ConfigDurations, EveryForm) {
  EXPECT_EQ(duration_ms("30"), 30'000);
  EXPECT_EQ(duration_ms("\"250ms\""), 250);
  EXPECT_EQ(duration_ms("\"30s\""), 30'000);
  EXPECT_EQ(duration_ms("\"5m\""), 300'000);
  EXPECT_EQ(duration_ms("\"2h\""), 7'200'000);
  EXPECT_EQ(duration_ms("\"7d\""), 604'800'000);
  EXPECT_EQ(duration_ms("\"90s\""), 90'000);
}

TEST(ConfigDurations, EveryDurationKeyAcceptsStrings) {
  const auto p = parse(R"([server]
drain_timeout = "1s"
[smtp]
command_timeout = "2s"
data_timeout = "3s"
write_timeout = "4s"
[queue]
space_check_interval = "5s"
finished_retention = "6s"
)");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.server.drain_timeout_ms, 1000);
  EXPECT_EQ(p.config.smtp.command_timeout_ms, 2000);
  EXPECT_EQ(p.config.smtp.data_timeout_ms, 3000);
  EXPECT_EQ(p.config.smtp.write_timeout_ms, 4000);
  EXPECT_EQ(p.config.queue.space_check_interval_ms, 5000);
  EXPECT_EQ(p.config.queue.finished_retention_ms, 6000);
}

TEST(ConfigDurations, RejectsEverythingElse) {
  for (const char* value : {"\"\"", "\"30\"", "\"s\"", "\"1.5s\"", "\"30 s\"", "\" 30s\"", "\"30S\"", "\"5w\"",
                            "\"-5s\"", "\"5s5\"", "-1", "1.5", "true", "[30]", "0", "\"0ms\"",
                            "\"99999999999999999999d\"", "\"9999999999999999d\"", "9223372036854775807"}) {
    const auto p = parse(std::string("[smtp]\ncommand_timeout = ") + value + "\n");
    ASSERT_EQ(p.errors.size(), 1u) << value << ": " << all_errors(p);
    EXPECT_EQ(p.errors[0].line, 2u) << value;
    EXPECT_EQ(p.errors[0].key, "smtp.command_timeout") << value;
    EXPECT_NE(p.errors[0].message.find("duration"), std::string::npos) << p.errors[0].message;
  }
}

TEST(ConfigDurations, AtMostTenYears) {
  EXPECT_EQ(duration_ms("\"3650d\""), 3650LL * 86'400'000);
  EXPECT_EQ(duration_ms("315360000"), 3650LL * 86'400'000);
  for (const char* value : {"\"3651d\"", "\"87601h\"", "315360001", "\"315360000001ms\""}) {
    const auto p = parse(std::string("[queue]\nfinished_retention = ") + value + "\n");
    ASSERT_EQ(p.errors.size(), 1u) << value;
    EXPECT_EQ(p.errors[0].key, "queue.finished_retention");
    EXPECT_NE(p.errors[0].message.find("at most"), std::string::npos) << p.errors[0].message;
  }
}

TEST(ConfigDurations, ZeroOnlyWhereItMeansSomething) {
  for (const char* key :
       {"smtp.command_timeout", "smtp.data_timeout", "smtp.write_timeout", "queue.space_check_interval"}) {
    const std::string_view dotted(key);
    const auto dot = dotted.find('.');
    std::string toml("[");
    toml.append(dotted.substr(0, dot)).append("]\n").append(dotted.substr(dot + 1)).append(" = 0\n");
    const auto p = parse(toml);
    ASSERT_EQ(p.errors.size(), 1u) << key;
    EXPECT_EQ(p.errors[0].key, dotted);
    EXPECT_NE(p.errors[0].message.find("positive"), std::string::npos) << p.errors[0].message;
  }
}

uint64_t size_bytes(const std::string& toml_value) {
  const auto p = parse("[smtp]\nmax_message_size = " + toml_value + "\n");
  EXPECT_TRUE(p.ok()) << toml_value << ": " << all_errors(p);
  return p.config.smtp.max_message_size;
}

TEST(ConfigSizes, EveryForm) {
  constexpr uint64_t K = 1024, M = K * K, G = M * K, T = G * K;
  EXPECT_EQ(size_bytes("1000"), 1000u);
  EXPECT_EQ(size_bytes("\"1000\""), 1000u);
  EXPECT_EQ(size_bytes("\"1000B\""), 1000u);
  EXPECT_EQ(size_bytes("\"512K\""), 512 * K);
  EXPECT_EQ(size_bytes("\"512KB\""), 512 * K);
  EXPECT_EQ(size_bytes("\"512KiB\""), 512 * K);
  EXPECT_EQ(size_bytes("\"50M\""), 50 * M);
  EXPECT_EQ(size_bytes("\"50MB\""), 50 * M);
  EXPECT_EQ(size_bytes("\"50MiB\""), 50 * M);
  EXPECT_EQ(size_bytes("\"50m\""), 50 * M);
  EXPECT_EQ(size_bytes("\"2G\""), 2 * G);
  EXPECT_EQ(size_bytes("\"2GiB\""), 2 * G);
  EXPECT_EQ(size_bytes("\"3T\""), 3 * T);
  EXPECT_EQ(size_bytes("\"3TB\""), 3 * T);
  EXPECT_EQ(size_bytes("\"16777215T\""), 16777215 * T);
}

TEST(ConfigSizes, DefaultMessageSizeIsFiftyMebibytes) {
  EXPECT_EQ(Config{}.smtp.max_message_size, size_bytes("\"50MB\""));
}

TEST(ConfigSizes, RejectsEverythingElse) {
  for (const char* value : {"\"\"", "\"M\"", "\"50X\"", "\"50 M\"", "\"1.5M\"", "\"-1\"", "\"50MBB\"", "\"50iB\"",
                            "\"50P\"", "\"16777216T\"", "-1", "1.5", "false", "0", "\"0M\""}) {
    const auto p = parse(std::string("[smtp]\nmax_message_size = ") + value + "\n");
    ASSERT_EQ(p.errors.size(), 1u) << value << ": " << all_errors(p);
    EXPECT_EQ(p.errors[0].line, 2u) << value;
    EXPECT_EQ(p.errors[0].key, "smtp.max_message_size") << value;
    EXPECT_NE(p.errors[0].message.find("size"), std::string::npos) << p.errors[0].message;
  }
}

TEST(ConfigSizes, MinFreeSpaceAcceptsStringsAndZero) {
  auto p = parse("[queue]\nmin_free_space = \"2G\"\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.queue.min_free_space, 2ull * 1024 * 1024 * 1024);
  p = parse("[queue]\nmin_free_space = 0\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.queue.min_free_space, 0u);
}

struct BadValue {
  std::string_view toml;
  unsigned line;
  std::string_view key;
  std::string_view message_part;
};

TEST(ConfigValidation, EachErrorNamesItsLineAndKey) {
  const BadValue cases[] = {
      {"[server]\nworkers = -1\n", 2, "server.workers", "non-negative integer"},
      {"[server]\nworkers = 1.5\n", 2, "server.workers", "non-negative integer"},
      {"[server]\nhostname = \"mx example\"\n", 2, "server.hostname", "host name"},
      {"[server]\nhostname = \"\"\n", 2, "server.hostname", "host name"},
      {"[server]\nhostname = \"mx..example.com\"\n", 2, "server.hostname", "host name"},
      {"[server]\nhostname = 7\n", 2, "server.hostname", "must be a string"},
      {"[server]\ndrain_timeout = \"soon\"\n", 2, "server.drain_timeout", "duration"},
      {"\n\n[smtp]\n\nmax_errors = 0\n", 5, "smtp.max_errors", "must be a positive integer"},
      {"[smtp]\nmax_errors = \"20\"\n", 2, "smtp.max_errors", "must be a positive integer"},
      {"[smtp]\nmax_recipients = 4294967296\n", 2, "smtp.max_recipients", "at most 4294967295"},
      {"[smtp]\nmax_command_line = 511\n", 2, "smtp.max_command_line", "at least 512"},
      {"[smtp]\nmax_line_length = 999\n", 2, "smtp.max_line_length", "at least 1000"},
      {"[smtp]\nmax_connections = 0\n", 2, "smtp.max_connections", "positive integer"},
      {"[smtp]\nmax_connections_per_ip = 0\n", 2, "smtp.max_connections_per_ip", "positive integer"},
      {"[smtp]\nmax_received_headers = 0\n", 2, "smtp.max_received_headers", "positive integer"},
      {"[smtp]\nallow_bare_lf = \"yes\"\n", 2, "smtp.allow_bare_lf", "true or false"},
      {"[smtp]\nlisten = \"127.0.0.1:25\"\n", 2, "smtp.listen", "array of strings"},
      {"[smtp]\nlisten = []\n", 2, "smtp.listen", "at least one"},
      {"[smtp]\nlisten = [25]\n", 2, "smtp.listen", "array of strings"},
      {"[smtp]\nlisten = [\"127.0.0.1:25\", \"127.0.0.1:25\"]\n", 2, "smtp.listen", "listed twice"},
      {"[smtp]\nlisten = [\n  \"127.0.0.1:25\",\n  \"127.0.0.1:0\",\n]\n", 4, "smtp.listen", "1-65535"},
      {"[tls]\nmin_version = \"TLSv1.1\"\n", 2, "tls.min_version", "\"TLSv1.2\" or \"TLSv1.3\""},
      {"[tls]\ncertificate = \"/c.pem\"\n", 2, "tls.private_key", "must be set"},
      {"[tls]\nciphers = \"NO-SUCH-CIPHER\"\n", 2, "tls.ciphers", "no cipher in \"NO-SUCH-CIPHER\""},
      {"[tls]\nciphers = \"\"\n", 2, "tls.ciphers", "no cipher in \"\""},
      {"[tls]\nciphers = [\"AES128-GCM-SHA256\"]\n", 2, "tls.ciphers", "must be a string"},
      {"[tls]\nciphersuites = \"TLS_NOPE_SHA256\"\n", 2, "tls.ciphersuites", "TLS 1.3 suites"},
      {"[tls]\nciphersuites = \"\"\nmin_version = \"TLSv1.3\"\n", 2, "tls.ciphersuites", "\"TLSv1.3\""},
      {"[tls]\nprivate_key = \"/k.pem\"\n", 2, "tls.certificate", "must be set"},
      {"[tls]\ncertificate = \"/c.pem\"\nprivate_key = \"\"\n", 3, "tls.private_key", "must be set"},
      {"[relay]\nlocal_domains = [\"\"]\n", 2, "relay.local_domains", "empty"},
      {"[relay]\nrelay_domains = [\"user@example.com\"]\n", 2, "relay.relay_domains", "not a domain"},
      {"[relay]\nlocal_domains = [\"example.com.\"]\n", 2, "relay.local_domains", "not a domain"},
      {"[relay]\nlocal_domains = [\"[192.0.2.1]\"]\n", 2, "relay.local_domains", "not a domain"},
      {"[relay]\nlocal_domains = \"example.com\"\n", 2, "relay.local_domains", "array of strings"},
      {"[relay]\ntrusted_networks = [\"10.0.0.0/33\"]\n", 2, "relay.trusted_networks", "10.0.0.0/33"},
      {"[relay]\ntrusted_networks = [\"localhost\"]\n", 2, "relay.trusted_networks", "localhost"},
      {"[queue]\ndirectory = \"\"\n", 2, "queue.directory", "must not be empty"},
      {"[queue]\nmin_free_space = \"lots\"\n", 2, "queue.min_free_space", "size"},
      {"[queue]\nfinished_retention = \"-1d\"\n", 2, "queue.finished_retention", "duration"},
      {"[log]\nformat = \"text\"\n", 2, "log.format", "\"kv\" or \"json\""},
      {"[log]\ntarget = \"journal\"\n", 2, "log.target", "\"stderr\" or \"file\" or \"syslog\""},
      {"[log]\ntarget = \"file\"\n", 2, "log.file", "must be set"},
      {"[log]\ntarget = \"file\"\nfile = \"\"\n", 3, "log.file", "must be set"},
      {"[control]\nsocket = 5\n", 2, "control.socket", "must be a string"},
      {"[control]\nsocket = \"\"\n", 2, "control.socket", "must not be empty"},
      {"[delivery]\nloops = -1\n", 2, "delivery.loops", "non-negative integer"},
      {"[delivery]\nloops = \"2\"\n", 2, "delivery.loops", "non-negative integer"},
  };
  for (const auto& c : cases) {
    const auto p = parse(c.toml);
    ASSERT_EQ(p.errors.size(), 1u) << c.toml << "\n" << all_errors(p);
    EXPECT_EQ(p.errors[0].line, c.line) << c.toml;
    EXPECT_EQ(p.errors[0].key, c.key) << c.toml;
    EXPECT_NE(p.errors[0].message.find(c.message_part), std::string::npos) << c.toml << "\n" << p.errors[0].message;
  }
}

TEST(ConfigValidation, ListenEntries) {
  for (const char* good :
       {"127.0.0.1:25", "0.0.0.0:2525", "[::]:25", "[::1]:587", "[2001:db8::1]:65535", "[::ffff:127.0.0.1]:25"}) {
    const auto p = parse(std::string("[smtp]\nlisten = [\"") + good + "\"]\n");
    EXPECT_TRUE(p.ok()) << good << ": " << all_errors(p);
  }
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":25", "localhost:25", "::1:25", "[::1]25", "[::1]:",
                          "[127.0.0.1]:25", "1.2.3.4:25x", "[::1:25", "1.2.3.4:+25", "1.2.3.4: 25", "1.2.3.4:65536",
                          "1.2.3.4:0", "1.2.3.4:100000", "256.1.1.1:25", "", "[]:25", "[fe80::1%eth0]:25"}) {
    const auto p = parse(std::string("[smtp]\nlisten = [\"") + bad + "\"]\n");
    ASSERT_EQ(p.errors.size(), 1u) << "accepted \"" << bad << "\"";
    EXPECT_EQ(p.errors[0].key, "smtp.listen");
    EXPECT_EQ(p.errors[0].line, 2u);
    EXPECT_NE(p.errors[0].message.find(bad), std::string::npos) << p.errors[0].message;
  }
}

TEST(ConfigValidation, HostnameIsKeptAsWritten) {
  const auto p = parse("[server]\nhostname = \"MX-1.Example.com\"\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.server.hostname, "MX-1.Example.com");
}

TEST(ConfigValidation, UnknownKeyInKnownTable) {
  const auto p = parse("[smtp]\nmax_errors = 3\nmax_error = 20\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 3u);
  EXPECT_EQ(p.errors[0].key, "smtp.max_error");
  EXPECT_EQ(p.errors[0].message, "unknown key");
  EXPECT_EQ(p.config.smtp.max_errors, 3u);
}

TEST(ConfigValidation, DurationKeysUseNamesWithoutTheMsSuffix) {
  const auto p = parse("[smtp]\ncommand_timeout_ms = 1000\n");
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].key, "smtp.command_timeout_ms");
  EXPECT_EQ(p.errors[0].message, "unknown key");
}

TEST(ConfigValidation, UnknownTable) {
  const auto p = parse("[server]\nworkers = 2\n\n[smpt]\nlisten = []\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 4u);
  EXPECT_EQ(p.errors[0].key, "smpt");
  EXPECT_EQ(p.errors[0].message, "unknown table");
}

TEST(ConfigValidation, UnknownSubtable) {
  const auto p = parse("[smtp]\nmax_errors = 3\n[smtp.limits]\nx = 1\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 3u);
  EXPECT_EQ(p.errors[0].key, "smtp.limits");
  EXPECT_EQ(p.errors[0].message, "unknown key");
}

TEST(ConfigValidation, KeyOutsideAnyTable) {
  const auto p = parse("hostname = \"mx.example.com\"\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 1u);
  EXPECT_EQ(p.errors[0].key, "hostname");
  EXPECT_NE(p.errors[0].message.find("unknown key"), std::string::npos);
}

TEST(ConfigValidation, SectionThatIsNotATable) {
  for (const char* text : {"smtp = 5\n", "[[smtp]]\nmax_errors = 1\n"}) {
    const auto p = parse(text);
    ASSERT_EQ(p.errors.size(), 1u) << text << all_errors(p);
    EXPECT_EQ(p.errors[0].line, 1u) << text;
    EXPECT_EQ(p.errors[0].key, "smtp");
    EXPECT_NE(p.errors[0].message.find("must be a table"), std::string::npos);
  }
}

TEST(ConfigValidation, DottedKeysAndInlineTablesWork) {
  const auto p = parse("smtp.max_errors = 7\ntls = { min_version = \"TLSv1.3\" }\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.smtp.max_errors, 7u);
  EXPECT_EQ(p.config.tls.min_version, "TLSv1.3");
}

TEST(ConfigValidation, EmptyCiphersuitesTurnTls13OffUnderTls12) {
  const auto p = parse("[tls]\nciphersuites = \"\"\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.tls.ciphersuites, "");
}

TEST(ConfigValidation, AllErrorsAreReportedInLineOrder) {
  const auto p = parse(R"([smtp]
max_errors = 0
max_command_line = 100
listen = ["nowhere"]

[tls]
min_version = "SSLv3"

[bogus]
x = 1

[log]
format = "xml"
target = "file"
)");
  ASSERT_EQ(p.errors.size(), 7u) << all_errors(p);
  const std::pair<unsigned, std::string_view> expected[] = {
      {2, "smtp.max_errors"}, {3, "smtp.max_command_line"}, {4, "smtp.listen"}, {7, "tls.min_version"},
      {9, "bogus"},           {13, "log.format"},           {14, "log.file"},
  };
  for (size_t i = 0; i < p.errors.size(); ++i) {
    EXPECT_EQ(p.errors[i].line, expected[i].first) << i << ": " << all_errors(p);
    EXPECT_EQ(p.errors[i].key, expected[i].second) << i << ": " << all_errors(p);
  }
}

TEST(ConfigValidation, EveryBadArrayElementIsReportedOnItsOwnLine) {
  const auto p = parse(R"([relay]
trusted_networks = [
  "10.0.0.0/8",
  "10.0.0.0/99",
  "::1/128",
  "not-a-net",
]
)");
  ASSERT_EQ(p.errors.size(), 2u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 4u);
  EXPECT_EQ(p.errors[1].line, 6u);
  EXPECT_EQ(p.errors[0].key, "relay.trusted_networks");
  EXPECT_EQ(p.errors[1].key, "relay.trusted_networks");
}

TEST(ConfigValidation, SyntaxErrorIsOneErrorWithItsLine) {
  const auto p = parse("[smtp]\nmax_errors = 3\nmax_recipients = = 4\nmax_errors = \"x\"\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 3u);
  EXPECT_EQ(p.errors[0].key, "");
  EXPECT_FALSE(p.errors[0].message.empty());
}

TEST(ConfigValidation, DuplicateKeyIsASyntaxError) {
  const auto p = parse("[smtp]\nmax_errors = 3\nmax_errors = 4\n");
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(p.errors[0].line, 3u);
}

TEST(ConfigFormat, ErrorText) {
  EXPECT_EQ(format_config_error({12, "smtp.max_errors", "must be a positive integer"}),
            "line 12: smtp.max_errors: must be a positive integer");
  EXPECT_EQ(format_config_error({0, "smtp.max_errors", "must be a positive integer"}),
            "smtp.max_errors: must be a positive integer");
  EXPECT_EQ(format_config_error({3, "", "expected a value"}), "line 3: expected a value");
  EXPECT_EQ(format_config_error({0, "", "cannot read x"}), "cannot read x");
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "tern_config_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::filesystem::path dir_;
};

TEST_F(ConfigFileTest, LoadsAFile) {
  const std::string path = (dir_ / "ternd.toml").string();
  std::ofstream(path) << "[smtp]\nmax_errors = 9\n";
  const auto p = load_config_file(path);
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.smtp.max_errors, 9u);
}

TEST_F(ConfigFileTest, ErrorsInAFileNameTheirLines) {
  const std::string path = (dir_ / "ternd.toml").string();
  std::ofstream(path) << "[smtp]\r\nmax_errors = 9\r\nmax_recipients = 0\r\n";
  const auto p = load_config_file(path);
  ASSERT_EQ(p.errors.size(), 1u) << all_errors(p);
  EXPECT_EQ(format_config_error(p.errors[0]), "line 3: smtp.max_recipients: must be a positive integer");
}

TEST_F(ConfigFileTest, UnreadableFileIsOneErrorWithoutLine) {
  const std::string path = (dir_ / "missing.toml").string();
  const auto p = load_config_file(path);
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].line, 0u);
  EXPECT_EQ(p.errors[0].key, "");
  EXPECT_NE(p.errors[0].message.find(path), std::string::npos) << p.errors[0].message;
  EXPECT_NE(p.errors[0].message.find("No such file"), std::string::npos) << p.errors[0].message;
}

TEST_F(ConfigFileTest, DirectoryIsUnreadable) {
  const auto p = load_config_file(dir_.string());
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].line, 0u);
}

TEST(ConfigDelivery, ActivePerDestinationDefaultsToAQuarterOfTheActiveSet) {
  Config c;
  EXPECT_EQ(active_per_destination(c), 5000u);
  c.delivery.active_limit = 3;
  EXPECT_EQ(active_per_destination(c), 1u);
  c.delivery.active_per_destination = 7;
  EXPECT_EQ(active_per_destination(c), 7u);
  const auto negative = parse("[delivery]\nactive_per_destination = -1\n");
  ASSERT_EQ(negative.errors.size(), 1u);
  EXPECT_EQ(negative.errors[0].key, "delivery.active_per_destination");
}

TEST(ConfigDelivery, LoopsZeroMeansAsManyAsTheWorkers) {
  Config c;
  EXPECT_EQ(delivery_loop_count(c, 4), 4u);
  c.delivery.loops = 1;
  EXPECT_EQ(delivery_loop_count(c, 4), 1u);
  c.delivery.loops = 6;
  EXPECT_EQ(delivery_loop_count(c, 4), 6u);
  c.server.workers = 3;
  EXPECT_EQ(worker_count(c), 3u);
  c.server.workers = 0;
  EXPECT_GE(worker_count(c), 1u);  // one per CPU
}

TEST(ConfigDelivery, EveryDeliveryKeyIsRead) {
  const auto p = parse(R"toml(
[delivery]
enabled = false
smtp_port = 2526
loops = 3
max_connections = 50
max_per_destination = 4
active_limit = 400
active_per_destination = 0
destination_rate = 10
max_messages_per_connection = 7
connection_cache_time = "2s"
bind_address = "::1"
connect_timeout = "3s"
greeting_timeout = "4s"
command_timeout = "5s"
data_timeout = "6s"
tls = "verify"
ca_file = "/etc/ca.pem"
scan_interval = "250ms"
[retry]
max_age = "2d"
jitter = 0
[retry.first]
count = 0
interval = "99m"
[retry.second]
interval = "1d"
[routing]
router = "[10.0.0.1]:2525"
router_user = "u"
router_password = "p"
router_tls = "encrypt"
firewall = true
forward_host = "isp.example:587"
etrn_domains = ["Branch.Example"]
[[routing.transport]]
domain = "*.corp.example"
next_hop = "mx:other.example"
tls = "none"
[[routing.transport]]
domain = "corp.example"
next_hop = "hq.example"
user = "a"
password = "b"
[dns]
servers = ["127.0.0.1:5353", "192.0.2.1", "[::1]:53"]
timeout = "2s"
tries = 3
cache_entries = 0
hosts_file = "/etc/tern-hosts"
local_addresses = ["192.0.2.10"]
)toml");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  const Config& c = p.config;
  EXPECT_FALSE(c.delivery.enabled);
  EXPECT_EQ(c.delivery.smtp_port, 2526u);
  EXPECT_EQ(c.delivery.loops, 3u);
  EXPECT_EQ(c.delivery.max_connections, 50u);
  EXPECT_EQ(c.delivery.max_per_destination, 4u);
  EXPECT_EQ(c.delivery.active_limit, 400u);
  EXPECT_EQ(c.delivery.active_per_destination, 0u);
  EXPECT_EQ(active_per_destination(c), 0u);  // no bound of its own
  EXPECT_EQ(c.delivery.destination_rate, 10u);
  EXPECT_EQ(c.delivery.max_messages_per_connection, 7u);
  EXPECT_EQ(c.delivery.connection_cache_time_ms, 2000);
  EXPECT_EQ(c.delivery.bind_address, "::1");
  EXPECT_EQ(c.delivery.connect_timeout_ms, 3000);
  EXPECT_EQ(c.delivery.greeting_timeout_ms, 4000);
  EXPECT_EQ(c.delivery.command_timeout_ms, 5000);
  EXPECT_EQ(c.delivery.data_timeout_ms, 6000);
  EXPECT_EQ(c.delivery.tls, "verify");
  EXPECT_EQ(c.delivery.ca_file, "/etc/ca.pem");
  EXPECT_EQ(c.delivery.scan_interval_ms, 250);
  EXPECT_EQ(c.retry.max_age_ms, 2 * 86'400'000LL);
  EXPECT_EQ(c.retry.jitter, 0u);
  EXPECT_EQ(c.retry.first_count, 0u);
  EXPECT_EQ(c.retry.first_interval_ms, 99 * 60'000);
  EXPECT_EQ(c.retry.second_interval_ms, 86'400'000);
  EXPECT_EQ(c.routing.router, "[10.0.0.1]:2525");
  EXPECT_EQ(c.routing.router_user, "u");
  EXPECT_EQ(c.routing.router_password, "p");
  EXPECT_EQ(c.routing.router_tls, "encrypt");
  EXPECT_TRUE(c.routing.firewall);
  EXPECT_EQ(c.routing.forward_host, "isp.example:587");
  EXPECT_EQ(c.routing.etrn_domains, std::vector<std::string>{"branch.example"});
  ASSERT_EQ(c.routing.transport.size(), 2u);
  EXPECT_EQ(c.routing.transport[0].domain, "*.corp.example");
  EXPECT_EQ(c.routing.transport[0].next_hop, "mx:other.example");
  EXPECT_EQ(c.routing.transport[0].tls, "none");
  EXPECT_EQ(c.routing.transport[1].user, "a");
  EXPECT_EQ(c.routing.transport[1].password, "b");
  EXPECT_EQ(c.dns.servers.size(), 3u);
  EXPECT_EQ(c.dns.timeout_ms, 2000);
  EXPECT_EQ(c.dns.tries, 3u);
  EXPECT_EQ(c.dns.cache_entries, 0u);
  EXPECT_EQ(c.dns.hosts_file, "/etc/tern-hosts");
  EXPECT_EQ(c.dns.local_addresses, std::vector<std::string>{"192.0.2.10"});
}

TEST(ConfigDsn, EveryDsnKeyIsRead) {
  const auto p = parse(
      "[server]\nhostname = \"mx.example\"\n"
      "[dsn]\npostmaster = \"hostmaster@example.org\"\ndouble_bounce = \"drop\"\n"
      "failure_copy = \"nondelivery@example.org\"\nfailure_copy_content = true\n"
      "delay_notice = \"4h\"\ndelay_notice_interval = \"12h\"\nmax_returned_size = \"1M\"\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  const Config& c = p.config;
  EXPECT_EQ(c.dsn.postmaster, "hostmaster@example.org");
  EXPECT_EQ(c.dsn.double_bounce, "drop");
  EXPECT_EQ(c.dsn.failure_copy, "nondelivery@example.org");
  EXPECT_TRUE(c.dsn.failure_copy_content);
  EXPECT_EQ(c.dsn.delay_notice, "4h");
  EXPECT_EQ(c.dsn.delay_notice_after_ms, 4 * 3'600'000LL);
  EXPECT_EQ(c.dsn.delay_notice_interval_ms, 12 * 3'600'000LL);
  EXPECT_EQ(c.dsn.max_returned_size, 1'048'576u);
}

TEST(ConfigLocal, UserQuotas) {
  const auto p = parse("[local]\nquota = \"1M\"\nuser_quotas = { \"alice\" = \"2K\", \"bob\" = 0 }\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.local.quota, 1'048'576u);
  EXPECT_EQ(p.config.local.user_quotas,
            (std::vector<std::pair<std::string, uint64_t>>{{"alice", 2048}, {"bob", 0}}));
}

TEST(ConfigLocal, CatchAllIsATableOfDomains) {
  const auto p = parse("[local]\ncatch_all = { \"Example.ORG\" = \"postmaster\", \"b.test\" = \"x@y.test\" }\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  ASSERT_EQ(p.config.local.catch_all.size(), 2u);
  EXPECT_EQ(p.config.local.catch_all[0], (std::pair<std::string, std::string>{"example.org", "postmaster"}));
  EXPECT_EQ(p.config.local.catch_all[1].first, "b.test");
}

TEST(ConfigDsn, PostmasterDefaultsToTheHostname) {
  const auto p = parse("[server]\nhostname = \"mx.example\"\n[dsn]\ndelay_notice = \"off\"\n");
  ASSERT_TRUE(p.ok()) << all_errors(p);
  EXPECT_EQ(p.config.dsn.postmaster, "postmaster@mx.example");
  EXPECT_EQ(p.config.dsn.delay_notice, "off");
}

TEST(ConfigDelivery, BadValuesNameTheirLineAndKey) {
  struct Case {
    const char* text;
    const char* key;
    unsigned line;
  };
  const Case cases[] = {
      {"[delivery]\nsmtp_port = 0\n", "delivery.smtp_port", 2},
      {"[delivery]\ntls = \"always\"\n", "delivery.tls", 2},
      {"[delivery]\nbind_address = \"eth0\"\n", "delivery.bind_address", 2},
      {"[delivery]\nmax_per_destination = 0\n", "delivery.max_per_destination", 2},
      {"[retry.first]\ncount = 100\n", "retry.first.count", 2},
      {"[retry.first]\ninterval = \"100m\"\n", "retry.first.interval", 2},
      {"[retry.second]\ninterval = 0\n", "retry.second.interval", 2},
      {"[retry]\njitter = 101\n", "retry.jitter", 2},
      {"[retry]\nfirst = 3\n", "retry.first", 2},
      {"[retry.third]\ninterval = 1\n", "retry.third", 1},
      {"[routing]\nrouter = \"mx:example.test\"\n", "routing.router", 2},
      {"[routing]\nrouter = \"host:99999\"\n", "routing.router", 2},
      {"[routing]\nforward_host = \"[300.1.1.1]\"\n", "routing.forward_host", 2},
      {"[routing]\nrouter = \"gw.test\"\nrouter_user = \"u\"\n", "routing.router_user", 3},
      {"[routing]\nfirewall = true\n", "routing.firewall", 2},
      {"[routing]\netrn_domains = [\"a b\"]\n", "routing.etrn_domains", 2},
      {"[[routing.transport]]\ndomain = \"x.test\"\nnext_hop = \"bad host\"\n", "routing.transport.next_hop", 3},
      {"[[routing.transport]]\ndomain = \"x.test\"\nnext_hop = \"h.test\"\ncolour = \"red\"\n",
       "routing.transport.colour", 4},
      {"[[routing.transport]]\ndomain = \"x.test\"\nnext_hop = \"h.test\"\nuser = \"u\"\n", "routing.transport", 1},
      {"[[routing.transport]]\nnext_hop = \"h.test\"\n", "routing.transport", 1},
      {"[dns]\nservers = [\"localhost\"]\n", "dns.servers", 2},
      {"[dns]\ntries = 0\n", "dns.tries", 2},
      {"[dns]\nlocal_addresses = [\"10.0.0\"]\n", "dns.local_addresses", 2},
      {"[delivery]\nspeed = 3\n", "delivery.speed", 2},
      {"[dsn]\npostmaster = \"nobody\"\n", "dsn.postmaster", 2},
      {"[dsn]\nfailure_copy = \"a b@c.test\"\n", "dsn.failure_copy", 2},
      {"[dsn]\ndouble_bounce = \"sender\"\n", "dsn.double_bounce", 2},
      {"[dsn]\ndelay_notice = \"sometimes\"\n", "dsn.delay_notice", 2},
      {"[dsn]\ndelay_notice = \"0s\"\n", "dsn.delay_notice", 2},
      {"[dsn]\ndelay_notice_interval = 0\n", "dsn.delay_notice_interval", 2},
      {"[dsn]\nmax_returned_size = 0\n", "dsn.max_returned_size", 2},
      {"[dsn]\nfailure_copy_content = \"yes\"\n", "dsn.failure_copy_content", 2},
      {"[dsn]\nreturn = 1\n", "dsn.return", 2},
      {"[relay]\nmode = \"open\"\n", "relay.mode", 2},
      {"[relay]\npop_window = 14\n", "relay.pop_window", 2},
      {"[relay]\npop_window = 65536\n", "relay.pop_window", 2},
      {"[restrictions]\ndeny = [\"10.0.0.0/33\"]\n", "restrictions.deny", 2},
      {"[restrictions]\ndnsbl = [\"not a zone\"]\n", "restrictions.dnsbl", 2},
      {"[restrictions]\nconnections_per_minute = -1\n", "restrictions.connections_per_minute", 2},
      {"[auth]\nrequire = \"sometimes\"\n", "auth.require", 2},
      {"[auth]\nsender_check_exempt = [\"Bad Name\"]\n", "auth.sender_check_exempt", 2},
      {"[auth]\nmax_failures = 0\n", "auth.max_failures", 2},
      {"[smtp]\nsubmissions = [\"127.0.0.1:4650\"]\n", "smtp.submissions", 2},
      {"[smtp]\nsubmission = [\"127.0.0.1:5870\"]\n", "smtp.submission", 2},
      {"[local]\nrecipient_delimiter = \"++\"\n", "local.recipient_delimiter", 2},
      {"[local]\ncatch_all = { \"bad domain\" = \"x\" }\n", "local.catch_all", 2},
      {"[local]\nquota = \"lots\"\n", "local.quota", 2},
      {"[local]\nuser_quotas = { \"Alice\" = \"1M\" }\n", "local.user_quotas", 2},
      {"[local]\nuser_quotas = { \"alice\" = \"big\" }\n", "local.user_quotas", 2},
      {"[pop3]\nlisten_tls = [\"127.0.0.1:9950\"]\n", "pop3.listen_tls", 2},
      {"[pop3]\nmax_sessions_per_user = 0\n", "pop3.max_sessions_per_user", 2},
      {"[pop3]\ntimeout = 0\n", "pop3.timeout", 2},
      {"[smtp]\nlisten = [\"127.0.0.1:25\"]\nsubmission = [\"127.0.0.1:25\"]\n", "smtp.submission", 3},
  };
  for (const Case& c : cases) {
    const auto p = parse(c.text);
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_EQ(p.errors[0].key, c.key) << c.text << all_errors(p);
    EXPECT_EQ(p.errors[0].line, c.line) << c.text << all_errors(p);
  }
}

}  // namespace
}  // namespace tern
