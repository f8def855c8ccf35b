#include "queue/queue_id.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <string_view>

namespace tern::queue {
namespace {

// Crockford's base 32: digits, then upper-case letters without I, L, O and U,
// which are easily misread. The alphabet is in ASCII order, so comparing two
// IDs byte by byte compares the numbers they encode.
constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static_assert(kAlphabet.size() == 32);

constexpr size_t kTimeChars = 11;  // 55 bits of microseconds: beyond the year 3000
constexpr size_t kSequenceChars = 5;
constexpr size_t kIdLength = kTimeChars + kSequenceChars;
constexpr uint64_t kSequenceSpace = uint64_t{1} << (5 * kSequenceChars);
constexpr uint64_t kTimeSpace = uint64_t{1} << (5 * kTimeChars);

int digit_value(char c) {
  // Binary search works because the alphabet is sorted.
  size_t lo = 0, hi = kAlphabet.size();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kAlphabet[mid] < c) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < kAlphabet.size() && kAlphabet[lo] == c ? static_cast<int>(lo) : -1;
}

void append_digits(std::string& out, uint64_t value, size_t digits) {
  for (size_t i = digits; i-- > 0;) {
    out.push_back(kAlphabet[(value >> (5 * i)) & 31]);
  }
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The time part and the sequence advance together so that IDs increase
// strictly, process-wide: the time never goes back (the clock may step back),
// and when the sequence wraps within one time value the time borrows the next
// microsecond instead of repeating or reordering. One 64-bit atomic cannot
// hold both (55 + 25 bits), so a mutex guards them; it is taken once per
// message and its critical section is a few instructions.
class Generator {
 public:
  Generator() {
    std::random_device entropy;
    // A random start keeps a process restarted within the same microsecond
    // (or after the clock stepped back) from reusing the previous one's IDs.
    sequence_ = std::uniform_int_distribution<uint64_t>(0, kSequenceSpace - 1)(entropy);
  }

  std::string next() {
    uint64_t time_part;
    uint64_t sequence_part;
    {
      std::lock_guard lock(mutex_);
      uint64_t now = static_cast<uint64_t>(std::max<int64_t>(now_us(), 0)) % kTimeSpace;
      sequence_ = (sequence_ + 1) % kSequenceSpace;
      if (now > time_) {
        time_ = now;
      } else if (sequence_ == 0) {
        ++time_;
      }
      time_part = time_;
      sequence_part = sequence_;
    }
    std::string id;
    id.reserve(kIdLength);
    append_digits(id, time_part, kTimeChars);
    append_digits(id, sequence_part, kSequenceChars);
    return id;
  }

 private:
  std::mutex mutex_;
  uint64_t time_ = 0;
  uint64_t sequence_ = 0;
};

}  // namespace

std::string new_queue_id() {
  static Generator generator;
  return generator.next();
}

bool is_queue_id(const std::string& s) {
  if (s.size() != kIdLength) return false;
  for (char c : s) {
    if (digit_value(c) < 0) return false;
  }
  return true;
}

int64_t queue_id_time_us(const std::string& id) {
  if (!is_queue_id(id)) return 0;
  uint64_t t = 0;
  for (size_t i = 0; i < kTimeChars; ++i) {
    t = (t << 5) | static_cast<uint64_t>(digit_value(id[i]));
  }
  return static_cast<int64_t>(t);
}

}  // namespace tern::queue
