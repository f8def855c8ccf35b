#include "mta/fd_budget.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace tern {

namespace {

// Estimates, generous on purpose: running short costs refused
// connections, a few spare descriptors cost nothing.
// stdin/out/err, the log file, the control socket and one ternctl client,
// the offload threads' and the storage guard's descriptors, a Maildir file
// being written, and room for connections that are accepted only to be
// told 421 (over a limit) and closed.
constexpr uint64_t kProcess = 32;
// The spool's RocksDB: table and blob files, WAL, MANIFEST, LOCK (its
// max_open_files is unlimited; a spool needs a few dozen files, not hundreds).
constexpr uint64_t kSpool = 128;
// The POP window's RocksDB (max_open_files = 16) and its WAL, MANIFEST, LOCK.
constexpr uint64_t kPopWindow = 24;
// One loop: its ring and its eventfd.
constexpr uint64_t kLoop = 2;
// One c-ares resolver: a UDP socket per server and TCP for truncated answers.
constexpr uint64_t kResolver = 4;

}  // namespace

Result<FileLimit> raise_file_limit(std::string* raise_error) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return Error{std::string("getrlimit(RLIMIT_NOFILE): ") + strerror(errno)};
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised{rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl = raised;
    else
      *raise_error = std::string("setrlimit(RLIMIT_NOFILE): ") + strerror(errno);
  }
  return FileLimit{static_cast<uint64_t>(rl.rlim_cur), static_cast<uint64_t>(rl.rlim_max)};
}

uint64_t fd_reserve(const Config& config, unsigned workers, size_t listeners) {
  // Each worker: its loop, its listeners, its DNSBL resolver.
  uint64_t reserve = kProcess + kSpool + kPopWindow + uint64_t{workers} * (kLoop + listeners + kResolver);
  // The delivery engine: each of its loops, with its resolver.
  if (config.delivery.enabled) reserve += uint64_t{delivery_loop_count(config, workers)} * (kLoop + kResolver);
  return reserve;
}

uint64_t fd_connections(const Config& config) {
  uint64_t n = config.smtp.max_connections;
  if (!config.pop3.listen.empty() || !config.pop3.listen_tls.empty()) n += config.pop3.max_connections;
  if (config.delivery.enabled) n += config.delivery.max_connections;
  return n;
}

FdFit fit_fd_budget(Config& config, unsigned workers, size_t listeners, uint64_t limit) {
  const uint64_t reserve = fd_reserve(config, workers, listeners);
  const uint64_t connections = fd_connections(config);
  FdFit fit{reserve + connections, {}};
  if (fit.needed <= limit) return fit;
  const uint64_t room = limit > reserve ? limit - reserve : 0;
  // Each limit keeps its share of the room: rounding down keeps the sum
  // within it, except where the floor of 1 applies (a limit of 0 would
  // refuse every connection; a limit too low to be useful is said loudly).
  auto lower = [&](const char* key, unsigned& value) {
    const uint64_t share = uint64_t{value} * room / connections;
    const unsigned next = share < 1 ? 1u : static_cast<unsigned>(share);
    if (next >= value) return;
    fit.lowered.push_back(std::string(key) + " " + std::to_string(value) + "->" + std::to_string(next));
    value = next;
  };
  lower("smtp.max_connections", config.smtp.max_connections);
  if (!config.pop3.listen.empty() || !config.pop3.listen_tls.empty())
    lower("pop3.max_connections", config.pop3.max_connections);
  if (config.delivery.enabled) lower("delivery.max_connections", config.delivery.max_connections);
  return fit;
}

}  // namespace tern
