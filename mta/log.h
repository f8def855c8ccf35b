// The event log: one line per event, machine-parsable, written by a
// background thread so loop threads never block on it.
//   kv:   2026-11-22T21:55:42.123456Z event=received qid=... client=127.0.0.1 size=1024
//   json: {"time":"2026-11-22T21:55:42.123456Z","event":"received","qid":"...",...}
// Values containing spaces, quotes or '=' are double-quoted (kv) with \" and \\ escapes.
#pragma once
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "queue/result.h"

namespace tern::log {

struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  template <typename N>
    requires std::is_arithmetic_v<N>
  Field(std::string_view k, N n) : key(k), value(std::to_string(n)) {}
};

struct Options {
  std::string format = "kv";      // "kv" or "json"
  std::string target = "stderr";  // "stderr", "file" or "syslog"
  std::string file;
};

// Starts the writer thread. Before init (and after shutdown) events go to
// stderr synchronously, so early start-up errors are never lost.
Status init(const Options& options);
// Flushes everything queued and stops the writer thread.
void shutdown();
// Thread-safe, non-blocking (appends to an in-memory queue).
void event(std::string_view code, std::initializer_list<Field> fields);

// A JSON string literal (quotes included) with RFC 8259 escaping.
std::string json_quote(std::string_view s);

// Formatting, exposed for tests.
std::string format_kv(std::string_view time, std::string_view code, std::initializer_list<Field> fields);
std::string format_json(std::string_view time, std::string_view code, std::initializer_list<Field> fields);

}  // namespace tern::log
