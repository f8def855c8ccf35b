#include "queue/reclaim.h"

#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "queue/thread_name.h"

namespace tern::queue {
namespace {

namespace rdb = rocksdb;

constexpr auto kSettleInterval = std::chrono::milliseconds(100);
constexpr int kSettleChecks = 20;

// Compacting this much table data at most every few seconds costs little;
// above it, compaction waits for kDeletionShareToCompact.
constexpr uint64_t kCheapCompactionBytes = 32 << 20;
constexpr double kDeletionShareToCompact = 0.25;

// Forced garbage collection relocates the live bodies of the blob files it
// covers; limiting it to files at least this much garbage means it never
// writes more than it frees.
constexpr double kGarbageShareToCollect = 0.5;

int64_t steady_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status rocksdb_failure(const char* what, const rdb::Status& s) {
  return Error{std::string(what) + ": " + s.ToString()};
}

// The age cutoff (RocksDB's share of blob files, oldest first) that covers
// the oldest files while each is mostly garbage; 0 when the oldest is not.
double garbage_age_cutoff(std::vector<rdb::BlobMetaData> files) {
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.blob_file_number < b.blob_file_number; });
  size_t covered = 0;
  while (covered < files.size() && files[covered].garbage_blob_bytes >=
                                       kGarbageShareToCollect * static_cast<double>(files[covered].total_blob_bytes)) {
    ++covered;
  }
  if (covered == 0) return 0;
  // RocksDB collects the files before index cutoff * count; half a file more
  // keeps rounding from leaving out the last one meant.
  return std::min(1.0, (static_cast<double>(covered) + 0.5) / static_cast<double>(files.size()));
}

}  // namespace

// ---------------------------------------------------------------------------

ReclaimSchedule::ReclaimSchedule(int64_t now_us) : last_write_us_(now_us), pending_since_(now_us) {}

bool ReclaimSchedule::wrote(int64_t now_us, bool deleted_bodies) {
  last_write_us_ = now_us;
  if (!deleted_bodies || pending_since_) return false;
  pending_since_ = now_us;
  return true;
}

std::optional<int64_t> ReclaimSchedule::due_at() const {
  if (!pending_since_) return std::nullopt;
  return std::max(std::min(last_write_us_ + kQuietUs, *pending_since_ + kBusyUs), not_before_us_);
}

void ReclaimSchedule::started(int64_t now_us) {
  pending_since_.reset();
  not_before_us_ = now_us + kMinGapUs;
}

void ReclaimSchedule::retry_later(int64_t now_us, int64_t delay_us) {
  if (!pending_since_) pending_since_ = now_us;
  not_before_us_ = now_us + delay_us;
}

// ---------------------------------------------------------------------------

bool compaction_worthwhile(uint64_t table_bytes, uint64_t entries, uint64_t deletions) {
  if (deletions == 0) return false;
  return table_bytes <= kCheapCompactionBytes ||
         static_cast<double>(deletions) >= kDeletionShareToCompact * static_cast<double>(entries);
}

Status reclaim_space(rdb::DB& db, const std::vector<rdb::ColumnFamilyHandle*>& families,
                     rdb::ColumnFamilyHandle* bodies, std::atomic<bool>& canceled) {
  rdb::FlushOptions flush;
  flush.wait = true;
  // The point is to free space, not to make room for writes: a pass that
  // waits for a stall to clear would only arrive later.
  flush.allow_write_stall = true;
  if (rdb::Status s = db.Flush(flush, families); !s.ok()) return rocksdb_failure("flushing the spool", s);
  if (canceled.load()) return {};

  rdb::ColumnFamilyMetaData tables;
  db.GetColumnFamilyMetaData(bodies, &tables);
  uint64_t entries = 0;
  uint64_t deletions = 0;
  for (const rdb::LevelMetaData& level : tables.levels) {
    for (const rdb::SstFileMetaData& file : level.files) {
      entries += file.num_entries;
      deletions += file.num_deletions;
    }
  }

  rdb::CompactRangeOptions compact;
  compact.canceled = &canceled;
  if (compaction_worthwhile(tables.size, entries, deletions)) {
    // Deletions meet the references they delete on the way down the levels,
    // and both are dropped; blob files left with no reference are deleted.
    rdb::Status s = db.CompactRange(compact, bodies, nullptr, nullptr);
    if (s.IsManualCompactionPaused() || canceled.load()) return {};
    if (!s.ok()) return rocksdb_failure("compacting message bodies", s);
  }

  // The garbage of each blob file is known from the compactions that dropped
  // references to it: this pass's, or RocksDB's own.
  rdb::ColumnFamilyMetaData blobs;
  db.GetColumnFamilyMetaData(bodies, &blobs);
  double cutoff = garbage_age_cutoff(std::move(blobs.blob_files));
  if (cutoff <= 0) return {};
  compact.blob_garbage_collection_policy = rdb::BlobGarbageCollectionPolicy::kForce;
  compact.blob_garbage_collection_age_cutoff = cutoff;
  // Blobs are relocated only from the tables a compaction rewrites, and most
  // references sit at the bottommost level.
  compact.bottommost_level_compaction = rdb::BottommostLevelCompaction::kForceOptimized;
  rdb::Status s = db.CompactRange(compact, bodies, nullptr, nullptr);
  if (s.IsManualCompactionPaused() || canceled.load()) return {};
  if (!s.ok()) return rocksdb_failure("collecting blob garbage", s);
  return {};
}

uint64_t disk_usage(const std::string& directory) {
  uint64_t total = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

uint64_t settled_disk_usage(const std::string& directory, const std::atomic<bool>& canceled) {
  uint64_t last = disk_usage(directory);
  for (int i = 0; i < kSettleChecks && !canceled.load(); ++i) {
    std::this_thread::sleep_for(kSettleInterval);
    uint64_t now = disk_usage(directory);
    if (now == last) break;
    last = now;
  }
  return last;
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<Reclaimer>> Reclaimer::start(Pass pass) {
  std::unique_ptr<Reclaimer> reclaimer(new Reclaimer(std::move(pass)));
  try {
    reclaimer->thread_ = std::thread([r = reclaimer.get()] {
      name_this_thread("tern-reclaim");
      r->run();
    });
  } catch (const std::system_error& e) {
    return Error{std::string("starting the spool reclaimer: ") + e.what()};
  }
  return reclaimer;
}

Reclaimer::Reclaimer(Pass pass) : pass_(std::move(pass)), schedule_(steady_now_us()) {}

Reclaimer::~Reclaimer() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true);
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reclaimer::wrote(bool deleted_bodies) {
  bool newly_pending;
  {
    std::lock_guard lock(mutex_);
    newly_pending = schedule_.wrote(steady_now_us(), deleted_bodies);
  }
  if (newly_pending) wake_.notify_one();
}

void Reclaimer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_.load()) {
    std::optional<int64_t> due = schedule_.due_at();
    if (!due) {
      wake_.wait(lock);
      continue;
    }
    int64_t now = steady_now_us();
    if (now < *due) {
      wake_.wait_for(lock, std::chrono::microseconds(*due - now));
      continue;
    }
    schedule_.started(now);
    lock.unlock();
    Outcome outcome = pass_(stopping_);
    lock.lock();
    if (outcome == Outcome::failed) schedule_.retry_later(steady_now_us(), ReclaimSchedule::kFailedRetryUs);
    if (outcome == Outcome::deferred) schedule_.retry_later(steady_now_us(), ReclaimSchedule::kMinGapUs);
  }
}

}  // namespace tern::queue
