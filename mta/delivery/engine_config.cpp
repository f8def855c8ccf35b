#include "mta/delivery/engine_config.h"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include "mta/delivery/hop_spec.h"

namespace tern::delivery {

namespace {

TlsPolicy tls_policy(const std::string& name, const std::string& fallback) {
  const std::string& n = name.empty() ? fallback : name;
  if (n == "none") return TlsPolicy::none;
  if (n == "encrypt") return TlsPolicy::encrypt;
  if (n == "verify") return TlsPolicy::verify;
  return TlsPolicy::may;
}

// A configured hop (validated by the configuration parser).
NextHop hop_from(const std::string& text, const std::string& tls, const std::string& default_tls,
                 const std::string& user, const std::string& password) {
  NextHop hop;
  auto spec = parse_hop_spec(text);
  if (spec) {
    hop.kind = spec->mx ? NextHop::Kind::mx : NextHop::Kind::relay;
    hop.host = spec->host;
    hop.port = spec->port ? spec->port : 25;
  }
  hop.tls = tls_policy(tls, default_tls);
  if (!user.empty()) hop.auth = Credentials{user, password};
  return hop;
}

std::string endpoint_of_ip(const std::string& ip) {
  return ip.find(':') == std::string::npos ? ip + ":0" : "[" + ip + "]:0";
}

// "127.0.0.1:2525" / "[::1]:2525" → the address part.
std::string address_of(const std::string& endpoint_text) {
  if (endpoint_text.starts_with('[')) return endpoint_text.substr(1, endpoint_text.find(']') - 1);
  return endpoint_text.substr(0, endpoint_text.rfind(':'));
}

// Out of line: inlined into engine_settings, g++ 12 warns falsely
// (-Wfree-nonheap-object) about the Result's destructor.
[[gnu::noinline]] Status load_hosts(const std::string& path, dns::HostsTable& out) {
  std::ifstream in(path);
  if (!in) return Error{"cannot read " + path};
  std::stringstream text;
  text << in.rdbuf();
  auto hosts = dns::HostsTable::parse(text.str());
  if (!hosts) return Error{path + ": " + hosts.error()};
  out = std::move(hosts.value());
  return {};
}

}  // namespace

Result<EngineSettings> engine_settings(const Config& config, const std::string& hostname,
                                       const std::vector<io::Endpoint>& listening, unsigned workers) {
  EngineSettings s;
  const auto& d = config.delivery;
  const auto& r = config.routing;

  s.retry.first_count = config.retry.first_count;
  s.retry.first_interval_us = config.retry.first_interval_ms * 1000;
  s.retry.second_interval_us = config.retry.second_interval_ms * 1000;
  s.retry.max_age_us = config.retry.max_age_ms * 1000;
  s.retry.jitter_percent = config.retry.jitter;

  s.routing.local_domains = config.relay.local_domains;
  for (const auto& rule : r.transport)
    s.routing.transport.push_back({rule.domain, hop_from(rule.next_hop, rule.tls, d.tls, rule.user, rule.password)});
  if (!r.router.empty()) s.routing.router = hop_from(r.router, r.router_tls, d.tls, r.router_user, r.router_password);
  s.routing.firewall = r.firewall;
  if (!r.forward_host.empty()) s.routing.forward = hop_from(r.forward_host, "", d.tls, "", "");

  s.client.helo_name = hostname;
  if (!d.bind_address.empty()) {
    auto bind = io::parse_endpoint(endpoint_of_ip(d.bind_address));
    if (!bind) return Error{"delivery.bind_address: " + bind.error()};
    s.client.bind_address = bind.value();
  }
  s.client.connect_timeout_ms = d.connect_timeout_ms;
  s.client.greeting_timeout_ms = d.greeting_timeout_ms;
  s.client.command_timeout_ms = d.command_timeout_ms;
  s.client.data_timeout_ms = d.data_timeout_ms;
  auto opportunistic = io::TlsContext::create_client();
  if (!opportunistic) return Error{"delivery TLS: " + opportunistic.error()};
  s.client.opportunistic = opportunistic.value();
  auto verifying = io::TlsContext::create_verifying_client(d.ca_file);
  if (!verifying) return Error{"delivery.ca_file: " + verifying.error()};
  s.client.verifying = verifying.value();

  s.dns.servers = config.dns.servers;
  s.dns.timeout_ms = config.dns.timeout_ms;
  s.dns.tries = config.dns.tries;
  s.dns.cache_entries = config.dns.cache_entries;
  if (!config.dns.hosts_file.empty()) {
    Status loaded = load_hosts(config.dns.hosts_file, s.dns.hosts);
    if (!loaded) return Error{"dns.hosts_file: " + loaded.error()};
  }

  // MX hosts with these addresses are this server (RFC 5321 §5.1).
  std::vector<std::string> ours = config.dns.local_addresses;
  for (const auto& ep : listening) ours.push_back(address_of(ep.text));
  for (const auto& text : ours) {
    if (auto ip = dns::IpAddress::parse(text)) s.our_addresses.push_back(*ip);
  }

  s.local.maildir_root = config.local.maildir_root;
  s.local.quota = config.local.quota;
  s.local.user_quotas = config.local.user_quotas;
  s.local.quota_permanent = config.local.quota_permanent;

  const auto& n = config.dsn;
  s.notices.hostname = hostname;
  s.notices.double_bounce_to = n.double_bounce == "drop" ? std::string() : n.postmaster;
  s.notices.failure_copy_to = n.failure_copy;
  s.notices.failure_copy_content = n.failure_copy_content;
  s.notices.delay = n.delay_notice == "off"      ? dsn::DelayNotices::off
                    : n.delay_notice == "retry2" ? dsn::DelayNotices::on_retry2
                                                 : dsn::DelayNotices::after_age;
  s.notices.delay_after_ms = n.delay_notice_after_ms;
  s.notices.delay_interval_ms = n.delay_notice_interval_ms;
  s.notices.max_returned_size = n.max_returned_size;

  s.smtp_port = static_cast<uint16_t>(d.smtp_port);
  s.loops = delivery_loop_count(config, workers);
  s.max_connections = d.max_connections;
  s.max_per_destination = d.max_per_destination;
  s.active_limit = d.active_limit;
  s.active_per_destination = active_per_destination(config);
  s.destination_rate = d.destination_rate;
  s.max_messages_per_connection = d.max_messages_per_connection;
  s.connection_cache_ms = d.connection_cache_time_ms;
  s.scan_interval_ms = d.scan_interval_ms;
  return s;
}

}  // namespace tern::delivery
