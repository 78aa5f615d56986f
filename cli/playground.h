// cli/playground.h: `ringctl playground`, a throwaway local cluster in the foreground.
//
// Starts N ringd processes on 127.0.0.1, waits until each serves, prints how to use them,
// then waits for SIGINT/SIGTERM/SIGHUP and shuts every node down (SIGTERM, then SIGKILL
// after a bounded wait). The nodes die with ringctl even if it is killed outright
// (PR_SET_PDEATHSIG), and live in their own process group so a terminal's Ctrl-C reaches
// only ringctl, which then stops them in order.
//
// Must be called from the main thread before any other thread exists: it blocks the
// signals it waits for (threads started later inherit the mask), and PR_SET_PDEATHSIG
// tracks the thread that forked the nodes, which must therefore live until exit.
#pragma once

#include <string>

namespace ring::cli {

struct PlaygroundOptions {
  int nodes = 1;                   // 1..9
  std::string dir;                 // empty: a new directory under $TMPDIR (default /tmp)
  int base_port = 7001;            // node i (1-based) listens on base_port + i - 1
  int metrics_base_port = 9101;    // likewise for /metrics; 0 turns metrics off
  bool keep = false;               // keep `dir` on exit
  std::string sync_policy = "sync";
  bool json = false;               // one JSON object on stdout instead of the banner
};

// Runs the playground until it is told to stop; returns ringctl's exit code: kExitOk after
// a requested shutdown, kExitUsage for bad options, kExitSoftware if a node could not start
// or died.
int RunPlayground(const PlaygroundOptions& options);

}  // namespace ring::cli
