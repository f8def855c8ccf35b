// Delivery into a Maildir: tmp, fsync, rename into new; quota.
//
// User NAME's Maildir is <root>/NAME/{tmp,new,cur}; missing directories
// (the root included) are created with mode 0700, and the parent of each
// directory created is fsynced. A delivery (the Maildir convention,
// https://cr.yp.to/proto/maildir.html):
//
//   1. quota: when quota > 0 and the mailbox's usage (the sizes of the files
//      in new/ and cur/) plus this message's size exceeds it → over_quota,
//      nothing written. The check is not atomic against a concurrent
//      delivery to the same mailbox (a soft quota);
//   2. write tmp/<unique> (O_EXCL, mode 0600): the prefix header lines,
//      then the content, CRLF line ends turned into LF (the local
//      convention of Maildir files; a CR not before an LF is kept); fsync;
//   3. link it as new/<unique> and unlink tmp/<unique> (rename() where the
//      file system has no hard links), so readers of new/ never see a
//      partial file;
//   4. fsync new/, which makes the delivery durable: only then "delivered".
//
// On an error the tmp file is removed and the result is failed, with the
// errno text. A failure after step 3 (the fsync of new/) leaves the file in
// new/: delivery is at least once, a retry may deliver a second copy.
//
// Blocking file I/O: the delivery engine calls these on its offload thread
// (mta/io/offload.h), never on a loop. Safe to call from several threads at
// once (unique names come from a process-wide atomic sequence).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::local {

struct MaildirResult {
  enum class Kind { delivered, over_quota, failed } kind;
  std::string path;   // delivered: <root>/<user>/new/<unique>
  std::string error;  // over_quota, failed: why
};

// prefix_headers: complete header lines to put first, e.g.
// "Return-Path: <s>\r\nDelivered-To: u@d\r\n". hostname: the last part of
// the unique name ("" = gethostname()).
MaildirResult deliver_to_maildir(const std::string& root, const std::string& user, std::string_view prefix_headers,
                                 std::string_view content, uint64_t quota, std::string_view hostname);

// Bytes in <root>/<user>/new and cur (regular files); 0 for a missing
// Maildir or an invalid user name.
uint64_t maildir_usage(const std::string& root, const std::string& user);

// A name that is safe as one directory under the root: [a-z0-9._-]+, at
// most 64 characters, not starting with '.' (no "..", no hidden files, no
// '/').
bool valid_maildir_user(std::string_view user);

// A unique Maildir file name: "<sec>.M<usec>P<pid>Q<sequence>.<hostname>",
// with '/' and ':' in the hostname replaced by '_' ('/' would make a path,
// ':' starts a Maildir name's flags). Pure; also used by tern-sink.
std::string maildir_file_name(int64_t unix_us, long pid, uint64_t sequence, std::string_view hostname);

// Loop protection: whether the header section of `content` (CRLF or LF
// lines, up to the first empty line; folded fields unfolded) has a
// Delivered-To: field whose value is `address` (ASCII case-insensitive,
// surrounding spaces and one pair of angle brackets ignored). A message
// that already went through this mailbox is refused with 5.4.6.
bool delivered_to_present(std::string_view content, std::string_view address);

}  // namespace tern::local
