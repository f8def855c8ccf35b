// Sockets: listen addresses, listeners, peer addresses. Plain syscalls used
// at start-up or on fresh descriptors (none of them can block).
#pragma once
#include <sys/socket.h>

#include <string>
#include <string_view>

#include "queue/result.h"

namespace tern::io {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "127.0.0.1:2525" / "[::1]:2525"
};

// "ip:port" or "[ipv6]:port".
Result<Endpoint> parse_endpoint(std::string_view text);
// A non-blocking listening socket with SO_REUSEPORT, so every worker loop
// can own one and the kernel spreads connections across them.
Result<int> listen_on(const Endpoint& ep, int backlog = 4096);
// A non-blocking, unconnected TCP socket of ep's family (Loop::connect connects it).
Result<int> client_socket(const Endpoint& ep);
// The peer's IP as text ("192.0.2.1", "2001:db8::1"; IPv4-mapped shown as IPv4).
std::string peer_ip(int fd);
// Disables Nagle: SMTP is request/response; with delayed ACKs Nagle costs ~40 ms per reply.
void set_nodelay(int fd);

// Closes the descriptor on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  void reset();

 private:
  int fd_ = -1;
};

}  // namespace tern::io
