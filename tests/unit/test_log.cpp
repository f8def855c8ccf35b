#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "mta/log.h"

namespace tern::log {
namespace {

constexpr std::string_view kTime = "2026-11-22T21:55:42.123456Z";

TEST(LogFormatKv, FieldsInOrder) {
  EXPECT_EQ(format_kv(kTime, "received", {{"qid", "X"}, {"client", "127.0.0.1"}, {"size", 1024}}),
            "2026-11-22T21:55:42.123456Z event=received qid=X client=127.0.0.1 size=1024");
}

TEST(LogFormatKv, NoTimeForSyslog) {
  EXPECT_EQ(format_kv("", "accepted", {{"qid", "X"}}), "event=accepted qid=X");
}

TEST(LogFormatKv, Numbers) {
  EXPECT_EQ(format_kv("", "e", {{"n", -5}, {"u", 18446744073709551615ull}}), "event=e n=-5 u=18446744073709551615");
}

TEST(LogFormatKv, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(format_kv("", "e", {{"k", ""}}), "event=e k=\"\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "a b"}}), "event=e k=\"a b\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "a=b"}}), "event=e k=\"a=b\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "say \"hi\""}}), "event=e k=\"say \\\"hi\\\"\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "a\\b"}}), "event=e k=\"a\\\\b\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "<user@example.com>"}}), "event=e k=<user@example.com>");
  EXPECT_EQ(format_kv("", "e", {{"k", "caf\xc3\xa9"}}), "event=e k=caf\xc3\xa9");
}

TEST(LogFormatKv, EscapesControlCharactersSoOneEventIsOneLine) {
  EXPECT_EQ(format_kv("", "e", {{"k", "a\nb"}}), "event=e k=\"a\\nb\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "a\r\n"}}), "event=e k=\"a\\r\\n\"");
  EXPECT_EQ(format_kv("", "e", {{"k", "\tx"}}), "event=e k=\"\\tx\"");
  EXPECT_EQ(format_kv("", "e", {{"k", std::string_view("\x01\x1f\x7f\0", 4)}}), "event=e k=\"\\x01\\x1f\\x7f\\x00\"");
}

TEST(LogFormatKv, EventCodeIsEscapedLikeAValue) {
  EXPECT_EQ(format_kv("", "bad code", {}), "event=\"bad code\"");
}

TEST(LogFormatJson, FieldsInOrderAllStrings) {
  EXPECT_EQ(format_json(kTime, "received", {{"qid", "X"}, {"client", "127.0.0.1"}, {"size", 1024}}),
            "{\"time\":\"2026-11-22T21:55:42.123456Z\",\"event\":\"received\",\"qid\":\"X\","
            "\"client\":\"127.0.0.1\",\"size\":\"1024\"}");
}

TEST(LogFormatJson, NoTimeForSyslog) {
  EXPECT_EQ(format_json("", "accepted", {}), "{\"event\":\"accepted\"}");
}

TEST(LogFormatJson, Escaping) {
  EXPECT_EQ(format_json("", "e", {{"k", "say \"hi\" \\ "}}), "{\"event\":\"e\",\"k\":\"say \\\"hi\\\" \\\\ \"}");
  EXPECT_EQ(format_json("", "e", {{"k", "a\nb\r\t"}}), "{\"event\":\"e\",\"k\":\"a\\u000ab\\u000d\\u0009\"}");
  EXPECT_EQ(format_json("", "e", {{"k", std::string_view("\0\x1f", 2)}}), "{\"event\":\"e\",\"k\":\"\\u0000\\u001f\"}");
  EXPECT_EQ(format_json("", "e", {{"k", ""}}), "{\"event\":\"e\",\"k\":\"\"}");
  EXPECT_EQ(format_json("", "e", {{"k", "a=b c/d"}}), "{\"event\":\"e\",\"k\":\"a=b c/d\"}");
}

TEST(LogFormatJson, Utf8PassesInvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(format_json("", "e", {{"k", "caf\xc3\xa9 \xf0\x9f\x93\xa7"}}),
            "{\"event\":\"e\",\"k\":\"caf\xc3\xa9 \xf0\x9f\x93\xa7\"}");
  EXPECT_EQ(format_json("", "e", {{"k", "a\xffz"}}), "{\"event\":\"e\",\"k\":\"a\\ufffdz\"}");
  // Overlong '/', a UTF-16 surrogate, a truncated sequence at the end.
  EXPECT_EQ(format_json("", "e", {{"k", "\xc0\xaf"}}), "{\"event\":\"e\",\"k\":\"\\ufffd\\ufffd\"}");
  EXPECT_EQ(format_json("", "e", {{"k", "\xed\xa0\x80"}}), "{\"event\":\"e\",\"k\":\"\\ufffd\\ufffd\\ufffd\"}");
  EXPECT_EQ(format_json("", "e", {{"k", "x\xe2\x82"}}), "{\"event\":\"e\",\"k\":\"x\\ufffd\\ufffd\"}");
}

TEST(LogJsonQuote, QuotesAndEscapes) {
  EXPECT_EQ(json_quote(""), "\"\"");
  EXPECT_EQ(json_quote("plain"), "\"plain\"");
  EXPECT_EQ(json_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000ad\"");
  EXPECT_EQ(json_quote("caf\xc3\xa9\xff"), "\"caf\xc3\xa9\\ufffd\"");
}

// A private directory for log files, removed afterwards.
class LogFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    shutdown();
    std::string pattern = (std::filesystem::temp_directory_path() / "tern_log_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    shutdown();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  static std::vector<std::string> read_lines(const std::string& file) {
    std::ifstream in(file);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  static std::string read_all(const std::string& file) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::filesystem::path dir_;
};

const std::regex kTimestampedKv(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z event=.*$)");

TEST_F(LogFileTest, FileTargetWritesTimestampedLinesAndShutdownFlushes) {
  const std::string file = path("events.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  event("received", {{"qid", "Q1"}, {"client", "127.0.0.1"}});
  event("delivered", {{"qid", "Q1"}, {"reply", "250 2.0.0 ok"}});
  shutdown();

  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 2u) << read_all(file);
  EXPECT_TRUE(std::regex_match(lines[0], kTimestampedKv)) << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], kTimestampedKv)) << lines[1];
  EXPECT_EQ(lines[0].substr(28), "event=received qid=Q1 client=127.0.0.1");
  EXPECT_EQ(lines[1].substr(28), "event=delivered qid=Q1 reply=\"250 2.0.0 ok\"");
}

TEST_F(LogFileTest, TimestampIsCurrentUtc) {
  const std::string file = path("time.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  // CLOCK_REALTIME as the logger uses: time() reads a coarser clock that can lag it.
  timespec before{}, after{};
  clock_gettime(CLOCK_REALTIME, &before);
  event("tick", {});
  clock_gettime(CLOCK_REALTIME, &after);
  shutdown();
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  tm stamp{};
  ASSERT_NE(strptime(lines[0].c_str(), "%Y-%m-%dT%H:%M:%S", &stamp), nullptr) << lines[0];
  const time_t logged = timegm(&stamp);
  EXPECT_GE(logged, before.tv_sec);
  EXPECT_LE(logged, after.tv_sec);
}

TEST_F(LogFileTest, FileIsAppendedAndCreatedWithMode0640) {
  const std::string file = path("append.log");
  const mode_t old_mask = umask(022);
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  umask(old_mask);
  event("first", {});
  shutdown();
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);

  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  event("second", {});
  shutdown();
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("event=first"), std::string::npos);
  EXPECT_NE(lines[1].find("event=second"), std::string::npos);
}

TEST_F(LogFileTest, JsonFormatToFile) {
  const std::string file = path("events.json");
  ASSERT_TRUE(init({.format = "json", .target = "file", .file = file}).ok());
  event("received", {{"qid", "Q1"}, {"size", 10}});
  shutdown();
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  const std::regex json(
      R"(^\{"time":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z","event":"received","qid":"Q1","size":"10"\}$)");
  EXPECT_TRUE(std::regex_match(lines[0], json)) << lines[0];
}

TEST_F(LogFileTest, ConcurrentEventsAreNeitherLostNorInterleaved) {
  const std::string file = path("busy.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  constexpr int kThreads = 4;
  constexpr int kEvents = 5000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kEvents; ++i) event("tick", {{"thread", t}, {"n", i}, {"pad", std::string(40, 'x')}});
    });
  }
  for (auto& thread : threads) thread.join();
  shutdown();

  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), size_t(kThreads * kEvents));
  const std::regex shape(R"(^\S+Z event=tick thread=(\d) n=(\d+) pad=x{40}$)");
  std::vector<int> next(kThreads, 0);
  for (const auto& line : lines) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, shape)) << line;
    const int t = std::stoi(m[1]);
    ASSERT_LT(t, kThreads);
    EXPECT_EQ(std::stoi(m[2]), next[t]) << "thread " << t << " out of order";
    next[t] = std::stoi(m[2]) + 1;
  }
}

// Points stderr at a pipe that nobody reads until drain() is called, so the
// writer thread blocks as it would on a stuck disk.
class BlockedStderr {
 public:
  BlockedStderr() {
    EXPECT_EQ(pipe(pipe_), 0);
    saved_stderr_ = dup(STDERR_FILENO);
    dup2(pipe_[1], STDERR_FILENO);
  }
  ~BlockedStderr() {
    if (reader_.joinable()) reader_.join();
    close(pipe_[0]);
  }
  void drain() {
    reader_ = std::thread([this] {
      char buffer[65536];
      for (ssize_t n; (n = read(pipe_[0], buffer, sizeof buffer)) > 0;) text_.append(buffer, size_t(n));
    });
  }
  // Restores stderr and returns everything written to the pipe.
  std::string restore() {
    dup2(saved_stderr_, STDERR_FILENO);
    close(saved_stderr_);
    close(pipe_[1]);
    reader_.join();
    return text_;
  }

 private:
  int pipe_[2] = {-1, -1};
  int saved_stderr_ = -1;
  std::thread reader_;
  std::string text_;
};

TEST_F(LogFileTest, QueueIsBoundedAndDropsAreCountedOnce) {
  constexpr int kEmitted = 150'000;  // the queue holds 100'000; the pipe a few hundred lines
  BlockedStderr blocked;
  ASSERT_TRUE(init({.format = "kv", .target = "stderr", .file = ""}).ok());
  for (int i = 0; i < kEmitted; ++i) event("tick", {{"n", i}});
  blocked.drain();
  shutdown();
  std::istringstream output(blocked.restore());

  std::vector<std::string> lines;
  for (std::string line; std::getline(output, line);) lines.push_back(line);
  ASSERT_GE(lines.size(), 2u);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(lines.back(), m, std::regex(R"(^\S+Z event=log_dropped count=(\d+)$)"))) << lines.back();
  const int dropped = std::stoi(m[1]);
  const int delivered = int(lines.size()) - 1;
  EXPECT_GT(dropped, 0);
  EXPECT_GE(delivered, 100'000);
  EXPECT_EQ(delivered + dropped, kEmitted);
  // The oldest events are kept, in order; only the overflow is dropped.
  for (int i = 0; i < delivered; ++i) {
    ASSERT_EQ(lines[size_t(i)].substr(28), "event=tick n=" + std::to_string(i));
  }
}

TEST_F(LogFileTest, ReinitSwitchesFilesWithoutLosingEvents) {
  const std::string first = path("a.log");
  const std::string second = path("b.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = first}).ok());
  event("one", {});
  ASSERT_TRUE(init({.format = "json", .target = "file", .file = second}).ok());
  event("two", {});
  shutdown();
  const auto a = read_lines(first);
  const auto b = read_lines(second);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NE(a[0].find("event=one"), std::string::npos);
  EXPECT_NE(b[0].find("\"event\":\"two\""), std::string::npos);
}

TEST_F(LogFileTest, InitRejectsBadOptionsAndKeepsTheCurrentLog) {
  const std::string file = path("kept.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  EXPECT_FALSE(init({.format = "text", .target = "stderr", .file = ""}).ok());
  EXPECT_FALSE(init({.format = "kv", .target = "journal", .file = ""}).ok());
  EXPECT_FALSE(init({.format = "kv", .target = "file", .file = ""}).ok());
  const auto unopenable = init({.format = "kv", .target = "file", .file = path("missing/dir/x.log")});
  ASSERT_FALSE(unopenable.ok());
  EXPECT_NE(unopenable.error().find("missing/dir/x.log"), std::string::npos) << unopenable.error();
  event("still_here", {});
  shutdown();
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("event=still_here"), std::string::npos);
}

TEST_F(LogFileTest, WithoutWriterEventsGoToStderrAtOnce) {
  // Sets the format these lines use: the one last configured.
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = path("unused.log")}).ok());
  shutdown();
  testing::internal::CaptureStderr();
  event("early", {{"reason", "no writer yet"}});
  const std::string captured = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_match(captured.substr(0, captured.size() - 1), kTimestampedKv)) << captured;
  EXPECT_NE(captured.find("event=early reason=\"no writer yet\"\n"), std::string::npos) << captured;
}

TEST_F(LogFileTest, WithoutWriterStderrLinesKeepTheConfiguredFormat) {
  ASSERT_TRUE(init({.format = "json", .target = "file", .file = path("unused.log")}).ok());
  shutdown();
  testing::internal::CaptureStderr();
  event("late", {{"qid", "Q2"}});
  const std::string captured = testing::internal::GetCapturedStderr();
  const std::regex json(R"(^\{"time":"[^"]+Z","event":"late","qid":"Q2"\}\n$)");
  EXPECT_TRUE(std::regex_match(captured, json)) << captured;
}

TEST_F(LogFileTest, StderrTargetGoesThroughTheWriter) {
  testing::internal::CaptureStderr();
  ASSERT_TRUE(init({.format = "json", .target = "stderr", .file = ""}).ok());
  event("queued", {{"qid", "Q9"}});
  shutdown();
  const std::string captured = testing::internal::GetCapturedStderr();
  EXPECT_NE(captured.find("\"event\":\"queued\",\"qid\":\"Q9\"}\n"), std::string::npos) << captured;
}

volatile sig_atomic_t g_signal_handled = 0;

TEST_F(LogFileTest, WriterThreadNeverTakesSignals) {
  // The daemon blocks SIGTERM/SIGHUP and waits for them after the log is up;
  // a writer with them unblocked would get them and the process would die.
  struct sigaction action {
  }, previous_action{};
  action.sa_handler = [](int) { g_signal_handled = 1; };
  sigaction(SIGUSR2, &action, &previous_action);
  g_signal_handled = 0;
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = path("signals.log")}).ok());

  sigset_t usr2, previous_mask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &usr2, &previous_mask);
  kill(getpid(), SIGUSR2);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(g_signal_handled, 0) << "the writer thread took a process signal";
  sigset_t pending;
  sigpending(&pending);
  EXPECT_TRUE(sigismember(&pending, SIGUSR2));

  int taken = 0;
  if (sigismember(&pending, SIGUSR2)) sigwait(&usr2, &taken);
  pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  sigaction(SIGUSR2, &previous_action, nullptr);
}

TEST_F(LogFileTest, ShutdownTwiceIsSafeAndLaterEventsGoToStderr) {
  const std::string file = path("closed.log");
  ASSERT_TRUE(init({.format = "kv", .target = "file", .file = file}).ok());
  event("before", {});
  shutdown();
  shutdown();
  testing::internal::CaptureStderr();
  event("after", {});
  const std::string captured = testing::internal::GetCapturedStderr();
  EXPECT_NE(captured.find("event=after"), std::string::npos) << captured;
  const auto lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("event=before"), std::string::npos);
}

}  // namespace
}  // namespace tern::log
