// tests/sim/state_machine.h: the replicated state machine of the simulation.
//
// An append-only list of applied client commands. It is deliberately the simplest
// machine that makes every ordering mistake visible: two replicas that applied different
// entries at one index differ in their lists. Snapshots serialize the whole list.
//
// Thread-safety: a value; not shared.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "replication/types.h"

namespace ring::sim {

// One applied client command. No-ops and configuration entries advance applied_index
// but leave no command.
struct AppliedCommand {
  uint64_t index = 0;
  uint64_t term = 0;
  std::string data;
};

class SimStateMachine {
 public:
  uint64_t applied_index() const { return applied_index_; }
  const std::vector<AppliedCommand>& commands() const { return commands_; }

  void Apply(const replication::Entry& e) {
    applied_index_ = e.index;
    if (e.type == replication::EntryType::kNormal && !e.data.empty()) {
      commands_.push_back(AppliedCommand{e.index, e.term, e.data.str()});
    }
  }

  // "index term data\n" per command; commands never contain spaces or newlines.
  std::string Serialize() const {
    std::string out;
    for (const AppliedCommand& c : commands_) {
      out += std::to_string(c.index) + " " + std::to_string(c.term) + " " + c.data + "\n";
    }
    return out;
  }

  Status Restore(uint64_t index, const std::string& data) {
    std::vector<AppliedCommand> commands;
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t eol = data.find('\n', pos);
      if (eol == std::string::npos) return Status::Corruption("sim snapshot: unterminated line");
      const std::string line = data.substr(pos, eol - pos);
      pos = eol + 1;
      const size_t a = line.find(' ');
      const size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
      if (b == std::string::npos) return Status::Corruption("sim snapshot: bad line '" + line + "'");
      AppliedCommand c;
      c.index = std::stoull(line.substr(0, a));
      c.term = std::stoull(line.substr(a + 1, b - a - 1));
      c.data = line.substr(b + 1);
      commands.push_back(std::move(c));
    }
    applied_index_ = index;
    commands_ = std::move(commands);
    return Status::OK();
  }

  // The command applied at `index`, or nullptr.
  const AppliedCommand* At(uint64_t index) const {
    auto it = std::lower_bound(
        commands_.begin(), commands_.end(), index,
        [](const AppliedCommand& c, uint64_t i) { return c.index < i; });
    return it != commands_.end() && it->index == index ? &*it : nullptr;
  }

 private:
  uint64_t applied_index_ = 0;
  std::vector<AppliedCommand> commands_;
};

}  // namespace ring::sim
