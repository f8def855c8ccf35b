#include "dns/message.h"

#include <algorithm>

namespace tern::dns {

namespace {

constexpr size_t kMaxNameLength = 255;
constexpr uint16_t kClassIn = 1;

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> msg) : msg_(msg) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  void seek(size_t p) { if (p > msg_.size()) ok_ = false; else pos_ = p; }

  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = static_cast<uint16_t>(msg_[pos_] << 8 | msg_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  uint32_t u32() {
    uint32_t hi = u16();
    return hi << 16 | u16();
  }
  void skip(size_t n) { if (need(n)) pos_ += n; }
  const uint8_t* bytes(size_t n) {
    if (!need(n)) return nullptr;
    const uint8_t* p = msg_.data() + pos_;
    pos_ += n;
    return p;
  }

  // A possibly compressed name, lower-cased, labels joined by dots.
  std::string name() {
    std::string out;
    size_t at = pos_;
    size_t resume = 0;  // where reading continues after the first pointer
    size_t hops = 0;
    while (ok_) {
      if (at >= msg_.size()) { ok_ = false; break; }
      const uint8_t len = msg_[at];
      if ((len & 0xc0) == 0xc0) {
        if (at + 1 >= msg_.size() || ++hops > kMaxNameLength) { ok_ = false; break; }
        if (resume == 0) resume = at + 2;
        at = static_cast<size_t>(len & 0x3f) << 8 | msg_[at + 1];
        continue;
      }
      if (len & 0xc0) { ok_ = false; break; }  // 0x40/0x80: obsolete label types
      if (len == 0) { ++at; break; }
      if (at + 1 + len > msg_.size() || out.size() + len + 1 > kMaxNameLength) { ok_ = false; break; }
      if (!out.empty()) out += '.';
      for (size_t i = 0; i < len; ++i) {
        char c = static_cast<char>(msg_[at + 1 + i]);
        out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
      }
      at += 1 + len;
    }
    pos_ = resume ? resume : at;
    return out;
  }

 private:
  bool need(size_t n) {
    if (!ok_ || msg_.size() - pos_ < n) ok_ = false;
    return ok_;
  }
  std::span<const uint8_t> msg_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string normalize_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; });
  return out;
}

Result<Response> parse_response(std::span<const uint8_t> message, RecordType asked) {
  Reader r(message);
  r.skip(2);  // id: c-ares matched it already
  const uint16_t flags = r.u16();
  const uint16_t qdcount = r.u16();
  const uint16_t ancount = r.u16();
  const uint16_t nscount = r.u16();
  r.skip(2);  // additional records are not trusted for anything
  if (!r.ok()) return Error{"DNS response shorter than its header"};
  if (!(flags & 0x8000)) return Error{"DNS message is not a response"};

  Response resp;
  resp.rcode = static_cast<uint8_t>(flags & 0x0f);
  for (uint16_t i = 0; i < qdcount && r.ok(); ++i) {
    r.name();
    r.skip(4);  // type, class
  }
  std::optional<uint32_t> min_ttl;
  for (uint32_t i = 0; i < uint32_t{ancount} + nscount && r.ok(); ++i) {
    const bool in_answer = i < ancount;
    r.name();
    const uint16_t type = r.u16();
    const uint16_t rclass = r.u16();
    // RFC 2181 §8: a TTL with the top bit set is treated as zero.
    uint32_t ttl = r.u32();
    if (ttl & 0x80000000u) ttl = 0;
    const uint16_t rdlength = r.u16();
    const size_t rdata_start = r.pos();
    const size_t rdata_end = rdata_start + rdlength;
    if (!r.ok() || rdata_end > message.size()) return Error{"truncated DNS resource record"};
    if (rclass != kClassIn) {
      r.seek(rdata_end);
      continue;
    }
    if (in_answer) {
      if (type == static_cast<uint16_t>(asked) || type == static_cast<uint16_t>(RecordType::cname))
        min_ttl = std::min(min_ttl.value_or(ttl), ttl);
      if (type == static_cast<uint16_t>(asked)) {
        if (asked == RecordType::mx) {
          MxRecord mx;
          mx.preference = r.u16();
          mx.exchange = r.name();
          resp.mx.push_back(std::move(mx));
        } else if (asked == RecordType::a && rdlength == 4) {
          const uint8_t* b = r.bytes(4);
          if (b) resp.addresses.push_back(IpAddress::v4({b[0], b[1], b[2], b[3]}));
        } else if (asked == RecordType::aaaa && rdlength == 16) {
          const uint8_t* b = r.bytes(16);
          if (b) {
            uint8_t v6[16];
            std::copy(b, b + 16, v6);
            resp.addresses.push_back(IpAddress::v6(v6));
          }
        } else if (asked == RecordType::txt) {
          // One or more <character-string>s: a length octet, then that many octets.
          std::string text;
          while (r.ok() && r.pos() < rdata_end) {
            const uint8_t* len = r.bytes(1);
            if (!len || r.pos() + *len > rdata_end) return Error{"malformed DNS TXT record"};
            const uint8_t* b = r.bytes(*len);
            if (b) text.append(reinterpret_cast<const char*>(b), *len);
          }
          resp.texts.push_back(std::move(text));
        }
      }
    } else if (type == static_cast<uint16_t>(RecordType::soa)) {
      r.name();  // MNAME
      r.name();  // RNAME
      r.skip(16);  // SERIAL, REFRESH, RETRY, EXPIRE
      const uint32_t minimum = r.u32();
      if (r.ok()) resp.negative_ttl = std::min(ttl, minimum);
    }
    if (!r.ok() || r.pos() > rdata_end) return Error{"malformed DNS resource record"};
    r.seek(rdata_end);
  }
  if (!r.ok()) return Error{"truncated DNS response"};
  resp.answer_ttl = min_ttl.value_or(0);
  return resp;
}

}  // namespace tern::dns
