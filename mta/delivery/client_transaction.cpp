#include "mta/delivery/client_transaction.h"

#include <algorithm>

#include "mta/smtp/params.h"
#include "queue/envelope.h"

namespace tern::delivery {

namespace {

RecipientOutcome::Kind kind_of(const smtp::ParsedReply& reply) {
  if (reply.klass() == 2) return RecipientOutcome::Kind::delivered;
  if (reply.klass() == 5) return RecipientOutcome::Kind::permanent;
  return RecipientOutcome::Kind::temporary;
}

// RFC 3461 section 4.1.
std::string notify_value(uint8_t notify) {
  if (notify & queue::notify_never) return "NEVER";
  std::string value;
  for (auto [flag, name] : {std::pair{queue::notify_success, "SUCCESS"}, std::pair{queue::notify_failure, "FAILURE"},
                            std::pair{queue::notify_delay, "DELAY"}}) {
    if ((notify & flag) == 0) continue;
    if (!value.empty()) value += ',';
    value += name;
  }
  return value;
}

}  // namespace

std::string text_of(const smtp::ParsedReply& reply) {
  std::string text;
  for (std::string_view line : reply.lines()) {
    // Servers repeat the enhanced code on every line ("550-5.1.1 ...").
    if (!reply.enhanced.empty() && line.starts_with(reply.enhanced)) {
      line.remove_prefix(reply.enhanced.size());
      line.remove_prefix(std::min(line.size(), line.find_first_not_of(" \t")));
    }
    if (line.empty()) continue;
    if (!text.empty()) text += ' ';
    text += line;
  }
  return text;
}

std::string enhanced_code_of(const smtp::ParsedReply& reply) {
  const int klass = reply.klass();
  if (klass != 2 && klass != 4 && klass != 5) return "4.5.0";
  // RFC 3463 section 2: the class of the enhanced code matches the reply's.
  if (!reply.enhanced.empty() && reply.enhanced.front() == static_cast<char>('0' + klass)) return reply.enhanced;
  return std::to_string(klass) + ".0.0";
}

ClientTransaction::ClientTransaction(const OutboundMessage& message, const smtp::EhloInfo& server)
    : message_(message),
      server_(server),
      stages_(message.recipients.size(), Stage::open),
      outcomes_(message.recipients.size()) {
  for (size_t k = 0; k < outcomes_.size(); ++k) outcomes_[k].recipient = message_.recipients[k];
  const uint64_t size = message_.content->size();
  if (server_.size != 0 && size > server_.size) {
    const std::string text =
        "message size " + std::to_string(size) + " exceeds the server's limit of " + std::to_string(server_.size);
    for (size_t k = 0; k < stages_.size(); ++k) decide(k, RecipientOutcome::Kind::permanent, 0, "5.3.4", text);
  } else if (message_.envelope->smtputf8 && !server_.smtputf8) {
    for (size_t k = 0; k < stages_.size(); ++k)
      decide(k, RecipientOutcome::Kind::permanent, 0, "5.6.7", "SMTPUTF8 is required, but not offered by the server");
  }
}

bool ClientTransaction::settled() const {
  for (Stage s : stages_)
    if (s != Stage::decided) return false;
  return true;
}

std::string ClientTransaction::mail_command() const {
  const queue::Envelope& env = *message_.envelope;
  std::string cmd = "MAIL FROM:<" + env.sender + ">";
  if (server_.has("SIZE")) cmd += " SIZE=" + std::to_string(message_.content->size());
  if (env.body_type == "8BITMIME" && server_.eight_bit_mime) cmd += " BODY=8BITMIME";
  if (env.body_type == "BINARYMIME" && server_.chunking && server_.has("BINARYMIME")) cmd += " BODY=BINARYMIME";
  if (env.smtputf8) cmd += " SMTPUTF8";
  if (server_.has("DSN")) {
    if (!env.ret.empty()) cmd += " RET=" + env.ret;
    if (!env.envid.empty()) cmd += " ENVID=" + smtp::xtext_encode(env.envid);
  }
  cmd += "\r\n";
  return cmd;
}

std::string ClientTransaction::rcpt_command(size_t k) const {
  const queue::Recipient& r = message_.envelope->recipients[message_.recipients[k]];
  std::string cmd = "RCPT TO:<" + r.address + ">";
  if (server_.has("DSN")) {
    if (r.notify != 0) cmd += " NOTIFY=" + notify_value(r.notify);
    // Stored as "addr-type;address", the address decoded.
    const size_t semicolon = r.orcpt.find(';');
    if (semicolon != std::string::npos)
      cmd += " ORCPT=" + r.orcpt.substr(0, semicolon + 1) + smtp::xtext_encode(std::string_view(r.orcpt).substr(semicolon + 1));
  }
  cmd += "\r\n";
  return cmd;
}

std::string ClientTransaction::bdat_command() const {
  return "BDAT " + std::to_string(message_.content->size()) + " LAST\r\n";
}

void ClientTransaction::on_mail_reply(const smtp::ParsedReply& reply) {
  if (reply.klass() == 2) {
    mail_accepted_ = true;
    return;
  }
  for (size_t k = 0; k < stages_.size(); ++k)
    if (stages_[k] == Stage::open) decide_by_reply(k, reply);
}

void ClientTransaction::on_rcpt_reply(size_t k, const smtp::ParsedReply& reply) {
  if (stages_[k] != Stage::open) return;
  if (reply.klass() == 2) {
    stages_[k] = Stage::accepted;
    return;
  }
  decide_by_reply(k, reply);
}

size_t ClientTransaction::accepted_count() const {
  size_t n = 0;
  for (Stage s : stages_) n += s == Stage::accepted;
  return n;
}

void ClientTransaction::on_data_refused(const smtp::ParsedReply& reply) {
  for (size_t k = 0; k < stages_.size(); ++k) {
    if (stages_[k] != Stage::accepted) continue;
    if (reply.klass() == 2) {
      decide(k, RecipientOutcome::Kind::temporary, reply.code, "4.5.0", "unexpected reply to DATA: " + text_of(reply));
    } else {
      decide_by_reply(k, reply);
    }
  }
}

void ClientTransaction::on_final_reply(const smtp::ParsedReply& reply) {
  for (size_t k = 0; k < stages_.size(); ++k)
    if (stages_[k] == Stage::accepted) decide_by_reply(k, reply);
}

void ClientTransaction::on_service_closing(const smtp::ParsedReply& reply) {
  for (size_t k = 0; k < stages_.size(); ++k)
    if (stages_[k] != Stage::decided)
      decide(k, RecipientOutcome::Kind::temporary, reply.code, enhanced_code_of(reply), text_of(reply));
}

void ClientTransaction::on_no_reply(std::string_view enhanced, std::string_view text) {
  for (size_t k = 0; k < stages_.size(); ++k)
    if (stages_[k] != Stage::decided)
      decide(k, RecipientOutcome::Kind::temporary, 0, std::string(enhanced), std::string(text));
}

std::vector<RecipientOutcome> ClientTransaction::take_outcomes() {
  on_no_reply("4.4.2", "the transaction ended without a reply for this recipient");
  return std::move(outcomes_);
}

void ClientTransaction::decide(size_t k, RecipientOutcome::Kind kind, int code, std::string enhanced,
                               std::string text) {
  stages_[k] = Stage::decided;
  RecipientOutcome& o = outcomes_[k];
  o.kind = kind;
  o.code = code;
  o.enhanced = std::move(enhanced);
  o.text = std::move(text);
}

void ClientTransaction::decide_by_reply(size_t k, const smtp::ParsedReply& reply) {
  decide(k, kind_of(reply), reply.code, enhanced_code_of(reply), text_of(reply));
}

}  // namespace tern::delivery
