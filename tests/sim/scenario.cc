#include "tests/sim/scenario.h"

#include <algorithm>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "tests/sim/cluster.h"

namespace ring::sim {

using replication::ConfChange;
using replication::ConfChangeType;
using replication::Role;

namespace {

struct Command {
  std::string name;
  std::vector<std::string> args;           // positional
  std::map<std::string, std::string> kv;   // key=value
  bool flag(const std::string& k) const { return kv.count(k) != 0; }
};

Command Parse(const std::string& line) {
  Command c;
  std::istringstream in(line);
  in >> c.name;
  std::string tok;
  while (in >> tok) {
    const size_t eq = tok.find('=');
    if (eq == std::string::npos) {
      c.args.push_back(tok);
      if (tok == "drop") c.kv["drop"] = "";
    } else {
      c.kv[tok.substr(0, eq)] = tok.substr(eq + 1);
    }
  }
  return c;
}

Result<uint64_t> Num(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("not a number: '" + s + "'");
  }
  return std::stoull(s);
}

class Interpreter {
 public:
  // Runs one command; its output is what the cluster traced plus what it printed.
  Result<std::string> Run(const Command& c) {
    std::string out;
    RETURN_IF_ERROR(Dispatch(c, &out));
    std::string traced = trace_.Take();
    std::string text;
    std::istringstream lines(traced);
    std::string line;
    while (std::getline(lines, line)) {
      // Cluster traces indent for ring_sim's step headers; scenarios do not need that.
      if (line.rfind("  ", 0) == 0) line = line.substr(2);
      text += line + "\n";
    }
    text += out;
    if (cluster_ && cluster_->failed()) {
      text += "VIOLATION of " + cluster_->checker().invariant() + ": " +
              cluster_->checker().detail() + "\n";
    }
    if (text.empty()) text = "ok\n";
    return text;
  }

 private:
  Status NeedCluster() const {
    return cluster_ ? Status::OK() : Status::InvalidArgument("no cluster yet");
  }

  Result<NodeId> Id(const Command& c, size_t i) {
    if (i >= c.args.size()) return Status::InvalidArgument(c.name + ": missing node id");
    ASSIGN_OR_RETURN(uint64_t id, Num(c.args[i]));
    if (cluster_->node(id) == nullptr) {
      return Status::InvalidArgument(c.name + ": no node " + std::to_string(id));
    }
    return static_cast<NodeId>(id);
  }

  Result<RaftCore*> Core(NodeId id) {
    SimCluster::Node* n = cluster_->node(id);
    if (n == nullptr || !n->alive()) {
      return Status::InvalidArgument("node " + std::to_string(id) + " is down");
    }
    return n->core.get();
  }

  Status Dispatch(const Command& c, std::string* out) {
    if (c.name == "cluster") return NewCluster(c);
    RETURN_IF_ERROR(NeedCluster());
    SimCluster& cl = *cluster_;
    if (c.name == "set-log") return SetLog(c);
    if (c.name == "campaign") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      ASSIGN_OR_RETURN(RaftCore * core, Core(id));
      Status s = core->Campaign();
      if (!s.ok()) *out += s.ToString() + "\n";
      *out += Describe(id) + "\n";
      return Status::OK();
    }
    if (c.name == "tick") {
      uint64_t n = 1;
      if (c.args.size() > 1) {
        ASSIGN_OR_RETURN(n, Num(c.args[1]));
      }
      if (!c.args.empty() && c.args[0] == "all") {
        for (uint64_t i = 0; i < n; i++) cl.TickAll();
        return Status::OK();
      }
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      for (uint64_t i = 0; i < n; i++) cl.Tick(id);
      *out += Describe(id) + "\n";
      return Status::OK();
    }
    if (c.name == "propose") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      if (c.args.size() < 2) return Status::InvalidArgument("propose ID DATA");
      Result<std::string> r = cl.Propose(id, c.args[1]);
      (void)r;  // the trace says what happened
      return Status::OK();
    }
    if (c.name == "process-ready") {
      std::vector<NodeId> ids;
      if (c.args.empty() || c.args[0] == "all") {
        ids = cl.AliveIds();
      } else {
        for (size_t i = 0; i < c.args.size(); i++) {
          ASSIGN_OR_RETURN(NodeId id, Id(c, i));
          ids.push_back(id);
        }
      }
      for (NodeId id : ids) cl.ProcessReady(id);
      return Status::OK();
    }
    if (c.name == "deliver") return Deliver(c);
    if (c.name == "stabilize") {
      cl.Stabilize();
      return Status::OK();
    }
    if (c.name == "crash") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      cl.Crash(id);
      return Status::OK();
    }
    if (c.name == "restart") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      return cl.Restart(id);
    }
    if (c.name == "isolate") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      for (const auto& [other, n] : cl.nodes()) {
        if (other != id) cl.CutBoth(id, other);
      }
      return Status::OK();
    }
    if (c.name == "cut") {
      ASSIGN_OR_RETURN(NodeId a, Id(c, 0));
      ASSIGN_OR_RETURN(NodeId b, Id(c, 1));
      cl.CutBoth(a, b);
      return Status::OK();
    }
    if (c.name == "heal") {
      cl.HealAll();
      return Status::OK();
    }
    if (c.name == "transfer") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      ASSIGN_OR_RETURN(NodeId target, Id(c, 1));
      ASSIGN_OR_RETURN(RaftCore * core, Core(id));
      *out += core->TransferLeadership(target).ToString() + "\n";
      return Status::OK();
    }
    if (c.name == "read-index") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      (void)cl.ReadIndex(id);
      return Status::OK();
    }
    if (c.name == "lease") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      ASSIGN_OR_RETURN(RaftCore * core, Core(id));
      *out += std::string(core->HasReadLease() ? "lease held" : "no lease") + "\n";
      return Status::OK();
    }
    if (c.name == "compact") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      uint64_t keep = 0;
      if (c.kv.count("keep") != 0) {
        ASSIGN_OR_RETURN(keep, Num(c.kv.at("keep")));
      }
      return cl.Compact(id, keep);
    }
    if (c.name == "create-node") {
      cl.CreateNode();
      return Status::OK();
    }
    if (c.name == "conf") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      ASSIGN_OR_RETURN(RaftCore * core, Core(id));
      if (c.args.size() < 3) return Status::InvalidArgument("conf ID add-voter|add-learner|remove X");
      ConfChange cc;
      if (c.args[1] == "add-voter") {
        cc.type = ConfChangeType::kAddVoter;
      } else if (c.args[1] == "add-learner") {
        cc.type = ConfChangeType::kAddLearner;
      } else if (c.args[1] == "remove") {
        cc.type = ConfChangeType::kRemoveNode;
      } else {
        return Status::InvalidArgument("conf: unknown change " + c.args[1]);
      }
      ASSIGN_OR_RETURN(cc.node, Num(c.args[2]));
      auto pos = core->ProposeConfChange(cc);
      *out += pos.ok() ? "proposed at " + std::to_string(pos->index) + "\n" : pos.status().ToString() + "\n";
      return Status::OK();
    }
    if (c.name == "log") {
      ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
      *out += Log(id);
      return Status::OK();
    }
    if (c.name == "status") {
      for (const auto& [id, n] : cl.nodes()) *out += Describe(id) + "\n";
      return Status::OK();
    }
    if (c.name == "net") {
      for (const auto& env : cl.net()) {
        *out += "#" + std::to_string(env.seq) + " " + replication::MessageToString(env.msg) + "\n";
      }
      if (cl.net().empty()) *out += "(nothing in flight)\n";
      return Status::OK();
    }
    return Status::InvalidArgument("unknown command '" + c.name + "'");
  }

  Status NewCluster(const Command& c) {
    ClusterOptions o;
    if (c.kv.count("voters") != 0) {
      ASSIGN_OR_RETURN(uint64_t v, Num(c.kv.at("voters")));
      o.voters = static_cast<int>(v);
    }
    if (c.kv.count("election") != 0) {
      ASSIGN_OR_RETURN(uint64_t v, Num(c.kv.at("election")));
      o.election_tick = static_cast<int>(v);
    }
    if (c.kv.count("inflight") != 0) {
      ASSIGN_OR_RETURN(uint64_t v, Num(c.kv.at("inflight")));
      o.max_inflight_msgs = v;
    }
    if (c.kv.count("maxmsg") != 0) {
      ASSIGN_OR_RETURN(o.max_size_per_msg, Num(c.kv.at("maxmsg")));
    }
    if (c.kv.count("seed") != 0) {
      ASSIGN_OR_RETURN(o.seed, Num(c.kv.at("seed")));
    }
    o.pre_vote = c.kv.count("prevote") == 0 || c.kv.at("prevote") != "off";
    o.check_quorum = c.kv.count("checkquorum") == 0 || c.kv.at("checkquorum") != "off";
    // brandnew: every node's first start is Config::brand_new, as a new group's founders'.
    o.brand_new_first_start = std::find(c.args.begin(), c.args.end(), "brandnew") != c.args.end();
    trace_ = Trace::Collecting();
    cluster_ = std::make_unique<SimCluster>(o, &trace_);
    return Status::OK();
  }

  Status SetLog(const Command& c) {
    ASSIGN_OR_RETURN(NodeId id, Id(c, 0));
    if (c.kv.count("terms") == 0) return Status::InvalidArgument("set-log: terms=... missing");
    SimCluster::Node* n = cluster_->node(id);
    MemStorage disk(n->disk.InitialState()->conf);
    std::vector<replication::Entry> ents;
    std::istringstream in(c.kv.at("terms"));
    std::string t;
    uint64_t max_term = 0;
    while (std::getline(in, t, ',')) {
      ASSIGN_OR_RETURN(uint64_t term, Num(t));
      replication::Entry e;
      e.index = ents.size() + 1;
      e.term = term;
      // Entries with the same index and term must be the same entry (log matching), so
      // the content is derived from the term alone.
      e.data = "t" + std::to_string(term);
      ents.push_back(e);
      max_term = std::max(max_term, term);
    }
    RETURN_IF_ERROR(disk.Append(ents));
    HardState hs;
    hs.term = max_term;
    if (c.kv.count("term") != 0) {
      ASSIGN_OR_RETURN(hs.term, Num(c.kv.at("term")));
    }
    if (c.kv.count("vote") != 0) {
      ASSIGN_OR_RETURN(hs.vote, Num(c.kv.at("vote")));
    }
    if (c.kv.count("commit") != 0) {
      ASSIGN_OR_RETURN(hs.commit, Num(c.kv.at("commit")));
    }
    disk.SetHardState(hs);
    cluster_->Crash(id);
    cluster_->SetDisk(id, std::move(disk));
    RETURN_IF_ERROR(cluster_->Restart(id));
    trace_.Take();  // the crash/restart lines are noise here
    return Status::OK();
  }

  Status Deliver(const Command& c) {
    SimCluster& cl = *cluster_;
    uint64_t from = 0, to = 0;
    if (c.kv.count("from") != 0) {
      ASSIGN_OR_RETURN(from, Num(c.kv.at("from")));
    }
    if (c.kv.count("to") != 0) {
      ASSIGN_OR_RETURN(to, Num(c.kv.at("to")));
    }
    const std::string type = c.kv.count("type") != 0 ? c.kv.at("type") : "";
    const bool drop = c.flag("drop");
    // Only what is in flight now; replies produced on the way wait for the next command.
    std::vector<uint64_t> seqs;
    for (const auto& env : cl.net()) {
      const replication::Message& m = env.msg;
      if ((from == 0 || m.from == from) && (to == 0 || m.to == to) &&
          (type.empty() || type == replication::MessageTypeName(m.type))) {
        seqs.push_back(env.seq);
      }
    }
    for (uint64_t seq : seqs) {
      for (size_t i = 0; i < cl.net().size(); i++) {
        if (cl.net()[i].seq != seq) continue;
        if (drop) {
          cl.Drop(i);
        } else {
          cl.Deliver(i);
        }
        break;
      }
    }
    return Status::OK();
  }

  std::string Describe(NodeId id) {
    SimCluster::Node* n = cluster_->node(id);
    std::string s = "node " + std::to_string(id) + ": ";
    if (!n->alive()) return s + "down";
    const RaftCore& c = *n->core;
    s += std::string(replication::RoleName(c.role())) + " term " + std::to_string(c.term()) +
         " leader " + std::to_string(c.leader()) + " last " + std::to_string(c.LastIndex()) +
         " commit " + std::to_string(c.committed()) + " applied " +
         std::to_string(n->sm.applied_index());
    if (!c.conf().voters.empty() || !c.conf().learners.empty()) {
      s += " " + replication::ConfStateToString(c.conf());
    }
    return s;
  }

  std::string Log(NodeId id) {
    SimCluster::Node* n = cluster_->node(id);
    std::string s;
    if (!n->alive()) return "node " + std::to_string(id) + " is down\n";
    const RaftCore& c = *n->core;
    s = "node " + std::to_string(id) + " log:";
    if (c.FirstIndex() > 1) s += " (snapshot " + std::to_string(c.FirstIndex() - 1) + ")";
    for (uint64_t i = c.FirstIndex(); i <= c.LastIndex(); i++) {
      Result<uint64_t> t = c.Term(i);
      s += " " + std::to_string(i) + "/" + (t.ok() ? std::to_string(*t) : "?");
    }
    s += "\n  commit " + std::to_string(c.committed()) + ", applied:";
    for (const AppliedCommand& cmd : n->sm.commands()) {
      s += " " + std::to_string(cmd.index) + "=" + cmd.data;
    }
    return s + "\n";
  }

  Trace trace_;
  std::unique_ptr<SimCluster> cluster_;
};

}  // namespace

Result<std::string> RunScenario(const std::string& text) {
  Interpreter interp;
  std::vector<std::string> lines;
  {
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
  }
  std::string out;
  size_t i = 0;
  while (i < lines.size()) {
    const std::string& l = lines[i];
    if (l.empty() || l[0] == '#') {
      out += l + "\n";
      i++;
      continue;
    }
    const size_t line_no = i + 1;
    if (i + 1 >= lines.size() || lines[i + 1] != "----") {
      return Status::InvalidArgument("line " + std::to_string(line_no) + ": '" + l +
                                     "' is not followed by ----");
    }
    i += 2;
    while (i < lines.size() && !lines[i].empty()) i++;  // skip the expected output
    Result<std::string> r = interp.Run(Parse(l));
    if (!r.ok()) return r.status().WithContext("line " + std::to_string(line_no));
    out += l + "\n----\n" + *r;
    if (i < lines.size()) {
      out += "\n";
      i++;
    }
  }
  return out;
}

}  // namespace ring::sim
