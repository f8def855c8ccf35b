#include <gtest/gtest.h>

#include <set>

#include "tools/loadkit/bench_header.h"
#include "tools/tern_bench/message.h"

namespace tern::bench {
namespace {

std::string header_value(const std::string& headers, const std::string& name) {
  auto pos = headers.find("\r\n" + name + ": ");
  if (pos == std::string::npos) return "";
  pos += name.size() + 4;
  return headers.substr(pos, headers.find("\r\n", pos) - pos);
}

TEST(BenchMessage, SizeWithinOneLine) {
  MessageFactory f(1024 * 1024, "0123456789abcdef");
  std::string headers;
  for (uint64_t size : {512u, 1024u, 4000u, 10240u, 102400u, 1048576u}) {
    auto padding = f.build(7, size, 1795398000123456, "bench@bench.test", "user7@sink.test",
                           "Mon, 23 Nov 2026 01:52:13 +0000", &headers);
    uint64_t total = headers.size() + padding.size();
    EXPECT_LE(total, size + kPaddingLineLength) << size;
    EXPECT_GE(total + kPaddingLineLength, size) << size;
    EXPECT_EQ(padding.size() % kPaddingLineLength, 0u);
  }
}

TEST(BenchMessage, SmallerThanTheHeadersIsJustTheHeaders) {
  MessageFactory f(100, "0123456789abcdef");
  std::string headers;
  auto padding = f.build(1, 10, 1, "a@b", "c@d", "date", &headers);
  EXPECT_TRUE(padding.empty());
  EXPECT_TRUE(headers.ends_with("\r\n\r\n"));
}

TEST(BenchMessage, HeadersPresentAndWellFormed) {
  MessageFactory f(2048, "feedfacecafebeef");
  std::string headers;
  auto padding =
      f.build(99, 2048, 1795398000123456, "bench@bench.test", "user99@sink.test", "Mon, 23 Nov 2026 01:52:13 +0000",
              &headers);
  std::string msg = "\r\n" + headers;
  EXPECT_EQ(header_value(msg, "Date"), "Mon, 23 Nov 2026 01:52:13 +0000");
  EXPECT_EQ(header_value(msg, "From"), "<bench@bench.test>");
  EXPECT_EQ(header_value(msg, "To"), "user99@sink.test");
  EXPECT_NE(header_value(msg, "Subject"), "");
  EXPECT_EQ(header_value(msg, "Message-ID"), "<feedfacecafebeef.99@bench.tern>");
  // The send stamp parses with loadkit's own parser.
  auto line_start = headers.find(std::string(loadkit::kSentHeader));
  ASSERT_NE(line_start, std::string::npos);
  auto line = headers.substr(line_start, headers.find("\r\n", line_start) - line_start);
  EXPECT_EQ(loadkit::parse_sent_header(line).value_or(-1), 1795398000123456);
  // Every line ends in CRLF, none is longer than 78 octets, none starts with a dot.
  std::string all = headers + std::string(padding);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find("\r\n", pos);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - pos, 76u + 0) << all.substr(pos, end - pos);
    if (end > pos) {
      EXPECT_NE(all[pos], '.');
    }
    EXPECT_EQ(all.find('\n', pos), end + 1) << "bare LF";
    pos = end + 2;
  }
}

TEST(BenchMessage, MessageIdsAreUniqueAcrossMessagesAndRuns) {
  std::string a = random_run_id(), b = random_run_id();
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
  MessageFactory f1(1024, a), f2(1024, b);
  std::set<std::string> ids;
  std::string headers;
  for (uint64_t i = 0; i < 1000; ++i) {
    for (auto* f : {&f1, &f2}) {
      f->build(i, 1024, 0, "a@b", "c@d", "date", &headers);
      std::string msg = "\r\n" + headers;
      EXPECT_TRUE(ids.insert(header_value(msg, "Message-ID")).second);
    }
  }
  EXPECT_EQ(ids.size(), 2000u);
}

TEST(BenchMessage, Rfc5322Date) { EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000"); }

// base64 itself is smtp::base64_encode, tested in test_sasl.cpp.
TEST(BenchMessage, AuthPlain) {
  EXPECT_EQ(auth_plain_response("tim", "tanstaaftanstaaf"), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");  // RFC 4616
}

}  // namespace
}  // namespace tern::bench
