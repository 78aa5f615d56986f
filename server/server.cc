#include "server/server.h"

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/asio.h"
#include <future>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>

#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "replication/driver.h"
#include "server/blocking_connection.h"
#include "server/cluster_manager.h"
#include "server/connection.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/peer_transport.h"
#include "server/replicated_kv.h"
#include "server/service.h"
#include "sharding/meta_state_machine.h"
#include "storage/engine.h"

namespace ring::server {

namespace {

Result<asio::ip::tcp::acceptor> Listen(asio::io_context& io, const Endpoint& ep, const char* what) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(ep.host, ec);
  if (ec) {
    // Accept host names too (e.g. "localhost") by resolving them once.
    asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
    if (ec || results.empty()) {
      return Status::InvalidArgument(std::string(what) + " " + ep.ToString() + ": cannot resolve host: " + ec.message());
    }
    addr = results.begin()->endpoint().address();
  }
  asio::ip::tcp::acceptor acceptor(io);
  asio::ip::tcp::endpoint endpoint(addr, ep.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError(std::string(what) + " " + ep.ToString() + ": " + ec.message());
  return acceptor;
}

// Replication metrics: the driver's counters, and per shard its term, commit and applied
// index, apply lag and whether this node leads it.
void RenderReplicationMetrics(const replication::Driver& d, std::string* out) {
  const auto& st = d.stats();
  auto counter = [&](const char* name, const char* help, uint64_t v) { AppendMetric(out, name, "counter", help, v); };
  counter("ringd_raft_writes_total", "Storage writes by the replication driver (all shards' Readys in one batch).", st.writes.load());
  counter("ringd_raft_fsyncs_total", "Of those, writes that were fsynced.", st.fsyncs.load());
  counter("ringd_raft_write_failures_total", "Driver writes that failed and were retried.", st.write_failures.load());
  counter("ringd_raft_entries_persisted_total", "Log entries made durable; divided by fsyncs, the group-commit batch size.", st.entries_persisted.load());
  counter("ringd_raft_entries_applied_total", "Log entries applied to the state machine.", st.entries_applied.load());
  counter("ringd_raft_messages_sent_total", "Raft messages handed to the peer transport.", st.messages_sent.load());
  counter("ringd_raft_leader_changes_total", "Times a shard's known leader changed.", st.leader_changes.load());
  counter("ringd_raft_compactions_total", "Log compactions.", st.compactions.load());
  counter("ringd_raft_snapshots_made_total", "State snapshots made for lagging followers.", st.snapshots_made.load());
  counter("ringd_raft_snapshots_sent_total", "Snapshot messages sent to lagging followers.", st.snapshots_sent.load());
  counter("ringd_raft_snapshots_fetched_total", "Leader snapshots whose data this node fetched.", st.snapshots_fetched.load());
  counter("ringd_raft_snapshots_installed_total", "State snapshots received and installed.", st.snapshots_installed.load());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9f", st.write_nanos.load() / 1e9);
  *out += std::string("# HELP ringd_raft_write_seconds_total Time spent in driver writes, fsync included.\n") +
          "# TYPE ringd_raft_write_seconds_total counter\nringd_raft_write_seconds_total " + buf + "\n";
  auto groups = d.Groups();
  const char* gauges[][2] = {{"ringd_shard_term", "Current Raft term of the shard on this node."},
                             {"ringd_shard_commit_index", "Highest log index known committed."},
                             {"ringd_shard_applied_index", "Highest log index applied to the data."},
                             {"ringd_shard_apply_lag", "Committed entries not yet applied."},
                             {"ringd_shard_is_leader", "1 if this node leads the shard."}};
  for (int k = 0; k < 5; ++k) {
    *out += std::string("# HELP ") + gauges[k][0] + " " + gauges[k][1] + "\n# TYPE " + gauges[k][0] + " gauge\n";
    for (const auto& g : groups) {
      uint64_t v = k == 0 ? g.term : k == 1 ? g.commit : k == 2 ? g.applied
                 : k == 3 ? (g.commit > g.applied ? g.commit - g.applied : 0) : (g.role == replication::Role::kLeader ? 1 : 0);
      // The metadata log is labelled "meta"; shards by their id.
      std::string label = g.group == sharding::kMetaGroup ? "meta" : std::to_string(g.group);
      *out += std::string(gauges[k][0]) + "{shard=\"" + label + "\"} " + std::to_string(v) + "\n";
    }
  }
}

void RenderSnapshotMetrics(const SnapshotStats& st, std::string* out) {
  auto metric = [&](const char* name, const char* type, const char* help, uint64_t v) {
    AppendMetric(out, name, type, help, v);
  };
  metric("ringd_snapshot_exports_total", "counter", "Shard snapshots exported to SST files for followers.", st.exports.load());
  metric("ringd_snapshot_export_bytes_total", "counter", "Bytes of those SST files.", st.export_bytes.load());
  metric("ringd_snapshot_served_bytes_total", "counter", "Snapshot bytes sent to followers.", st.bytes_served.load());
  metric("ringd_snapshot_fetches_total", "counter", "Snapshot fetches started by this node.", st.fetches.load());
  metric("ringd_snapshot_fetch_failures_total", "counter", "Snapshot fetches that failed (Raft sends again).", st.fetch_failures.load());
  metric("ringd_snapshot_fetched_bytes_total", "counter", "Snapshot bytes received.", st.fetch_bytes.load());
  metric("ringd_snapshot_fetch_bytes_left", "gauge", "Bytes the running fetches still have to receive.", st.fetch_bytes_left.load());
}

std::string BoundAddress(const asio::ip::tcp::acceptor& a) {
  auto ep = a.local_endpoint();
  Endpoint out{ep.address().to_string(), ep.port()};
  return out.ToString();
}
}  // namespace

// Where a node that joins keeps its identity (meta column family).
constexpr std::string_view kIdentityKey = "id/node";

struct Server::Impl {
  Config config;
  asio::io_context io{1};
  ReplyMailbox replies{io.get_executor()};  // outlives the driver, whose callbacks use it
  std::unique_ptr<storage::Engine> engine;
  Metrics metrics;
  std::unique_ptr<SnapshotStore> snapshots;
  std::unique_ptr<ReplicatedKv> state_machine;
  std::unique_ptr<sharding::MetaStateMachine> meta;
  std::unique_ptr<ClusterManager> manager;
  std::unique_ptr<PeerTransport> transport;
  std::unique_ptr<replication::Driver> driver;
  NodeContext node;
  std::optional<asio::ip::tcp::acceptor> acceptor;
  std::unique_ptr<HttpServer> http;
  std::string listen_address, metrics_address, self_address;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;
  asio::signal_set signals{io, SIGINT, SIGTERM};
  asio::steady_timer grace{io};
  bool stopping = false;
  bool running = false;  // Run() has started the I/O loop

  // Joining (config.join): the identity kept in the data directory, and the thread that
  // asks the seeds until a cluster takes this node.
  pb::NodeIdentity identity;
  std::thread joiner;
  std::atomic<bool> stop_joining{false};
  std::atomic<bool> seen_cluster{false};  // a seed answered from an initialised map
  std::thread init_probe;                  // checks the seeds before `ringctl cluster init` acts

  asio::awaitable<void> AcceptLoop();
  void BeginShutdown();
  void MaybeStopIo();
  HttpReply HandleHttp(const std::string& path);

  // Starts replication as member `id`: the driver, the peer transport (`known` addresses,
  // then the map's), the metadata log (bootstrapped by `meta_founders` if new), and the
  // cluster manager (which proposes `bootstrap` while the map is empty).
  Status StartNode(replication::NodeId id, std::vector<replication::NodeId> meta_founders,
                   std::optional<sharding::MapChange> bootstrap, std::map<replication::NodeId, Endpoint> known);
  Status SaveIdentity();
  // The joiner thread: asks the seeds to JOIN until one answers with a member id.
  void JoinLoop();
  void Joined(const pb::ClusterAdminResponse& r);
  // ClusterAdmin while waiting to join: INIT creates the cluster here; the rest waits.
  bool WaitingAdmin(const pb::Request& req, pb::Response* resp, const std::function<void(pb::Response&&)>& later);
  // Makes this node member 1 of a new cluster that `init` describes (I/O thread).
  Status CreateCluster(const sharding::MapChange& init);
};

Status Server::Impl::SaveIdentity() {
  storage::WriteBatch batch;
  batch.Put(storage::Cf::kMeta, kIdentityKey, identity.SerializeAsString());
  return engine->Write(batch, /*sync=*/true).WithContext("saving this node's identity");
}

Status Server::Impl::StartNode(replication::NodeId id, std::vector<replication::NodeId> meta_founders,
                               std::optional<sharding::MapChange> bootstrap,
                               std::map<replication::NodeId, Endpoint> known) {
  const Config& c = config;
  replication::DriverOptions dopt;
  dopt.node_id = id;
  dopt.group_count = 0;  // shard groups are hosted as the cluster map says (ClusterManager)
  dopt.sync = c.sync_policy == SyncPolicy::kSync;
  dopt.tick_interval = std::chrono::milliseconds(c.tick_ms);
  dopt.election_tick = static_cast<int>(c.election_ticks);
  dopt.seed = std::random_device{}();
  dopt.compact_after = c.log_compact_after;
  dopt.retain = c.log_retain;
  sharding::MetaStateMachine* m = meta.get();
  // Peers: the static ones (or those a JOIN answer named), then whoever the map lists.
  transport = std::make_unique<PeerTransport>(io, id, std::move(known), PeerTransportOptions{},
                                              [m](replication::NodeId peer) -> std::optional<Endpoint> {
                                                const sharding::Member* member = m->Map()->FindMember(peer);
                                                if (!member) return std::nullopt;
                                                auto ep = ParseEndpoint(member->address);
                                                return ep.ok() ? std::optional<Endpoint>(*ep) : std::nullopt;
                                              });
  ASSIGN_OR_RETURN(driver, replication::Driver::Start(dopt, engine.get(), transport.get(), state_machine.get()));
  {
    std::promise<Status> added;
    // A new metadata log is led by its first founder without waiting out a timeout.
    replication::GroupSpec spec{sharding::kMetaGroup, meta.get(), std::move(meta_founders)};
    spec.campaign = !spec.founders.empty() && *std::min_element(spec.founders.begin(), spec.founders.end()) == id;
    driver->AddGroup(std::move(spec),
                     [&added](Status s) { added.set_value(s); });
    RETURN_IF_ERROR(added.get_future().get().WithContext("hosting the metadata log"));
  }
  manager = std::make_unique<ClusterManager>(io, config, id, std::move(bootstrap), driver.get(), meta.get(),
                                             state_machine.get(), transport.get(), engine.get());
  NodeContext* n = &node;
  auto apply_map = [n](const sharding::ClusterMap& map) {
    if (map.initialized()) n->SetShards(sharding::ShardRangesOf(map), map.version);
  };
  apply_map(*meta->Map());
  manager->OnMapChange(apply_map);
  replication::Driver* d = driver.get();
  node.on_peer_messages = [d](uint64_t, std::vector<replication::GroupMessage> msgs) { d->Deliver(std::move(msgs)); };
  ClusterManager* mgr = manager.get();
  node.on_peer_report = [mgr](uint64_t from, const pb::NodeReport& r) { mgr->OnReport(from, r); };
  node.cluster_admin = [mgr](const pb::Request& req, pb::Response* resp,
                             const std::function<void(pb::Response&&)>& later) {
    return mgr->HandleAdmin(req, resp, later);
  };
  node.self_id = id;
  node.driver = driver.get();
  if (running) manager->Start();
  spdlog::info("this node ({}) is member {}", self_address, id);
  return Status::OK();
}

void Server::Impl::JoinLoop() {
  std::string seeds;
  for (const auto& e : config.join) seeds += (seeds.empty() ? "" : ",") + e.ToString();
  auto last_log = std::chrono::steady_clock::now() - std::chrono::hours(1);
  while (!stop_joining.load()) {
    std::string last_error;
    for (size_t i = 0; i < config.join.size() && !stop_joining.load(); ++i) {
      Endpoint target = config.join[i];
      // Follow at most a few redirects to the metadata leader.
      for (int hop = 0; hop < 3 && !stop_joining.load(); ++hop) {
        pb::Request req;
        req.set_id(1);
        auto* a = req.mutable_cluster_admin();
        a->set_op(pb::ClusterAdminRequest::JOIN);
        a->set_address(self_address);
        a->set_join_token(identity.join_token());
        pb::Response resp;
        BlockingConnection conn(std::chrono::seconds(5), &stop_joining, "seed " + target.ToString());
        Status s = conn.Call(target, req, &resp);
        if (s.ok()) s = StatusFromResponse(resp);
        // A redirect with a map version, or an answer, comes from an initialised cluster.
        if (s.ok() || resp.redirect().map_version() > 0) seen_cluster = true;
        if (s.ok()) {
          asio::post(io, [this, r = resp.cluster_admin()] { Joined(r); });
          return;
        }
        last_error = target.ToString() + ": " + s.ToString();
        auto leader = ParseEndpoint(resp.redirect().leader());
        if (s.code() != StatusCode::kNotLeader || !leader.ok() || *leader == target) break;
        target = *leader;
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_log > std::chrono::seconds(30)) {
      spdlog::info("waiting to join a cluster through {} (last answer: {}); a new cluster is created with "
                   "`ringctl cluster init`", seeds, last_error);
      last_log = now;
    }
    for (int i = 0; i < 10 && !stop_joining.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Server::Impl::Joined(const pb::ClusterAdminResponse& r) {
  if (stopping || driver) return;  // shut down meanwhile, or `ringctl cluster init` chose this node first
  identity.set_cluster_id(r.cluster_id());
  identity.set_node_id(r.node_id());
  if (Status s = SaveIdentity(); !s.ok()) {
    spdlog::critical("joined the cluster as member {} but {}; stopping", r.node_id(), s.ToString());
    BeginShutdown();
    return;
  }
  std::map<replication::NodeId, Endpoint> known;
  for (const auto& m : r.map().members()) {
    auto ep = ParseEndpoint(m.address());
    if (ep.ok() && m.id() != r.node_id()) known.emplace(m.id(), *ep);
  }
  spdlog::info("joined cluster {:016x} as member {}", r.cluster_id(), r.node_id());
  if (Status s = StartNode(r.node_id(), {}, std::nullopt, std::move(known)); !s.ok()) {
    spdlog::critical("cannot start as member {}: {}", r.node_id(), s.ToString());
    BeginShutdown();
  }
}

bool Server::Impl::WaitingAdmin(const pb::Request& req, pb::Response* resp,
                                const std::function<void(pb::Response&&)>& later) {
  const auto& a = req.cluster_admin();
  auto fail = [resp](const Status& s) {
    SetResponseStatus(s, resp);
    return true;
  };
  if (a.op() != pb::ClusterAdminRequest::INIT) {
    return fail(Status::Unavailable("this node has not joined a cluster yet; it holds no cluster map"));
  }
  if (init_probe.joinable()) return fail(Status::Unavailable("an init of this node is in progress; retry"));
  const sharding::MapChange init = ClusterManager::NewCluster(
      {sharding::Member{1, self_address, sharding::MemberState::kUp, 1.0, 0}},
      a.shard_count() ? a.shard_count() : config.shard_count,
      a.replication_factor() ? a.replication_factor() : config.replication_factor);
  if (auto checked = sharding::Apply(sharding::ClusterMap{}, init); !checked.ok()) {
    return fail(checked.status().WithContext("init"));
  }
  // Never a second cluster: first ask every seed (off the I/O thread) whether it already
  // holds a map. A seed that does not answer cannot have one this node could miss for
  // long: it would be joined within a second of answering.
  init_probe = std::thread([this, req, later, init] {
    bool exists = seen_cluster.load();
    for (size_t i = 0; i < config.join.size() && !exists && !stop_joining.load(); ++i) {
      if (config.join[i].ToString() == self_address) continue;
      pb::Request probe;
      probe.set_id(1);
      probe.mutable_node_status();
      pb::Response r;
      BlockingConnection conn(std::chrono::seconds(2), &stop_joining, "seed " + config.join[i].ToString());
      if (conn.Call(config.join[i], probe, &r).ok() && r.node_status().cluster_map().version() > 0) exists = true;
    }
    asio::post(io, [this, req, later, init, exists] {
      init_probe.join();
      pb::Response out;
      out.set_id(req.id());
      Status s;
      if (exists || seen_cluster.load()) {
        s = Status::InvalidArgument(
            "the nodes this one was told to join (--join) already form a cluster; it joins that one instead of "
            "creating another");
      } else if (driver) {
        s = Status::Unavailable("this node joined a cluster meanwhile; nothing changed");
      } else if (!stopping) {
        s = CreateCluster(init);
        if (s.ok() && !node.cluster_admin(req, &out, later)) return;  // answered once the map commits
      } else {
        s = Status::Unavailable("node is shutting down");
      }
      if (!s.ok()) SetResponseStatus(s, &out);
      later(std::move(out));
    });
  });
  return false;
}

Status Server::Impl::CreateCluster(const sharding::MapChange& init) {
  stop_joining = true;
  identity.set_cluster_id(init.cluster_id);
  identity.set_node_id(1);
  identity.set_bootstrap(sharding::EncodeChange(init));
  RETURN_IF_ERROR(SaveIdentity());
  spdlog::info("creating cluster {:016x} here: {} shards, replication factor {}", init.cluster_id, init.shard_count,
               init.replication_factor);
  Status s = StartNode(1, {1}, init, {});
  if (!s.ok()) {
    spdlog::critical("cannot start as the first member: {}", s.ToString());
    BeginShutdown();
  }
  return s;
}

Result<std::unique_ptr<Server>> Server::Create(Config config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  const Config& c = impl->config;

  storage::EngineOptions eo;
  eo.dir = c.data_dir;
  eo.block_cache_bytes = size_t{c.block_cache_mb} << 20;
  eo.reserve_disk_bytes = uint64_t{c.reserve_disk_mb} << 20;
  ASSIGN_OR_RETURN(impl->engine, storage::Engine::Open(eo));

  ASSIGN_OR_RETURN(auto acceptor, Listen(impl->io, c.listen, "listen"));
  impl->acceptor.emplace(std::move(acceptor));
  impl->listen_address = BoundAddress(*impl->acceptor);
  if (impl->config.node_id.empty()) impl->config.node_id = impl->listen_address;
  // A lone node listening on port 0 advertises the port it was given.
  if (c.peers.empty() && !c.advertise && c.listen.port == 0) {
    impl->config.advertise = Endpoint{c.listen.host, impl->acceptor->local_endpoint().port()};
  }
  if (c.metrics_enabled) {
    ASSIGN_OR_RETURN(auto macc, Listen(impl->io, c.metrics_listen, "metrics_listen"));
    impl->metrics_address = BoundAddress(macc);
    Impl* raw = impl.get();
    impl->http = std::make_unique<HttpServer>(impl->io, std::move(macc),
                                              [raw](const std::string& p) { return raw->HandleHttp(p); });
  }

  impl->self_address = impl->config.advertise.value_or(c.listen).ToString();
  {
    SnapshotStoreOptions so;
    so.dir = (std::filesystem::path(c.data_dir) / "snapshots").string();
    so.advertise = impl->self_address;
    so.workers = static_cast<int>(c.snapshot_workers);
    so.fetch_bytes_per_sec = uint64_t{c.snapshot_rate_mb} << 20;
    ASSIGN_OR_RETURN(auto pending, replication::PendingRestoreImages(impl->engine.get()));
    ASSIGN_OR_RETURN(impl->snapshots, SnapshotStore::Open(impl->engine.get(), so, pending));
  }
  ASSIGN_OR_RETURN(impl->meta, sharding::MetaStateMachine::Open(impl->engine.get()));
  sharding::MetaStateMachine* meta = impl->meta.get();
  // A shard that never split on this node has the range init gave it (the same on every
  // replica, whatever map version each has applied); a split records ranges in the
  // shards' own state. A split child known only from the map (its snapshot not yet
  // installed here) has the map's range, used only to check the files it fetches.
  auto ranges = [meta](uint64_t group) -> std::optional<ReplicatedKv::HashRange> {
    auto map = meta->Map();
    if (auto initial = map->InitialRange(static_cast<ShardId>(group))) {
      return ReplicatedKv::HashRange{initial->first, initial->second};
    }
    auto it = map->shards.find(static_cast<ShardId>(group));
    if (it == map->shards.end()) return std::nullopt;
    return ReplicatedKv::HashRange{it->second.start, it->second.end};
  };
  impl->state_machine = std::make_unique<ReplicatedKv>(impl->engine.get(), ranges, impl->snapshots.get());

  impl->node.config = &impl->config;
  impl->node.engine = impl->engine.get();
  impl->node.metrics = &impl->metrics;
  impl->node.replies = &impl->replies;
  impl->node.snapshots = impl->snapshots.get();
  impl->node.cluster_map = [meta] { return meta->Map(); };
  impl->node.listen_address = impl->listen_address;

  if (!c.join.empty()) {
    // Dynamic membership: this node is member N of a cluster once one took it (kept in its
    // data directory); until then it waits, and never creates a cluster on its own.
    std::string stored;
    Status gs = impl->engine->Get(storage::Cf::kMeta, kIdentityKey, &stored);
    if (gs.ok()) {
      if (!impl->identity.ParseFromString(stored)) return Status::Corruption("this node's identity record does not decode");
    } else if (gs.code() != StatusCode::kNotFound) {
      return gs.WithContext("reading this node's identity");
    }
    if (impl->identity.join_token() == 0) {
      std::random_device rd;
      impl->identity.set_join_token((uint64_t{rd()} << 32 | rd()) | 1);
      RETURN_IF_ERROR(impl->SaveIdentity());
    }
    if (impl->identity.node_id() != 0) {
      std::optional<sharding::MapChange> bootstrap;
      std::vector<replication::NodeId> founders;
      if (!impl->identity.bootstrap().empty()) {
        ASSIGN_OR_RETURN(auto change, sharding::DecodeChange(impl->identity.bootstrap()));
        bootstrap = std::move(change);
        founders = {impl->identity.node_id()};
      }
      RETURN_IF_ERROR(impl->StartNode(impl->identity.node_id(), std::move(founders), std::move(bootstrap), {}));
    } else {
      Impl* raw = impl.get();
      impl->node.on_peer_messages = [](uint64_t, std::vector<replication::GroupMessage>) {};  // not a member yet
      impl->node.cluster_admin = [raw](const pb::Request& req, pb::Response* resp,
                                       const std::function<void(pb::Response&&)>& later) {
        return raw->WaitingAdmin(req, resp, later);
      };
    }
    return std::unique_ptr<Server>(new Server(std::move(impl)));
  }

  // A static cluster: every peer's id is its position in --peers (or 1 alone); the first
  // kMaxMetaVoters peers found the metadata log, the others learn it as the map adds them.
  const replication::NodeId self = ReplicaId(c);
  std::map<replication::NodeId, Endpoint> others;
  for (uint64_t id = 1; id <= c.peers.size(); ++id) {
    if (id != self) others.emplace(id, c.peers[id - 1]);
  }
  std::vector<replication::NodeId> meta_voters = ClusterManager::MetaVoters(c);
  std::vector<replication::NodeId> founders;
  if (self <= meta_voters.size()) founders = meta_voters;
  RETURN_IF_ERROR(
      impl->StartNode(self, std::move(founders), ClusterManager::StaticBootstrap(impl->config), std::move(others)));
  // A one-node cluster initialises its map, hosts its shards and elects itself at once;
  // wait for that (running only the manager's timer), so "ready" means serving.
  if (c.peers.empty()) {
    impl->manager->Start();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    replication::Driver* driver = impl->driver.get();
    auto ready = [&] {
      auto map = meta->Map();
      if (!map->initialized()) return false;
      for (const auto& [id, shard] : map->shards) {
        if (!driver->HasGroup(id)) return false;
      }
      return driver->WaitForLeaders(std::chrono::milliseconds(0), /*local_reads=*/true);
    };
    while (!ready() && std::chrono::steady_clock::now() < deadline) impl->io.run_for(std::chrono::milliseconds(5));
    if (impl->io.stopped()) impl->io.restart();
    if (!ready()) return Status::Unavailable("this node did not initialise and lead its shards within 10 s");
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (!impl_) return;
  impl_->stop_joining = true;
  if (impl_->joiner.joinable()) impl_->joiner.join();
  if (impl_->init_probe.joinable()) impl_->init_probe.join();
  if (impl_->driver) impl_->driver->Stop();
  if (impl_->snapshots) impl_->snapshots->Stop();
}

std::string Server::listen_address() const { return impl_->listen_address; }
std::string Server::metrics_address() const { return impl_->metrics_address; }

void Server::RequestStop() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->BeginShutdown(); });
}

asio::awaitable<void> Server::Impl::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor->async_accept(kUseTuple);
    if (stopping || !acceptor->is_open()) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly rather than spin.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer t(io, std::chrono::milliseconds(50));
      co_await t.async_wait(kUseTuple);
      continue;
    }
    metrics.connections_accepted.fetch_add(1, std::memory_order_relaxed);
    if (connections.size() >= config.max_connections) {
      metrics.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      pb::Response busy;
      SetResponseStatus(Status::Busy("node is at its limit of " + std::to_string(config.max_connections) +
                                     " connections"),
                        &busy);
      std::string frame;
      AppendResponseFrame(busy, &frame);
      asio::error_code wec;
      asio::write(socket, asio::buffer(frame), wec);  // a few bytes into a fresh socket buffer
      socket.close(wec);
      continue;
    }
    auto conn = std::make_shared<Connection>(std::move(socket), &node, [this](Connection* c) {
      // Defer the erase: the connection may be inside one of its own frames.
      asio::post(io, [this, c] {
        connections.erase(c);
        MaybeStopIo();
      });
    });
    connections.emplace(conn.get(), conn);
    conn->Start();
  }
}

void Server::Impl::BeginShutdown() {
  if (stopping) return;
  stopping = true;
  spdlog::info("shutting down: finishing {} connection(s)", connections.size());
  asio::error_code ec;
  acceptor->close(ec);
  if (http) http->Stop();
  signals.cancel(ec);
  stop_joining = true;
  if (manager) manager->Stop();
  // Copy: BeginShutdown may close a connection, which schedules its erase.
  std::vector<std::shared_ptr<Connection>> conns;
  for (auto& [p, c] : connections) conns.push_back(c);
  for (auto& c : conns) c->BeginShutdown();
  grace.expires_after(std::chrono::seconds(config.shutdown_grace_s));
  grace.async_wait([this](asio::error_code e) {
    if (e) return;
    spdlog::warn("shutdown grace of {} s passed; closing {} connection(s)", config.shutdown_grace_s,
                 connections.size());
    std::vector<std::shared_ptr<Connection>> rest;
    for (auto& [p, c] : connections) rest.push_back(c);
    for (auto& c : rest) c->Close();
    io.stop();
  });
  MaybeStopIo();
}

void Server::Impl::MaybeStopIo() {
  if (stopping && connections.empty()) io.stop();
}

HttpReply Server::Impl::HandleHttp(const std::string& path) {
  auto health = engine->health();
  if (path == "/metrics") {
    uint64_t uptime = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - node.started).count();
    std::string text = metrics.Render(uptime, health.ok, health.disk_free_bytes, health.live_bytes, health.keys_estimate);
    if (driver) RenderReplicationMetrics(*driver, &text);
    RenderSnapshotMetrics(snapshots->stats(), &text);
    return {200, "text/plain; version=0.0.4", std::move(text)};
  }
  if (path == "/health") {
    if (stopping) return {503, "text/plain", "shutting down\n"};
    if (!health.ok) return {503, "text/plain", "disk: " + health.error + "\n"};
    return {200, "text/plain", "ok\n"};
  }
  return {404, "text/plain", "not found; try /metrics or /health\n"};
}

int Server::Run() {
  Impl& m = *impl_;
  m.signals.async_wait([&m](asio::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}", sig);
    m.BeginShutdown();
  });
  asio::co_spawn(m.io, m.AcceptLoop(), asio::detached);
  if (m.http) m.http->Start();
  m.running = true;
  if (m.manager) m.manager->Start();
  else m.joiner = std::thread([&m] { m.JoinLoop(); });
  spdlog::info("ringd {} serving on {} (metrics {}), data {}, sync_policy {}", m.config.node_id,
               m.listen_address, m.metrics_address.empty() ? "off" : m.metrics_address,
               m.config.data_dir, SyncPolicyName(m.config.sync_policy));
  m.io.run();
  // Everything received was answered or the grace period ran out. Stop the driver (a
  // proposal still pending is failed; its entry, if committed, is applied on restart),
  // close peer connections, then flush.
  m.stop_joining = true;
  if (m.joiner.joinable()) m.joiner.join();
  if (m.init_probe.joinable()) m.init_probe.join();
  if (m.driver) m.driver->Stop();
  m.snapshots->Stop();
  if (m.transport) m.transport->Stop();
  Status s = m.engine->Flush();
  if (!s.ok()) {
    spdlog::error("flush at shutdown failed: {}", s.ToString());
    return 1;
  }
  spdlog::info("shutdown complete");
  return 0;
}

}  // namespace ring::server
