#include <gtest/gtest.h>

#include <vector>

#include "tools/tern_sink/options.h"

namespace tern::sink {
namespace {

ParsedOptions parse(std::vector<std::string_view> args) {
  return parse_options(args);
}

SinkOptions ok(std::vector<std::string_view> args) {
  auto r = parse(args);
  if (auto* e = std::get_if<OptionError>(&r)) ADD_FAILURE() << e->message;
  EXPECT_TRUE(std::holds_alternative<SinkOptions>(r));
  return std::holds_alternative<SinkOptions>(r) ? std::get<SinkOptions>(r) : SinkOptions{};
}

std::string error(std::vector<std::string_view> args) {
  auto r = parse(args);
  EXPECT_TRUE(std::holds_alternative<OptionError>(r));
  return std::holds_alternative<OptionError>(r) ? std::get<OptionError>(r).message : "";
}

const PointRules& rules(const SinkOptions& o, Point p) {
  return o.faults[static_cast<size_t>(p)];
}

TEST(SinkOptions, Defaults) {
  auto o = ok({});
  EXPECT_EQ(o.listen, std::vector<std::string>{"127.0.0.1:2526"});
  EXPECT_EQ(o.threads, 0u);
  EXPECT_EQ(o.hostname, "sink.test");
  EXPECT_EQ(o.max_size, 52'428'800u);
  EXPECT_EQ(o.timeout_s, 300u);
  EXPECT_FALSE(o.quiet);
  EXPECT_EQ(o.extensions, kAllExtensions);
  EXPECT_TRUE(o.json_path.empty());
  EXPECT_TRUE(o.maildir.empty());
  EXPECT_TRUE(o.mbox.empty());
  for (Point p : kAllPoints) EXPECT_FALSE(rules(o, p).any());
}

TEST(SinkOptions, EveryOptionTakesItsValue) {
  auto o = ok({"--listen", "127.0.0.1:2600", "--listen=[::1]:2600", "--threads", "3", "--hostname", "mx.sink", "--cert",
               "c.pem", "--key=k.pem", "--json", "r.json", "--maildir", "md", "--max-size", "1000", "--timeout", "7",
               "--quiet"});
  EXPECT_EQ(o.listen, (std::vector<std::string>{"127.0.0.1:2600", "[::1]:2600"}));
  EXPECT_EQ(o.threads, 3u);
  EXPECT_EQ(o.hostname, "mx.sink");
  EXPECT_EQ(o.cert, "c.pem");
  EXPECT_EQ(o.key, "k.pem");
  EXPECT_EQ(o.json_path, "r.json");
  EXPECT_EQ(o.maildir, "md");
  EXPECT_EQ(o.max_size, 1000u);
  EXPECT_EQ(o.timeout_s, 7u);
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(ok({"--mbox", "box"}).mbox, "box");
}

TEST(SinkOptions, FaultDelayDrop) {
  auto o = ok({"--fault", "rcpt=450:0.25", "--fault", "dot=554", "--delay", "mail=150", "--delay=data=20:0.5", "--drop",
               "helo:0.1", "--drop", "banner"});
  EXPECT_EQ(rules(o, Point::rcpt).reply_code, 450);
  EXPECT_EQ(rules(o, Point::rcpt).reply_fraction.num, 25u);
  EXPECT_EQ(rules(o, Point::rcpt).reply_fraction.den, 100u);
  EXPECT_EQ(rules(o, Point::dot).reply_code, 554);
  EXPECT_EQ(rules(o, Point::dot).reply_fraction.num, rules(o, Point::dot).reply_fraction.den);  // 1
  EXPECT_EQ(rules(o, Point::mail).delay_ms, 150u);
  EXPECT_EQ(rules(o, Point::data).delay_ms, 20u);
  EXPECT_EQ(rules(o, Point::data).delay_fraction.str(), "0.5");
  EXPECT_TRUE(rules(o, Point::helo).drop);
  EXPECT_EQ(rules(o, Point::helo).drop_fraction.str(), "0.1");
  EXPECT_TRUE(rules(o, Point::banner).drop);
  EXPECT_EQ(rules(o, Point::banner).drop_fraction.str(), "1");
  // One point can combine a delay, a drop and a reply.
  auto both = ok({"--fault", "ehlo=421", "--delay", "ehlo=5"});
  EXPECT_EQ(rules(both, Point::helo).reply_code, 421);
  EXPECT_EQ(rules(both, Point::helo).delay_ms, 5u);
}

TEST(SinkOptions, HideClearsExtensions) {
  auto o = ok({"--hide", "pipelining,DSN", "--hide=StartTLS"});
  EXPECT_FALSE(o.advertises(kPipelining));
  EXPECT_FALSE(o.advertises(kDsn));
  EXPECT_FALSE(o.advertises(kStartTls));
  EXPECT_TRUE(o.advertises(kChunking));
  auto all = ok({"--hide", "PIPELINING,DSN,STARTTLS,8BITMIME,CHUNKING,SIZE,SMTPUTF8,ENHANCEDSTATUSCODES"});
  EXPECT_EQ(all.extensions, 0u);
}

TEST(SinkOptions, HelpWins) {
  EXPECT_TRUE(std::holds_alternative<HelpRequested>(parse({"--help"})));
  EXPECT_TRUE(std::holds_alternative<HelpRequested>(parse({"--threads", "2", "-h"})));
}

TEST(SinkOptions, BadOptionsSayWhy) {
  EXPECT_NE(error({"--nope"}).find("unknown option"), std::string::npos);
  EXPECT_NE(error({"--threads"}).find("needs a value"), std::string::npos);
  EXPECT_NE(error({"--quiet=1"}).find("takes no value"), std::string::npos);
  EXPECT_NE(error({"--threads", "0"}).find("--threads"), std::string::npos);
  EXPECT_NE(error({"--threads", "two"}).find("--threads"), std::string::npos);
  EXPECT_NE(error({"--max-size", "-1"}).find("--max-size"), std::string::npos);
  EXPECT_NE(error({"--timeout", "0"}).find("--timeout"), std::string::npos);
  EXPECT_NE(error({"--hostname", "a b"}).find("--hostname"), std::string::npos);
  EXPECT_NE(error({"--fault", "rcpt"}).find("POINT=VALUE"), std::string::npos);
  EXPECT_NE(error({"--fault", "quit=450"}).find("unknown point"), std::string::npos);
  EXPECT_NE(error({"--fault", "rcpt=250"}).find("400..599"), std::string::npos);
  EXPECT_NE(error({"--fault", "rcpt=600"}).find("400..599"), std::string::npos);
  EXPECT_NE(error({"--fault", "rcpt=450:1.5"}).find("bad fraction"), std::string::npos);
  EXPECT_NE(error({"--fault", "rcpt=450", "--fault", "rcpt=550"}).find("more than one"), std::string::npos);
  EXPECT_NE(error({"--delay", "mail=0"}).find("delay"), std::string::npos);
  EXPECT_NE(error({"--delay", "mail=abc"}).find("delay"), std::string::npos);
  EXPECT_NE(error({"--drop", "nowhere"}).find("unknown point"), std::string::npos);
  EXPECT_NE(error({"--drop", "dot:x"}).find("bad fraction"), std::string::npos);
  EXPECT_NE(error({"--hide", "PIPELINING,AUTH"}).find("unknown extension 'AUTH'"), std::string::npos);
  EXPECT_NE(error({"--cert", "c.pem"}).find("--cert and --key"), std::string::npos);
  EXPECT_NE(error({"--maildir", "d", "--mbox", "f"}).find("exclusive"), std::string::npos);
}

TEST(SinkOptions, UsageListsEveryOption) {
  std::string usage = usage_text();
  for (std::string_view opt :
       {"--listen", "--threads", "--hostname", "--cert", "--key", "--json", "--maildir", "--mbox", "--max-size",
        "--timeout", "--quiet", "--fault", "--delay", "--drop", "--hide", "--help"})
    EXPECT_NE(usage.find(opt), std::string::npos) << opt;
  EXPECT_NE(usage.find("default 127.0.0.1:2526"), std::string::npos);
  EXPECT_NE(usage.find("default sink.test"), std::string::npos);
  EXPECT_NE(usage.find("default 52428800"), std::string::npos);
}

}  // namespace
}  // namespace tern::sink
