// The RocksDB spool: message bodies, envelopes and a time-ordered schedule
// index per named queue. Knows nothing of SMTP.
//
// Every mutation goes through one writer thread, which merges all requests it
// finds waiting into a single WriteBatch and writes it with at most one WAL
// sync (group commit): concurrent sessions share fsyncs, and no two writers
// ever race on the same envelope. `done` callbacks run on the writer thread;
// callers on an event loop post them back to their loop.
//
// Reads (list/get/read_body/due) are synchronous RocksDB reads, safe from any
// thread but not meant for an event-loop thread.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "queue/envelope.h"
#include "queue/result.h"

namespace tern::queue {

// What the spool reports for the daemon's log: RocksDB failures and
// recoveries, and the reclaimer's passes (queue/reclaim.h).
struct SpoolEvent {
  enum class Kind {
    write_failed,      // a write batch failed; writes are refused until recovery
    background_error,  // a flush or compaction failed (RocksDB's own threads)
    recovered,         // writes work again
    recovery_failed,   // an attempt to recover failed; tried again later
    rocksdb_warning,   // a warning or error line from RocksDB's own log
    reclaimed,         // a pass gave back the space of deleted bodies
    reclaim_failed,    // a pass failed; tried again later
  };
  Kind kind;
  std::string error;   // RocksDB's status or log text (empty for `recovered`)
  uint64_t requests = 0;  // write_failed: requests in the failed batch
  // reclaimed: the spool directory's disk usage around the pass, and its length.
  uint64_t bytes_before = 0;
  uint64_t bytes_after = 0;
  int64_t duration_us = 0;
};

struct SpoolOptions {
  std::string directory;              // created if missing
  // How long the log of finished messages is kept; 0: no log is written
  // (and what an earlier run left is purged).
  int64_t finished_retention_us = 0;
  // Intake (body chunks, commits) is refused while less than this would be
  // left free on the spool's filesystem; 0 turns the check off. The daemon
  // passes write_reserve_bytes().
  uint64_t reserve_bytes = 0;
  // Called from the writer thread or RocksDB's threads; must not block long.
  std::function<void(const SpoolEvent&)> on_event = nullptr;
};

struct SpoolStats {
  uint64_t commits = 0;           // messages committed (acknowledged)
  uint64_t batches = 0;           // WriteBatches written
  uint64_t wal_syncs = 0;         // WAL syncs requested
  uint64_t chunk_writes = 0;      // unsynced body chunk writes
  uint64_t reclaims = 0;          // reclaimer passes that completed
  uint64_t reclaim_failures = 0;  // reclaimer passes that failed
  uint64_t reclaimed_bytes = 0;   // disk usage given back by those passes
  // Messages per queue, in kAllQueues order: counted once at open() and
  // recover(), then kept by the writer as it commits, moves and removes.
  std::array<uint64_t, kAllQueues.size()> queued{};
  // The finished log's size on disk (its table files; RocksDB's estimate
  // until they are flushed and compacted).
  uint64_t finished_log_bytes = 0;
};

// One record of the finished-message log: what became of a message, kept
// for SpoolOptions::finished_retention_us.
struct FinishedRecord {
  std::string id;
  int64_t finished_us = 0;
  std::string reason;  // "deleted", "delivered", ...
  // The envelope cut down to id, sender, arrival, client address, Message-ID,
  // size, attempts, origin and, per recipient, its address, final state and
  // status code (and the remote reply of a failed one). Reception details,
  // DSN parameters and per-attempt diagnostics are in the event log.
  Envelope summary;
};

class Spool {
 public:
  using Done = std::function<void(Status)>;

  static Result<std::unique_ptr<Spool>> open(const SpoolOptions& options);
  ~Spool();  // drains pending requests, stops the writer thread, closes the DB
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // ---- asynchronous mutations (writer thread) ----
  // Store body chunk `index` of message `id`, not synced. A crash before the
  // commit leaves an orphan that recover() removes.
  void append_chunk(std::string id, uint32_t index, std::string data, Done done);
  // Store the last body chunk (index env.body_chunks - 1; may be empty when
  // body_chunks chunks were all appended already — then pass std::nullopt), the
  // envelope and its schedule entry (env.queue, env.next_attempt_us) in one
  // batch with a synced WAL. When `done` sees ok, the message is durable.
  void commit(Envelope env, std::optional<std::string> last_chunk, Done done);
  // Drop the chunks of a transaction that will not be committed.
  void discard(std::string id, uint32_t chunks, Done done);
  // Move a message to another queue with a new due time (schedule entry moved
  // in the same batch as the envelope). Synced.
  void move(std::string id, QueueName to, int64_t due_us, Done done);
  // Move a message to `active` for delivery, without a WAL sync of its own:
  // a claim lost in a crash only means the message is delivered again.
  void claim(std::string id, Done done);
  // Replace a message's envelope (same id; schedule entry follows env.queue
  // and env.next_attempt_us). Synced.
  void update(Envelope env, Done done);
  // Remove a message (body, envelope, schedule entry) and, when there is a
  // retention, add its summary to the finished log with `reason`. Synced.
  void remove(std::string id, std::string reason, Done done);

  // Blocking conveniences for non-loop threads (control socket, tests).
  Status move_sync(const std::string& id, QueueName to, int64_t due_us);
  Status remove_sync(const std::string& id, const std::string& reason);

  // ---- reads ----
  std::vector<Envelope> list() const;  // all queued messages, oldest first
  // The same messages in the same order, handed to `visit` one at a time
  // (under the spool's read lock: `visit` must not call the spool), so that
  // going through a large queue holds one envelope, not all of them.
  void each(const std::function<void(const Envelope&)>& visit) const;
  std::optional<Envelope> get(const std::string& id) const;
  Result<std::string> read_body(const std::string& id) const;
  // The same for a caller that holds the message's envelope (as due()
  // returned it): its body_chunks and body_size, so the envelope is not read
  // again. A message removed meanwhile reads as a missing chunk.
  Result<std::string> read_body(const std::string& id, uint32_t body_chunks, uint64_t body_size) const;
  // The bodies of the messages among `envelopes` (as due() returned them)
  // whose body is one chunk of at most `max_bytes`, in one call; nullopt for
  // the others and for a body that could not be read (read_body() tells
  // why). Same order as `envelopes`.
  std::vector<std::optional<std::string>> read_small_bodies(const std::vector<Envelope>& envelopes,
                                                            uint64_t max_bytes) const;
  // Messages of queue `q` due at or before `now_us`, earliest first, from the
  // schedule index (cost independent of the queue's length).
  std::vector<Envelope> due(QueueName q, int64_t now_us, size_t limit) const;
  std::vector<FinishedRecord> finished() const;

  // At start, before any session: every `active` message goes back to
  // `incoming`; orphan body chunks and schedule entries without an envelope
  // are removed; expired finished-log records are purged. Returns how many
  // messages were requeued.
  Result<size_t> recover();

  SpoolStats stats() const;
  const std::string& directory() const;

  // Free bytes on the spool's filesystem as last measured: by the writer
  // while mail arrives (every few milliseconds or megabytes), otherwise by
  // measure_free_space().
  uint64_t free_bytes() const;
  // Measures now (statvfs: may block on a sick disk, so not on a loop thread).
  void measure_free_space();
  // False from a failed write (or a background error that stops writes)
  // until RocksDB has recovered; meanwhile every write fails at once
  // without touching RocksDB, and the writer retries recovery each second
  // once `reserve_bytes` are free again.
  bool writable() const;
  // What RocksDB may write in one step on its own with the spool's options:
  // a new WAL file's preallocation plus a memtable flush of message bodies.
  // Intake keeps at least this free so that such a step never hits ENOSPC.
  static uint64_t write_reserve_bytes();

 private:
  struct Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::queue
