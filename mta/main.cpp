// ternd: the Tern mail transfer agent daemon.
#include <cstdio>
#include <cstring>
#include <string>

#include "mta/config.h"
#include "mta/daemon.h"

namespace {

void usage(FILE* out) {
  fputs(
      "usage: ternd [--config FILE]\n"
      "       ternd --check-config FILE\n"
      "       ternd --print-default-config\n"
      "Without --config, ternd runs on its embedded default configuration\n"
      "(SMTP on 127.0.0.1:2525, spool under ./var, relaying for loopback clients only).\n",
      out);
}

int check_config(const std::string& path) {
  auto parsed = tern::load_config_file(path);
  for (const auto& e : parsed.errors) fprintf(stderr, "%s: %s\n", path.c_str(), tern::format_config_error(e).c_str());
  if (!parsed.ok()) return 1;
  printf("%s: ok\n", path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--config" || arg == "-c") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--check-config" && i + 1 < argc) {
      return check_config(argv[i + 1]);
    } else if (arg == "--print-default-config") {
      fwrite(tern::default_config_toml().data(), 1, tern::default_config_toml().size(), stdout);
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "ternd: unknown argument: %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  return tern::run_daemon(config_path);
}
