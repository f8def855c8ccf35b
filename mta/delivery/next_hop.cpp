#include "mta/delivery/next_hop.h"

namespace tern::delivery {

std::string NextHop::key() const {
  const char* kind_tag = kind == Kind::local ? "local:" : kind == Kind::mx ? "mx:" : "relay:";
  std::string key(kind_tag);
  key.append(host).append(":").append(std::to_string(port));
  key.append(":tls").append(std::to_string(static_cast<int>(tls)));
  // The credentials too: a destination's connections log in once, as its
  // first hop says. Only an in-memory map key, never logged.
  if (auth) {
    key.append(":").append(std::to_string(auth->user.size())).append(":").append(auth->user);
    key.append(":").append(auth->password);
  }
  return key;
}

}  // namespace tern::delivery
