// An SMTP reply: RFC 5321 code, RFC 3463 enhanced code and text.
#pragma once
#include <string>
#include <string_view>

namespace tern::smtp {

struct Reply {
  int code = 0;               // 250, 501, ...
  std::string_view enhanced;  // "2.1.0"; always a string literal
  std::string text;
};

}  // namespace tern::smtp
