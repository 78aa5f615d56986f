// cli/exit_codes.h: ringctl's process exit codes, shared by every command.
//
// They are part of ringctl's interface: scripts branch on them, so never renumber one.
// The 64+ codes follow BSD sysexits.h, so they cannot collide with the small
// "expected outcome" codes 1 and 2. The table is repeated in ringctl's --help footer.
#pragma once

#include "ring/status.h"

namespace ring::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotFound = 1;       // get: the key does not exist
inline constexpr int kExitCasMismatch = 2;    // cas: not applied, the current value differs
inline constexpr int kExitUsage = 64;         // bad flags or arguments
inline constexpr int kExitInvalidInput = 65;  // rejected by limits (InvalidArgument)
inline constexpr int kExitUnavailable = 69;   // unreachable, timed out or busy
inline constexpr int kExitSoftware = 70;      // any other error
inline constexpr int kExitIOError = 74;       // a node's disk failed (IOError)

// The exit code for a call that failed with `code`; kExitOk for kOk.
inline int ExitCodeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kNotFound: return kExitNotFound;
    case StatusCode::kInvalidArgument: return kExitInvalidInput;
    case StatusCode::kTimeout:
    case StatusCode::kUnavailable:
    case StatusCode::kBusy: return kExitUnavailable;
    case StatusCode::kIOError: return kExitIOError;
    case StatusCode::kCorruption:
    case StatusCode::kNotLeader:
    case StatusCode::kWrongShard:
    case StatusCode::kStaleEpoch: return kExitSoftware;
  }
  return kExitSoftware;
}

}  // namespace ring::cli
