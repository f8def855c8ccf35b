#include <gtest/gtest.h>

#include "queue/reclaim.h"

namespace tern::queue {
namespace {

using S = ReclaimSchedule;
constexpr int64_t kStart = 1'000'000'000;

TEST(ReclaimScheduleTest, AFreshSpoolIsReclaimedOnceQuiet) {
  // Garbage from before the start (a crash, recover()'s clean-up) counts.
  S schedule(kStart);
  EXPECT_EQ(schedule.due_at(), kStart + S::kQuietUs);
}

TEST(ReclaimScheduleTest, NothingIsDueWithoutDeletions) {
  S schedule(kStart);
  schedule.started(kStart + S::kQuietUs);
  EXPECT_FALSE(schedule.wrote(kStart + 2 * S::kQuietUs, false));
  EXPECT_FALSE(schedule.due_at());
}

TEST(ReclaimScheduleTest, DueOnceWritesPauseAfterADeletion) {
  S schedule(kStart);
  schedule.started(kStart);
  int64_t t = kStart + S::kMinGapUs;
  EXPECT_TRUE(schedule.wrote(t, true));
  EXPECT_FALSE(schedule.wrote(t + 100, true));  // already pending: no need to wake
  EXPECT_FALSE(schedule.wrote(t + 200, false));
  EXPECT_EQ(schedule.due_at(), t + 200 + S::kQuietUs);
}

TEST(ReclaimScheduleTest, SteadyLoadStillGetsAPassEveryBusyInterval) {
  S schedule(kStart);
  schedule.started(kStart);
  int64_t t = kStart + S::kMinGapUs;
  schedule.wrote(t, true);
  for (int64_t w = t; w < t + 3 * S::kBusyUs; w += S::kQuietUs / 2) schedule.wrote(w, true);
  EXPECT_EQ(schedule.due_at(), t + S::kBusyUs);
}

TEST(ReclaimScheduleTest, PassesKeepAMinimumGap) {
  S schedule(kStart);
  schedule.started(kStart);
  schedule.wrote(kStart + 10, true);
  EXPECT_EQ(schedule.due_at(), kStart + S::kMinGapUs);
}

TEST(ReclaimScheduleTest, DeletionsDuringAPassAreForTheNextOne) {
  S schedule(kStart);
  schedule.started(kStart);
  EXPECT_FALSE(schedule.due_at());
  EXPECT_TRUE(schedule.wrote(kStart + 10, true));
  EXPECT_TRUE(schedule.due_at());
}

TEST(ReclaimScheduleTest, APassThatDidNotRunIsRetriedAfterTheDelay) {
  S schedule(kStart);
  schedule.started(kStart + S::kQuietUs);
  int64_t failed_at = kStart + 2 * S::kQuietUs;
  schedule.retry_later(failed_at, S::kFailedRetryUs);
  EXPECT_EQ(schedule.due_at(), failed_at + S::kFailedRetryUs);
  // Writes meanwhile do not bring it forward.
  schedule.wrote(failed_at + 10, true);
  EXPECT_EQ(schedule.due_at(), failed_at + S::kFailedRetryUs);
}

constexpr uint64_t kMiB = 1 << 20;

TEST(CompactionWorthwhileTest, NothingDeletedIsNeverWorthIt) {
  EXPECT_FALSE(compaction_worthwhile(1 * kMiB, 1000, 0));
}

TEST(CompactionWorthwhileTest, SmallTablesAreAlwaysWorthIt) {
  // Bodies in blob files leave tables of references only.
  EXPECT_TRUE(compaction_worthwhile(1 * kMiB, 100'000, 1));
  EXPECT_TRUE(compaction_worthwhile(32 * kMiB, 100'000, 1));
}

TEST(CompactionWorthwhileTest, LargeTablesWaitForAShareOfDeletions) {
  // A backlog of small bodies stored inline: rewriting 1 GiB for 1 % of it
  // would cost more than it gives back.
  EXPECT_FALSE(compaction_worthwhile(1024 * kMiB, 1'000'000, 10'000));
  EXPECT_FALSE(compaction_worthwhile(1024 * kMiB, 1'000'000, 249'999));
  EXPECT_TRUE(compaction_worthwhile(1024 * kMiB, 1'000'000, 250'000));
}

}  // namespace
}  // namespace tern::queue
