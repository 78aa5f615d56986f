// tests/sim/scenario.h: golden, data-driven scenario tests in the style of etcd's
// raft/testdata/*.txt interaction tests.
//
// A scenario file is a sequence of blocks; each is a command, a "----" line, and the
// output the command is expected to print, ended by a blank line. Lines starting with '#'
// between blocks are comments. Commands drive a SimCluster by hand (so the invariant
// checker runs underneath every scenario):
//
//   cluster voters=N [brandnew] [prevote=off] [checkquorum=off] [election=T] [maxmsg=1] [inflight=K]
//   set-log ID terms=1,1,4,... [term=T] [vote=V] [commit=C]   replace ID's disk (restarts it)
//   campaign ID | tick ID|all [N] | propose ID DATA | transfer ID TARGET
//   read-index ID | lease ID | compact ID [keep=N] | conf ID add-voter|add-learner|remove X
//   create-node
//   process-ready ID...|all    run one Ready cycle (persist, send, apply)
//   deliver [from=X] [to=Y] [type=T] [drop]   deliver or drop the matching in-flight messages
//   stabilize                  deliver everything and process every Ready until quiet
//   crash ID | restart ID | isolate ID | cut X Y | heal
//   log ID | status | net      print a replica's log, every replica, or what is in flight
//
// Thread-safety: none.
#pragma once

#include <string>

#include "common/status.h"

namespace ring::sim {

// Runs the scenario in `text` and returns the file as it should read: the same commands
// and comments with each command's actual output. A test compares this with `text`;
// regenerating a golden file writes it back (RING_SIM_REWRITE=1).
Result<std::string> RunScenario(const std::string& text);

}  // namespace ring::sim
