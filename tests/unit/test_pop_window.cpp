#include <gtest/gtest.h>

#include <filesystem>

#include "mta/policy/pop_window.h"

namespace tern::policy {
namespace {

constexpr int64_t kMinute = 60'000'000;
constexpr int64_t kNow = 1'800'000'000'000'000;

class PopWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tern-popwindow-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<PopWindow> open(int64_t now = kNow) {
    auto w = PopWindow::open(dir_.string(), now);
    EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error());
    return w.ok() ? std::move(w.value()) : nullptr;
  }
  std::filesystem::path dir_;
};

TEST(PopWindowIp, CanonicalForms) {
  EXPECT_EQ(PopWindow::canonical_ip("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(PopWindow::canonical_ip("::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(PopWindow::canonical_ip("2001:DB8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(PopWindow::canonical_ip("::1"), "::1");
  EXPECT_EQ(PopWindow::canonical_ip("192.0.2"), std::nullopt);
  EXPECT_EQ(PopWindow::canonical_ip("host.example"), std::nullopt);
  EXPECT_EQ(PopWindow::canonical_ip(""), std::nullopt);
}

TEST_F(PopWindowTest, AnAddedClientIsInsideUntilItsWindowEnds) {
  auto w = open();
  ASSERT_TRUE(w);
  EXPECT_FALSE(w->contains("192.0.2.1", kNow));
  ASSERT_TRUE(w->add("192.0.2.1", kNow + 15 * kMinute, kNow).ok());
  EXPECT_TRUE(w->contains("192.0.2.1", kNow));
  EXPECT_TRUE(w->contains("::ffff:192.0.2.1", kNow + 15 * kMinute - 1));
  EXPECT_FALSE(w->contains("192.0.2.1", kNow + 15 * kMinute));
  EXPECT_FALSE(w->contains("192.0.2.2", kNow));
}

TEST_F(PopWindowTest, SurvivesReopenAndDropsExpiredEntries) {
  {
    auto w = open();
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->add("2001:db8::7", kNow + 30 * kMinute, kNow).ok());
    ASSERT_TRUE(w->add("192.0.2.9", kNow + 5 * kMinute, kNow).ok());
  }
  auto w = open(kNow + 10 * kMinute);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->contains("2001:DB8::7", kNow + 10 * kMinute));
  EXPECT_FALSE(w->contains("192.0.2.9", kNow + 10 * kMinute));
  const auto entries = w->list(kNow + 10 * kMinute);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].ip, "2001:db8::7");
  EXPECT_EQ(entries[0].until_us, kNow + 30 * kMinute);
}

TEST_F(PopWindowTest, RemoveAndPurge) {
  auto w = open();
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->add("192.0.2.1", kNow + kMinute, kNow).ok());
  ASSERT_TRUE(w->add("192.0.2.2", kNow + 2 * kMinute, kNow).ok());
  EXPECT_TRUE(w->remove("192.0.2.1").ok());
  EXPECT_FALSE(w->remove("192.0.2.1").ok());
  EXPECT_FALSE(w->remove("not-an-ip").ok());
  EXPECT_FALSE(w->add("not-an-ip", kNow + kMinute, kNow).ok());
  auto purged = w->purge(kNow + 3 * kMinute);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(purged.value(), 1u);
  EXPECT_TRUE(w->list(kNow).empty());
}

}  // namespace
}  // namespace tern::policy
