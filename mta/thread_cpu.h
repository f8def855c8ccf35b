// CPU time of the process's threads, grouped by thread name, for
// `ternctl stats` (docs/operations.md lists the names).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tern {

struct ThreadCpu {
  std::string name;  // as in /proc/PID/task/TID/comm; blanks become '_'
  uint64_t threads = 0;  // threads with this name
  uint64_t user_ms = 0;
  uint64_t sys_ms = 0;
};

// One /proc/self/task/TID/stat line: the thread's name and CPU time in ticks;
// false when the line does not parse. Exposed for tests.
bool parse_task_stat(std::string_view line, std::string& name, uint64_t& user_ticks, uint64_t& sys_ticks);

// The live threads of this process from /proc/self/task, one entry per name,
// sorted by name. A thread that ends while it is read is left out.
std::vector<ThreadCpu> thread_cpu_by_name();

}  // namespace tern
