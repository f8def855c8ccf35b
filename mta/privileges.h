// Running as root only as long as needed: when [server] user is set and
// ternd starts as root, it binds its listeners, hands the directories it
// writes to the service account, and then becomes that account for good
// (supplementary groups, gid, uid; no capabilities survive), before it opens
// the spool or reads any network input. Also: owner-only modes for what
// holds mail (the spool, Maildirs, the log).
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

#include "mta/config.h"
#include "queue/result.h"

namespace tern {

struct ServiceAccount {
  std::string user;
  std::string group;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The account [server] user/group name; nullopt when none is set. Fails when
// it does not exist, or when a user is set but ternd runs neither as root
// nor as that user already.
Result<std::optional<ServiceAccount>> service_account(const Config::Server& server);

// Gives `path` and everything below it to the account (files that belong to
// someone else only), unless `path` itself is the account's already. Root only.
Status hand_over(const std::string& path, const ServiceAccount& account);

// Becomes the account for good; fails (and the daemon stops) when any step
// fails or root could be regained. A no-op when already running as it.
Status drop_privileges(const ServiceAccount& account);

// Narrows an existing file or directory that its group or others may use
// to its owner, and logs it (permissions_tightened): it holds mail.
Status narrow_to_owner(const std::string& path);

// Creates `path` (and parents) if missing with mode 0700, or narrows it.
Status private_directory(const std::string& path);

}  // namespace tern
