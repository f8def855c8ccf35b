// ternctl: administers a running ternd through its control socket.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mta/config.h"

namespace tern::ctl {
// tools/ternctl_users.cpp: the user directory, edited without ternd.
int user_command(const std::string& users_file, const std::vector<std::string>& args);
}  // namespace tern::ctl

namespace {

void usage(FILE* out) {
  fputs(
      "usage: ternctl [--socket PATH | --config FILE] COMMAND [ARGS]\n"
      "commands:\n"
      "  queue [--json]        list queued messages (like mailq)\n"
      "  show ID [--body]      envelope and headers (--body: the whole stored message)\n"
      "  hold ID...            move messages to the hold queue\n"
      "  release ID...         move held messages back to the incoming queue\n"
      "  delete ID...          remove messages without notice\n"
      "  bounce ID [RCPT...]   fail pending recipients (all, or those named) with a notice to the sender\n"
      "  flush [TARGET]        try now: message ID, DOMAIN, @DOMAIN (with subdomains), or all waiting mail\n"
      "  hold-domain DOMAIN    keep mail for DOMAIN queued (in hold) until released\n"
      "  release-domain DOMAIN deliver DOMAIN's mail again; its held messages go back to incoming\n"
      "  popauth list          clients inside the POP-before-SMTP window\n"
      "  popauth add IP [MIN]  let IP relay for MIN minutes (default relay.pop_window; or \"90s\")\n"
      "  popauth del IP        end IP's window now\n"
      "  stats [--json]        spool and connection counters, messages per queue, CPU time per thread\n"
      "  user add NAME [ADDRESS...]  add a user (password from stdin) who may send as ADDRESSes\n"
      "  user passwd NAME      set a user's password (stdin; asked twice on a terminal)\n"
      "  user del NAME         remove a user\n"
      "  user list             users: name, active or locked, addresses\n"
      "The socket defaults to ./var/ternd.sock (the embedded configuration's).\n"
      "The user commands edit auth.users_file (default ./var/users) and need no ternd;\n"
      "a running ternd re-reads the file on SIGHUP.\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = tern::Config{}.control.socket;
  std::string users_file = tern::Config{}.auth.users_file;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--socket" || a == "-s") && i + 1 < argc) {
      socket_path = argv[++i];
    } else if ((a == "--config" || a == "-c") && i + 1 < argc) {
      auto parsed = tern::load_config_file(argv[++i]);
      if (!parsed.ok()) {
        for (const auto& e : parsed.errors) fprintf(stderr, "ternctl: %s\n", tern::format_config_error(e).c_str());
        return 2;
      }
      socket_path = parsed.config.control.socket;
      users_file = parsed.config.auth.users_file;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      words.push_back(a);
    }
  }
  if (words.empty()) {
    usage(stderr);
    return 2;
  }
  if (words[0] == "user") return tern::ctl::user_command(users_file, {words.begin() + 1, words.end()});
  std::string request;
  for (const auto& w : words) {
    if (w.find_first_of(" \t\r\n") != std::string::npos) {
      fprintf(stderr, "ternctl: argument with white space: %s\n", w.c_str());
      return 2;
    }
    request += (request.empty() ? "" : " ") + w;
  }
  request += "\n";

  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    fprintf(stderr, "ternctl: socket path too long: %s\n", socket_path.c_str());
    return 2;
  }
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    // Only a socket that is missing or refuses means ternd is not running;
    // a socket this user may not use is a different problem to report.
    if (errno == EACCES || errno == EPERM) {
      fprintf(stderr, "ternctl: permission denied on %s (run as root or a member of ternd's group)\n",
              socket_path.c_str());
      return 4;
    }
    fprintf(stderr, "ternctl: ternd is not running (cannot connect to %s: %s)\n", socket_path.c_str(),
            strerror(errno));
    return 3;
  }
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    fprintf(stderr, "ternctl: cannot send the request: %s\n", strerror(errno));
    return 3;
  }
  std::string response;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  auto nl = response.find('\n');
  std::string status = response.substr(0, nl);
  std::string body = nl == std::string::npos ? "" : response.substr(nl + 1);
  if (status == "ok") {
    fwrite(body.data(), 1, body.size(), stdout);
    return 0;
  }
  fwrite(body.data(), 1, body.size(), stdout);
  fprintf(stderr, "ternctl: %s\n", status.rfind("error ", 0) == 0 ? status.c_str() + 6 : "no answer from ternd");
  return 1;
}
