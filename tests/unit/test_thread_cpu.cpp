#include "mta/thread_cpu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "queue/thread_name.h"

namespace tern {
namespace {

struct TaskStat {
  std::string name;
  uint64_t user_ticks = 0;
  uint64_t sys_ticks = 0;
};

std::optional<TaskStat> parse(std::string_view line) {
  TaskStat stat;
  if (!parse_task_stat(line, stat.name, stat.user_ticks, stat.sys_ticks)) return std::nullopt;
  return stat;
}

TEST(ThreadCpuTest, ParsesATaskStatLine) {
  auto stat = parse("4242 (tern-worker-0) S 1 4242 4242 0 -1 4194368 1195 0 0 0 731 52 0 0 20 0 9 0");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->name, "tern-worker-0");
  EXPECT_EQ(stat->user_ticks, 731u);
  EXPECT_EQ(stat->sys_ticks, 52u);
}

TEST(ThreadCpuTest, NameEndsAtTheLastParenthesisAndLosesItsBlanks) {
  auto stat = parse("7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0");
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->name, "a)_b_(c");
  EXPECT_EQ(stat->user_ticks, 5u);
  EXPECT_EQ(stat->sys_ticks, 6u);
}

TEST(ThreadCpuTest, RefusesTruncatedLines) {
  EXPECT_FALSE(parse(""));
  EXPECT_FALSE(parse("7 (x R 1 7 7 0 -1 0 0 0 0 0 5 6"));
  EXPECT_FALSE(parse("7 (x) R 1 7 7 0 -1 0 0 0 0 0 5"));
  EXPECT_FALSE(parse("7 (x) R 1 7 7 0 -1 0 0 0 0 0 5 six"));
}

TEST(ThreadCpuTest, GroupsThisProcesssThreadsByName) {
  std::atomic<bool> stop{false};
  auto spin = [&stop] {
    name_this_thread("cpu-test");
    while (!stop.load()) {
    }
  };
  std::thread a(spin);
  std::thread b(spin);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<ThreadCpu> threads = thread_cpu_by_name();
  stop = true;
  a.join();
  b.join();
  auto it = std::find_if(threads.begin(), threads.end(), [](const ThreadCpu& t) { return t.name == "cpu-test"; });
  ASSERT_NE(it, threads.end());
  EXPECT_EQ(it->threads, 2u);
  EXPECT_GT(it->user_ms + it->sys_ms, 0u);
  EXPECT_TRUE(std::is_sorted(threads.begin(), threads.end(),
                             [](const ThreadCpu& x, const ThreadCpu& y) { return x.name < y.name; }));
}

}  // namespace
}  // namespace tern
