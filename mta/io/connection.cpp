#include "mta/io/connection.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace tern::io {

namespace {
// Receive buffers above this are given back once drained, so an idle
// connection holds almost no memory.
constexpr size_t kIdleCapacity = 4096;
}  // namespace

Connection::Connection(Loop& loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {}

void Connection::consume(size_t n) {
  in_pos_ += n;
  if (in_pos_ >= in_.size()) {
    in_.clear();
    in_pos_ = 0;
    if (in_.capacity() > kIdleCapacity) in_.shrink_to_fit();
  }
}

void Connection::discard_input() { consume(in_.size() - in_pos_); }

void Connection::compact() {
  if (in_pos_ > 0) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
}

void Connection::shutdown_read() { ::shutdown(fd_.get(), SHUT_RD); }

Task<IoStatus> Connection::receive_raw(std::string* sink, int64_t timeout_ms) {
  for (;;) {
    int n = co_await loop_.recv(fd_.get(), sink, timeout_ms);
    if (n > 0) co_return IoStatus::ok;
    if (n == 0) co_return IoStatus::eof;
    if (n == -ENOBUFS) {
      // Every provided buffer is in use this instant: give the loop a
      // moment to return some, then try again.
      co_await loop_.sleep(1);
      continue;
    }
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n == -ECANCELED || n == -ETIME) co_return IoStatus::timeout;
    co_return IoStatus::error;
  }
}

Task<IoStatus> Connection::send_raw(std::string_view data, int64_t timeout_ms) {
  while (!data.empty()) {
    int n = co_await loop_.send(fd_.get(), data, timeout_ms);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n == -ECANCELED || n == -ETIME) co_return IoStatus::timeout;
    co_return IoStatus::error;
  }
  co_return IoStatus::ok;
}

Task<IoStatus> Connection::fill(int64_t timeout_ms) {
  compact();
  if (!tls_) co_return co_await receive_raw(&in_, timeout_ms);
  for (;;) {
    auto got = tls_->read(&in_);
    if (tls_->has_output()) {  // e.g. a key update answered during the read
      cipher_out_.clear();
      tls_->drain(&cipher_out_);
      if (auto st = co_await send_raw(cipher_out_, write_timeout_ms_); st != IoStatus::ok) co_return st;
    }
    if (got == TlsSession::Step::done) co_return IoStatus::ok;
    if (got == TlsSession::Step::failed) co_return IoStatus::eof;
    cipher_in_.clear();
    auto st = co_await receive_raw(&cipher_in_, timeout_ms);
    if (st != IoStatus::ok) co_return st;
    tls_->feed(cipher_in_);
  }
}

Task<IoStatus> Connection::read_line(std::string* line, size_t max, int64_t timeout_ms) {
  bool skipping = false;
  size_t scanned = 0;  // bytes of the buffered input already searched for LF
  for (;;) {
    std::string_view in = buffered();
    size_t lf = in.find('\n', scanned);
    if (lf != std::string_view::npos) {
      if (skipping || lf + 1 > max) {
        consume(lf + 1);
        co_return IoStatus::too_long;
      }
      size_t end = (lf > 0 && in[lf - 1] == '\r') ? lf - 1 : lf;
      line->assign(in.substr(0, end));
      consume(lf + 1);
      co_return IoStatus::ok;
    }
    if (in.size() > max) {  // no LF within the limit: drop what we have and skip to the LF
      skipping = true;
      consume(in.size());
      scanned = 0;
    } else {
      scanned = in.size();
    }
    if (has_output()) {
      if (auto st = co_await flush(write_timeout_ms_); st != IoStatus::ok) co_return st;
    }
    // fill() may compact, which keeps offsets relative to buffered() intact.
    if (auto st = co_await fill(timeout_ms); st != IoStatus::ok) co_return st;
  }
}

Task<IoStatus> Connection::flush(int64_t timeout_ms) {
  if (out_.empty()) co_return IoStatus::ok;
  IoStatus st;
  if (tls_) {
    if (!tls_->write(out_)) {
      out_.clear();
      co_return IoStatus::error;
    }
    out_.clear();
    cipher_out_.clear();
    tls_->drain(&cipher_out_);
    st = co_await send_raw(cipher_out_, timeout_ms);
  } else {
    st = co_await send_raw(out_, timeout_ms);
    out_.clear();
  }
  if (out_.capacity() > kIdleCapacity) out_.shrink_to_fit();
  co_return st;
}

Task<IoStatus> Connection::start_tls(std::shared_ptr<const TlsContext> ctx, int64_t timeout_ms) {
  tls_ = std::make_unique<TlsSession>(std::move(ctx));
  for (;;) {
    auto step = tls_->handshake();
    if (tls_->has_output()) {
      cipher_out_.clear();
      tls_->drain(&cipher_out_);
      if (auto st = co_await send_raw(cipher_out_, timeout_ms); st != IoStatus::ok) co_return st;
    }
    if (step == TlsSession::Step::done) co_return IoStatus::ok;
    if (step == TlsSession::Step::failed) co_return IoStatus::error;
    cipher_in_.clear();
    if (auto st = co_await receive_raw(&cipher_in_, timeout_ms); st != IoStatus::ok) co_return st;
    tls_->feed(cipher_in_);
  }
}

}  // namespace tern::io
