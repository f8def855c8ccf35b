// libFuzzer target for the pure SMTP parsers. Besides crashes and sanitizer
// reports it aborts when an invariant breaks, in particular when the
// DataReader's result depends on where its input is cut.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "mta/smtp/address.h"
#include "mta/smtp/command.h"
#include "mta/smtp/data_reader.h"
#include "mta/smtp/params.h"
#include "mta/smtp/sasl.h"

namespace {

using tern::smtp::ContentLimits;
using tern::smtp::DataReader;
using tern::smtp::Reply;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void check_reply(const Reply& reply) {
  check(reply.code >= 400 && reply.code < 600, "error reply code");
  check(reply.enhanced.size() == 5 && reply.enhanced[0] == char('0' + reply.code / 100), "enhanced code");
  check(!reply.text.empty(), "reply text");
}

bool has_non_ascii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

void fuzz_line_parsers(std::string_view line) {
  const tern::smtp::Command command = tern::smtp::parse_command(line);
  check(command.argument.size() <= line.size(), "argument within line");
  if (command.verb != tern::smtp::Verb::unknown) check(line.size() >= 4, "verb length");

  const auto path = tern::smtp::parse_path(line, true, "5.1.7");
  if (const auto* address = std::get_if<tern::smtp::Address>(&path)) {
    check(line.size() <= 256, "path length");
    check(address->local_part.size() <= 64, "local part length");
    check(address->null() || !address->local_part.empty(), "local part present");
    check(address->utf8 == has_non_ascii(line), "utf8 flag");
    check(tern::smtp::valid_utf8(line), "accepted path is UTF-8");
  } else {
    check_reply(std::get<Reply>(path));
  }
  // SMTP AUTH responses (RFC 4954): strict base64, then the PLAIN message.
  if (auto decoded = tern::smtp::base64_decode(line)) {
    check(tern::smtp::base64_encode(*decoded) == line, "base64 canonical round trip");
    (void)tern::smtp::parse_sasl_plain(*decoded);
  }
  check(tern::smtp::base64_decode(tern::smtp::base64_encode(line)) == std::string(line), "base64 encode/decode");
  if (auto plain = tern::smtp::parse_sasl_plain(line))
    check(!plain->authcid.empty() && !plain->password.empty() && plain->password.size() <= 255, "PLAIN fields");

  const auto forward = tern::smtp::parse_path(line, false, "5.1.3");
  if (const auto* address = std::get_if<tern::smtp::Address>(&forward)) check(!address->null(), "null forward path");

  const auto mail = tern::smtp::parse_mail_argument(line);
  if (const auto* reply = std::get_if<Reply>(&mail)) check_reply(*reply);
  const auto mail_ok = std::get_if<tern::smtp::MailArgument>(&mail);
  if (mail_ok && mail_ok->sender.utf8) check(mail_ok->smtputf8, "UTF-8 sender without SMTPUTF8");

  for (const bool smtputf8 : {false, true}) {
    const auto rcpt = tern::smtp::parse_rcpt_argument(line, smtputf8);
    if (const auto* reply = std::get_if<Reply>(&rcpt)) {
      check_reply(*reply);
    } else {
      const auto& ok = std::get<tern::smtp::RcptArgument>(rcpt);
      check(!ok.recipient.null(), "null recipient");
      check(smtputf8 || !ok.recipient.utf8, "UTF-8 recipient outside SMTPUTF8");
      check(ok.notify == 0 || ok.notify == 1 || (ok.notify & 1) == 0, "NOTIFY=NEVER with others");
    }
  }

  const auto bdat = tern::smtp::parse_bdat_argument(line);
  if (const auto* reply = std::get_if<Reply>(&bdat)) check_reply(*reply);

  const auto helo = tern::smtp::parse_helo_argument(line);
  if (const auto* domain = std::get_if<std::string_view>(&helo)) {
    check(*domain == line && !line.empty(), "HELO argument returned as given");
  } else {
    check_reply(std::get<Reply>(helo));
  }

  std::string decoded = "stale";
  if (tern::smtp::xtext_decode(line, decoded)) {
    check(decoded.size() <= line.size(), "xtext decodes shorter");
  } else {
    check(decoded.empty(), "xtext failure leaves output empty");
  }
}

// Everything observable from outside a DataReader after some input.
struct Outcome {
  size_t consumed = 0;
  bool done = false;
  std::string output;
  std::optional<int> code;
  uint64_t size = 0;
  std::string message_id;
  unsigned received = 0;
  bool operator==(const Outcome&) const = default;
};

Outcome run_reader(DataReader::Mode mode, const ContentLimits& limits, std::string_view input, size_t step) {
  DataReader reader(mode, limits);
  Outcome o;
  for (size_t offset = 0; offset < input.size() && !reader.done(); offset += step) {
    const std::string_view piece = input.substr(offset, step);
    const size_t consumed = reader.feed(piece);
    check(consumed <= piece.size(), "feed consumes at most its input");
    check(consumed == piece.size() || (mode == DataReader::Mode::data && reader.done()),
          "feed consumes everything unless DATA ended");
    o.consumed += consumed;
    o.output += reader.take_output();
  }
  if (mode == DataReader::Mode::bdat) reader.finish();
  o.output += reader.take_output();
  o.done = reader.done();
  if (const std::optional<Reply> verdict = reader.verdict()) {
    check_reply(*verdict);
    o.code = verdict->code;
    // Output taken before the refusal depends on the cuts, and is worthless.
    o.output.clear();
  }
  o.size = reader.size();
  o.message_id = reader.message_id();
  o.received = reader.received_headers();
  check(o.message_id.size() <= 998, "Message-ID bounded");
  return o;
}

// Same as run_reader, but with one cut at `cut`.
Outcome run_reader_cut(DataReader::Mode mode, const ContentLimits& limits, std::string_view input, size_t cut) {
  DataReader reader(mode, limits);
  Outcome o;
  for (const std::string_view piece : {input.substr(0, cut), input.substr(cut)}) {
    const size_t consumed = reader.feed(piece);
    o.consumed += consumed;
    o.output += reader.take_output();
  }
  if (mode == DataReader::Mode::bdat) reader.finish();
  o.output += reader.take_output();
  o.done = reader.done();
  if (const std::optional<Reply> verdict = reader.verdict()) {
    o.code = verdict->code;
    o.output.clear();
  }
  o.size = reader.size();
  o.message_id = reader.message_id();
  o.received = reader.received_headers();
  return o;
}

void check_data_output(const Outcome& o, std::string_view input) {
  if (o.code) return;
  check(o.output.size() == o.size, "size counts the output");
  // Without refusal every line end in the output is CRLF.
  for (size_t i = 0; i < o.output.size(); ++i) {
    if (o.output[i] == '\n') check(i > 0 && o.output[i - 1] == '\r', "bare LF in output");
    if (o.output[i] == '\r') check(i + 1 < o.output.size() && o.output[i + 1] == '\n', "bare CR in output");
  }
  // The end of DATA is a CRLF "." CRLF in the input (or "." CRLF at its start).
  if (o.done) {
    const std::string_view consumed = input.substr(0, o.consumed);
    check(consumed == ".\r\n" || (consumed.size() >= 5 && consumed.substr(consumed.size() - 5) == "\r\n.\r\n"),
          "DATA ends only at CRLF.CRLF");
  }
}

void fuzz_data_reader(std::string_view input, uint8_t knobs, size_t cut) {
  ContentLimits limits;
  limits.allow_bare_lf = knobs & 1;
  if (knobs & 2) {
    // Small limits, so that every verdict is reachable with small inputs.
    limits.max_line_length = 8 + (knobs >> 4);
    limits.max_size = 64 + (knobs >> 2) * 4;
    limits.max_received = (knobs >> 5) & 3;
  }
  for (const DataReader::Mode mode : {DataReader::Mode::data, DataReader::Mode::bdat}) {
    const Outcome whole = run_reader(mode, limits, input, input.size() + 1);
    if (mode == DataReader::Mode::data) check_data_output(whole, input);
    if (mode == DataReader::Mode::bdat) {
      check(whole.done && whole.consumed == input.size(), "BDAT consumes everything");
      if (!whole.code) check(whole.output.size() == whole.size, "BDAT size counts the output");
    }
    check(run_reader_cut(mode, limits, input, cut % (input.size() + 1)) == whole, "split invariance");
    if (input.size() <= 512) check(run_reader(mode, limits, input, 1) == whole, "byte-by-byte invariance");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t knobs = data[0];
  const size_t cut = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  fuzz_line_parsers(input);
  fuzz_data_reader(input, knobs, cut * 7);
  return 0;
}
