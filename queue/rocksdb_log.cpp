#include "queue/rocksdb_log.h"

#include <cstdarg>
#include <cstdio>

namespace tern::queue {
namespace {

namespace rdb = rocksdb;

class LogToSink : public rdb::Logger {
 public:
  explicit LogToSink(std::function<void(const std::string&)> sink)
      : rdb::Logger(rdb::InfoLogLevel::WARN_LEVEL), sink_(std::move(sink)) {}
  using rdb::Logger::Logv;
  void Logv(const rdb::InfoLogLevel level, const char* format, va_list ap) override {
    // The header (the options dump at open) is not news for an operator.
    if (level < GetInfoLogLevel() || level == rdb::InfoLogLevel::HEADER_LEVEL || !sink_) return;
    char text[1024];
    vsnprintf(text, sizeof text, format, ap);
    sink_(text);
  }
  void LogHeader(const char*, va_list) override {}

 private:
  std::function<void(const std::string&)> sink_;
};

}  // namespace

std::shared_ptr<rocksdb::Logger> log_to(std::function<void(const std::string& line)> sink) {
  return std::make_shared<LogToSink>(std::move(sink));
}

}  // namespace tern::queue
