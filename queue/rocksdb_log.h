// RocksDB's own log (its "LOG" file) routed to a callback, warnings and
// errors only. Every RocksDB database of ternd's uses this instead of the
// LOG file: that file sits on the spool's filesystem, and once a write to
// it has failed with ENOSPC, RocksDB's next log line aborts the process (an
// assertion in Debian's build of RocksDB 7.8; a flush job's log line was
// seen to SIGABRT ternd when the disk filled).
#pragma once
#include <rocksdb/env.h>

#include <functional>
#include <memory>
#include <string>

namespace tern::queue {

std::shared_ptr<rocksdb::Logger> log_to(std::function<void(const std::string& line)> sink);

}  // namespace tern::queue
