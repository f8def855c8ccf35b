#include <gtest/gtest.h>

#include "tools/tern_bench/options.h"
#include "tools/tern_bench/pattern.h"

namespace tern::bench {
namespace {

Result<Options> parse(std::vector<std::string> args) { return parse_options(args); }

TEST(BenchOptions, DefaultsWithTargetOnly) {
  auto o = parse({"--target", "127.0.0.1:2525"});
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->target, "127.0.0.1:2525");
  EXPECT_EQ(o->messages, 1000u);
  EXPECT_EQ(o->connections, 10u);
  EXPECT_EQ(o->recipients, 1u);
  EXPECT_EQ(o->per_connection, 0u);
  EXPECT_TRUE(o->size.is_fixed());
  EXPECT_EQ(o->size.max_size(), 1024u);
  EXPECT_EQ(o->from, "bench@bench.test");
  EXPECT_EQ(o->to, "user{n}@sink.test");
  EXPECT_TRUE(o->pipelining);
  EXPECT_FALSE(o->starttls);
  EXPECT_FALSE(o->bdat);
  EXPECT_EQ(o->auth, AuthMethod::none);
  EXPECT_EQ(o->rate, 0);
  EXPECT_EQ(o->threads, 0u);
  EXPECT_EQ(o->timeout_s, 30);
  EXPECT_FALSE(o->quiet);
}

TEST(BenchOptions, EveryOption) {
  auto o = parse({"--target", "[::1]:25", "--messages", "50", "--connections=3", "--per-connection", "7",
                  "--recipients", "4", "--size", "1k:60,10k:30,100k:10", "--from", "a@b.test", "--to",
                  "u{n}@{domain}", "--domains", "x.test,y.test", "--no-pipelining", "--starttls", "--auth", "login",
                  "--user", "me", "--password", "pw", "--bdat", "--rate", "12.5", "--threads", "2", "--timeout",
                  "5", "--helo", "client.test", "--json", "/tmp/r.json", "--plot", "/tmp/r.svg", "--quiet", "--seed",
                  "42"});
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->target, "[::1]:25");
  EXPECT_EQ(o->messages, 50u);
  EXPECT_EQ(o->connections, 3u);
  EXPECT_EQ(o->per_connection, 7u);
  EXPECT_EQ(o->recipients, 4u);
  EXPECT_EQ(o->size.entries().size(), 3u);
  EXPECT_EQ(o->from, "a@b.test");
  EXPECT_EQ(o->to, "u{n}@{domain}");
  EXPECT_EQ(o->domains, (std::vector<std::string>{"x.test", "y.test"}));
  EXPECT_FALSE(o->pipelining);
  EXPECT_TRUE(o->starttls);
  EXPECT_EQ(o->auth, AuthMethod::login);
  EXPECT_EQ(o->user, "me");
  EXPECT_EQ(o->password, "pw");
  EXPECT_TRUE(o->bdat);
  EXPECT_DOUBLE_EQ(o->rate, 12.5);
  EXPECT_EQ(o->threads, 2u);
  EXPECT_DOUBLE_EQ(o->timeout_s, 5);
  EXPECT_EQ(o->helo, "client.test");
  EXPECT_EQ(o->json_path, "/tmp/r.json");
  EXPECT_EQ(o->plot_path, "/tmp/r.svg");
  EXPECT_TRUE(o->quiet);
  EXPECT_TRUE(o->seed_given);
  EXPECT_EQ(o->seed, 42u);
}

TEST(BenchOptions, DurationAloneLiftsTheMessageCount) {
  auto o = parse({"--target", "127.0.0.1:25", "--duration", "2"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->messages, 0u);
  EXPECT_DOUBLE_EQ(o->duration_s, 2);
  auto both = parse({"--target", "127.0.0.1:25", "--duration", "2", "--messages", "10"});
  ASSERT_TRUE(both);
  EXPECT_EQ(both->messages, 10u);
}

TEST(BenchOptions, Help) {
  auto o = parse({"--help"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->help);
  std::string u = usage_text();
  for (const char* opt : {"--target", "--messages", "--duration", "--connections", "--per-connection",
                          "--recipients", "--size", "--from", "--to", "--domains", "--no-pipelining", "--starttls",
                          "--auth", "--user", "--password", "--bdat", "--rate", "--threads", "--timeout", "--helo",
                          "--json", "--plot", "--quiet", "--help", "--seed"})
    EXPECT_NE(u.find(opt), std::string::npos) << opt;
}

// Each bad command line fails with an error naming the option.
TEST(BenchOptions, BadOptionsNameTheOption) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  std::vector<Case> cases = {
      {{}, "--target"},
      {{"--target", "localhost:25"}, "--target"},
      {{"--target", "127.0.0.1"}, "--target"},
      {{"--target", "127.0.0.1:0"}, "--target"},
      {{"--target", "127.0.0.1:25", "--messages", "0"}, "--messages"},
      {{"--target", "127.0.0.1:25", "--messages", "-3"}, "--messages"},
      {{"--target", "127.0.0.1:25", "--messages"}, "--messages"},
      {{"--target", "127.0.0.1:25", "--connections", "x"}, "--connections"},
      {{"--target", "127.0.0.1:25", "--size", "1q"}, "--size"},
      {{"--target", "127.0.0.1:25", "--size", "1k:0"}, "--size"},
      {{"--target", "127.0.0.1:25", "--rate", "0"}, "--rate"},
      {{"--target", "127.0.0.1:25", "--duration", "-1"}, "--duration"},
      {{"--target", "127.0.0.1:25", "--auth", "cram"}, "--auth"},
      {{"--target", "127.0.0.1:25", "--auth", "plain"}, "--auth"},
      {{"--target", "127.0.0.1:25", "--user", "u"}, "--user"},
      {{"--target", "127.0.0.1:25", "--to", "u{domain}@x"}, "--to"},
      {{"--target", "127.0.0.1:25", "--to", "u{x}@x"}, "--to"},
      {{"--target", "127.0.0.1:25", "--from", "a{n}@x"}, "--from"},
      {{"--target", "127.0.0.1:25", "--threads", "0"}, "--threads"},
      {{"--target", "127.0.0.1:25", "--timeout", "abc"}, "--timeout"},
      {{"--target", "127.0.0.1:25", "--quiet=yes"}, "--quiet"},
      {{"--target", "127.0.0.1:25", "--frobnicate"}, "--frobnicate"},
  };
  for (const auto& c : cases) {
    auto o = parse_options(c.args);
    ASSERT_FALSE(o) << "accepted: " << (c.args.empty() ? "" : c.args.back());
    EXPECT_NE(o.error().find(c.names), std::string::npos) << o.error();
    EXPECT_EQ(o.error().find('\n'), std::string::npos) << "one line: " << o.error();
  }
}

TEST(BenchPattern, ExpandsCounterAndDomains) {
  std::vector<std::string> domains = {"a.test", "b.test", "c.test"};
  std::string out;
  expand_pattern("user{n}@sink.test", 42, {}, &out);
  EXPECT_EQ(out, "user42@sink.test");
  out.clear();
  expand_pattern("u{n}@{domain}", 4, domains, &out);
  EXPECT_EQ(out, "u4@b.test");
  out.clear();
  expand_pattern("plain@x.test", 7, domains, &out);
  EXPECT_EQ(out, "plain@x.test");
  out.clear();
  expand_pattern("{n}-{n}@{domain}", 0, domains, &out);
  EXPECT_EQ(out, "0-0@a.test");
  // Round-robin over the list.
  for (uint64_t n = 0; n < 6; ++n) {
    out.clear();
    expand_pattern("x@{domain}", n, domains, &out);
    EXPECT_EQ(out, "x@" + domains[n % 3]);
  }
}

TEST(BenchPattern, Checks) {
  EXPECT_TRUE(check_pattern("user{n}@sink.test", 0));
  EXPECT_TRUE(check_pattern("u@{domain}", 1));
  EXPECT_FALSE(check_pattern("u@{domain}", 0));
  EXPECT_FALSE(check_pattern("u{n@x", 0));
  EXPECT_FALSE(check_pattern("u}@x", 0));
  EXPECT_FALSE(check_pattern("u{id}@x", 0));
  EXPECT_FALSE(check_pattern("a b@x", 0));
  EXPECT_FALSE(check_pattern("", 0));
  auto d = parse_domain_list("a.test,b.test");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->size(), 2u);
  EXPECT_FALSE(parse_domain_list("a.test,,b.test"));
  EXPECT_FALSE(parse_domain_list(""));
  EXPECT_FALSE(parse_domain_list("a@b"));
}

}  // namespace
}  // namespace tern::bench
