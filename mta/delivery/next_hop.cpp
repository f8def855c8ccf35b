#include "mta/delivery/next_hop.h"

namespace tern::delivery {

std::string NextHop::key() const {
  const char* kind_tag = kind == Kind::local ? "local:" : kind == Kind::mx ? "mx:" : "relay:";
  return kind_tag + host + ":" + std::to_string(port);
}

}  // namespace tern::delivery
