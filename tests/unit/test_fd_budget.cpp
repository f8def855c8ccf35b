#include "mta/fd_budget.h"

#include <gtest/gtest.h>

namespace tern {
namespace {

// Two workers, one listener each: the integration tests' shape.
constexpr unsigned kWorkers = 2;
constexpr size_t kListeners = 1;

TEST(FdBudget, ReserveGrowsWithWorkersListenersAndDelivery) {
  Config c;
  c.delivery.enabled = false;
  const uint64_t base = fd_reserve(c, 1, 1);
  EXPECT_GT(fd_reserve(c, 4, 1), base);
  EXPECT_GT(fd_reserve(c, 1, 3), base);
  c.delivery.enabled = true;
  EXPECT_GT(fd_reserve(c, 1, 1), base);
}

TEST(FdBudget, EachDeliveryLoopHasItsReserve) {
  Config c;
  c.delivery.loops = 1;
  const uint64_t one_loop = fd_reserve(c, 4, 1);
  c.delivery.loops = 3;
  EXPECT_GT(fd_reserve(c, 4, 1), one_loop);
  c.delivery.loops = 0;  // as many as the workers
  const uint64_t as_many_as_workers = fd_reserve(c, 4, 1);
  c.delivery.loops = 4;
  EXPECT_EQ(fd_reserve(c, 4, 1), as_many_as_workers);
}

TEST(FdBudget, ConnectionsCountOnlyWhatIsServed) {
  Config c;
  c.smtp.max_connections = 100;
  c.pop3.max_connections = 10;
  c.delivery.max_connections = 5;
  c.delivery.enabled = false;
  EXPECT_EQ(fd_connections(c), 100u);  // no POP3 listener, no delivery
  c.pop3.listen = {"127.0.0.1:110"};
  EXPECT_EQ(fd_connections(c), 110u);
  c.delivery.enabled = true;
  EXPECT_EQ(fd_connections(c), 115u);
}

TEST(FdBudget, LimitsThatFitAreLeftAlone) {
  Config c;
  c.smtp.max_connections = 100;
  c.delivery.max_connections = 10;
  const uint64_t needed = fd_reserve(c, kWorkers, kListeners) + fd_connections(c);
  FdFit fit = fit_fd_budget(c, kWorkers, kListeners, needed);
  EXPECT_EQ(fit.needed, needed);
  EXPECT_TRUE(fit.lowered.empty());
  EXPECT_EQ(c.smtp.max_connections, 100u);
  EXPECT_EQ(c.delivery.max_connections, 10u);
}

TEST(FdBudget, DefaultsDoNotFitTheCommonSoftLimit) {
  Config c;  // 20,000 SMTP + 500 outbound
  const uint64_t reserve = fd_reserve(c, kWorkers, kListeners);
  FdFit fit = fit_fd_budget(c, kWorkers, kListeners, 1024);
  EXPECT_EQ(fit.needed, reserve + 20'000 + 500);
  ASSERT_EQ(fit.lowered.size(), 2u);
  EXPECT_EQ(fit.lowered[0].rfind("smtp.max_connections 20000->", 0), 0u) << fit.lowered[0];
  EXPECT_EQ(fit.lowered[1].rfind("delivery.max_connections 500->", 0), 0u) << fit.lowered[1];
  // What is left after the reserve is shared in proportion, and fits.
  EXPECT_LE(reserve + c.smtp.max_connections + c.delivery.max_connections, 1024u);
  EXPECT_GT(c.smtp.max_connections, 10 * c.delivery.max_connections);
  EXPECT_GE(c.delivery.max_connections, 1u);
  // Fitted once, it fits.
  EXPECT_TRUE(fit_fd_budget(c, kWorkers, kListeners, 1024).lowered.empty());
}

TEST(FdBudget, Pop3CountsWhenItListens) {
  Config c;
  c.delivery.enabled = false;
  c.pop3.listen = {"127.0.0.1:110"};
  c.smtp.max_connections = 3'000;
  c.pop3.max_connections = 1'000;
  FdFit fit = fit_fd_budget(c, kWorkers, kListeners + 1, 2'048);
  ASSERT_EQ(fit.lowered.size(), 2u);
  EXPECT_EQ(fit.lowered[1].rfind("pop3.max_connections 1000->", 0), 0u) << fit.lowered[1];
  EXPECT_LE(fd_reserve(c, kWorkers, kListeners + 1) + fd_connections(c), 2'048u);
}

TEST(FdBudget, NoRoomLeavesOneConnectionEach) {
  Config c;
  FdFit fit = fit_fd_budget(c, kWorkers, kListeners, 16);  // less than the reserve alone
  EXPECT_EQ(fit.lowered.size(), 2u);
  EXPECT_EQ(c.smtp.max_connections, 1u);
  EXPECT_EQ(c.delivery.max_connections, 1u);
}

TEST(FdBudget, RaiseReportsTheLimitsInForce) {
  std::string why;
  auto limits = raise_file_limit(&why);
  ASSERT_TRUE(limits) << limits.error();
  EXPECT_TRUE(why.empty()) << why;
  EXPECT_EQ(limits.value().soft, limits.value().hard);  // raising to the hard limit needs no privilege
}

}  // namespace
}  // namespace tern
