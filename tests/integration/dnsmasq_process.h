// The harness shared by the integration tests that need a real DNS server
// (test_dns_resolver.cpp, test_dnsbl_lookup.cpp): loopback socket helpers,
// dnsmasq run as a child process on a free loopback port, serving only the
// records a test gives it, and a fixture base that runs a dns::Resolver on a
// real io_uring Loop. Header-only, for tests.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dns/resolver.h"
#include "mta/io/loop.h"
#include "mta/io/task.h"

namespace tern::testing {

// From the Debian package dnsmasq-base.
inline constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";

// 127.0.0.1:`port`.
inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

// The local port a socket is bound to.
inline uint16_t bound_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

// A loopback UDP socket on a kernel-chosen port; -1 on failure.
inline int udp_socket_on_loopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa = loopback(0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return -1;
  return fd;
}

// A port free for both UDP and TCP on loopback (dnsmasq binds both); 0 if
// none was found.
inline uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int udp = udp_socket_on_loopback();
    uint16_t port = bound_port(udp);
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa = loopback(port);
    bool ok = bind(tcp, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
    close(tcp);
    close(udp);
    if (ok) return port;
  }
  return 0;
}

// dnsmasq as a child process: no upstream servers, no /etc/hosts, no
// configuration file but what the records name; stopped (SIGTERM, reaped)
// by stop() or the destructor.
class Dnsmasq {
 public:
  // Starts dnsmasq in the foreground on 127.0.0.1:`port` with `records`
  // (further dnsmasq options: --host-record=..., --mx-host=..., ...) and
  // waits (at most 5 s) until it accepts TCP. False if it exited or never
  // came up.
  bool start(uint16_t port, const std::vector<std::string>& records) {
    port_ = port;
    std::vector<std::string> args = {kDnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                     "--conf-file=/dev/null", "--pid-file", "--log-facility=-",
                                     "--port=" + std::to_string(port), "--listen-address=127.0.0.1",
                                     "--bind-interfaces", "--local-ttl=60"};
    args.insert(args.end(), records.begin(), records.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      execv(kDnsmasq, argv.data());
      _exit(127);
    }
    if (pid_ < 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa = loopback(port);
      bool up = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
      close(fd);
      if (up) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  ~Dnsmasq() { stop(); }
  // "127.0.0.1:PORT", as ResolverOptions::servers takes it.
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// A fixture base: a dns::Resolver built from options_ (set them in SetUp or
// a test, before run()) on an io_uring Loop.
class ResolverOnLoopTest : public ::testing::Test {
 protected:
  // The resolver on loop_, created on first use.
  dns::Resolver& resolver() {
    if (!resolver_) {
      auto r = dns::Resolver::create(*loop_, options_);
      EXPECT_TRUE(r.ok()) << r.error();
      resolver_ = std::move(*r);
    }
    return *resolver_;
  }

  // Runs `body` on a new loop (a stopped loop does not run again) with a new
  // resolver; then destroys the resolver on the loop and waits (bounded) for
  // its last polls to complete, so none is left behind.
  void run(std::function<io::Task<void>()> body) {
    resolver_.reset();
    auto loop = io::Loop::create(256);
    ASSERT_TRUE(loop.ok()) << loop.error();
    loop_ = std::move(*loop);
    resolver();
    bool finished = false;
    io::spawn(drive(body, &finished));
    loop_->run();
    EXPECT_TRUE(finished);
    EXPECT_EQ(left_in_flight_, 0u) << "operations left on the loop after the resolver was destroyed";
  }

  std::unique_ptr<io::Loop> loop_;
  dns::ResolverOptions options_;
  std::unique_ptr<dns::Resolver> resolver_;

 private:
  io::Task<void> drive(std::function<io::Task<void>()>& body, bool* finished) {
    co_await body();
    resolver_.reset();
    for (int i = 0; i < 200 && loop_->in_flight() > 0; ++i) co_await loop_->sleep(10);
    left_in_flight_ = loop_->in_flight();
    *finished = true;
    loop_->stop();
  }

  size_t left_in_flight_ = 0;
};

}  // namespace tern::testing
