#include "dns/route.h"

#include <algorithm>

namespace tern::dns {

void order_mx(std::vector<MxRecord>& records, std::mt19937& rng) {
  std::shuffle(records.begin(), records.end(), rng);
  std::stable_sort(records.begin(), records.end(),
                   [](const MxRecord& x, const MxRecord& y) { return x.preference < y.preference; });
}

MxPlan plan_mx(std::string_view domain, const RecordSet& mx_answer, std::mt19937& rng) {
  MxPlan plan;
  switch (mx_answer.kind) {
    case RecordSet::Kind::nxdomain:
      plan.error = {Failure::nxdomain, std::string(domain) + ": no such domain (NXDOMAIN)"};
      return plan;
    case RecordSet::Kind::no_data:
      plan.kind = MxPlan::Kind::implicit_mx;
      return plan;
    case RecordSet::Kind::answer:
      break;
  }
  if (std::all_of(mx_answer.mx.begin(), mx_answer.mx.end(), [](const MxRecord& r) { return r.exchange.empty(); })) {
    plan.error = {Failure::null_mx, std::string(domain) + " does not accept mail (null MX, RFC 7505)"};
    return plan;
  }
  for (const MxRecord& r : mx_answer.mx)
    if (!r.exchange.empty()) plan.exchanges.push_back(r);
  order_mx(plan.exchanges, rng);
  plan.kind = MxPlan::Kind::use_mx;
  return plan;
}

DnsResult<std::vector<IpAddress>> merge_addresses(std::string_view name, const DnsResult<RecordSet>& a,
                                                  const DnsResult<RecordSet>& aaaa) {
  std::vector<IpAddress> all;
  for (const auto* r : {&a, &aaaa})
    if (r->ok()) all.insert(all.end(), (*r)->addresses.begin(), (*r)->addresses.end());
  if (!all.empty()) return all;
  if (!a.ok()) return a.error();
  if (!aaaa.ok()) return aaaa.error();
  if (a->kind == RecordSet::Kind::nxdomain && aaaa->kind == RecordSet::Kind::nxdomain)
    return DnsError{Failure::nxdomain, std::string(name) + ": no such domain (NXDOMAIN)"};
  return DnsError{Failure::no_address, std::string(name) + ": no A or AAAA record"};
}

DnsResult<MxRoute> assemble_route(std::string_view domain, const std::vector<MxRecord>& exchanges,
                                  const std::vector<DnsResult<std::vector<IpAddress>>>& addresses) {
  MxRoute route;
  route.domain = std::string(domain);
  route.source = MxRoute::Source::mx;
  const DnsError* temporary = nullptr;
  std::string failures;
  for (size_t i = 0; i < exchanges.size() && i < addresses.size(); ++i) {
    if (addresses[i].ok()) {
      route.hosts.push_back({exchanges[i].preference, exchanges[i].exchange, *addresses[i]});
      continue;
    }
    const DnsError& e = addresses[i].error();
    if (!e.permanent() && !temporary) temporary = &e;
    failures += failures.empty() ? "" : "; ";
    failures += e.message;
  }
  if (!route.hosts.empty()) return route;
  if (temporary)
    return DnsError{Failure::temporary, std::string(domain) + ": no MX host reachable yet: " + temporary->message};
  return DnsError{Failure::unroutable, std::string(domain) + ": no MX host has an address: " + failures};
}

bool is_us(const IpAddress& target, std::span<const IpAddress> ours) {
  return target.is_unspecified() || std::find(ours.begin(), ours.end(), target) != ours.end();
}

DnsResult<MxRoute> drop_ourselves(MxRoute route, std::span<const IpAddress> ours) {
  auto is_ours = [&](const MxHost& h) {
    return std::any_of(h.addresses.begin(), h.addresses.end(), [&](const IpAddress& a) { return is_us(a, ours); });
  };
  auto first_us = std::find_if(route.hosts.begin(), route.hosts.end(), is_ours);
  if (first_us == route.hosts.end()) return route;
  const uint16_t our_preference = first_us->preference;
  const std::string our_name = first_us->name;
  std::erase_if(route.hosts, [&](const MxHost& h) { return h.preference >= our_preference; });
  if (route.hosts.empty())
    return DnsError{Failure::mail_loop, "mail for " + route.domain + " loops back to myself (" + our_name + ")"};
  return route;
}

}  // namespace tern::dns
