#include "queue/spool.h"

#include <sys/statvfs.h>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <compare>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <variant>

#include "queue/queue_id.h"
#include "queue/reclaim.h"
#include "queue/rocksdb_log.h"
#include "queue/thread_name.h"

namespace tern::queue {
namespace {

namespace rdb = rocksdb;

// ---------------------------------------------------------------------------
// On-disk layout
//
//   default    metadata only: kFormatKey -> kFormatValue
//   bodies     id + chunk index (4 bytes BE)           -> chunk bytes
//   envelopes  id                                      -> encode(Envelope)
//   schedule   queue (1 byte) + due_us (8 bytes) + id  -> empty
//   finished   finished_us (8 bytes) + id              -> reason length (4 bytes BE)
//                                                         + reason + encode(summary)
//
// A finished record holds finished_summary() of the envelope, without the id
// that its key holds (records written before summaries hold the whole
// envelope; both decode).
//
// Times in keys are int64 microseconds stored big-endian with the sign bit
// flipped, so byte order is numeric order for every value, negative ones too.
// ---------------------------------------------------------------------------

enum Family : size_t { kDefault, kBodies, kEnvelopes, kSchedule, kFinished, kFamilyCount };

constexpr std::string_view kFormatKey = "tern.spool.format";
constexpr std::string_view kFormatValue = "1";

constexpr size_t kChunkIndexBytes = 4;
constexpr size_t kTimeBytes = 8;
constexpr size_t kReasonLengthBytes = 4;

// The writer takes every waiting request, up to this much payload per batch:
// enough to merge thousands of commits, small enough that a flood of body
// chunks does not build one enormous batch and starve the commits behind it.
constexpr size_t kMaxBatchBytes = 32 << 20;
constexpr size_t kSmallRequestBytes = 256;

// The finished log is also trimmed while running, not only at recover(), so a
// daemon that runs for months does not grow it without bound: this often, or
// once per retention when that is shorter.
constexpr int64_t kFinishedPurgeIntervalUs = 60'000'000;

// Memtable sizes: message bodies, and every other (small) family.
constexpr uint64_t kBodiesWriteBuffer = 32 << 20;
constexpr uint64_t kSmallWriteBuffer = 8 << 20;

// While mail arrives, free space is measured again after this long or this
// many intake bytes, whichever comes first: a statvfs per batch would be
// cheap, but not free at thousands of batches a second.
constexpr int64_t kSpaceRecheckUs = 20'000;
constexpr uint64_t kSpaceRecheckBytes = 4 << 20;

// After a write error, how often the writer tries to get RocksDB writing again.
constexpr int64_t kRecoveryIntervalUs = 1'000'000;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void append_big_endian(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = bytes; i-- > 0;) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

uint64_t read_big_endian(std::string_view in) {
  uint64_t value = 0;
  for (char c : in) value = (value << 8) | static_cast<uint8_t>(c);
  return value;
}

constexpr uint64_t kSignBit = uint64_t{1} << 63;

void append_time(std::string& out, int64_t us) {
  append_big_endian(out, static_cast<uint64_t>(us) ^ kSignBit, kTimeBytes);
}

int64_t read_time(std::string_view in) {
  return static_cast<int64_t>(read_big_endian(in) ^ kSignBit);
}

std::string chunk_key(std::string_view id, uint32_t index) {
  std::string key(id);
  append_big_endian(key, index, kChunkIndexBytes);
  return key;
}

std::string schedule_key(QueueName q, int64_t due_us, std::string_view id) {
  std::string key(1, static_cast<char>(q));
  append_time(key, due_us);
  key.append(id);
  return key;
}

std::string schedule_key(const Envelope& env) {
  return schedule_key(env.queue, env.next_attempt_us, env.id);
}

// Per queue, indexed by QueueName's value: every value a byte can hold, so
// that a damaged envelope's number indexes no memory beyond.
constexpr size_t kQueueSlots = 256;
// A place in one queue's schedule: entries sort by due time, then by id (as
// their keys do). The default is the queue's beginning.
struct SchedulePosition {
  int64_t due_us = std::numeric_limits<int64_t>::min();
  std::string id;
  auto operator<=>(const SchedulePosition&) const = default;
};

// Per queue (indexed by QueueName's value), the earliest schedule entry put;
// nullopt: none.
using EarliestPut = std::array<std::optional<SchedulePosition>, kQueueSlots>;

// Moves `position` back to `put` when that is earlier (nullopt: after all).
void move_back_to(std::optional<SchedulePosition>& position, const std::optional<SchedulePosition>& put) {
  if (put && (!position || *put < *position)) position = put;
}

void move_back_to(SchedulePosition& position, const std::optional<SchedulePosition>& put) {
  if (put && *put < position) position = *put;
}

struct ScheduleEntry {
  QueueName queue;
  int64_t due_us;
  std::string_view id;
};

std::optional<ScheduleEntry> parse_schedule_key(std::string_view key) {
  if (key.size() <= 1 + kTimeBytes) return std::nullopt;
  return ScheduleEntry{static_cast<QueueName>(key[0]), read_time(key.substr(1, kTimeBytes)),
                       key.substr(1 + kTimeBytes)};
}

std::string finished_key(int64_t finished_us, std::string_view id) {
  std::string key;
  append_time(key, finished_us);
  key.append(id);
  return key;
}

// What the finished log keeps of a message: who sent it to whom, when and
// from where, and how each recipient ended; the rest of the envelope
// (reception details, DSN parameters, each attempt's diagnostics) is in the
// event log (docs/operations.md, "Finished messages").
Envelope finished_summary(const Envelope& env) {
  Envelope summary;  // no id: the record's key has it
  summary.sender = env.sender;
  summary.arrival_us = env.arrival_us;
  summary.client_ip = env.client_ip;
  summary.message_id = env.message_id;
  summary.body_size = env.body_size;
  summary.queue = env.queue;
  summary.attempts = env.attempts;
  summary.origin = env.origin;
  summary.recipients.reserve(env.recipients.size());
  for (const Recipient& r : env.recipients) {
    Recipient& kept = summary.recipients.emplace_back();
    kept.address = r.address;
    kept.state = r.state;
    kept.status = r.status;
    // Why it bounced; a delivered recipient's reply says nothing new.
    if (r.state == RecipientState::failed) kept.diagnostic = r.diagnostic;
  }
  return summary;
}

std::string finished_value(std::string_view reason, const Envelope& env) {
  std::string value;
  append_big_endian(value, reason.size(), kReasonLengthBytes);
  value.append(reason);
  value.append(encode(finished_summary(env)));
  return value;
}

std::optional<FinishedRecord> parse_finished(std::string_view key, std::string_view value) {
  if (key.size() <= kTimeBytes || value.size() < kReasonLengthBytes) return std::nullopt;
  uint64_t reason_length = read_big_endian(value.substr(0, kReasonLengthBytes));
  if (reason_length > value.size() - kReasonLengthBytes) return std::nullopt;
  std::optional<Envelope> env = decode_envelope(value.substr(kReasonLengthBytes + reason_length));
  if (!env) return std::nullopt;
  FinishedRecord record;
  record.finished_us = read_time(key.substr(0, kTimeBytes));
  record.id = std::string(key.substr(kTimeBytes));
  record.reason = std::string(value.substr(kReasonLengthBytes, reason_length));
  record.summary = std::move(*env);
  if (record.summary.id.empty()) record.summary.id = record.id;
  return record;
}

// Messages per queue, indexed by the queue's number (slot 0 unused).
using QueueCounts = std::array<int64_t, kQueueSlots>;

void count_in(QueueCounts& counts, QueueName q, int64_t n) {
  if (auto slot = static_cast<size_t>(q); slot < kQueueSlots) counts[slot] += n;
}

std::string_view view(const rdb::Slice& s) {
  return {s.data(), s.size()};
}

// RocksDB counts every operation in a per-thread perf context unless told
// not to (its default level is kEnableCount). Nothing reads those counts, and
// from the shared library each one is a thread-local lookup: a few percent
// of the writer's and the readers' time. The level is per thread, so the
// writer sets it once and the hot reads set it on whatever thread calls them.
void skip_perf_counters() {
  rdb::SetPerfLevel(rdb::PerfLevel::kDisable);
}

Error rocksdb_error(std::string_view what, const rdb::Status& s) {
  return Error{std::string(what) + ": " + s.ToString()};
}

Error bad_id_error(std::string_view what, std::string_view id) {
  return Error{std::string(what) + ": malformed queue id '" + std::string(id) + "'"};
}

Error no_such_message(std::string_view what, std::string_view id) {
  return Error{std::string(what) + ": no such message " + std::string(id)};
}

// ---------------------------------------------------------------------------
// RocksDB options. Durability comes from the WAL alone: every mutation is
// written to it (never disableWAL) and commits sync it.
// ---------------------------------------------------------------------------

rdb::DBOptions db_options() {
  rdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  // Each Write() reaches the OS immediately, so a crash of the process loses
  // nothing written; WriteOptions::sync alone decides what survives an OS
  // crash. (Manual flushing would let an unsynced batch vanish on a crash.)
  o.manual_wal_flush = false;
  // WAL is always on, so there is never unpersisted data at shutdown; keeping
  // the default means that, should that change, Close() flushes rather than
  // drops it.
  o.avoid_flush_during_shutdown = false;
  // A crash can tear the tail of the WAL, but only for a batch that was never
  // acknowledged; point-in-time recovery opens at the last intact batch rather
  // than refusing to open.
  o.wal_recovery_mode = rdb::WALRecoveryMode::kPointInTimeRecovery;
  // A WAL file can only be deleted once every column family with data in it
  // has flushed; the small, slow families (schedule, finished) would otherwise
  // pin gigabytes of body-carrying WAL. This bound forces those flushes.
  o.max_total_wal_size = 128 << 20;
  // Write body data back to disk in the background as it comes, so the fsync
  // of the next commit does not have to push out megabytes of unsynced chunks.
  o.wal_bytes_per_sync = 1 << 20;
  o.bytes_per_sync = 1 << 20;
  // The daemon runs on small machines; two background jobs (a flush and a
  // compaction) are plenty for this write rate.
  o.max_background_jobs = 2;
  return o;
}


rdb::ColumnFamilyOptions small_family_options() {
  rdb::ColumnFamilyOptions o;
  // Envelopes and schedule entries are small; a modest memtable keeps memory
  // use low and flushes (hence WAL recycling) frequent.
  o.write_buffer_size = kSmallWriteBuffer;
  return o;
}

// Keys that grow with time (queue IDs, due times) are mostly inserted at the
// end of their family's memtable, or of one queue's range in the schedule:
// a per-prefix hint lets the memtable start there instead of at the top.
void insert_with_hint(rdb::ColumnFamilyOptions& o) {
  o.memtable_insert_with_hint_prefix_extractor.reset(rdb::NewFixedPrefixTransform(1));
}

rdb::ColumnFamilyOptions churning_family_options() {
  rdb::ColumnFamilyOptions o = small_family_options();
  insert_with_hint(o);
  // A queue deletes most keys soon after writing them. Files that are mostly
  // tombstones get compacted early so that due()'s scans do not wade through
  // dead entries.
  o.table_properties_collector_factories.emplace_back(
      rdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/128, /*deletion_trigger=*/64));
  return o;
}

// Envelopes are read by key only: every write looks its message up first (a
// commit, always a miss), and so do due() and read_body(). Bloom filters let
// a miss skip the table files, and the memtable's own filter the memtable.
// Tombstones cost a key lookup nothing, so unlike the schedule the family
// has no compaction on deletions: with a backlog, every memtable flushed
// during a drain is mostly deletions, and compacting each one at once
// rewrote the backlog's envelopes in the level below every few megabytes
// of writes (most of the compaction CPU of a 200,000-message drain).
rdb::ColumnFamilyOptions envelope_family_options() {
  rdb::ColumnFamilyOptions o = small_family_options();
  insert_with_hint(o);
  rdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rdb::NewBlockBasedTableFactory(table));
  o.memtable_prefix_bloom_size_ratio = 0.1;
  o.memtable_whole_key_filtering = true;
  return o;
}

rdb::ColumnFamilyOptions body_family_options() {
  rdb::ColumnFamilyOptions o;
  o.write_buffer_size = kBodiesWriteBuffer;
  insert_with_hint(o);
  // Integrated BlobDB: chunks of 4 KiB and more go to blob files at flush and
  // the LSM tree holds only small references, so compaction does not rewrite
  // message bodies over and over.
  o.enable_blob_files = true;
  o.min_blob_size = 4 << 10;
  // Smaller blob files empty out (and are deleted) sooner in a queue where
  // most bodies live seconds or minutes.
  o.blob_file_size = 64 << 20;
  // Long-lived bodies (held, retried) would otherwise keep old blob files full
  // of garbage alive; GC relocates them during compaction. Automatic
  // compactions seldom reach an idle queue's files: the reclaimer
  // (queue/reclaim.cpp) forces it there.
  o.enable_blob_garbage_collection = true;
  return o;
}

std::vector<rdb::ColumnFamilyDescriptor> family_descriptors() {
  std::vector<rdb::ColumnFamilyDescriptor> d(kFamilyCount);
  d[kDefault] = {rdb::kDefaultColumnFamilyName, small_family_options()};
  d[kBodies] = {"bodies", body_family_options()};
  d[kEnvelopes] = {"envelopes", envelope_family_options()};
  d[kSchedule] = {"schedule", churning_family_options()};
  d[kFinished] = {"finished", small_family_options()};
  return d;
}

// Column family handles must be released through the DB that made them, and
// before the DB is closed.
struct FamilyCloser {
  rdb::DB* db;
  void operator()(rdb::ColumnFamilyHandle* handle) const { db->DestroyColumnFamilyHandle(handle); }
};
using FamilyHandle = std::unique_ptr<rdb::ColumnFamilyHandle, FamilyCloser>;

struct Families {
  rdb::DB* db = nullptr;
  std::vector<FamilyHandle> handles;
  rdb::ColumnFamilyHandle* operator[](Family f) const { return handles[f].get(); }
};

// The stored bytes of an envelope; nullopt when there is none.
Result<std::optional<std::string>> read_envelope_bytes(const Families& fam, const rdb::ReadOptions& ro,
                                                       const std::string& id) {
  std::string value;
  rdb::Status s = fam.db->Get(ro, fam[kEnvelopes], id, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return rocksdb_error("reading envelope " + id, s);
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<Envelope>> read_envelope(const Families& fam, const rdb::ReadOptions& ro, const std::string& id) {
  auto bytes = read_envelope_bytes(fam, ro, id);
  if (!bytes.ok()) return Error{bytes.error()};
  if (!*bytes) return std::optional<Envelope>();
  std::optional<Envelope> env = decode_envelope(**bytes);
  if (!env) return Error{"envelope " + id + " is corrupt"};
  return env;
}

// ---------------------------------------------------------------------------
// Writer requests
// ---------------------------------------------------------------------------

struct AppendChunkOp {
  std::string id;
  uint32_t index;
  std::string data;
};
struct CommitOp {
  Envelope env;
  std::optional<std::string> last_chunk;
};
struct DiscardOp {
  std::string id;
  uint32_t chunks;
};
struct MoveOp {
  std::string id;
  QueueName to;
  int64_t due_us;
  bool sync = true;
};
struct UpdateOp {
  Envelope env;
};
struct RemoveOp {
  std::string id;
  std::string reason;
};
using Operation = std::variant<AppendChunkOp, CommitOp, DiscardOp, MoveOp, UpdateOp, RemoveOp>;

struct Request {
  Operation op;
  Spool::Done done;
};

// Body chunks and discards may be lost in a crash: recover() removes what they
// leave behind. A claim lost in a crash only means the message is tried again
// (recover() returns `active` to `incoming` anyway). Everything else that
// changes a committed message is synced.
bool needs_sync(const Operation& op) {
  if (const auto* move = std::get_if<MoveOp>(&op)) return move->sync;
  return !std::holds_alternative<AppendChunkOp>(op) && !std::holds_alternative<DiscardOp>(op);
}

// Requests that bring new mail in: refused when space is short. Everything
// else (moves, updates, removals) keeps working so delivery can go on and
// removals can free space.
bool is_intake(const Operation& op) {
  return std::holds_alternative<AppendChunkOp>(op) || std::holds_alternative<CommitOp>(op);
}

// Whether a written batch deleted message chunks (what the reclaimer is for).
bool deletes_bodies(const std::vector<Request>& batch, const std::vector<Status>& results) {
  for (size_t i = 0; i < batch.size(); ++i) {
    if (results[i].ok() &&
        (std::holds_alternative<RemoveOp>(batch[i].op) || std::holds_alternative<DiscardOp>(batch[i].op))) {
      return true;
    }
  }
  return false;
}

size_t payload_bytes(const Operation& op) {
  if (const auto* append = std::get_if<AppendChunkOp>(&op)) return append->data.size() + kSmallRequestBytes;
  if (const auto* commit = std::get_if<CommitOp>(&op)) {
    return (commit->last_chunk ? commit->last_chunk->size() : 0) + kSmallRequestBytes;
  }
  return kSmallRequestBytes;
}

// `done` must not throw: it runs on the writer thread, where an exception
// would have nowhere to go but std::terminate.
void finish(Spool::Done& done, Status status) {
  if (done) done(std::move(status));
}

// The envelopes the writer wrote last, so that the next request on a message
// (a claim after its commit, a removal after its claim) need not read it back
// from RocksDB. The writer is the only one that changes envelopes, so what it
// wrote is what is stored, as long as the write went through: after a failed
// write (or a reopen, which drops unsynced writes) the cache is emptied.
// Bounded: the oldest entries go first.
class EnvelopeCache {
 public:
  using Overlay = std::unordered_map<std::string, std::optional<Envelope>>;

  // Moves the envelope of `id` out, if there is one: the batch that asks for
  // it gives it back through absorb() once written.
  std::optional<Envelope> take(const std::string& id) {
    auto node = envelopes_.extract(id);
    if (node.empty()) return std::nullopt;
    return std::move(node.mapped());
  }

  // A written batch's envelopes (nullopt: removed), those it took included.
  void absorb(Overlay&& written) {
    for (auto& [id, env] : written) {
      if (!env) {
        envelopes_.erase(id);
      } else if (auto [it, inserted] = envelopes_.insert_or_assign(id, std::move(*env)); inserted) {
        order_.push_back(id);
      }
    }
    while (order_.size() > kCachedEnvelopes) {
      envelopes_.erase(order_.front());
      order_.pop_front();
    }
  }

  void clear() {
    envelopes_.clear();
    order_.clear();
  }

 private:
  // Enough for every message between its commit and its removal at several
  // thousand messages a second; a few megabytes.
  static constexpr size_t kCachedEnvelopes = 8192;
  std::unordered_map<std::string, Envelope> envelopes_;
  std::deque<std::string> order_;  // first insertion of each entry, oldest first
};

// Turns the requests of one batch into one WriteBatch. Each request adds all
// of its writes or none: it is checked before it writes, and a save point
// undoes a partial one. Later requests see the envelopes earlier ones wrote
// through the overlay, so two requests on the same message in one batch
// compose as if written one after the other.
class BatchBuilder {
 public:
  // `keep_finished`: removals add a finished record.
  BatchBuilder(const Families& fam, EnvelopeCache& cache, bool keep_finished)
      : fam_(fam), cache_(cache), keep_finished_(keep_finished) {}

  rdb::WriteBatch& batch() { return batch_; }
  // How the batch changes the number of messages in each queue.
  const QueueCounts& queue_changes() const { return queue_changes_; }
  // Per queue, the earliest of the schedule entries this batch puts (a
  // failed request's included: over-reporting is harmless).
  const EarliestPut& earliest_put() const { return earliest_put_; }
  // The envelopes as the batch leaves them, for the cache once it is written.
  EnvelopeCache::Overlay take_envelopes() { return std::move(overlay_); }

  Status add(Operation& op) {
    batch_.SetSavePoint();
    const QueueCounts changes_before = queue_changes_;
    Status s = std::visit([this](auto& typed) { return apply(typed); }, op);
    // The overlay is updated only by a request's last write, so rolling back
    // the batch (and the queue counts) is enough to forget a failed request.
    if (!s.ok()) queue_changes_ = changes_before;
    rdb::Status undone = s.ok() ? batch_.PopSavePoint() : batch_.RollbackToSavePoint();
    if (!undone.ok()) return rocksdb_error("building write batch", undone);
    return s;
  }

 private:
  Status apply(AppendChunkOp& op) {
    if (!is_queue_id(op.id)) return bad_id_error("append_chunk", op.id);
    auto current = lookup(op.id);
    if (!current.ok()) return Error{current.error()};
    // A committed body is immutable: a late chunk must not overwrite it.
    if (*current) return Error{"append_chunk: message " + op.id + " is already committed"};
    return put(kBodies, chunk_key(op.id, op.index), op.data);
  }

  Status apply(CommitOp& op) {
    const Envelope& env = op.env;
    if (!is_queue_id(env.id)) return bad_id_error("commit", env.id);
    if (op.last_chunk && env.body_chunks == 0) {
      return Error{"commit: last chunk given for message " + env.id + " with body_chunks 0"};
    }
    auto current = lookup(env.id);
    if (!current.ok()) return Error{current.error()};
    // An existing envelope means a duplicate ID or a double commit; either way
    // overwriting would lose a message.
    if (*current) return Error{"commit: message " + env.id + " already exists"};
    if (op.last_chunk) {
      if (Status s = put(kBodies, chunk_key(env.id, env.body_chunks - 1), *op.last_chunk); !s) return s;
    }
    if (Status s = put_schedule(env); !s) return s;
    count_in(queue_changes_, env.queue, 1);
    return store_envelope(std::move(op.env));
  }

  Status apply(DiscardOp& op) {
    if (!is_queue_id(op.id)) return bad_id_error("discard", op.id);
    auto current = lookup(op.id);
    if (!current.ok()) return Error{current.error()};
    if (*current) return Error{"discard: message " + op.id + " is committed; remove it instead"};
    for (uint32_t i = 0; i < op.chunks; ++i) {
      if (Status s = erase(kBodies, chunk_key(op.id, i)); !s) return s;
    }
    return {};
  }

  Status apply(MoveOp& op) {
    auto current = lookup(op.id);
    if (!current.ok()) return Error{current.error()};
    if (!*current) return no_such_message("move", op.id);
    Envelope env = **current;
    env.queue = op.to;
    env.next_attempt_us = op.due_us;
    return replace(**current, std::move(env));
  }

  Status apply(UpdateOp& op) {
    auto current = lookup(op.env.id);
    if (!current.ok()) return Error{current.error()};
    if (!*current) return no_such_message("update", op.env.id);
    // The body is written once; an envelope that disagrees about its chunks
    // would make it unreadable or leak chunks.
    if ((*current)->body_chunks != op.env.body_chunks) {
      return Error{"update: body_chunks of message " + op.env.id + " cannot change"};
    }
    return replace(**current, std::move(op.env));
  }

  Status apply(RemoveOp& op) {
    auto current = lookup(op.id);
    if (!current.ok()) return Error{current.error()};
    if (!*current) return no_such_message("remove", op.id);
    const Envelope& env = **current;
    for (uint32_t i = 0; i < env.body_chunks; ++i) {
      if (Status s = erase(kBodies, chunk_key(op.id, i)); !s) return s;
    }
    if (Status s = erase(kSchedule, schedule_key(env)); !s) return s;
    if (keep_finished_) {
      if (Status s = put(kFinished, finished_key(now_us(), op.id), finished_value(op.reason, env)); !s) return s;
    }
    if (Status s = erase(kEnvelopes, op.id); !s) return s;
    count_in(queue_changes_, env.queue, -1);
    overlay_[op.id] = std::nullopt;
    return {};
  }

  // The current envelope of `id` as this batch leaves it (null: none). It
  // points into the overlay, so it is valid until the next store_envelope().
  Result<const Envelope*> lookup(const std::string& id) {
    auto it = overlay_.find(id);
    if (it == overlay_.end()) {
      if (std::optional<Envelope> cached = cache_.take(id)) {
        it = overlay_.emplace(id, std::move(cached)).first;
      } else {
        auto stored = read_envelope(fam_, rdb::ReadOptions(), id);
        if (!stored.ok()) return Error{stored.error()};
        it = overlay_.emplace(id, std::move(*stored)).first;
      }
    }
    return it->second ? &*it->second : nullptr;
  }

  // `old_env` may be the overlay's entry that the new envelope replaces.
  Status replace(const Envelope& old_env, Envelope new_env) {
    std::string old_key = schedule_key(old_env);
    std::string new_key = schedule_key(new_env);
    if (old_key != new_key) {
      if (Status s = erase(kSchedule, old_key); !s) return s;
      if (Status s = put_schedule(new_env); !s) return s;
    }
    count_in(queue_changes_, old_env.queue, -1);
    count_in(queue_changes_, new_env.queue, 1);
    return store_envelope(std::move(new_env));
  }

  Status store_envelope(Envelope env) {
    if (Status s = put(kEnvelopes, env.id, encode(env)); !s) return s;
    std::string id = env.id;
    overlay_.insert_or_assign(std::move(id), std::move(env));
    return {};
  }

  Status put_schedule(const Envelope& env) {
    if (Status s = put(kSchedule, schedule_key(env), {}); !s) return s;
    std::optional<SchedulePosition>& earliest = earliest_put_[static_cast<size_t>(env.queue)];
    if (!earliest || std::tie(env.next_attempt_us, env.id) < std::tie(earliest->due_us, earliest->id)) {
      earliest = SchedulePosition{env.next_attempt_us, env.id};
    }
    return {};
  }

  Status put(Family f, const std::string& key, std::string_view value) {
    rdb::Status s = batch_.Put(fam_[f], key, rdb::Slice(value.data(), value.size()));
    if (!s.ok()) return rocksdb_error("building write batch", s);
    return {};
  }

  Status erase(Family f, const std::string& key) {
    rdb::Status s = batch_.Delete(fam_[f], key);
    if (!s.ok()) return rocksdb_error("building write batch", s);
    return {};
  }

  const Families& fam_;
  EnvelopeCache& cache_;
  const bool keep_finished_;
  rdb::WriteBatch batch_;
  QueueCounts queue_changes_{};
  EnvelopeCache::Overlay overlay_;
  EarliestPut earliest_put_;
};

}  // namespace

// ---------------------------------------------------------------------------

struct Spool::Impl {
  SpoolOptions options;
  // Declared before the handles: members are destroyed in reverse order, and
  // the handles must go before the DB they belong to.
  std::unique_ptr<rdb::DB> db;
  Families families;
  // Readers (any thread) hold it shared; the writer holds it exclusively
  // only to reopen the database, so reads never see it half-open.
  mutable std::shared_mutex db_mutex;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Request> pending;  // guarded by mutex
  bool stopping = false;        // guarded by mutex
  std::thread writer;
  std::atomic<std::thread::id> writer_id{};
  int64_t next_finished_purge_us = 0;  // writer thread only
  EnvelopeCache envelope_cache;        // writer thread only
  // Set by recover(), which writes envelopes itself: the writer empties its
  // cache before its next batch.
  std::atomic<bool> envelopes_changed_elsewhere{false};

  // Where due() starts its scan of each queue. Claimed and moved messages
  // leave tombstones at the front of a queue's schedule until compaction; a
  // scan from the queue's start would walk all of them again each time, so
  // due() remembers the earliest live entry it saw and starts there next
  // time. The start is an entry's position (due time and id), not a due time
  // alone: a release or flush moves a whole backlog to one due time, and a
  // start at that time would walk every tombstone of the backlog's claimed
  // part at each scan. The writer moves the start back (after its write is
  // visible, before any `done` runs) whenever it puts an earlier entry.
  // due() calls are serialized by scan_mutex, so one scan at a time collects
  // the entries put while it runs (put_during_scan), which its snapshot may
  // not show.
  std::mutex scan_mutex;
  std::mutex scan_start_mutex;
  std::array<SchedulePosition, kQueueSlots> scan_start;  // guarded by scan_start_mutex
  EarliestPut put_during_scan;                           // guarded by scan_start_mutex

  // The writer, after a write: entries this early may now exist.
  void entries_put(const EarliestPut& earliest) {
    std::lock_guard lock(scan_start_mutex);
    for (size_t q = 0; q < kQueueSlots; ++q) {
      if (!earliest[q]) continue;
      move_back_to(scan_start[q], earliest[q]);
      move_back_to(put_during_scan[q], earliest[q]);
    }
  }

  // After anything that may bring back entries without the writer's notice
  // (a reopen that drops unsynced claims, recover()).
  void scan_from_the_beginning() {
    std::lock_guard lock(scan_start_mutex);
    scan_start.fill(SchedulePosition{});
    // A scan under way must not move the start either.
    put_during_scan.fill(SchedulePosition{});
  }

  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> wal_syncs{0};
  std::atomic<uint64_t> chunk_writes{0};
  std::atomic<uint64_t> reclaims{0};
  std::atomic<uint64_t> reclaim_failures{0};
  std::atomic<uint64_t> reclaimed_bytes{0};
  // Messages per queue (QueueCounts slots): set by count_queues(), changed by
  // the writer after each batch it writes; read by stats().
  std::array<std::atomic<int64_t>, kQueueSlots> queued{};

  // Started before the writer, which tells it what it wrote, and stopped
  // after it, before the database closes.
  std::unique_ptr<Reclaimer> reclaimer;

  // Free space: measured by the writer; read by anyone.
  std::atomic<uint64_t> free_space{std::numeric_limits<uint64_t>::max()};
  int64_t space_measured_us = 0;        // writer thread only
  uint64_t intake_since_measured = 0;   // writer thread only

  // Set by a failed write or a background error that stops writes; cleared
  // once RocksDB writes again. The error is what refused requests are told.
  std::atomic<bool> failed{false};
  std::mutex failure_mutex;
  std::string failure;  // guarded by failure_mutex
  int64_t next_recovery_us = 0;    // writer thread only
  std::string last_recovery_error;  // writer thread only

  explicit Impl(SpoolOptions o) : options(std::move(o)) {}

  // Opens the database (at start, and again after an error that Resume()
  // cannot clear). The writer thread or start-up only; db is null when it fails.
  Status open_db() {
    rdb::DBOptions db_opts = db_options();
    db_opts.listeners.push_back(listener);
    db_opts.info_log = log_to([on_event = options.on_event](const std::string& line) {
      if (on_event) on_event(SpoolEvent{SpoolEvent::Kind::rocksdb_warning, line});
    });
    std::vector<rdb::ColumnFamilyHandle*> raw_handles;
    rdb::DB* raw_db = nullptr;
    // RocksDB runs its periodic tasks (flushing its info log every 10 s,
    // stats dumps) on one timer thread for the whole process, started by the
    // first DB::Open and left unnamed: opened from a thread of that name, it
    // is told apart from ours in top -H and `ternctl stats`.
    rdb::Status s = run_on_named_thread("rocksdb:timer", [&] {
      return rdb::DB::Open(db_opts, options.directory, family_descriptors(), &raw_handles, &raw_db);
    });
    if (!s.ok()) return rocksdb_error("opening spool " + options.directory, s);
    db.reset(raw_db);
    families.db = raw_db;
    for (rdb::ColumnFamilyHandle* handle : raw_handles) families.handles.emplace_back(handle, FamilyCloser{raw_db});
    return {};
  }

  // Closes and opens the database while no reader uses it: RocksDB replays
  // its WAL as after a crash, which loses only what was never synced (no
  // acknowledged message, at most an unsynced claim or chunk; the queue
  // counts are taken again, as a lost claim changes them).
  Status reopen_db() {
    std::unique_lock lock(db_mutex);
    families.handles.clear();
    if (db) db->Close().PermitUncheckedError();
    db.reset();
    families.db = nullptr;
    envelope_cache.clear();
    scan_from_the_beginning();
    if (Status opened = open_db(); !opened) return opened;
    return count_queues();
  }

  void report(SpoolEvent::Kind kind, std::string error, uint64_t requests = 0) {
    if (options.on_event) options.on_event(SpoolEvent{kind, std::move(error), requests});
  }

  void enter_failure(const std::string& error) {
    {
      std::lock_guard lock(failure_mutex);
      failure = error;
    }
    failed.store(true);
  }

  // RocksDB's own threads report failed flushes and compactions here, and
  // the end of its own recovery (for ENOSPC it retries by itself once space
  // returns).
  struct ErrorListener : rdb::EventListener {
    std::atomic<Impl*> impl{nullptr};
    void OnBackgroundError(rdb::BackgroundErrorReason reason, rdb::Status* bg_error) override {
      Impl* spool = impl.load();
      if (!spool || !bg_error || bg_error->ok()) return;
      static constexpr const char* kReasons[] = {"flush", "compaction", "write", "memtable", "manifest write",
                                                 "flush (no WAL)", "manifest write (no WAL)"};
      auto index = static_cast<size_t>(reason);
      std::string what = std::string(index < std::size(kReasons) ? kReasons[index] : "background") + ": " +
                         bg_error->ToString();
      // A soft error (a compaction that found no room) leaves writes working.
      if (bg_error->severity() >= rdb::Status::Severity::kHardError) spool->enter_failure(what);
      spool->report(SpoolEvent::Kind::background_error, what);
    }
    void OnErrorRecoveryEnd(const rdb::BackgroundErrorRecoveryInfo& info) override {
      Impl* spool = impl.load();
      if (!spool || !info.new_bg_error.ok() || !spool->failed.exchange(false)) return;
      spool->report(SpoolEvent::Kind::recovered, {});
    }
  };
  std::shared_ptr<ErrorListener> listener = std::make_shared<ErrorListener>();

  std::string failure_text() {
    std::lock_guard lock(failure_mutex);
    return failure;
  }

  // statvfs on the spool's directory (any thread); the last value stays on failure.
  void measure_free_space() {
    struct statvfs st {};
    if (statvfs(options.directory.c_str(), &st) == 0) free_space.store(uint64_t{st.f_bavail} * st.f_frsize);
  }

  // Free space for a decision on the writer: measured again when the last
  // measure is old or much intake has been written since.
  uint64_t current_free_space() {
    int64_t now = now_us();
    if (now - space_measured_us >= kSpaceRecheckUs || intake_since_measured >= kSpaceRecheckBytes) {
      measure_free_space();
      space_measured_us = now;
      intake_since_measured = 0;
    }
    uint64_t free_now = free_space.load();
    return free_now > intake_since_measured ? free_now - intake_since_measured : 0;
  }

  // Tries to make RocksDB write again after a failure, at most once per
  // kRecoveryIntervalUs and only once the reserve is free (RocksDB would fail
  // again at once otherwise). Resume() flushes the memtables to new files and
  // starts a new WAL; RocksDB's own recovery for ENOSPC may get there first,
  // in which case Resume() finds nothing to do.
  void try_recover() {
    int64_t now = now_us();
    if (now < next_recovery_us) return;
    next_recovery_us = now + kRecoveryIntervalUs;
    measure_free_space();
    if (options.reserve_bytes > 0 && free_space.load() < options.reserve_bytes) return;
    // Resume() clears what RocksDB deems recoverable (a failed WAL write or
    // flush); an error it deems fatal (a new WAL that could not be created)
    // needs the database reopened.
    std::string error;
    if (!db) {
      error = "not open";
    } else if (rdb::Status s = db->Resume(); !s.ok()) {
      error = s.ToString();
    }
    if (!error.empty()) {
      if (Status reopened = reopen_db(); !reopened) {
        // Once per distinct error, not once a second.
        if (reopened.error() != last_recovery_error) report(SpoolEvent::Kind::recovery_failed, reopened.error());
        last_recovery_error = reopened.error();
        return;
      }
    }
    last_recovery_error.clear();
    if (failed.exchange(false)) report(SpoolEvent::Kind::recovered, {});
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (writer.joinable()) writer.join();
    reclaimer.reset();
    families.handles.clear();
    if (db) db->Close();
    listener->impl.store(nullptr);
  }

  void submit(Operation op, Done done) {
    {
      std::lock_guard lock(mutex);
      if (!stopping) {
        pending.push_back(Request{std::move(op), std::move(done)});
        wake.notify_one();
        return;
      }
    }
    finish(done, Error{"spool is closing"});
  }

  // Submits through `submit_fn` and waits. The promise is shared with the
  // callback so it outlives set_value() even after the waiter has returned.
  template <typename SubmitFn>
  Status wait_for(SubmitFn submit_fn) {
    if (std::this_thread::get_id() == writer_id.load()) {
      return Error{"a blocking spool call from a done callback would deadlock the writer"};
    }
    auto promise = std::make_shared<std::promise<Status>>();
    std::future<Status> result = promise->get_future();
    submit_fn([promise](Status s) { promise->set_value(std::move(s)); });
    return result.get();
  }

  void run_writer() {
    writer_id.store(std::this_thread::get_id());
    next_finished_purge_us = now_us() + finished_purge_interval_us();
    std::vector<Request> batch;
    for (;;) {
      batch.clear();
      {
        std::unique_lock lock(mutex);
        // After a failure the writer wakes by itself to recover, so that
        // writes work again before the next request needs them.
        auto ready = [this] { return !pending.empty() || stopping; };
        if (failed.load()) {
          wake.wait_for(lock, std::chrono::microseconds(kRecoveryIntervalUs), ready);
        } else {
          wake.wait(lock, ready);
        }
        if (pending.empty() && stopping) return;  // everything is drained
        size_t bytes = 0;
        while (!pending.empty() && (batch.empty() || bytes < kMaxBatchBytes)) {
          bytes += payload_bytes(pending.front().op);
          batch.push_back(std::move(pending.front()));
          pending.pop_front();
        }
      }
      if (failed.load()) try_recover();
      if (batch.empty()) continue;
      write(batch);
      if (!failed.load()) purge_finished_if_due();
    }
  }

  void write(std::vector<Request>& batch) {
    // After a failure nothing reaches RocksDB until it has recovered: its
    // WAL writer must not be used again before Resume() (Debian's build
    // asserts, and the process aborts, when a failed writer is written to).
    if (failed.load()) {
      Error refused{"spool unavailable after a write error, recovering: " + failure_text()};
      for (Request& request : batch) finish(request.done, refused);
      return;
    }
    if (envelopes_changed_elsewhere.exchange(false)) envelope_cache.clear();
    BatchBuilder builder(families, envelope_cache, options.finished_retention_us > 0);
    std::vector<Status> results;
    results.reserve(batch.size());
    bool sync = false;
    uint64_t intake = 0;
    for (Request& request : batch) {
      Status s;
      if (is_intake(request.op) && options.reserve_bytes > 0) {
        uint64_t bytes = payload_bytes(request.op);
        uint64_t free_now = current_free_space();
        if (free_now < options.reserve_bytes + intake + bytes) {
          s = Error{"insufficient storage: " + std::to_string(free_now) + " bytes free, " +
                    std::to_string(options.reserve_bytes) + " kept in reserve"};
        } else {
          intake += bytes;
        }
      }
      if (s.ok()) s = builder.add(request.op);
      if (s.ok() && needs_sync(request.op)) sync = true;
      results.push_back(std::move(s));
    }
    intake_since_measured += intake;
    if (builder.batch().Count() > 0) {
      rdb::WriteOptions wo;
      wo.sync = sync;
      rdb::Status s = db->Write(wo, &builder.batch());
      entries_put(builder.earliest_put());
      batches.fetch_add(1, std::memory_order_relaxed);
      if (sync) wal_syncs.fetch_add(1, std::memory_order_relaxed);
      if (!s.ok()) {
        Error failure = rocksdb_error("writing to the spool", s);
        enter_failure(s.ToString());
        envelope_cache.clear();
        report(SpoolEvent::Kind::write_failed, s.ToString(), batch.size());
        for (Status& result : results) {
          if (result.ok()) result = failure;
        }
      } else {
        envelope_cache.absorb(builder.take_envelopes());
        reclaimer->wrote(deletes_bodies(batch, results));
        for (size_t slot = 0; slot < kQueueSlots; ++slot) {
          if (int64_t change = builder.queue_changes()[slot]) queued[slot].fetch_add(change, std::memory_order_relaxed);
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results[i].ok()) {
        if (std::holds_alternative<CommitOp>(batch[i].op)) commits.fetch_add(1, std::memory_order_relaxed);
        if (std::holds_alternative<AppendChunkOp>(batch[i].op)) {
          chunk_writes.fetch_add(1, std::memory_order_relaxed);
        }
      }
      finish(batch[i].done, std::move(results[i]));
    }
  }

  // Deletes finished records older than the retention. Unsynced, and a failure
  // is left for the next interval: a purge lost in a crash or to an error is
  // simply done again later (recover() purges too).
  void purge_finished_if_due() {
    int64_t now = now_us();
    if (now < next_finished_purge_us) return;
    next_finished_purge_us = now + finished_purge_interval_us();
    rdb::WriteBatch purge;
    if (!add_finished_purge(purge, now) || purge.Count() == 0) return;
    db->Write(rdb::WriteOptions(), &purge);
  }

  int64_t finished_purge_interval_us() const {
    const int64_t retention = options.finished_retention_us;
    return retention > 0 ? std::min(retention, kFinishedPurgeIntervalUs) : kFinishedPurgeIntervalUs;
  }

  // Adds a range deletion of the expired finished records when there are any:
  // an idle log gets no range tombstones.
  bool add_finished_purge(rdb::WriteBatch& batch, int64_t now) {
    std::string end = finished_key(now - std::max<int64_t>(options.finished_retention_us, 0), {});
    std::unique_ptr<rdb::Iterator> it(db->NewIterator(rdb::ReadOptions(), families[kFinished]));
    it->SeekToFirst();
    if (!it->Valid()) return it->status().ok();
    if (view(it->key()) >= std::string_view(end)) return true;
    return batch.DeleteRange(families[kFinished], rdb::Slice(), end).ok();
  }

  // Counts the messages of each queue from the schedule index (one entry per
  // message, an empty value each): at open, after recover() and after a
  // reopen, never per stats() call. No writer may run meanwhile, or its
  // changes would be overwritten.
  Status count_queues() {
    QueueCounts counts{};
    std::unique_ptr<rdb::Iterator> it(db->NewIterator(rdb::ReadOptions(), families[kSchedule]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (auto entry = parse_schedule_key(view(it->key()))) count_in(counts, entry->queue, 1);
    }
    if (!it->status().ok()) return rocksdb_error("counting the queues", it->status());
    for (size_t slot = 0; slot < kQueueSlots; ++slot) queued[slot].store(counts[slot], std::memory_order_relaxed);
    return {};
  }

  Status check_format() {
    std::string value;
    rdb::Status s = db->Get(rdb::ReadOptions(), families[kDefault], std::string(kFormatKey), &value);
    if (s.ok()) {
      if (value == kFormatValue) return {};
      return Error{"spool " + options.directory + " has format " + value + ", this build reads format " +
                   std::string(kFormatValue)};
    }
    if (!s.IsNotFound()) return rocksdb_error("reading the spool format", s);
    rdb::WriteOptions wo;
    wo.sync = true;
    s = db->Put(wo, families[kDefault], std::string(kFormatKey), std::string(kFormatValue));
    if (!s.ok()) return rocksdb_error("writing the spool format", s);
    return {};
  }

  // One reclaimer pass (its thread). Holds the database open against a
  // reopen while it uses it; skipped while writes fail, since a flush would
  // only fail the same way.
  Reclaimer::Outcome reclaim(std::atomic<bool>& stopping) {
    auto started = std::chrono::steady_clock::now();
    uint64_t before = disk_usage(options.directory);
    {
      std::shared_lock lock(db_mutex);
      if (!db || failed.load()) return Reclaimer::Outcome::deferred;
      std::vector<rdb::ColumnFamilyHandle*> all;
      for (const FamilyHandle& handle : families.handles) all.push_back(handle.get());
      Status s = reclaim_space(*db, all, families[kBodies], stopping);
      if (stopping.load()) return Reclaimer::Outcome::deferred;
      if (!s) {
        reclaim_failures.fetch_add(1, std::memory_order_relaxed);
        report(SpoolEvent::Kind::reclaim_failed, s.error());
        return Reclaimer::Outcome::failed;
      }
    }
    auto took = std::chrono::steady_clock::now() - started;
    uint64_t after = settled_disk_usage(options.directory, stopping);
    reclaims.fetch_add(1, std::memory_order_relaxed);
    if (before > after) reclaimed_bytes.fetch_add(before - after, std::memory_order_relaxed);
    SpoolEvent event{SpoolEvent::Kind::reclaimed, {}};
    event.bytes_before = before;
    event.bytes_after = after;
    event.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
    if (options.on_event) options.on_event(event);
    return Reclaimer::Outcome::reclaimed;
  }

  Result<size_t> recover();
};

// Runs before any writer traffic, so it reads and writes the DB directly. It
// is idempotent: a crash halfway through recovery is recovered the same way.
Result<size_t> Spool::Impl::recover() {
  const int64_t now = now_us();
  rdb::WriteBatch batch;
  size_t requeued = 0;
  auto failed = [](const char* what, const rdb::Status& s) { return Result<size_t>(rocksdb_error(what, s)); };
  // What recover() makes of an envelope: messages that were being delivered
  // when the process stopped go back to incoming, due now.
  auto recovered = [now](Envelope env) {
    if (env.queue == QueueName::active) {
      env.queue = QueueName::incoming;
      env.next_attempt_us = now;
    }
    return env;
  };

  // Envelopes: requeue `active`, and restore any missing schedule entry.
  {
    std::unique_ptr<rdb::Iterator> it(db->NewIterator(rdb::ReadOptions(), families[kEnvelopes]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::optional<Envelope> env = decode_envelope(view(it->value()));
      if (!env) continue;  // unreadable: left in place rather than destroyed
      Envelope after = recovered(*env);
      if (after != *env) {
        batch.Delete(families[kSchedule], schedule_key(*env));
        batch.Put(families[kEnvelopes], after.id, encode(after));
        batch.Put(families[kSchedule], schedule_key(after), rdb::Slice());
        ++requeued;
        continue;
      }
      std::string ignored;
      rdb::Status s = db->Get(rdb::ReadOptions(), families[kSchedule], schedule_key(*env), &ignored);
      if (s.IsNotFound()) {
        batch.Put(families[kSchedule], schedule_key(*env), rdb::Slice());
      } else if (!s.ok()) {
        return failed("recover: reading the schedule", s);
      }
    }
    if (!it->status().ok()) return failed("recover: scanning envelopes", it->status());
  }

  // Schedule entries must name an envelope that is in that queue, due then.
  {
    std::unique_ptr<rdb::Iterator> it(db->NewIterator(rdb::ReadOptions(), families[kSchedule]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::optional<ScheduleEntry> entry = parse_schedule_key(view(it->key()));
      bool keep = false;
      if (entry) {
        auto bytes = read_envelope_bytes(families, rdb::ReadOptions(), std::string(entry->id));
        if (!bytes.ok()) return Error{"recover: " + bytes.error()};
        std::optional<Envelope> env = *bytes ? decode_envelope(**bytes) : std::nullopt;
        if (env) {
          Envelope after = recovered(std::move(*env));
          keep = after.queue == entry->queue && after.next_attempt_us == entry->due_us;
        }
      }
      if (!keep) batch.Delete(families[kSchedule], it->key());
    }
    if (!it->status().ok()) return failed("recover: scanning the schedule", it->status());
  }

  // Body chunks need an envelope that counts them. Chunks of one message are
  // adjacent, so each envelope is read once.
  {
    std::unique_ptr<rdb::Iterator> it(db->NewIterator(rdb::ReadOptions(), families[kBodies]));
    std::string owner_id;
    std::optional<uint64_t> owner_chunks;  // nullopt: no envelope
    bool owner_unreadable = false;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = view(it->key());
      if (key.size() <= kChunkIndexBytes) {
        batch.Delete(families[kBodies], it->key());
        continue;
      }
      std::string_view id = key.substr(0, key.size() - kChunkIndexBytes);
      uint64_t index = read_big_endian(key.substr(key.size() - kChunkIndexBytes));
      if (id != owner_id) {
        owner_id = std::string(id);
        auto bytes = read_envelope_bytes(families, rdb::ReadOptions(), owner_id);
        if (!bytes.ok()) return Error{"recover: " + bytes.error()};
        std::optional<Envelope> env = *bytes ? decode_envelope(**bytes) : std::nullopt;
        owner_unreadable = *bytes && !env;
        owner_chunks = env ? std::optional<uint64_t>(env->body_chunks) : std::nullopt;
      }
      // The chunks of an unreadable envelope are kept: it may yet be repaired.
      if (!owner_unreadable && (!owner_chunks || index >= *owner_chunks)) {
        batch.Delete(families[kBodies], it->key());
      }
    }
    if (!it->status().ok()) return failed("recover: scanning bodies", it->status());
  }

  if (!add_finished_purge(batch, now)) return Error{"recover: purging the finished log failed"};

  if (batch.Count() > 0) {
    rdb::WriteOptions wo;
    wo.sync = true;
    rdb::Status s = db->Write(wo, &batch);
    if (!s.ok()) return failed("recover: writing", s);
  }
  if (Status counted = count_queues(); !counted) return Error{"recover: " + counted.error()};
  return requeued;
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<Spool>> Spool::open(const SpoolOptions& options) {
  if (options.directory.empty()) return Error{"spool directory not set"};
  std::error_code ec;
  std::filesystem::create_directories(options.directory, ec);
  if (ec) return Error{"creating spool directory " + options.directory + ": " + ec.message()};

  auto impl = std::make_unique<Impl>(options);
  if (Status opened = impl->open_db(); !opened) return Error{opened.error()};
  impl->listener->impl.store(impl.get());
  impl->measure_free_space();
  if (Status format = impl->check_format(); !format) return Error{format.error()};
  if (Status counted = impl->count_queues(); !counted) return Error{counted.error()};

  Impl* reclaim_impl = impl.get();
  auto reclaimer =
      Reclaimer::start([reclaim_impl](std::atomic<bool>& stopping) { return reclaim_impl->reclaim(stopping); });
  if (!reclaimer.ok()) return Error{reclaimer.error()};
  impl->reclaimer = std::move(*reclaimer);

  try {
    Impl* writer_impl = impl.get();
    impl->writer = std::thread([writer_impl] {
      name_this_thread("tern-spool");
      skip_perf_counters();
      writer_impl->run_writer();
    });
  } catch (const std::system_error& e) {
    return Error{std::string("starting the spool writer: ") + e.what()};
  }
  // The constructor is private, so make_unique cannot reach it; the pointer is
  // owned from the moment it exists.
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Spool::~Spool() = default;

void Spool::append_chunk(std::string id, uint32_t index, std::string data, Done done) {
  impl_->submit(AppendChunkOp{std::move(id), index, std::move(data)}, std::move(done));
}

void Spool::commit(Envelope env, std::optional<std::string> last_chunk, Done done) {
  impl_->submit(CommitOp{std::move(env), std::move(last_chunk)}, std::move(done));
}

void Spool::discard(std::string id, uint32_t chunks, Done done) {
  impl_->submit(DiscardOp{std::move(id), chunks}, std::move(done));
}

void Spool::move(std::string id, QueueName to, int64_t due_us, Done done) {
  impl_->submit(MoveOp{std::move(id), to, due_us}, std::move(done));
}

void Spool::claim(std::string id, Done done) {
  impl_->submit(MoveOp{std::move(id), QueueName::active, 0, false}, std::move(done));
}

void Spool::update(Envelope env, Done done) {
  impl_->submit(UpdateOp{std::move(env)}, std::move(done));
}

void Spool::remove(std::string id, std::string reason, Done done) {
  impl_->submit(RemoveOp{std::move(id), std::move(reason)}, std::move(done));
}

Status Spool::move_sync(const std::string& id, QueueName to, int64_t due_us) {
  return impl_->wait_for([&](Done done) { move(id, to, due_us, std::move(done)); });
}

Status Spool::remove_sync(const std::string& id, const std::string& reason) {
  return impl_->wait_for([&](Done done) { remove(id, reason, std::move(done)); });
}

std::vector<Envelope> Spool::list() const {
  std::vector<Envelope> out;
  each([&out](const Envelope& env) { out.push_back(env); });
  return out;
}

void Spool::each(const std::function<void(const Envelope&)>& visit) const {
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return;
  std::unique_ptr<rdb::Iterator> it(impl_->db->NewIterator(rdb::ReadOptions(), impl_->families[kEnvelopes]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (std::optional<Envelope> env = decode_envelope(view(it->value()))) visit(*env);
  }
}

std::optional<Envelope> Spool::get(const std::string& id) const {
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return std::nullopt;
  auto env = read_envelope(impl_->families, rdb::ReadOptions(), id);
  if (!env.ok()) return std::nullopt;
  return std::move(*env);
}

namespace {

// The `chunks` chunks of message `id`, read with `ro` (one snapshot for all).
Result<std::string> read_chunks(rdb::DB& db, const Families& fam, const rdb::ReadOptions& ro,
                                const std::string& id, uint32_t chunks, uint64_t size) {
  std::string body;
  body.reserve(size);
  rdb::PinnableSlice chunk;
  for (uint32_t i = 0; i < chunks; ++i) {
    chunk.Reset();
    rdb::Status s = db.Get(ro, fam[kBodies], chunk_key(id, i), &chunk);
    if (s.IsNotFound()) {
      return Error{"read_body: chunk " + std::to_string(i) + " of message " + id + " is missing"};
    }
    if (!s.ok()) return rocksdb_error("read_body: reading chunk of " + id, s);
    body.append(chunk.data(), chunk.size());
  }
  return body;
}

}  // namespace

Result<std::string> Spool::read_body(const std::string& id) const {
  skip_perf_counters();
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return Error{"read_body: the spool is not open (recovering from a write error)"};
  // One snapshot for the envelope and all its chunks: a concurrent remove
  // cannot leave us with half a body.
  rdb::ManagedSnapshot snapshot(impl_->db.get());
  rdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  auto env = read_envelope(impl_->families, ro, id);
  if (!env.ok()) return Error{env.error()};
  if (!*env) return no_such_message("read_body", id);
  return read_chunks(*impl_->db, impl_->families, ro, id, (*env)->body_chunks, (*env)->body_size);
}

Result<std::string> Spool::read_body(const std::string& id, uint32_t body_chunks, uint64_t body_size) const {
  skip_perf_counters();
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return Error{"read_body: the spool is not open (recovering from a write error)"};
  // A body is written once and removed as a whole: one chunk needs no
  // snapshot, several do (a concurrent remove must not leave half a body).
  std::optional<rdb::ManagedSnapshot> snapshot;
  rdb::ReadOptions ro;
  if (body_chunks > 1) ro.snapshot = snapshot.emplace(impl_->db.get()).snapshot();
  return read_chunks(*impl_->db, impl_->families, ro, id, body_chunks, body_size);
}

std::vector<std::optional<std::string>> Spool::read_small_bodies(const std::vector<Envelope>& envelopes,
                                                                 uint64_t max_bytes) const {
  skip_perf_counters();
  std::vector<std::optional<std::string>> bodies(envelopes.size());
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return bodies;
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (envelopes[i].body_chunks != 1 || envelopes[i].body_size > max_bytes) continue;
    // One chunk each: no snapshot needed (see read_body). A failed read
    // leaves it to the read at first use, which reports the error.
    Result<std::string> body =
        read_chunks(*impl_->db, impl_->families, rdb::ReadOptions(), envelopes[i].id, 1, envelopes[i].body_size);
    if (body) bodies[i].emplace(std::move(body.value()));
  }
  return bodies;
}

std::vector<Envelope> Spool::due(QueueName q, int64_t now_us, size_t limit) const {
  skip_perf_counters();
  std::vector<Envelope> out;
  if (limit == 0) return out;
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return out;
  std::lock_guard scan_lock(impl_->scan_mutex);
  const size_t slot = static_cast<size_t>(q);
  SchedulePosition start;
  {
    std::lock_guard start_lock(impl_->scan_start_mutex);
    start = impl_->scan_start[slot];
    impl_->put_during_scan[slot].reset();
  }
  rdb::ManagedSnapshot snapshot(impl_->db.get());
  rdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  // Bounds keep the scan (and the tombstones it skips) inside this queue's
  // due entries, from where live ones may begin.
  const bool to_the_end = now_us == std::numeric_limits<int64_t>::max();
  std::string lower = schedule_key(q, start.due_us, start.id);
  std::string upper = to_the_end ? std::string(1, static_cast<char>(static_cast<uint8_t>(q) + 1))
                                 : schedule_key(q, now_us + 1, {});
  if (lower >= upper) return out;
  rdb::Slice lower_bound(lower);
  rdb::Slice upper_bound(upper);
  ro.iterate_lower_bound = &lower_bound;
  ro.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rdb::Iterator> it(impl_->db->NewIterator(ro, impl_->families[kSchedule]));
  for (it->Seek(lower_bound); it->Valid() && out.size() < limit; it->Next()) {
    std::optional<ScheduleEntry> entry = parse_schedule_key(view(it->key()));
    if (!entry) continue;
    auto env = read_envelope(impl_->families, ro, std::string(entry->id));
    // The writer moves entry and envelope together; a mismatch would be
    // damage, which recover() repairs, so skip it rather than return it.
    if (!env.ok() || !*env || (*env)->queue != q || (*env)->next_attempt_us != entry->due_us) continue;
    out.push_back(std::move(**env));
  }
  if (!it->status().ok()) return out;
  // Nothing live before the first entry returned; with none, nothing up to now.
  SchedulePosition next_start = !out.empty() ? SchedulePosition{out.front().next_attempt_us, out.front().id}
                                : SchedulePosition{to_the_end ? now_us : now_us + 1, {}};
  std::lock_guard start_lock(impl_->scan_start_mutex);
  move_back_to(next_start, impl_->put_during_scan[slot]);
  if (impl_->scan_start[slot] < next_start) impl_->scan_start[slot] = std::move(next_start);
  return out;
}

std::vector<FinishedRecord> Spool::finished() const {
  std::vector<FinishedRecord> out;
  std::shared_lock lock(impl_->db_mutex);
  if (!impl_->db) return out;
  std::unique_ptr<rdb::Iterator> it(impl_->db->NewIterator(rdb::ReadOptions(), impl_->families[kFinished]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (auto record = parse_finished(view(it->key()), view(it->value()))) out.push_back(std::move(*record));
  }
  return out;
}

Result<size_t> Spool::recover() {
  Result<size_t> requeued = impl_->recover();
  impl_->envelopes_changed_elsewhere.store(true);
  impl_->scan_from_the_beginning();
  return requeued;
}

SpoolStats Spool::stats() const {
  SpoolStats s;
  s.commits = impl_->commits.load(std::memory_order_relaxed);
  s.batches = impl_->batches.load(std::memory_order_relaxed);
  s.wal_syncs = impl_->wal_syncs.load(std::memory_order_relaxed);
  s.chunk_writes = impl_->chunk_writes.load(std::memory_order_relaxed);
  s.reclaims = impl_->reclaims.load(std::memory_order_relaxed);
  s.reclaim_failures = impl_->reclaim_failures.load(std::memory_order_relaxed);
  s.reclaimed_bytes = impl_->reclaimed_bytes.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kAllQueues.size(); ++i) {
    int64_t n = impl_->queued[static_cast<size_t>(kAllQueues[i])].load(std::memory_order_relaxed);
    s.queued[i] = static_cast<uint64_t>(std::max<int64_t>(n, 0));
  }
  std::shared_lock lock(impl_->db_mutex);
  if (impl_->db) {
    impl_->db->GetIntProperty(impl_->families[kFinished], rdb::DB::Properties::kTotalSstFilesSize,
                              &s.finished_log_bytes);
  }
  return s;
}

const std::string& Spool::directory() const {
  return impl_->options.directory;
}

uint64_t Spool::free_bytes() const {
  return impl_->free_space.load();
}

void Spool::measure_free_space() {
  impl_->measure_free_space();
}

bool Spool::writable() const {
  return !impl_->failed.load();
}

uint64_t Spool::write_reserve_bytes() {
  // RocksDB preallocates each new WAL file at 1.1 times the largest write
  // buffer, and a flush of the bodies' memtable writes up to its size in blob
  // files, plus an SST of a small family; seen together as drops of 38-50 MB.
  return kBodiesWriteBuffer + kBodiesWriteBuffer / 10 + kBodiesWriteBuffer + kSmallWriteBuffer;
}

}  // namespace tern::queue
