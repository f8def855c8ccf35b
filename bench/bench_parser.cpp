// Micro-benchmarks of the SMTP protocol parsers (linked into bench_micro,
// whose main comes from benchmark_main).
#include <benchmark/benchmark.h>

#include <array>
#include <string>
#include <string_view>

#include "mta/smtp/command.h"
#include "mta/smtp/data_reader.h"
#include "mta/smtp/params.h"

namespace {

using tern::smtp::ContentLimits;
using tern::smtp::DataReader;

void BM_ParseCommand(benchmark::State& state) {
  constexpr std::array<std::string_view, 8> lines = {
      "EHLO mail.example.com",
      "MAIL FROM:<sender@example.com> SIZE=12345 BODY=8BITMIME",
      "RCPT TO:<recipient@example.org>",
      "DATA",
      "BDAT 65536 LAST",
      "RSET",
      "STARTTLS",
      "QUIT",
  };
  for (auto _ : state) {
    for (const std::string_view line : lines) benchmark::DoNotOptimize(tern::smtp::parse_command(line));
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(lines.size()));
}
BENCHMARK(BM_ParseCommand);

void BM_ParseMailArgumentWithDsn(benchmark::State& state) {
  constexpr std::string_view arg =
      "FROM:<bounce-12345@lists.example.com> SIZE=48213 BODY=8BITMIME RET=HDRS ENVID=QQ314159+2B27";
  for (auto _ : state) benchmark::DoNotOptimize(tern::smtp::parse_mail_argument(arg));
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_ParseMailArgumentWithDsn);

void BM_ParseRcptArgumentWithDsn(benchmark::State& state) {
  constexpr std::string_view arg =
      "TO:<someone@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;someone+2Btag@example.org";
  for (auto _ : state) benchmark::DoNotOptimize(tern::smtp::parse_rcpt_argument(arg, false));
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_ParseRcptArgumentWithDsn);

// A dot-stuffed DATA message of about `size` octets: a header section, then
// 76-column body lines, some starting with a dot, then the terminator.
std::string make_message(size_t size) {
  std::string message =
      "Received: from client.example.com (client.example.com [192.0.2.1])\r\n"
      "\tby mx.example.org with ESMTP id 1a2b3c\r\n"
      "Message-ID: <20240101120000.12345@client.example.com>\r\n"
      "From: Sender <sender@example.com>\r\n"
      "To: Recipient <recipient@example.org>\r\n"
      "Subject: benchmark\r\n"
      "\r\n";
  const std::string line(76, 'x');
  for (size_t n = 0; message.size() < size; ++n) {
    if (n % 50 == 0) message += '.';
    message += line;
    message += "\r\n";
  }
  message += ".\r\n";
  return message;
}

void BM_DataReaderFeed(benchmark::State& state) {
  const std::string message = make_message(size_t(state.range(0)));
  for (auto _ : state) {
    DataReader reader(DataReader::Mode::data, ContentLimits{});
    benchmark::DoNotOptimize(reader.feed(message));
    benchmark::DoNotOptimize(reader.take_output());
    if (!reader.done()) state.SkipWithError("message did not end");
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(message.size()));
}
BENCHMARK(BM_DataReaderFeed)->Arg(1 << 10)->Arg(1 << 20);

// The same 1 MiB message arriving in 16 KiB reads, output taken after each.
void BM_DataReaderFeedChunked(benchmark::State& state) {
  const std::string message = make_message(1 << 20);
  constexpr size_t chunk = 16 << 10;
  for (auto _ : state) {
    DataReader reader(DataReader::Mode::data, ContentLimits{});
    for (size_t offset = 0; offset < message.size(); offset += chunk) {
      reader.feed(std::string_view(message).substr(offset, chunk));
      benchmark::DoNotOptimize(reader.take_output());
    }
    if (!reader.done()) state.SkipWithError("message did not end");
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(message.size()));
}
BENCHMARK(BM_DataReaderFeedChunked);

}  // namespace
