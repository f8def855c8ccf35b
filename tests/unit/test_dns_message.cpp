#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dns/message.h"
#include "dns/record_set.h"

namespace tern::dns {
namespace {

// Builds DNS responses in wire format for the parser.
class MessageBuilder {
 public:
  MessageBuilder(uint8_t rcode, const std::string& qname, RecordType qtype) {
    u16(0x1234);
    u16(static_cast<uint16_t>(0x8180 | rcode));  // response, RD, RA
    u16(1);
    counts_at_ = bytes_.size();
    u16(0);
    u16(0);
    u16(0);
    name(qname);
    u16(static_cast<uint16_t>(qtype));
    u16(1);
  }
  MessageBuilder& mx(const std::string& owner, uint32_t ttl, uint16_t pref, const std::string& exchange) {
    std::vector<uint8_t> rdata = {static_cast<uint8_t>(pref >> 8), static_cast<uint8_t>(pref)};
    append_name(rdata, exchange);
    return record(0, owner, RecordType::mx, ttl, rdata);
  }
  MessageBuilder& a(const std::string& owner, uint32_t ttl, std::vector<uint8_t> addr) {
    return record(0, owner, addr.size() == 4 ? RecordType::a : RecordType::aaaa, ttl, addr);
  }
  // A TXT record of the given character-strings.
  MessageBuilder& txt(const std::string& owner, uint32_t ttl, const std::vector<std::string>& strings) {
    std::vector<uint8_t> rdata;
    for (const auto& str : strings) {
      rdata.push_back(static_cast<uint8_t>(str.size()));
      rdata.insert(rdata.end(), str.begin(), str.end());
    }
    return record(0, owner, RecordType::txt, ttl, rdata);
  }
  // A TXT record with the rdata as given.
  MessageBuilder& raw_txt(const std::string& owner, uint32_t ttl, const std::vector<uint8_t>& rdata) {
    return record(0, owner, RecordType::txt, ttl, rdata);
  }
  MessageBuilder& cname(const std::string& owner, uint32_t ttl, const std::string& target) {
    std::vector<uint8_t> rdata;
    append_name(rdata, target);
    return record(0, owner, RecordType::cname, ttl, rdata);
  }
  MessageBuilder& soa(const std::string& owner, uint32_t ttl, uint32_t minimum) {
    std::vector<uint8_t> rdata;
    append_name(rdata, "ns." + owner);
    append_name(rdata, "hostmaster." + owner);
    for (uint32_t v : {1u, 3600u, 600u, 86400u, minimum})
      for (int shift = 24; shift >= 0; shift -= 8) rdata.push_back(static_cast<uint8_t>(v >> shift));
    return record(1, owner, RecordType::soa, ttl, rdata);
  }
  // An MX whose exchange is a compression pointer to the question name.
  MessageBuilder& mx_pointing_at_question(uint32_t ttl, uint16_t pref) {
    std::vector<uint8_t> rdata = {static_cast<uint8_t>(pref >> 8), static_cast<uint8_t>(pref), 0xc0, 12};
    return record(0, "", RecordType::mx, ttl, rdata, true);
  }
  std::vector<uint8_t> bytes() const { return bytes_; }

 private:
  static void append_name(std::vector<uint8_t>& out, const std::string& n) {
    size_t start = 0;
    while (start < n.size()) {
      size_t dot = n.find('.', start);
      if (dot == std::string::npos) dot = n.size();
      out.push_back(static_cast<uint8_t>(dot - start));
      out.insert(out.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    out.push_back(0);
  }
  void u16(uint16_t v) {
    bytes_.push_back(static_cast<uint8_t>(v >> 8));
    bytes_.push_back(static_cast<uint8_t>(v));
  }
  void name(const std::string& n) { append_name(bytes_, n); }
  MessageBuilder& record(int section, const std::string& owner, RecordType type, uint32_t ttl,
                         const std::vector<uint8_t>& rdata, bool owner_is_question = false) {
    if (owner_is_question) {
      bytes_.push_back(0xc0);
      bytes_.push_back(12);
    } else {
      name(owner);
    }
    u16(static_cast<uint16_t>(type));
    u16(1);
    u16(static_cast<uint16_t>(ttl >> 16));
    u16(static_cast<uint16_t>(ttl));
    u16(static_cast<uint16_t>(rdata.size()));
    bytes_.insert(bytes_.end(), rdata.begin(), rdata.end());
    size_t at = counts_at_ + 2 * static_cast<size_t>(section);
    uint16_t count = static_cast<uint16_t>((bytes_[at] << 8 | bytes_[at + 1]) + 1);
    bytes_[at] = static_cast<uint8_t>(count >> 8);
    bytes_[at + 1] = static_cast<uint8_t>(count);
    return *this;
  }
  std::vector<uint8_t> bytes_;
  size_t counts_at_ = 0;
};

Response parse_ok(const std::vector<uint8_t>& msg, RecordType type) {
  auto r = parse_response(msg, type);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  return r.ok() ? *r : Response{};
}

TEST(DnsMessage, MxRecordsWithPreferencesAndLowestTtl) {
  auto msg = MessageBuilder(0, "example.test", RecordType::mx)
                 .mx("example.test", 300, 20, "B.Mx.Example.Test")
                 .mx("example.test", 120, 10, "a.mx.example.test")
                 .bytes();
  Response r = parse_ok(msg, RecordType::mx);
  EXPECT_EQ(r.rcode, 0);
  ASSERT_EQ(r.mx.size(), 2u);
  EXPECT_EQ(r.mx[0], (MxRecord{20, "b.mx.example.test"}));
  EXPECT_EQ(r.mx[1], (MxRecord{10, "a.mx.example.test"}));
  EXPECT_EQ(r.answer_ttl, 120u);
  EXPECT_FALSE(r.negative_ttl);
}

TEST(DnsMessage, CompressedExchangeNameIsExpanded) {
  auto msg = MessageBuilder(0, "example.test", RecordType::mx).mx_pointing_at_question(60, 5).bytes();
  Response r = parse_ok(msg, RecordType::mx);
  ASSERT_EQ(r.mx.size(), 1u);
  EXPECT_EQ(r.mx[0], (MxRecord{5, "example.test"}));
}

TEST(DnsMessage, NullMxHasAnEmptyExchange) {
  auto msg = MessageBuilder(0, "null.test", RecordType::mx).mx("null.test", 60, 0, "").bytes();
  Response r = parse_ok(msg, RecordType::mx);
  ASSERT_EQ(r.mx.size(), 1u);
  EXPECT_EQ(r.mx[0], (MxRecord{0, ""}));
}

TEST(DnsMessage, AddressesAndCnameTtlCounts) {
  auto msg = MessageBuilder(0, "www.example.test", RecordType::a)
                 .cname("www.example.test", 30, "host.example.test")
                 .a("host.example.test", 600, {192, 0, 2, 7})
                 .bytes();
  Response r = parse_ok(msg, RecordType::a);
  ASSERT_EQ(r.addresses.size(), 1u);
  EXPECT_EQ(r.addresses[0].to_string(), "192.0.2.7");
  EXPECT_EQ(r.answer_ttl, 30u);
}

TEST(DnsMessage, AaaaAnswer) {
  auto msg = MessageBuilder(0, "v6.test", RecordType::aaaa)
                 .a("v6.test", 60, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
                 .bytes();
  Response r = parse_ok(msg, RecordType::aaaa);
  ASSERT_EQ(r.addresses.size(), 1u);
  EXPECT_EQ(r.addresses[0].to_string(), "2001:db8::1");
}

TEST(DnsMessage, TxtRecordsConcatenateTheirStrings) {
  auto msg = MessageBuilder(0, "2.0.0.127.bl.test", RecordType::txt)
                 .txt("2.0.0.127.bl.test", 300, {"spam source, ", "see http://bl.test/"})
                 .txt("2.0.0.127.bl.test", 120, {"Second"})
                 .txt("2.0.0.127.bl.test", 600, {""})
                 .a("2.0.0.127.bl.test", 5, {127, 0, 0, 2})  // another type: ignored, its TTL too
                 .bytes();
  Response r = parse_ok(msg, RecordType::txt);
  EXPECT_EQ(r.texts, (std::vector<std::string>{"spam source, see http://bl.test/", "Second", ""}));
  EXPECT_TRUE(r.addresses.empty());
  EXPECT_EQ(r.answer_ttl, 120u);
  auto set = classify(r, "2.0.0.127.bl.test", RecordType::txt);
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->kind, RecordSet::Kind::answer);
  EXPECT_EQ(set->texts.size(), 3u);
}

TEST(DnsMessage, TxtStringRunningPastItsRecordFails) {
  auto msg = MessageBuilder(0, "x.test", RecordType::txt)
                 .raw_txt("x.test", 60, {5, 'a', 'b'})  // says 5 octets, has 2
                 .txt("x.test", 60, {"next"})
                 .bytes();
  EXPECT_FALSE(parse_response(msg, RecordType::txt).ok());
}

TEST(DnsMessage, NegativeTtlIsTheLowerOfSoaTtlAndMinimum) {
  auto nx = MessageBuilder(3, "gone.test", RecordType::mx).soa("test", 3600, 300).bytes();
  Response r = parse_ok(nx, RecordType::mx);
  EXPECT_EQ(r.rcode, 3);
  EXPECT_EQ(r.negative_ttl, 300u);
  auto nodata = MessageBuilder(0, "host.test", RecordType::mx).soa("test", 60, 300).bytes();
  EXPECT_EQ(parse_ok(nodata, RecordType::mx).negative_ttl, 60u);
}

TEST(DnsMessage, TruncatedAndMalformedMessagesFail) {
  auto msg = MessageBuilder(0, "example.test", RecordType::mx).mx("example.test", 60, 10, "mx.example.test").bytes();
  for (size_t cut : {size_t{5}, size_t{20}, msg.size() - 3}) {
    std::vector<uint8_t> shorter(msg.begin(), msg.begin() + static_cast<long>(cut));
    EXPECT_FALSE(parse_response(shorter, RecordType::mx).ok()) << "cut at " << cut;
  }
  // A name that points at itself must not loop.
  std::vector<uint8_t> loop = MessageBuilder(0, "x.test", RecordType::a).bytes();
  loop[12] = 0xc0;
  loop[13] = 12;
  EXPECT_FALSE(parse_response(loop, RecordType::a).ok());
  // A query (QR bit clear) is not an answer.
  msg[2] &= 0x7f;
  EXPECT_FALSE(parse_response(msg, RecordType::mx).ok());
}

TEST(DnsMessage, NormalizeName) {
  EXPECT_EQ(normalize_name("Example.TEST."), "example.test");
  EXPECT_EQ(normalize_name("a.b"), "a.b");
  EXPECT_EQ(normalize_name(""), "");
}

TEST(DnsClassify, RcodesMapToRecordSetsOrTemporaryErrors) {
  Response r;
  r.rcode = 0;
  r.mx = {{10, "mx.test"}};
  auto answer = classify(r, "d.test", RecordType::mx);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->kind, RecordSet::Kind::answer);

  r.mx.clear();
  EXPECT_EQ(classify(r, "d.test", RecordType::mx)->kind, RecordSet::Kind::no_data);
  r.rcode = 3;
  EXPECT_EQ(classify(r, "d.test", RecordType::mx)->kind, RecordSet::Kind::nxdomain);

  for (uint8_t rcode : {1, 2, 4, 5, 9}) {
    r.rcode = rcode;
    auto failed = classify(r, "d.test", RecordType::mx);
    ASSERT_FALSE(failed.ok()) << int{rcode};
    EXPECT_FALSE(failed.error().permanent());
    EXPECT_EQ(failed.error().enhanced_code(), "4.4.3");
    EXPECT_NE(failed.error().message.find("d.test MX"), std::string::npos);
  }
}

TEST(DnsClassify, CacheTtlRules) {
  const CacheLimits limits{3600, 900};
  Response r;
  r.answer_ttl = 120;
  RecordSet answer;
  EXPECT_EQ(cache_ttl(r, answer, limits), 120u);
  r.answer_ttl = 7200;
  EXPECT_EQ(cache_ttl(r, answer, limits), 3600u);  // capped

  RecordSet negative;
  negative.kind = RecordSet::Kind::nxdomain;
  EXPECT_EQ(cache_ttl(r, negative, limits), 900u);  // no SOA: the cap
  r.negative_ttl = 60;
  EXPECT_EQ(cache_ttl(r, negative, limits), 60u);  // SOA minimum
  r.negative_ttl = 86400;
  EXPECT_EQ(cache_ttl(r, negative, limits), 900u);  // SOA above the cap
  negative.kind = RecordSet::Kind::no_data;
  EXPECT_EQ(cache_ttl(r, negative, limits), 900u);
}

}  // namespace
}  // namespace tern::dns
