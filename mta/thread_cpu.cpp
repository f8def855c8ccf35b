#include "mta/thread_cpu.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace tern {

namespace {

bool parse_number(std::string_view text, uint64_t& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

bool parse_task_stat(std::string_view line, std::string& name, uint64_t& user_ticks, uint64_t& sys_ticks) {
  // "TID (COMM) STATE ..." where COMM may itself hold blanks and parentheses:
  // it ends at the last ')'.
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return false;
  name.assign(line.substr(open + 1, close - open - 1));
  std::replace_if(name.begin(), name.end(), [](char c) { return c == ' ' || c == '\t'; }, '_');
  // The fields after the name, from field 3 (state) on; utime and stime are
  // fields 14 and 15 (proc(5)).
  std::vector<std::string_view> fields;
  std::string_view rest = line.substr(close + 1);
  while (!rest.empty()) {
    const size_t start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const size_t end = std::min(rest.find(' '), rest.size());
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end);
  }
  constexpr size_t kUtime = 14 - 3;
  constexpr size_t kStime = 15 - 3;
  if (fields.size() <= kStime) return false;
  return parse_number(fields[kUtime], user_ticks) && parse_number(fields[kStime], sys_ticks);
}

std::vector<ThreadCpu> thread_cpu_by_name() {
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  const uint64_t hz = ticks_per_second > 0 ? static_cast<uint64_t>(ticks_per_second) : 100;
  std::map<std::string, ThreadCpu> by_name;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;  // the thread has ended
    std::string name;
    uint64_t user = 0;
    uint64_t sys = 0;
    if (!parse_task_stat(line, name, user, sys)) continue;
    ThreadCpu& entry = by_name[name];
    entry.name = name;
    ++entry.threads;
    entry.user_ms += user * 1000 / hz;
    entry.sys_ms += sys * 1000 / hz;
  }
  std::vector<ThreadCpu> out;
  out.reserve(by_name.size());
  for (auto& [name, entry] : by_name) out.push_back(std::move(entry));
  return out;
}

}  // namespace tern
