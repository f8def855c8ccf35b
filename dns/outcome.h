// What a lookup failure means for delivery. Result<T> (queue/result.h)
// carries only a message; a router must also know whether to bounce or
// retry and which enhanced status code (RFC 3463) to report, so lookups
// return DnsResult<T>, which carries a DnsError.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <variant>

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
class DnsResult {
 public:
  DnsResult(T value) : v_(std::move(value)) {}
  DnsResult(DnsError e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const DnsError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, DnsError> v_;
};

}  // namespace tern::dns
