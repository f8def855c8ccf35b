// What a lookup failure means for delivery. A plain Result<T> carries only
// a message; a router must also know whether to bounce or retry and which
// enhanced status code (RFC 3463) to report, so lookups return
// DnsResult<T> = Result<T, DnsError>.
#pragma once
#include <string>
#include <string_view>

#include "queue/result.h"

namespace tern::dns {

enum class Failure {
  nxdomain,        // the domain does not exist: 5.1.2
  no_address,      // exists, but no MX and no A/AAAA: 5.1.2
  null_mx,         // RFC 7505 "MX 0 .": the domain accepts no mail: 5.1.10
  unroutable,      // every MX host has no address: 5.4.4
  mail_loop,       // the best MX is this host (RFC 5321 §5.1): 5.4.6
  bad_literal,     // "[...]" that is not an address literal: 5.1.3
  temporary,       // SERVFAIL, timeout, refused, unreadable answer: 4.4.3
};

struct DnsError {
  Failure failure = Failure::temporary;
  std::string message;  // for logs and DSNs: names the domain and the cause

  bool permanent() const { return failure != Failure::temporary; }
  std::string_view enhanced_code() const {
    switch (failure) {
      case Failure::nxdomain:
      case Failure::no_address: return "5.1.2";
      case Failure::null_mx: return "5.1.10";
      case Failure::unroutable: return "5.4.4";
      case Failure::mail_loop: return "5.4.6";
      case Failure::bad_literal: return "5.1.3";
      case Failure::temporary: break;
    }
    return "4.4.3";
  }
};

template <typename T>
using DnsResult = Result<T, DnsError>;

}  // namespace tern::dns
