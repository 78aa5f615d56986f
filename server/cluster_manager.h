// server/cluster_manager.h: ClusterManager, which makes a node act on the committed
// cluster map. It is the thin I/O shell around sharding/: every decision it takes is
// computed by the pure functions there (Apply, Plan); it only observes and proposes.
//
// Every `interval` on the I/O thread, each node:
//   1. initialises the map once, if it leads the metadata log, the map is empty and it was
//      given a bootstrap change: a static cluster's (--peers: every peer a member, the first
//      RF of them founding every shard), or the one `ringctl cluster init` chose. A node
//      that joined never has one, so it never creates a cluster on its own;
//   2. hosts the shard groups the map gives it: a group is added when the map lists this
//      node as a voter or learner (founders bootstrap at epoch 1; a later replica starts
//      empty and learns everything from the leader), and removed, with its data, once the
//      map has stopped listing it and its Raft configuration no longer includes it (or
//      after remove_grace: a removed replica never hears of its own removal);
//   3. as leader of a shard, moves the shard's Raft configuration toward the map's replica
//      set one single-server step at a time: add learners, promote, then remove; hands
//      leadership to the shard's preferred leader (sharding::PreferredLeadersOf: leaders
//      spread evenly over the up voters) once it has caught up; and on a draining node,
//      hands its leaderships (shards and metadata log) to active voters;
//   3b. as leader of a shard the map has split, proposes the split entry into the
//      shard's own log (server/replicated_kv.h); each replica creates the child's group
//      once it has applied it (a replica behind waits; others learn the child by snapshot);
//   4. reports to the metadata voters that it is alive, with the progress of every shard
//      it leads (term, commit, configuration and each replica's match index);
//   5. as metadata leader, runs the controller: from the map and the reports it builds
//      a ClusterView (silence since the last report, counted from when it became
//      leader, so a new leader gives everyone a full timeout), calls sharding::Plan, and
//      proposes the changes. A move is thus: the map adds a learner (epoch+1), the shard's
//      leader adds it to Raft, it catches up (snapshot + log), the reports show it, the map
//      promotes it and drops the replica it replaces, the leader follows, the old node
//      deletes the range. Every step is level-triggered from committed state, so a crash
//      of any node at any step resumes (or the controller rolls the learner back).
//
// Operator changes (drain, undrain, remove, pause) and joins arrive as ClusterAdmin requests
// and are proposed by the metadata leader; other nodes redirect to it. A JOIN gives the
// node the next member id (kAddMember, as joining); a retry with the same join token gets
// the same id, and another node asking for a live member's address is refused. INIT is
// idempotent: on an initialised map it reports the cluster and changes nothing.
//
// Thread-safety: everything runs on the I/O thread, except callbacks from the driver,
// which only post back to it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/asio.h"
#include "replication/driver.h"
#include "server/config.h"
#include "sharding/cluster_map.h"
#include "sharding/controller.h"
#include "sharding/meta_state_machine.h"

namespace ring::pb {
class NodeReport;
class Request;
class Response;
}  // namespace ring::pb

namespace ring::server {

class PeerTransport;
class ReplicatedKv;

struct ClusterManagerOptions {
  std::chrono::milliseconds interval{100};
  int report_every = 2;      // intervals between reports
  int control_every = 3;     // intervals between controller rounds
  std::chrono::milliseconds remove_grace{5000};
  sharding::ControllerOptions controller;
};

class ClusterManager {
 public:
  // `self` is this node's member id; `bootstrap` the kInit change it proposes while the
  // map is empty (none: wait to be told the map).
  ClusterManager(asio::io_context& io, const Config& config, replication::NodeId self,
                 std::optional<sharding::MapChange> bootstrap, replication::Driver* driver,
                 sharding::MetaStateMachine* meta, ReplicatedKv* kv, PeerTransport* transport,
                 storage::Engine* engine, ClusterManagerOptions options = {});
  ~ClusterManager();

  // Starts the periodic work (idempotent); Stop() cancels it for good. I/O thread (or
  // before it runs).
  void Start();
  void Stop();

  // The founding metadata voters of a static cluster: peers 1..5 (or this node alone).
  static std::vector<replication::NodeId> MetaVoters(const Config& config);
  // The kInit change of a new cluster with a fresh random id.
  static sharding::MapChange NewCluster(std::vector<sharding::Member> founders, uint32_t shard_count,
                                        uint32_t replication_factor);
  // The kInit change of a static cluster (--peers, or a lone node).
  static sharding::MapChange StaticBootstrap(const Config& config);
  // Called on the I/O thread with every newly applied map version.
  void OnMapChange(std::function<void(const sharding::ClusterMap&)> fn) { on_map_ = std::move(fn); }
  // Who should hold the metadata log: the first kMaxMetaVoters members by id that are up
  // or down (a down voter may come back; draining and removed ones hand over) as voters,
  // every other member that is not removed as a learner, so every node learns the map.
  static sharding::ShardInfo MetaReplicas(const sharding::ClusterMap& map);
  // HOST:PORT of node `id`: from the map, else the static peer list.
  std::string AddressOf(replication::NodeId id) const;

  // A peer's report (I/O thread).
  void OnReport(replication::NodeId from, const pb::NodeReport& report);
  // As metadata leader: whether some node reported leading `shard` (it is serving).
  bool Reported(ShardId shard) const;
  // A ClusterAdmin request: true if answered in *resp now, false if `later` will be.
  bool HandleAdmin(const pb::Request& req, pb::Response* resp, const std::function<void(pb::Response&&)>& later);

 private:
  void Schedule();
  void Tick();
  void InitMap(const sharding::ClusterMap& map);
  bool HandleJoin(const sharding::ClusterMap& map, const pb::Request& req, pb::Response* resp,
                  const std::function<void(pb::Response&&)>& later);
  void SyncGroups(const sharding::ClusterMap& map, const std::vector<replication::GroupStatus>& groups);
  void Reconcile(const sharding::ClusterMap& map, const std::vector<replication::GroupStatus>& groups);
  // As leader of `g`: hands leadership to the shard's preferred leader (balance), or, when
  // this node is `leaving`, to whichever voter can take it.
  void HandOver(const sharding::ClusterMap& map, const replication::GroupStatus& g,
                const std::map<ShardId, replication::NodeId>& preferred, bool leaving,
                std::chrono::steady_clock::time_point now,
                int* balancing);
  void Report(const std::vector<replication::GroupStatus>& groups);
  // As leader of `g`: proposes the split entry when the map has split the shard and its
  // log has not yet.
  void ProposeSplit(const sharding::ClusterMap& map, const replication::GroupStatus& g,
                    const sharding::ShardInfo* child);
  // Proposes `change` to the metadata log; done(status, map version) on the driver thread.
  void ProposeChange(const sharding::MapChange& change, std::function<void(Status, uint64_t)> done);
  // True if shard `parent` here still holds `start` (a child's first hash) durably: the
  // split has not been applied on this node yet.
  bool ParentHoldsRange(uint64_t parent, uint64_t start) const;
  void Control(const sharding::ClusterMap& map);
  // Runs `fn` on the I/O thread unless stopped (for driver callbacks).
  void Post(std::function<void()> fn);

  using Clock = std::chrono::steady_clock;
  asio::io_context& io_;
  const Config& config_;
  replication::Driver* const driver_;
  sharding::MetaStateMachine* const meta_;
  ReplicatedKv* const kv_;
  PeerTransport* const transport_;
  storage::Engine* const engine_;
  const ClusterManagerOptions options_;
  const replication::NodeId self_;
  asio::steady_timer timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t ticks_ = 0;
  bool started_ = false;

  const std::optional<sharding::MapChange> bootstrap_;
  std::function<void(const sharding::ClusterMap&)> on_map_;
  uint64_t seen_version_ = 0;
  bool init_in_flight_ = false;
  bool init_refused_ = false;
  // INIT requests answered once the bootstrap change commits: (request id, reply).
  std::vector<std::pair<uint64_t, std::function<void(pb::Response&&)>>> init_waiters_;
  std::set<uint64_t> adding_, removing_, changing_;  // groups with a driver call in flight
  std::map<uint64_t, Clock::time_point> unlisted_since_;  // hosted groups the map dropped us from
  std::map<uint64_t, Clock::time_point> last_transfer_;   // leadership handed away while draining
  std::map<uint64_t, Clock::time_point> last_split_;      // split entries proposed
  struct LastReport {
    Clock::time_point at;
    std::shared_ptr<const pb::NodeReport> report;
  };
  std::map<replication::NodeId, LastReport> reports_;
  bool meta_leader_ = false;
  Clock::time_point leader_since_;
  size_t controller_in_flight_ = 0;
};

}  // namespace ring::server
