// A client connection on a loop: buffered line/byte input, buffered output,
// optional TLS. Every wait has a timeout; results say why a read ended.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "mta/io/loop.h"
#include "mta/io/net.h"
#include "mta/io/task.h"
#include "mta/io/tls.h"

namespace tern::io {

enum class IoStatus {
  ok,
  eof,       // the peer closed (or our read side was shut down)
  timeout,   // nothing arrived within the timeout
  error,     // socket or TLS error
  too_long,  // read_line: the line exceeded the limit (it was skipped)
};

class Connection {
 public:
  Connection(Loop& loop, UniqueFd fd);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const { return fd_.get(); }
  Loop& loop() { return loop_; }

  // One line ending in LF; *line gets it without the line end (CRLF or LF).
  // Lines longer than `max` octets (line end included) are skipped up to
  // their LF and reported as too_long, so memory stays bounded.
  // Pending output is flushed first when no complete line is buffered
  // (this is what makes PIPELINING work: replies go out in one write per batch).
  Task<IoStatus> read_line(std::string* line, size_t max, int64_t timeout_ms);
  // Receives at least one more byte into the input buffer.
  Task<IoStatus> fill(int64_t timeout_ms);
  std::string_view buffered() const { return std::string_view(in_).substr(in_pos_); }
  void consume(size_t n);
  // Drops everything buffered (after STARTTLS: pipelined plaintext is an injection).
  void discard_input();

  // Replies flushed by read_line() must be taken by the peer within this
  // (a client that pipelines and never reads must not hold us forever).
  void set_write_timeout(int64_t ms) { write_timeout_ms_ = ms; }
  void write(std::string_view s) { out_.append(s); }
  bool has_output() const { return !out_.empty(); }
  Task<IoStatus> flush(int64_t timeout_ms);

  // A TLS handshake on this connection, server or client side as `ctx` is.
  Task<IoStatus> start_tls(std::shared_ptr<const TlsContext> ctx, int64_t timeout_ms);
  const TlsSession* tls() const { return tls_.get(); }

  // Makes a pending read return EOF (used to stop idle sessions at shutdown).
  void shutdown_read();

 private:
  Task<IoStatus> receive_raw(std::string* sink, int64_t timeout_ms);
  Task<IoStatus> send_raw(std::string_view data, int64_t timeout_ms);
  void compact();

  Loop& loop_;
  UniqueFd fd_;
  std::string in_;
  size_t in_pos_ = 0;
  std::string out_;
  int64_t write_timeout_ms_ = 300'000;
  std::unique_ptr<TlsSession> tls_;
  std::string cipher_in_;   // TLS records not yet fed
  std::string cipher_out_;  // TLS records to send
};

}  // namespace tern::io
