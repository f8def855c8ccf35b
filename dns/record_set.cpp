#include "dns/record_set.h"

#include <algorithm>
#include <string>

namespace tern::dns {

std::string_view type_name(RecordType type) {
  switch (type) {
    case RecordType::a: return "A";
    case RecordType::aaaa: return "AAAA";
    case RecordType::mx: return "MX";
    case RecordType::cname: return "CNAME";
    case RecordType::soa: return "SOA";
    case RecordType::txt: return "TXT";
  }
  return "?";
}

DnsResult<RecordSet> classify(const Response& response, std::string_view name, RecordType type) {
  RecordSet set;
  switch (static_cast<Rcode>(response.rcode)) {
    case Rcode::no_error:
      set.mx = response.mx;
      set.addresses = response.addresses;
      set.texts = response.texts;
      set.kind = set.mx.empty() && set.addresses.empty() && set.texts.empty() ? RecordSet::Kind::no_data
                                                                              : RecordSet::Kind::answer;
      return set;
    case Rcode::name_error:
      set.kind = RecordSet::Kind::nxdomain;
      return set;
    default:
      break;
  }
  std::string why;
  switch (static_cast<Rcode>(response.rcode)) {
    case Rcode::server_failure: why = "server failure (SERVFAIL)"; break;
    case Rcode::refused: why = "refused by the server"; break;
    case Rcode::format_error: why = "the server did not understand the query (FORMERR)"; break;
    case Rcode::not_implemented: why = "not implemented by the server"; break;
    default: why = "response code " + std::to_string(response.rcode); break;
  }
  return DnsError{Failure::temporary,
                  std::string(name) + " " + std::string(type_name(type)) + " lookup: " + why};
}

uint32_t cache_ttl(const Response& response, const RecordSet& set, const CacheLimits& limits) {
  if (set.kind == RecordSet::Kind::answer) return std::min(response.answer_ttl, limits.max_ttl_s);
  return std::min(response.negative_ttl.value_or(limits.negative_ttl_cap_s), limits.negative_ttl_cap_s);
}

}  // namespace tern::dns
