// Giving back the disk space of deleted message bodies while the daemon runs.
//
// A delivered message's chunks are deleted from the bodies family, but their
// bytes stay on disk: in blob files, which RocksDB drops only once compaction
// has removed every reference to them, and in WAL files, which it drops only
// once every family has flushed past them. When the queue goes idle neither
// happens (a memtable full of small deletions never fills, so nothing
// flushes, so nothing compacts), and the space came back only at a clean
// restart (not at one after a crash), counting against `min_free_space`
// meanwhile. The reclaimer runs that flush and compaction itself: on its own
// thread, after the spool has been quiet for a moment, or every so often
// under steady load.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "queue/result.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace tern::queue {

// When a pass is due: pure, with the clock passed in (microseconds of a
// monotonic clock), so that it is tested without threads or sleeps.
class ReclaimSchedule {
 public:
  // A pass runs once writes have paused this long after a deletion...
  static constexpr int64_t kQuietUs = 1'000'000;
  // ...or, under steady load, once deletions have waited this long...
  static constexpr int64_t kBusyUs = 10'000'000;
  // ...and never sooner than this after the previous pass began, or after
  // one that could not run, so a sparse trickle of mail does not turn into
  // back-to-back flushes.
  static constexpr int64_t kMinGapUs = 5'000'000;
  // A failed pass (RocksDB refused the flush or the compaction) is tried
  // again after this long: sooner would only repeat the error in the log.
  static constexpr int64_t kFailedRetryUs = 60'000'000;

  // Starts with something to reclaim: a spool opened after a crash, or one
  // recover() cleaned up, may hold garbage from before this run.
  explicit ReclaimSchedule(int64_t now_us);

  // A batch was written; `deleted_bodies` when it deleted message chunks.
  // Returns true when that made a pass pending (the thread must be woken to
  // learn its new deadline).
  bool wrote(int64_t now_us, bool deleted_bodies);
  // When the next pass is due; nullopt while there is nothing to reclaim.
  std::optional<int64_t> due_at() const;
  // A pass starts: deletions from now on are for the next one.
  void started(int64_t now_us);
  // A pass failed or could not run: its deletions are still to reclaim, but
  // not before `delay_us` has passed.
  void retry_later(int64_t now_us, int64_t delay_us);

 private:
  int64_t last_write_us_;
  std::optional<int64_t> pending_since_;  // first deletion not yet reclaimed
  int64_t not_before_us_ = 0;
};

// Whether compacting the whole bodies family is worth its cost, from its
// table files: their total size, entries and deletions (tombstones). Small
// tables (mostly blob references) are always worth it; large ones (a backlog
// of small bodies, stored inline) only once a good share of their entries
// are deletions, so that a pass never rewrites gigabytes for a few
// delivered messages.
bool compaction_worthwhile(uint64_t table_bytes, uint64_t entries, uint64_t deletions);

// One pass over an open spool database: flushes every family (a WAL file is
// deleted only once all families with data in it have flushed), compacts the
// bodies family when compaction_worthwhile(), so that deleted chunks drop
// their blob references (blob files that hold nothing else are deleted),
// then forces blob garbage collection over the oldest blob files that are
// mostly garbage, relocating their few live bodies. Returns early, without
// error, once `canceled` is set.
Status reclaim_space(rocksdb::DB& db, const std::vector<rocksdb::ColumnFamilyHandle*>& families,
                     rocksdb::ColumnFamilyHandle* bodies, std::atomic<bool>& canceled);

// The bytes the files under `directory` take on disk (allocated blocks, what
// statvfs and `min_free_space` see); files that vanish meanwhile count 0.
uint64_t disk_usage(const std::string& directory);
// disk_usage() once it has stopped changing, for at most about 2 seconds:
// RocksDB deletes the files a compaction made obsolete on its own thread,
// after CompactRange() has returned.
uint64_t settled_disk_usage(const std::string& directory, const std::atomic<bool>& canceled);

// The thread that runs passes when the schedule says so.
class Reclaimer {
 public:
  enum class Outcome {
    reclaimed,
    failed,    // tried again after ReclaimSchedule::kFailedRetryUs
    deferred,  // could not run now (the spool is recovering, or closing);
               // tried again after ReclaimSchedule::kMinGapUs
  };
  // Runs one pass; `stopping` is set when the reclaimer is destroyed, and a
  // pass should then return as soon as it can.
  using Pass = std::function<Outcome(std::atomic<bool>& stopping)>;

  // Starts the thread; on failure the error is returned and nothing runs.
  static Result<std::unique_ptr<Reclaimer>> start(Pass pass);
  ~Reclaimer();  // cancels a running pass and joins the thread
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // From the spool's writer after each batch it wrote; cheap, never blocks
  // on a pass.
  void wrote(bool deleted_bodies);

 private:
  explicit Reclaimer(Pass pass);
  void run();

  Pass pass_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  ReclaimSchedule schedule_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace tern::queue
