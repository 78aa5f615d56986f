// One Catch2 runner for every test. Speed classes are tags: untagged tests are fast unit
// tests; [integration] starts real ringd processes; [fault] injects crashes and disk faults.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <csignal>

int main(int argc, char** argv) {
  // A peer that closes early must surface as an error, not kill the test runner.
  std::signal(SIGPIPE, SIG_IGN);
  return Catch::Session().run(argc, argv);
}
