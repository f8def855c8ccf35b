// Open files: every connection, in or out, is a descriptor, and so are the
// spool's RocksDB files, the rings, the listeners, the log and the DNS
// sockets. With the common soft limit of 1024 the configured connection
// limits (20,000 SMTP by default) cannot be reached: accepts fail with
// EMFILE instead. At start ternd raises the soft limit to the hard one
// (no privilege needed) and, when the configured limits still do not fit,
// lowers them so that they do and says so (event fd_limit).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mta/config.h"
#include "queue/result.h"

namespace tern {

struct FileLimit {
  uint64_t soft = 0;
  uint64_t hard = 0;
};

// Sets RLIMIT_NOFILE's soft limit to its hard limit; returns the limits in
// force afterwards. Fails only if the limits cannot be read; when raising
// fails the old soft limit stays and `raise_error` says why.
Result<FileLimit> raise_file_limit(std::string* raise_error);

// Descriptors needed besides the connections themselves: `workers` loops
// with `listeners` listening sockets each, the spool, the POP window, the
// log, the control socket, DNS sockets, a little slack.
uint64_t fd_reserve(const Config& config, unsigned workers, size_t listeners);

// The connections the configuration allows at once: SMTP, POP3 (when it
// listens) and outbound delivery (when enabled).
uint64_t fd_connections(const Config& config);

struct FdFit {
  uint64_t needed = 0;  // reserve + connections, as configured
  // What was lowered, e.g. "smtp.max_connections 20000->187"; empty: it fit.
  std::vector<std::string> lowered;
};

// Lowers the connection limits in `config`, each in proportion (none below
// 1), until reserve + connections fits in `limit` descriptors.
FdFit fit_fd_budget(Config& config, unsigned workers, size_t listeners, uint64_t limit);

}  // namespace tern
