// ringd: a ringstore node. See server/server.h for its lifecycle and README.md for usage.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "server/config.h"
#include "server/server.h"

namespace {

// Many client connections need many descriptors; take the whole hard limit.
void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool WriteReadyFile(const std::string& path, const std::string& listen, const std::string& metrics) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "listen=" << listen << "\nmetrics=" << metrics << "\npid=" << getpid() << "\n";
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);  // atomic: readers never see a partial file
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = ring::server::ParseCommandLine(argc, argv);
  if (!parsed.run) {
    std::fputs(parsed.output.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  const auto& config = parsed.config;
  auto logger = spdlog::stderr_color_mt("ringd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  std::signal(SIGPIPE, SIG_IGN);
  RaiseFileLimit();

  auto server = ring::server::Server::Create(config);
  if (!server.ok()) {
    spdlog::critical("cannot start: {}", server.status().ToString());
    return 1;
  }
  if (!config.ready_file.empty() &&
      !WriteReadyFile(config.ready_file, (*server)->listen_address(), (*server)->metrics_address())) {
    spdlog::critical("cannot write ready file {}", config.ready_file);
    return 1;
  }
  int code = (*server)->Run();
  spdlog::default_logger()->flush();
  return code;
}
