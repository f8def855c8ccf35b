#include "mta/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "queue/thread_name.h"

namespace tern::log {
namespace {

// Lines waiting for the writer beyond this are dropped (and counted), so a
// stuck disk or a blocked stderr pipe cannot grow memory without bound.
constexpr size_t kMaxQueuedLines = 100'000;
// How long the writer lets lines gather after the first one wakes it.
constexpr std::chrono::milliseconds kGatherTime{5};

enum class Format { kv, json };
enum class Target { stderr_fd, file, syslog };

constexpr char kHex[] = "0123456789abcdef";

std::string timestamp_now() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  // Formatting the date costs more than the rest of a line; it changes once
  // a second, so each thread keeps the last one it formatted.
  thread_local time_t formatted_second = std::numeric_limits<time_t>::min();
  thread_local char seconds[32];
  thread_local size_t seconds_length = 0;
  if (now.tv_sec != formatted_second) {
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    seconds_length = strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &utc);
    formatted_second = now.tv_sec;
  }
  std::string stamp;
  stamp.reserve(seconds_length + 8);
  stamp.append(seconds, seconds_length);
  char micros[7] = "000000";
  for (long rest = now.tv_nsec / 1000, i = 5; i >= 0; rest /= 10, --i) micros[i] = char('0' + rest % 10);
  stamp += '.';
  stamp += micros;
  stamp += 'Z';
  return stamp;
}

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

void append_kv_value(std::string& out, std::string_view value) {
  bool needs_quotes = value.empty();
  for (unsigned char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || is_control(c)) {
      needs_quotes = true;
      break;
    }
  }
  if (!needs_quotes) {
    out += value;
    return;
  }
  out += '"';
  for (unsigned char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (is_control(c)) {
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char second_min = 0x80, second_max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) second_min = 0xa0;
    if (lead == 0xed) second_max = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) second_min = 0x90;
    if (lead == 0xf4) second_max = 0x8f;
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  if (byte(i + 1) < second_min || byte(i + 1) > second_max) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return length;
}

// Values come from clients (EHLO names, addresses) and may hold any bytes;
// invalid UTF-8 becomes U+FFFD so every line stays valid JSON.
void append_json_string(std::string& out, std::string_view value) {
  out += '"';
  for (size_t i = 0; i < value.size();) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c >= 0x80) {
      const size_t length = utf8_sequence_length(value, i);
      if (length == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(value.substr(i, length));
        i += length;
      }
      continue;
    }
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += char(c);
    }
    ++i;
  }
  out += '"';
}

// Writes all of `data`; gives up on an error other than EINTR, since there
// is nowhere left to report a failing log.
void write_fully(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data.remove_prefix(size_t(n));
  }
}

class Logger {
 public:
  ~Logger() { shutdown(); }

  Status init(const Options& options) {
    Format format;
    if (options.format == "kv")
      format = Format::kv;
    else if (options.format == "json")
      format = Format::json;
    else
      return Error{"log format must be \"kv\" or \"json\", not \"" + options.format + "\""};

    Target target;
    int fd = STDERR_FILENO;
    if (options.target == "stderr") {
      target = Target::stderr_fd;
    } else if (options.target == "syslog") {
      target = Target::syslog;
    } else if (options.target == "file") {
      if (options.file.empty()) return Error{"log target \"file\" needs a file name"};
      fd = open(options.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
      if (fd < 0) return Error{"cannot open log file " + options.file + ": " + std::strerror(errno)};
      target = Target::file;
    } else {
      return Error{"log target must be \"stderr\", \"file\" or \"syslog\", not \"" + options.target + "\""};
    }

    // Re-initialising (configuration reload) flushes the old writer first.
    shutdown();
    std::lock_guard lock(lifecycle_mutex_);
    fd_ = fd;
    target_ = target;
    if (target == Target::syslog) openlog("ternd", LOG_PID, LOG_MAIL);
    format_.store(format);
    with_time_.store(target != Target::syslog);  // syslog stamps lines itself
    {
      std::lock_guard queue_lock(queue_mutex_);
      stopping_ = false;
      accepting_ = true;
    }
    // The writer inherits the mask: with every signal blocked it never takes
    // a SIGTERM or SIGHUP meant for the thread that waits for them.
    sigset_t all_signals, previous;
    sigfillset(&all_signals);
    pthread_sigmask(SIG_SETMASK, &all_signals, &previous);
    writer_ = std::thread([this] {
      name_this_thread("tern-log");
      run_writer();
    });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return {};
  }

  void shutdown() {
    std::lock_guard lock(lifecycle_mutex_);
    if (!writer_.joinable()) return;
    {
      std::lock_guard queue_lock(queue_mutex_);
      stopping_ = true;
      accepting_ = false;
    }
    wake_writer_.notify_one();
    writer_.join();
    if (target_ == Target::file) close(fd_);
    if (target_ == Target::syslog) closelog();
    fd_ = STDERR_FILENO;
    target_ = Target::stderr_fd;
    with_time_.store(true);
  }

  void event(std::string_view code, std::initializer_list<Field> fields) {
    const std::string time = with_time_.load() ? timestamp_now() : std::string();
    std::string line = format_.load() == Format::json ? format_json(time, code, fields) : format_kv(time, code, fields);
    {
      std::lock_guard lock(queue_mutex_);
      if (accepting_) {
        if (queued_.size() >= kMaxQueuedLines) {
          ++dropped_;
          return;
        }
        queued_.push_back(std::move(line));
        // Only a writer waiting for lines needs waking; one that is writing
        // or gathering takes this line with the others.
        if (writer_waiting_) {
          writer_waiting_ = false;
          wake_writer_.notify_one();
        }
        return;
      }
    }
    // No writer thread: write now, one write() per line so concurrent
    // callers never interleave within a line.
    line += '\n';
    write_fully(STDERR_FILENO, line);
  }

 private:
  void run_writer() {
    std::vector<std::string> batch;
    std::string buffer;
    for (;;) {
      size_t dropped = 0;
      bool stopping = false;
      {
        std::unique_lock lock(queue_mutex_);
        if (!stopping_ && queued_.empty()) {
          writer_waiting_ = true;
          wake_writer_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
          writer_waiting_ = false;
          // Lines come in bursts (several per message): gathering them for a
          // moment turns a wake-up and a write() per line into one per batch.
          wake_writer_.wait_for(lock, kGatherTime, [&] { return stopping_; });
        }
        batch.swap(queued_);
        dropped = dropped_;
        dropped_ = 0;
        stopping = stopping_;
      }
      if (dropped != 0) {
        const std::string time = with_time_.load() ? timestamp_now() : std::string();
        batch.push_back(format_.load() == Format::json ? format_json(time, "log_dropped", {{"count", dropped}})
                                                       : format_kv(time, "log_dropped", {{"count", dropped}}));
      }
      write_batch(batch, buffer);
      batch.clear();
      // stopping_ was read together with the queue, so nothing queued before
      // shutdown() is left behind.
      if (stopping) return;
    }
  }

  void write_batch(const std::vector<std::string>& batch, std::string& buffer) {
    if (batch.empty()) return;
    if (target_ == Target::syslog) {
      for (const auto& line : batch) ::syslog(LOG_INFO, "%s", line.c_str());
      return;
    }
    buffer.clear();
    for (const auto& line : batch) {
      buffer += line;
      buffer += '\n';
    }
    write_fully(fd_, buffer);
  }

  // Serialises init() and shutdown(); the writer's fd and target change only
  // while no writer runs.
  std::mutex lifecycle_mutex_;
  std::thread writer_;
  int fd_ = STDERR_FILENO;
  Target target_ = Target::stderr_fd;
  std::atomic<Format> format_{Format::kv};
  std::atomic<bool> with_time_{true};

  std::mutex queue_mutex_;
  std::condition_variable wake_writer_;
  std::vector<std::string> queued_;
  bool writer_waiting_ = false;  // the writer sleeps until a line comes
  size_t dropped_ = 0;
  bool accepting_ = false;
  bool stopping_ = false;
};

Logger& logger() {
  static Logger instance;
  return instance;
}

}  // namespace

Status init(const Options& options) {
  return logger().init(options);
}

void shutdown() {
  logger().shutdown();
}

void event(std::string_view code, std::initializer_list<Field> fields) {
  logger().event(code, fields);
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

std::string format_kv(std::string_view time, std::string_view code, std::initializer_list<Field> fields) {
  std::string line;
  if (!time.empty()) {
    line += time;
    line += ' ';
  }
  line += "event=";
  append_kv_value(line, code);
  for (const auto& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    append_kv_value(line, field.value);
  }
  return line;
}

std::string format_json(std::string_view time, std::string_view code, std::initializer_list<Field> fields) {
  std::string line = "{";
  if (!time.empty()) {
    line += "\"time\":";
    append_json_string(line, time);
    line += ',';
  }
  line += "\"event\":";
  append_json_string(line, code);
  for (const auto& field : fields) {
    line += ',';
    append_json_string(line, field.key);
    line += ':';
    append_json_string(line, field.value);
  }
  line += '}';
  return line;
}

}  // namespace tern::log
