#include "mta/io/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace tern::io {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  Endpoint ep;
  ep.text = std::string(text);
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close_br = text.find(']');
    if (close_br == std::string_view::npos || close_br + 1 >= text.size() || text[close_br + 1] != ':')
      return Error{"bad address \"" + std::string(text) + "\": expected [ipv6]:port"};
    host = std::string(text.substr(1, close_br - 1));
    port_text = text.substr(close_br + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return Error{"bad address \"" + std::string(text) + "\": expected ip:port"};
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return Error{"bad port in \"" + std::string(text) + "\""};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    ep.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    ep.len = sizeof(sockaddr_in6);
  } else {
    return Error{"bad IP address \"" + host + "\""};
  }
  return ep;
}

Result<int> listen_on(const Endpoint& ep, int backlog) {
  UniqueFd fd(socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Error{std::string("socket: ") + strerror(errno)};
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    return Error{std::string("SO_REUSEPORT: ") + strerror(errno)};
  if (ep.addr.ss_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) < 0)
    return Error{"bind " + ep.text + ": " + strerror(errno)};
  if (listen(fd.get(), backlog) < 0) return Error{"listen " + ep.text + ": " + strerror(errno)};
  return fd.release();
}

Result<int> client_socket(const Endpoint& ep) {
  int fd = socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket: ") + strerror(errno)};
  return fd;
}

std::string peer_ip(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "unknown";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    auto* a6 = &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6))
      inet_ntop(AF_INET, &a6->s6_addr[12], buf, sizeof buf);
    else
      inet_ntop(AF_INET6, a6, buf, sizeof buf);
  } else {
    return "unknown";
  }
  return buf;
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace tern::io
