// Result type used across module boundaries: no exceptions cross the event loop.
// Result<T> fails with an Error (a message); Result<T, E> with a richer error
// type when the caller must act on the kind of failure (dns::DnsError,
// delivery::ClientError).
#pragma once
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace tern {

struct Error {
  std::string message;
};

template <typename T, typename E = Error>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(E e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  // For Error, its message; otherwise the error itself.
  const auto& error() const {
    if constexpr (std::is_same_v<E, Error>) {
      return std::get<1>(v_).message;
    } else {
      return std::get<1>(v_);
    }
  }

 private:
  std::variant<T, E> v_;
};

template <>
class Result<void, Error> {
 public:
  Result() = default;
  Result(Error e) : error_(std::move(e.message)), failed_(true) {}
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace tern
