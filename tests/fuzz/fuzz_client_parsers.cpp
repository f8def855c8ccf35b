// libFuzzer target for what the outbound side reads from the network: SMTP
// replies (ReplyParser, EHLO keywords, enhanced codes) and DNS responses.
// Besides crashes and sanitizer reports it aborts when an invariant breaks.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

#include "dns/message.h"
#include "mta/smtp/reply_parser.h"

namespace {

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void fuzz_replies(std::string_view input) {
  tern::smtp::ReplyParser parser;
  while (!input.empty()) {
    const size_t nl = input.find('\n');
    std::string_view line = input.substr(0, nl);
    input = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (parser.feed(line) != tern::smtp::ReplyParser::State::complete) continue;
    const tern::smtp::ParsedReply& reply = parser.reply();
    check(reply.code >= 200 && reply.code <= 599, "reply code range");
    check(reply.enhanced.empty() || reply.enhanced[0] == '2' || reply.enhanced[0] == '4' || reply.enhanced[0] == '5',
          "enhanced code class");
    const tern::smtp::EhloInfo ehlo = tern::smtp::parse_ehlo(reply);
    for (const auto& keyword : ehlo.keywords) check(!keyword.empty(), "empty EHLO keyword");
  }
  if (const auto code = tern::smtp::parse_enhanced_code(input)) check(code->size() >= 5, "enhanced code length");
}

void fuzz_dns(std::span<const uint8_t> message) {
  using tern::dns::RecordType;
  for (const RecordType type : {RecordType::mx, RecordType::a, RecordType::aaaa}) {
    const auto parsed = tern::dns::parse_response(message, type);
    if (!parsed) continue;
    const tern::dns::Response& r = parsed.value();
    check(type == RecordType::mx || r.mx.empty(), "MX records only when asked");
    check(type != RecordType::mx || r.addresses.empty(), "addresses only when asked");
    for (const auto& mx : r.mx) check(mx.exchange.size() <= 255, "name length");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_replies(std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz_dns(std::span<const uint8_t>(data, size));
  return 0;
}
