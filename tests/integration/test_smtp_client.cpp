// The delivery client against real servers on loopback, driven on a real
// io_uring Loop: tern-sink (extensions hidden, faults, delays, drops,
// STARTTLS, its Maildir and JSON report); for AUTH, which tern-sink does not
// have, a small aiosmtpd server (aiosmtpd_auth_server.py); and, for what
// only the wire shows (pipelined or not, RSET or not, HELO fallback, bad
// replies), a scripted server on a thread of the test. Every test starts its
// own server on a free port.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mta/delivery/smtp_client.h"

extern char** environ;

namespace tern::delivery {
namespace {

namespace fs = std::filesystem;
using Kind = RecipientOutcome::Kind;

constexpr const char* kSinkBinary = TERN_SINK_PATH;
constexpr const char* kAuthServerScript = AUTH_SERVER_SCRIPT;
constexpr const char* kPython = "/usr/bin/python3";

// Lines starting with "." (stuffed on the wire, unstuffed by the sink) and a
// line that is only ".": the content must come back unchanged.
const std::string kContent =
    "From: from@client.test\r\nTo: rcpt@sink.test\r\nSubject: dots\r\n\r\n"
    ".leading dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n. \r\nlast line\r\n";

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

io::Endpoint loopback_endpoint(uint16_t port) {
  auto ep = io::parse_endpoint("127.0.0.1:" + std::to_string(port));
  EXPECT_TRUE(ep.ok());
  return ep.value();
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string crlf_to_lf(std::string text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i)
    if (!(text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) out += text[i];
  return out;
}

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// A directory of its own for one test, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "tern-client-XXXXXX").string();
    if (mkdtemp(pattern.data())) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A server process, its stdout on a pipe until it says it is listening.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  bool start(std::vector<std::string> args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    stdout_fd_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    return wait_until_listening();
  }

  // SIGTERM and wait: tern-sink writes its JSON report on the way out.
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
    stdout_fd_ = -1;
  }

 private:
  bool wait_until_listening() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    std::string out;
    while (out.find("listening on") == std::string::npos || out.find('\n', out.find("listening on")) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{stdout_fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char buf[512];
      const ssize_t n = read(stdout_fd_, buf, sizeof buf);
      if (n <= 0) return false;  // it exited
      out.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
};

struct StoredMessage {
  std::string sender;
  std::vector<std::string> recipients;
  std::vector<std::string> parameters;  // X-Tern-Sink-Mail-Params / -Rcpt-Params lines
  std::string content;  // LF line ends, as the sink stores it
};

// A server process on a free loopback port, with a directory for its files.
class SpawnedServer {
 public:
  bool started() const { return started_; }
  io::Endpoint endpoint() const { return loopback_endpoint(port_); }

 protected:
  SpawnedServer() : port_(free_port()) {}
  void start(std::vector<std::string> args, const std::vector<std::string>& options) {
    args.insert(args.end(), options.begin(), options.end());
    started_ = port_ != 0 && process_.start(std::move(args));
  }
  void stop() { process_.stop(); }
  std::string port_text() const { return std::to_string(port_); }
  fs::path file(const std::string& name) const { return dir_.path() / name; }

 private:
  ScratchDir dir_;
  uint16_t port_;
  ServerProcess process_;
  bool started_ = false;
};

// tern-sink, one thread, with a Maildir and a JSON report.
class Sink : public SpawnedServer {
 public:
  explicit Sink(const std::vector<std::string>& options) {
    start({kSinkBinary, "--listen", "127.0.0.1:" + port_text(), "--threads", "1", "--quiet", "--json",
           json_path().string(), "--maildir", maildir().string()},
          options);
  }

  // Stops the sink; its report is final then.
  std::string report() {
    stop();
    return read_file(json_path());
  }
  std::vector<StoredMessage> stored() const {
    std::vector<StoredMessage> messages;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(maildir() / "new", ec)) {
      std::istringstream file(read_file(entry.path()));
      StoredMessage m;
      std::string line;
      std::streampos body_start = 0;
      while (std::getline(file, line)) {
        if (line.starts_with("Return-Path: <")) {
          m.sender = line.substr(14, line.size() - 15);
        } else if (line.starts_with("X-Tern-Sink-Rcpt: <")) {
          m.recipients.push_back(line.substr(19, line.size() - 20));
        } else if (line.starts_with("X-Tern-Sink-Mail-Params: ") || line.starts_with("X-Tern-Sink-Rcpt-Params: ")) {
          m.parameters.push_back(line);
        } else {
          break;
        }
        body_start = file.tellg();
      }
      m.content = file.str().substr(static_cast<size_t>(body_start));
      messages.push_back(std::move(m));
    }
    return messages;
  }

 private:
  fs::path json_path() const { return file("sink.json"); }
  fs::path maildir() const { return file("maildir"); }
};

// A number in tern-sink's flat JSON report: "messages", or "faults.rcpt".
uint64_t report_number(const std::string& json, const std::string& path) {
  size_t from = 0;
  std::string key = path;
  if (const size_t dot = path.find('.'); dot != std::string::npos) {
    from = json.find("\"" + path.substr(0, dot) + "\":{");
    key = path.substr(dot + 1);
  }
  const size_t at = from == std::string::npos ? from : json.find("\"" + key + "\":", from);
  EXPECT_NE(at, std::string::npos) << path << " not in " << json;
  if (at == std::string::npos) return 0;
  return std::strtoull(json.c_str() + at + key.size() + 3, nullptr, 10);
}

// The AUTH server: one user, every AUTH attempt and message logged as JSON lines.
class AuthServer : public SpawnedServer {
 public:
  explicit AuthServer(const std::vector<std::string>& options) {
    start({kPython, kAuthServerScript, "--port", port_text(), "--user", "relay", "--password", "s3cret", "--log",
           log_path().string()},
          options);
  }
  // Stops the server; the log is complete then.
  std::string log() {
    stop();
    return read_file(log_path());
  }

 private:
  fs::path log_path() const { return file("auth.log"); }
};

// A server on a thread of the test, answering each command line with what
// `respond` says, and recording what the wire shows: every command, and
// whether more input was already waiting before it was answered (the
// client pipelined). After a 354 it reads the content up to its "." line
// and answers what respond(".") says.
class ScriptedServer {
 public:
  using Responder = std::function<std::string(const std::string& command)>;
  struct Command {
    std::string line;
    bool more_waiting = false;
  };

  explicit ScriptedServer(Responder respond) : respond_(std::move(respond)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && listen(listen_fd_, 4) == 0 &&
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
      port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    finish();
    close(listen_fd_);
  }
  bool started() const { return port_ != 0; }
  io::Endpoint endpoint() const { return loopback_endpoint(port_); }

  // Once the client is gone: the commands (DATA's content as one entry, CRLF lines, as sent).
  const std::vector<Command>& commands() {
    finish();
    return commands_;
  }
  std::vector<std::string> command_lines() {
    std::vector<std::string> lines;
    for (const Command& c : commands()) lines.push_back(c.line);
    return lines;
  }

 private:
  void finish() {
    if (thread_.joinable()) thread_.join();
  }

  void serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 10'000) <= 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    timeval patience{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    std::string input;
    send_line(fd, "220 scripted.test ESMTP");
    std::string line;
    while (read_line(fd, &input, &line)) {
      pollfd more{fd, POLLIN, 0};
      commands_.push_back({line, !input.empty() || poll(&more, 1, 50) > 0});
      std::string reply = respond_(line);
      if (line == "DATA" && reply.starts_with("354")) {
        send_line(fd, reply);
        std::string content;
        while (read_line(fd, &input, &line) && line != ".") content += line + "\r\n";
        commands_.push_back({content, false});
        reply = respond_(".");
      } else if (line.starts_with("BDAT ") && line.ends_with(" LAST")) {
        // The chunk's octets follow the command at once: the content as one entry.
        const size_t size = std::stoul(line.substr(5));
        if (!read_exactly(fd, &input, size, &line)) break;
        commands_.push_back({line, !input.empty() || poll(&more, 1, 50) > 0});
      }
      send_line(fd, reply);
      if (reply.starts_with("221") || reply.starts_with("421")) break;
    }
    close(fd);
  }

  static void send_line(int fd, const std::string& reply) {
    const std::string wire = reply + "\r\n";
    (void)::send(fd, wire.data(), wire.size(), MSG_NOSIGNAL);
  }

  static bool read_line(int fd, std::string* input, std::string* line) {
    size_t lf;
    while ((lf = input->find("\r\n")) == std::string::npos) {
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      input->append(buf, static_cast<size_t>(n));
    }
    *line = input->substr(0, lf);
    input->erase(0, lf + 2);
    return true;
  }

  static bool read_exactly(int fd, std::string* input, size_t size, std::string* octets) {
    while (input->size() < size) {
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      input->append(buf, static_cast<size_t>(n));
    }
    *octets = input->substr(0, size);
    input->erase(0, size);
    return true;
  }

  Responder respond_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::vector<Command> commands_;
};

// What an ordinary server answers; `pipelining`: whether EHLO offers it.
std::string ordinary_reply(const std::string& command, bool pipelining) {
  if (command.starts_with("EHLO")) return pipelining ? "250-scripted.test\r\n250-PIPELINING\r\n250 8BITMIME" : "250-scripted.test\r\n250 8BITMIME";
  if (command.starts_with("HELO")) return "250 scripted.test";
  if (command.starts_with("MAIL")) return "250 2.1.0 Ok";
  if (command.starts_with("RCPT")) return "250 2.1.5 Ok";
  if (command == "DATA") return "354 End data with <CR><LF>.<CR><LF>";
  if (command == "." || command.starts_with("BDAT")) return "250 2.0.0 Ok: queued";
  if (command == "RSET") return "250 2.0.0 Ok";
  if (command == "QUIT") return "221 2.0.0 Bye";
  return "500 5.5.2 Command unrecognized";
}

struct TestMessage {
  queue::Envelope envelope;
  std::string content = kContent;

  explicit TestMessage(const std::vector<std::string>& recipients) {
    envelope.id = "TESTID";
    envelope.sender = "from@client.test";
    for (const auto& address : recipients) {
      queue::Recipient r;
      r.address = address;
      envelope.recipients.push_back(std::move(r));
    }
  }
  OutboundMessage outbound() const {
    OutboundMessage m{&envelope, {}, &content};
    for (size_t i = 0; i < envelope.recipients.size(); ++i) m.recipients.push_back(i);
    return m;
  }
};

// What a session did: why it could not open, or each message's outcomes.
struct Session {
  std::optional<ClientError> error;
  std::vector<std::vector<RecipientOutcome>> outcomes;
  std::vector<bool> usable_after;  // usable() after each message
  bool encrypted = false;
  smtp::EhloInfo capabilities;
};

io::Task<void> run_session(io::Loop& loop, const ClientTarget& target, const ClientSettings& settings,
                           const std::vector<OutboundMessage>& messages, Session* session) {
  auto opened = co_await SmtpClient::open(loop, target, settings);
  if (!opened) {
    session->error = opened.error();
    loop.stop();
    co_return;
  }
  std::unique_ptr<SmtpClient> client = std::move(opened.value());
  session->encrypted = client->encrypted();
  session->capabilities = client->capabilities();
  for (const OutboundMessage& m : messages) {
    std::vector<RecipientOutcome> outcomes = co_await client->send(m);
    session->outcomes.push_back(std::move(outcomes));
    session->usable_after.push_back(client->usable());
  }
  co_await client->quit();
  loop.stop();
}

// Opens a session to `target`, sends `messages` on it and quits, on a loop of its own.
Session deliver(const ClientTarget& target, const ClientSettings& settings,
                const std::vector<const TestMessage*>& messages) {
  Session session;
  auto loop = io::Loop::create();
  EXPECT_TRUE(loop.ok());
  if (!loop) return session;
  std::vector<OutboundMessage> outbound;
  for (const TestMessage* m : messages) outbound.push_back(m->outbound());
  io::spawn(run_session(*loop.value(), target, settings, outbound, &session));
  loop.value()->run();
  return session;
}

ClientSettings test_settings() {
  ClientSettings s;
  s.helo_name = "client.test";
  s.connect_timeout_ms = 5'000;
  s.greeting_timeout_ms = 10'000;
  s.command_timeout_ms = 10'000;
  s.data_timeout_ms = 10'000;
  auto ctx = io::TlsContext::create_client();
  EXPECT_TRUE(ctx.ok());
  if (ctx) s.opportunistic = ctx.value();
  return s;
}

ClientTarget target_of(const io::Endpoint& endpoint, TlsPolicy tls = TlsPolicy::none) {
  ClientTarget t;
  t.address = endpoint;
  t.host_name = "sink.test";
  t.tls = tls;
  return t;
}

void expect_all(const std::vector<RecipientOutcome>& outcomes, Kind kind, int code, const std::string& enhanced) {
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.kind, kind) << o.code << " " << o.enhanced << " " << o.text;
    EXPECT_EQ(o.code, code) << o.text;
    EXPECT_EQ(o.enhanced, enhanced) << o.text;
  }
}

// One message to one recipient.
Session deliver_one(const ClientTarget& target, const ClientSettings& settings) {
  const TestMessage message({"a@sink.test"});
  return deliver(target, settings, {&message});
}

// The session opened and every message went to every recipient.
void expect_delivered(const Session& s) {
  ASSERT_FALSE(s.error) << s.error->text;
  ASSERT_FALSE(s.outcomes.empty());
  for (const auto& outcomes : s.outcomes) expect_all(outcomes, Kind::delivered, 250, "2.0.0");
}

void expect_error(const Session& s, bool permanent, int code, const std::string& enhanced, const std::string& phase) {
  ASSERT_TRUE(s.error) << "the session opened";
  EXPECT_EQ(s.error->permanent, permanent) << s.error->text;
  EXPECT_EQ(s.error->code, code) << s.error->text;
  EXPECT_EQ(s.error->enhanced, enhanced) << s.error->text;
  EXPECT_EQ(s.error->phase, phase) << s.error->text;
}

// Sends one message to three recipients and checks what the sink stored.
void expect_round_trip(const std::vector<std::string>& sink_options, bool pipelining) {
  Sink sink(sink_options);
  ASSERT_TRUE(sink.started());
  TestMessage message({"a@sink.test", "b@sink.test", "c@sink.test"});
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
  ASSERT_FALSE(s.error) << s.error->text;
  EXPECT_EQ(s.capabilities.pipelining, pipelining);
  ASSERT_EQ(s.outcomes.size(), 1u);
  ASSERT_EQ(s.outcomes[0].size(), 3u);
  expect_all(s.outcomes[0], Kind::delivered, 250, "2.0.0");
  EXPECT_TRUE(s.usable_after[0]);
  auto stored = sink.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].sender, "from@client.test");
  EXPECT_EQ(stored[0].recipients, (std::vector<std::string>{"a@sink.test", "b@sink.test", "c@sink.test"}));
  EXPECT_EQ(stored[0].content, crlf_to_lf(kContent));
  const std::string report = sink.report();
  EXPECT_EQ(report_number(report, "messages"), 1u);
  EXPECT_EQ(report_number(report, "recipients"), 3u);
}

TEST(SmtpClient, DeliversWithPipelining) { expect_round_trip({}, true); }

TEST(SmtpClient, DeliversWithoutPipelining) { expect_round_trip({"--hide", "PIPELINING"}, false); }

TEST(SmtpClient, DeliversTheLargestMessageTheServerTakes) {
  // Several pieces of content, and the SIZE limit exactly.
  TestMessage message({"a@sink.test"});
  message.content = "Subject: big\r\n\r\n";
  while (message.content.size() < 700'000) message.content += ".line of the big message\r\n";
  Sink sink({"--max-size", std::to_string(message.content.size())});
  ASSERT_TRUE(sink.started());
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes[0], Kind::delivered, 250, "2.0.0");
  auto stored = sink.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].content, crlf_to_lf(message.content));
}

TEST(SmtpClient, EachRecipientGetsItsRcptReply) {
  for (bool pipelining : {true, false}) {
    SCOPED_TRACE(pipelining ? "pipelining" : "one command per round trip");
    // 0.5: the second and fourth RCPT are refused (tern-sink's fractions are exact).
    std::vector<std::string> options = {"--fault", "rcpt=550:0.5"};
    if (!pipelining) options.insert(options.end(), {"--hide", "PIPELINING"});
    Sink sink(options);
    ASSERT_TRUE(sink.started());
    TestMessage message({"r0@sink.test", "r1@sink.test", "r2@sink.test", "r3@sink.test"});
    Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
    ASSERT_FALSE(s.error) << s.error->text;
    const auto& o = s.outcomes.at(0);
    ASSERT_EQ(o.size(), 4u);
    size_t delivered = 0;
    for (size_t i = 0; i < o.size(); ++i) {
      EXPECT_EQ(o[i].recipient, i);
      const bool refused = i % 2 == 1;
      EXPECT_EQ(o[i].kind, refused ? Kind::permanent : Kind::delivered) << i;
      EXPECT_EQ(o[i].code, refused ? 550 : 250) << i;
      EXPECT_EQ(o[i].enhanced, refused ? "5.0.0" : "2.0.0") << i;
      delivered += o[i].kind == Kind::delivered;
    }
    auto stored = sink.stored();
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored[0].recipients, (std::vector<std::string>{"r0@sink.test", "r2@sink.test"}));
    const std::string report = sink.report();
    EXPECT_EQ(report_number(report, "recipients"), delivered);
    EXPECT_EQ(report_number(report, "faults.rcpt"), 4 - delivered);
  }
}

TEST(SmtpClient, NoRecipientAcceptedDeliversNothingAndKeepsTheConnection) {
  // Pipelined with CHUNKING the content went with the envelope and its BDAT
  // is refused; pipelined DATA gets 554; without pipelining nothing follows
  // the refused RCPTs.
  for (const char* hidden : {"", "CHUNKING", "PIPELINING"}) {
    SCOPED_TRACE(std::string("hidden: ") + hidden);
    std::vector<std::string> options = {"--fault", "rcpt=550"};
    if (*hidden) options.insert(options.end(), {"--hide", hidden});
    Sink sink(options);
    ASSERT_TRUE(sink.started());
    TestMessage first({"a@sink.test", "b@sink.test"});
    TestMessage second({"c@sink.test"});
    Session s = deliver(target_of(sink.endpoint()), test_settings(), {&first, &second});
    ASSERT_FALSE(s.error) << s.error->text;
    ASSERT_EQ(s.outcomes.size(), 2u);
    // The RCPT's 550, not the pipelined DATA's or BDAT's 554 "no valid recipients".
    expect_all(s.outcomes[0], Kind::permanent, 550, "5.0.0");
    expect_all(s.outcomes[1], Kind::permanent, 550, "5.0.0");
    EXPECT_TRUE(s.usable_after[1]);
    const std::string report = sink.report();
    EXPECT_EQ(report_number(report, "connections"), 1u);
    EXPECT_EQ(report_number(report, "messages"), 0u);
    EXPECT_EQ(report_number(report, "faults.rcpt"), 3u);
  }
}

TEST(SmtpClient, RefusedGreetingIsAnErrorOfItsClass) {
  for (int code : {421, 554}) {
    Sink sink({"--fault", "banner=" + std::to_string(code)});
    ASSERT_TRUE(sink.started());
    Session s = deliver_one(target_of(sink.endpoint()), test_settings());
    expect_error(s, code == 554, code, std::to_string(code / 100) + ".0.0", "greeting");
    if (s.error) {
      EXPECT_EQ(s.error->text, "tern-sink injected fault");
    }
  }
}

TEST(SmtpClient, RefusedEhloIsAnErrorUnlessTheServerDoesNotKnowIt) {
  // 502: EHLO unknown, HELO is tried (and refused too: the error is HELO's).
  // 554: the server's answer.
  struct Case {
    int code;
    const char* phase;
    uint64_t faults;
  };
  for (const Case& c : {Case{502, "helo", 2}, Case{554, "ehlo", 1}}) {
    Sink sink({"--fault", "helo=" + std::to_string(c.code)});
    ASSERT_TRUE(sink.started());
    Session s = deliver_one(target_of(sink.endpoint()), test_settings());
    expect_error(s, true, c.code, "5.0.0", c.phase);
    EXPECT_EQ(report_number(sink.report(), "faults.helo"), c.faults);
  }
}

TEST(SmtpClient, RefusalsOfDataAndOfTheContentApplyToEveryAcceptedRecipient) {
  struct Case {
    std::string fault;
    Kind kind;
    int code;
  };
  for (const Case& c : {Case{"data=451", Kind::temporary, 451}, Case{"data=554", Kind::permanent, 554},
                        Case{"dot=452", Kind::temporary, 452}, Case{"dot=552", Kind::permanent, 552}}) {
    // BDAT's reply (the `data` event of a LAST chunk) or DATA's 354 and the final dot's.
    for (const char* hidden : {"", "CHUNKING", "PIPELINING", "PIPELINING,CHUNKING"}) {
      SCOPED_TRACE(c.fault + " hidden: " + hidden);
      std::vector<std::string> options = {"--fault", c.fault};
      if (*hidden) options.insert(options.end(), {"--hide", hidden});
      Sink sink(options);
      ASSERT_TRUE(sink.started());
      TestMessage message({"a@sink.test", "b@sink.test"});
      Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
      ASSERT_FALSE(s.error) << s.error->text;
      expect_all(s.outcomes.at(0), c.kind, c.code, std::to_string(c.code / 100) + ".0.0");
      EXPECT_TRUE(s.usable_after[0]);
      EXPECT_TRUE(sink.stored().empty());
    }
  }
}

TEST(SmtpClient, ServiceClosingMidTransactionFailsTheRestTemporarily) {
  Sink sink({"--fault", "rcpt=421:0.5"});
  ASSERT_TRUE(sink.started());
  TestMessage first({"a@sink.test", "b@sink.test", "c@sink.test"});
  TestMessage second({"d@sink.test"});
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&first, &second});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::temporary, 421, "4.0.0");
  EXPECT_FALSE(s.usable_after[0]);
  // Nothing more is tried on a closed connection.
  expect_all(s.outcomes.at(1), Kind::temporary, 0, "4.4.2");
  EXPECT_TRUE(sink.stored().empty());
}

TEST(SmtpClient, ConnectionDroppedAfterTheContentIsTemporary) {
  Sink sink({"--drop", "dot"});
  ASSERT_TRUE(sink.started());
  TestMessage message({"a@sink.test", "b@sink.test"});
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::temporary, 0, "4.4.2");
  EXPECT_NE(s.outcomes[0][0].text.find("connection closed"), std::string::npos) << s.outcomes[0][0].text;
  EXPECT_FALSE(s.usable_after[0]);
  const std::string report = sink.report();
  EXPECT_EQ(report_number(report, "drops.dot"), 1u);
  EXPECT_EQ(report_number(report, "messages"), 0u);
}

TEST(SmtpClient, ASlowReplyTimesOut) {
  Sink sink({"--delay", "rcpt=3000"});
  ASSERT_TRUE(sink.started());
  ClientSettings settings = test_settings();
  settings.command_timeout_ms = 1'000;
  TestMessage message({"a@sink.test", "b@sink.test"});
  const auto start = std::chrono::steady_clock::now();
  Session s = deliver(target_of(sink.endpoint()), settings, {&message});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::temporary, 0, "4.4.2");
  EXPECT_NE(s.outcomes[0][0].text.find("timeout"), std::string::npos) << s.outcomes[0][0].text;
  EXPECT_FALSE(s.usable_after[0]);
  EXPECT_LT(elapsed, std::chrono::milliseconds(2'500));
  EXPECT_TRUE(sink.stored().empty());
}

TEST(SmtpClient, MessageOverTheServersSizeIsNotSent) {
  Sink sink({"--max-size", "100"});
  ASSERT_TRUE(sink.started());
  TestMessage big({"a@sink.test", "b@sink.test"});
  TestMessage small({"c@sink.test"});
  small.content = "Subject: s\r\n\r\nok\r\n";
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&big, &small});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::permanent, 0, "5.3.4");
  EXPECT_TRUE(s.usable_after[0]);
  expect_all(s.outcomes.at(1), Kind::delivered, 250, "2.0.0");
  const std::string report = sink.report();
  EXPECT_EQ(report_number(report, "messages"), 1u);
  EXPECT_EQ(report_number(report, "connections"), 1u);
}

TEST(SmtpClient, Smtputf8MessageNeedsSmtputf8) {
  TestMessage message({"d\xc3\xa9j\xc3\xa0@sink.test"});
  message.envelope.smtputf8 = true;
  {
    Sink sink({"--hide", "SMTPUTF8"});
    ASSERT_TRUE(sink.started());
    Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
    ASSERT_FALSE(s.error) << s.error->text;
    expect_all(s.outcomes.at(0), Kind::permanent, 0, "5.6.7");
    EXPECT_TRUE(sink.stored().empty());
  }
  Sink sink({});
  ASSERT_TRUE(sink.started());
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  auto stored = sink.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].recipients, std::vector<std::string>{"d\xc3\xa9j\xc3\xa0@sink.test"});
}

TestMessage message_with_dsn_and_8bit() {
  TestMessage message({"a@sink.test", "b@sink.test"});
  message.envelope.ret = "HDRS";
  message.envelope.envid = "ENV+ID=1";
  message.envelope.body_type = "8BITMIME";
  message.envelope.recipients[0].notify = queue::notify_success | queue::notify_failure;
  message.envelope.recipients[0].orcpt = "rfc822;ORIG+A@SINK.TEST";
  message.envelope.recipients[1].notify = queue::notify_never;
  return message;
}

TEST(SmtpClient, DsnAnd8bitParametersOnlyWhenOffered) {
  // tern-sink refuses (555) a parameter of an extension it does not offer,
  // and parses offered ones with ternd's parser (xtext included).
  const TestMessage message = message_with_dsn_and_8bit();
  for (const std::vector<std::string>& options :
       {std::vector<std::string>{}, std::vector<std::string>{"--hide", "DSN,8BITMIME"}}) {
    SCOPED_TRACE(options.empty() ? "offered" : "hidden");
    Sink sink(options);
    ASSERT_TRUE(sink.started());
    Session s = deliver(target_of(sink.endpoint()), test_settings(), {&message});
    expect_delivered(s);
    EXPECT_EQ(report_number(sink.report(), "messages"), 1u);
  }
}

TEST(SmtpClient, DsnParametersAreSentXtextEncoded) {
  AuthServer server({"--dsn"});
  ASSERT_TRUE(server.started());
  const TestMessage message = message_with_dsn_and_8bit();
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  // aiosmtpd upper-cases the parameters it records.
  const std::string log = upper(server.log());
  EXPECT_NE(log.find(R"("MAIL_OPTIONS": ["SIZE=)"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("BODY=8BITMIME", "RET=HDRS", "ENVID=ENV+2BID+3D1"])"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("RCPT_OPTIONS": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=RFC822;ORIG+2BA@SINK.TEST", "NOTIFY=NEVER"])"),
            std::string::npos)
      << log;
}

TEST(SmtpClient, TwoMessagesShareOneConnection) {
  // The second message of the sink's connection gets 554 at the dot: the
  // third goes after an RSET on the same connection.
  Sink sink({"--fault", "dot=554:0.5"});
  ASSERT_TRUE(sink.started());
  TestMessage first({"a@sink.test"});
  TestMessage second({"b@sink.test"});
  TestMessage third({"c@sink.test"});
  Session s = deliver(target_of(sink.endpoint()), test_settings(), {&first, &second, &third});
  ASSERT_FALSE(s.error) << s.error->text;
  ASSERT_EQ(s.outcomes.size(), 3u);
  expect_all(s.outcomes[0], Kind::delivered, 250, "2.0.0");
  expect_all(s.outcomes[1], Kind::permanent, 554, "5.0.0");
  expect_all(s.outcomes[2], Kind::delivered, 250, "2.0.0");
  const std::string report = sink.report();
  EXPECT_EQ(report_number(report, "connections"), 1u);
  EXPECT_EQ(report_number(report, "messages"), 2u);
}

TEST(SmtpClient, ConnectionRefusedIsTemporary) {
  Session s = deliver_one(target_of(loopback_endpoint(free_port())), test_settings());
  expect_error(s, false, 0, "4.4.1", "connect");
}

TEST(SmtpClient, BindsToTheSourceAddress) {
  Sink sink({});
  ASSERT_TRUE(sink.started());
  ClientSettings settings = test_settings();
  // parse_endpoint takes no port 0: "any port" is set by hand.
  io::Endpoint source = loopback_endpoint(1);
  reinterpret_cast<sockaddr_in*>(&source.addr)->sin_port = 0;
  settings.bind_address = source;
  Session s = deliver_one(target_of(sink.endpoint()), settings);
  expect_delivered(s);
}

// ---- STARTTLS ----

TEST(SmtpClient, StarttlsMayIsUsedWhenOffered) {
  Sink sink({});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::may), test_settings());
  ASSERT_FALSE(s.error) << s.error->text;
  EXPECT_TRUE(s.encrypted);
  // The EHLO after TLS: tern-sink no longer offers STARTTLS.
  EXPECT_FALSE(s.capabilities.starttls);
  expect_all(s.outcomes.at(0), Kind::delivered, 250, "2.0.0");
  auto stored = sink.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].content, crlf_to_lf(kContent));
}

TEST(SmtpClient, StarttlsMayGoesOnInPlainTextWhenNotOffered) {
  Sink sink({"--hide", "STARTTLS"});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::may), test_settings());
  ASSERT_FALSE(s.error) << s.error->text;
  EXPECT_FALSE(s.encrypted);
  expect_all(s.outcomes.at(0), Kind::delivered, 250, "2.0.0");
}

TEST(SmtpClient, StarttlsNoneNeverStartsTls) {
  Sink sink({});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::none), test_settings());
  ASSERT_FALSE(s.error) << s.error->text;
  EXPECT_FALSE(s.encrypted);
  EXPECT_TRUE(s.capabilities.starttls);
}

TEST(SmtpClient, EncryptDoesNotVerifyButRequiresTls) {
  {
    Sink sink({});
    ASSERT_TRUE(sink.started());
    Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::encrypt), test_settings());
    ASSERT_FALSE(s.error) << s.error->text;
    EXPECT_TRUE(s.encrypted);
    expect_all(s.outcomes.at(0), Kind::delivered, 250, "2.0.0");
  }
  Sink sink({"--hide", "STARTTLS"});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::encrypt), test_settings());
  expect_error(s, false, 0, "4.7.4", "starttls");
  ASSERT_TRUE(s.error);
  EXPECT_FALSE(s.error->retry_without_tls);
  EXPECT_TRUE(sink.stored().empty());
}

// A self-signed certificate for `name` (its own CA), made with openssl.
bool make_certificate(const fs::path& dir, const std::string& name) {
  const std::string command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=" +
                              name + " -addext subjectAltName=DNS:" + name + " -keyout " + (dir / "key.pem").string() +
                              " -out " + (dir / "cert.pem").string() + " 2>/dev/null";
  return std::system(command.c_str()) == 0;
}

ClientSettings verifying_settings(const fs::path& ca_file) {
  ClientSettings settings = test_settings();
  auto ctx = io::TlsContext::create_verifying_client(ca_file.string());
  EXPECT_TRUE(ctx.ok()) << (ctx ? "" : ctx.error());
  if (ctx) settings.verifying = ctx.value();
  return settings;
}

TEST(SmtpClient, VerifyAcceptsACertificateOfTheTrustedAuthorityForTheName) {
  ScratchDir dir;
  ASSERT_TRUE(make_certificate(dir.path(), "sink.test"));
  Sink sink({"--cert", (dir.path() / "cert.pem").string(), "--key", (dir.path() / "key.pem").string()});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::verify), verifying_settings(dir.path() / "cert.pem"));
  expect_delivered(s);
  EXPECT_TRUE(s.encrypted);
}

TEST(SmtpClient, VerifyRefusesACertificateForAnotherName) {
  ScratchDir dir;
  ASSERT_TRUE(make_certificate(dir.path(), "sink.test"));
  Sink sink({"--cert", (dir.path() / "cert.pem").string(), "--key", (dir.path() / "key.pem").string()});
  ASSERT_TRUE(sink.started());
  ClientTarget target = target_of(sink.endpoint(), TlsPolicy::verify);
  target.host_name = "other.test";
  Session s = deliver_one(target, verifying_settings(dir.path() / "cert.pem"));
  expect_error(s, false, 0, "4.7.5", "starttls");
  ASSERT_TRUE(s.error);
  EXPECT_NE(s.error->text.find("hostname mismatch"), std::string::npos) << s.error->text;
  EXPECT_FALSE(s.error->retry_without_tls);
}

TEST(SmtpClient, VerifyRefusesAnUntrustedCertificate) {
  // The sink's own generated certificate, checked against another authority.
  ScratchDir dir;
  ASSERT_TRUE(make_certificate(dir.path(), "sink.test"));
  Sink sink({});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(target_of(sink.endpoint(), TlsPolicy::verify), verifying_settings(dir.path() / "cert.pem"));
  expect_error(s, false, 0, "4.7.5", "starttls");
  ASSERT_TRUE(s.error);
  EXPECT_NE(s.error->text.find("certificate"), std::string::npos) << s.error->text;
  EXPECT_TRUE(sink.stored().empty());
}

TEST(SmtpClient, StarttlsMayAfterAFailedHandshakeRetriesInPlainText) {
  // An "opportunistic" context that verifies against an unrelated
  // authority: the handshake fails, as with a server whose TLS is broken.
  ScratchDir dir;
  ASSERT_TRUE(make_certificate(dir.path(), "elsewhere.test"));
  Sink sink({});
  ASSERT_TRUE(sink.started());
  ClientSettings settings = verifying_settings(dir.path() / "cert.pem");
  settings.opportunistic = settings.verifying;
  ClientTarget target = target_of(sink.endpoint(), TlsPolicy::may);
  Session failed = deliver_one(target, settings);
  ASSERT_TRUE(failed.error);
  EXPECT_FALSE(failed.error->permanent);
  EXPECT_EQ(failed.error->phase, "starttls");
  EXPECT_TRUE(failed.error->retry_without_tls);
  target.plain_text_only = true;
  Session retried = deliver_one(target, settings);
  expect_delivered(retried);
  EXPECT_FALSE(retried.encrypted);
}

// ---- AUTH ----

ClientTarget auth_target(const io::Endpoint& endpoint, std::string password) {
  ClientTarget target = target_of(endpoint);
  target.auth = Credentials{"relay", std::move(password)};
  return target;
}

TEST(SmtpClient, AuthPlainIsPreferred) {
  AuthServer server({});
  ASSERT_TRUE(server.started());
  Session s = deliver_one(auth_target(server.endpoint(), "s3cret"), test_settings());
  expect_delivered(s);
  const std::string log = server.log();
  EXPECT_NE(log.find(R"({"event": "auth", "mechanism": "PLAIN", "ok": true})"), std::string::npos) << log;
  EXPECT_EQ(log.find(R"("mechanism": "LOGIN")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("authenticated": true)"), std::string::npos) << log;
  // The content arrives as sent (aiosmtpd unstuffs it, CRLF kept).
  EXPECT_NE(log.find(R"(\r\n.leading dot\r\n..two dots\r\n.\r\n)"), std::string::npos) << log;
}

TEST(SmtpClient, AuthLoginWhenPlainIsNotOffered) {
  AuthServer server({"--mechanisms", "LOGIN"});
  ASSERT_TRUE(server.started());
  Session s = deliver_one(auth_target(server.endpoint(), "s3cret"), test_settings());
  expect_delivered(s);
  const std::string log = server.log();
  EXPECT_NE(log.find(R"({"event": "auth", "mechanism": "LOGIN", "ok": true})"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("authenticated": true)"), std::string::npos) << log;
}

TEST(SmtpClient, AuthRefusedIsPermanent) {
  for (const char* mechanism : {"PLAIN", "LOGIN"}) {
    SCOPED_TRACE(mechanism);
    AuthServer server({"--mechanisms", mechanism});
    ASSERT_TRUE(server.started());
    Session s = deliver_one(auth_target(server.endpoint(), "wrong"), test_settings());
    expect_error(s, true, 535, "5.7.8", "auth");
    const std::string log = server.log();
    EXPECT_NE(log.find(R"("ok": false)"), std::string::npos) << log;
    EXPECT_EQ(log.find(R"("event": "message")"), std::string::npos) << log;
  }
}

TEST(SmtpClient, CredentialsWithoutAuthOfferedAreATemporaryError) {
  Sink sink({});
  ASSERT_TRUE(sink.started());
  Session s = deliver_one(auth_target(sink.endpoint(), "s3cret"), test_settings());
  expect_error(s, false, 0, "4.7.0", "auth");
}


// ---- what only the wire shows ----

TEST(SmtpClient, PipeliningSendsTheEnvelopeAndDataInOneGo) {
  ScriptedServer server([](const std::string& c) { return ordinary_reply(c, true); });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test", "b@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  const auto& commands = server.commands();
  ASSERT_EQ(commands.size(), 7u);
  EXPECT_EQ(commands[1].line, "MAIL FROM:<from@client.test>");
  EXPECT_EQ(commands[4].line, "DATA");
  // MAIL and both RCPTs had the rest behind them; DATA was the last of the batch.
  for (size_t i = 1; i <= 3; ++i) EXPECT_TRUE(commands[i].more_waiting) << commands[i].line;
  EXPECT_FALSE(commands[4].more_waiting);
  // The content as sent: dot-stuffed.
  EXPECT_EQ(commands[5].line,
            "From: from@client.test\r\nTo: rcpt@sink.test\r\nSubject: dots\r\n\r\n"
            "..leading dot\r\n...two dots\r\n..\r\nmiddle . dot\r\n.. \r\nlast line\r\n");
  EXPECT_EQ(commands[6].line, "QUIT");
}

// RFC 3030 with RFC 2920: MAIL, the RCPTs, "BDAT n LAST" and the content
// in one write, and nothing dot-stuffed.
TEST(SmtpClient, ChunkingSendsTheWholeTransactionInOneGo) {
  ScriptedServer server([](const std::string& c) {
    if (c.starts_with("EHLO")) return std::string("250-scripted.test\r\n250-PIPELINING\r\n250 CHUNKING");
    return ordinary_reply(c, true);
  });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test", "b@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  const auto& commands = server.commands();
  ASSERT_EQ(commands.size(), 7u);
  EXPECT_EQ(commands[1].line, "MAIL FROM:<from@client.test>");
  EXPECT_EQ(commands[4].line, "BDAT " + std::to_string(message.content.size()) + " LAST");
  for (size_t i = 1; i <= 4; ++i) EXPECT_TRUE(commands[i].more_waiting) << commands[i].line;
  EXPECT_EQ(commands[5].line, message.content);
  EXPECT_FALSE(commands[5].more_waiting);
  EXPECT_EQ(commands[6].line, "QUIT");
}

TEST(SmtpClient, ChunkingWithoutPipeliningSendsTheContentAfterTheRecipients) {
  ScriptedServer server([](const std::string& c) {
    if (c.starts_with("EHLO")) return std::string("250-scripted.test\r\n250 CHUNKING");
    return ordinary_reply(c, false);
  });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  EXPECT_EQ(server.command_lines(),
            (std::vector<std::string>{"EHLO client.test", "MAIL FROM:<from@client.test>", "RCPT TO:<a@x.test>",
                                      "BDAT " + std::to_string(message.content.size()) + " LAST", message.content,
                                      "QUIT"}));
  // The command and its chunk go together; nothing else waits behind them.
  const auto& commands = server.commands();
  EXPECT_TRUE(commands[3].more_waiting);
  for (size_t i : {1u, 2u, 4u}) EXPECT_FALSE(commands[i].more_waiting) << commands[i].line;
}

TEST(SmtpClient, WithoutPipeliningEachCommandWaitsForItsReply) {
  ScriptedServer server([](const std::string& c) { return ordinary_reply(c, false); });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test", "b@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  EXPECT_EQ(server.command_lines(),
            (std::vector<std::string>{"EHLO client.test", "MAIL FROM:<from@client.test>", "RCPT TO:<a@x.test>",
                                      "RCPT TO:<b@x.test>", "DATA", server.commands()[5].line, "QUIT"}));
  for (const auto& c : server.commands()) EXPECT_FALSE(c.more_waiting) << c.line;
}

TEST(SmtpClient, WithoutPipeliningARefusedMailEndsTheTransaction) {
  ScriptedServer server([](const std::string& c) {
    return c.starts_with("MAIL") ? std::string("550 5.7.1 sender refused") : ordinary_reply(c, false);
  });
  ASSERT_TRUE(server.started());
  TestMessage first({"a@x.test"});
  TestMessage second({"b@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&first, &second});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::permanent, 550, "5.7.1");
  EXPECT_EQ(s.outcomes[0][0].text, "sender refused");
  // No RCPT after the refused MAIL, and no RSET: no transaction was open.
  EXPECT_EQ(server.command_lines(),
            (std::vector<std::string>{"EHLO client.test", "MAIL FROM:<from@client.test>",
                                      "MAIL FROM:<from@client.test>", "QUIT"}));
}

TEST(SmtpClient, RsetOnlyAfterATransactionThatDidNotEndCleanly) {
  int messages = 0;
  ScriptedServer server([&messages](const std::string& c) {
    if (c == "." && ++messages == 1) return std::string("554 5.6.0 content refused");
    return ordinary_reply(c, false);
  });
  ASSERT_TRUE(server.started());
  TestMessage first({"a@x.test"});
  TestMessage second({"b@x.test"});
  TestMessage third({"c@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&first, &second, &third});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::permanent, 554, "5.6.0");
  expect_all(s.outcomes.at(1), Kind::delivered, 250, "2.0.0");
  expect_all(s.outcomes.at(2), Kind::delivered, 250, "2.0.0");
  std::vector<std::string> verbs;
  for (const auto& line : server.command_lines()) verbs.push_back(line.substr(0, 4));
  EXPECT_EQ(verbs, (std::vector<std::string>{"EHLO", "MAIL", "RCPT", "DATA", "From", "RSET", "MAIL", "RCPT", "DATA",
                                             "From", "MAIL", "RCPT", "DATA", "From", "QUIT"}));
}

TEST(SmtpClient, HeloWhenTheServerDoesNotKnowEhlo) {
  ScriptedServer server([](const std::string& c) {
    return c.starts_with("EHLO") ? std::string("500 5.5.2 what?") : ordinary_reply(c, false);
  });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test"});
  message.envelope.body_type = "8BITMIME";
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  expect_delivered(s);
  const auto lines = server.command_lines();
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[1], "HELO client.test");
  EXPECT_EQ(lines[2], "MAIL FROM:<from@client.test>");  // no extensions after HELO
}

TEST(SmtpClient, MultiLineRepliesBecomeOneLineOfText) {
  ScriptedServer server([](const std::string& c) {
    return c.starts_with("RCPT") ? std::string("550-5.1.1 no such user\r\n550 5.1.1 here") : ordinary_reply(c, true);
  });
  ASSERT_TRUE(server.started());
  TestMessage message({"a@x.test"});
  Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
  ASSERT_FALSE(s.error) << s.error->text;
  expect_all(s.outcomes.at(0), Kind::permanent, 550, "5.1.1");
  EXPECT_EQ(s.outcomes[0][0].text, "no such user here");
  EXPECT_TRUE(s.usable_after[0]);
}

TEST(SmtpClient, MalformedOrOverlongRepliesEndTheConnection) {
  for (const std::string& bad : {std::string("25X not a reply"), std::string("250 ") + std::string(5000, 'x')}) {
    SCOPED_TRACE(bad.substr(0, 16));
    ScriptedServer server([&bad](const std::string& c) { return c.starts_with("RCPT") ? bad : ordinary_reply(c, false); });
    ASSERT_TRUE(server.started());
    TestMessage message({"a@x.test"});
    Session s = deliver(target_of(server.endpoint()), test_settings(), {&message});
    ASSERT_FALSE(s.error) << s.error->text;
    expect_all(s.outcomes.at(0), Kind::temporary, 0, "4.5.0");
    EXPECT_FALSE(s.usable_after[0]);
    EXPECT_EQ(server.command_lines().back(), "RCPT TO:<a@x.test>");  // no QUIT after that
  }
}

}  // namespace
}  // namespace tern::delivery
