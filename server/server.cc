#include "server/server.h"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "common/asio.h"
#include <future>
#include <map>
#include <random>
#include <unordered_map>

#include "proto/ring.pb.h"
#include "proto/wire.h"
#include "replication/driver.h"
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

struct Server::Impl {
  Config config;
  asio::io_context io{1};
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
  std::string listen_address, metrics_address;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;
  asio::signal_set signals{io, SIGINT, SIGTERM};
  asio::steady_timer grace{io};
  bool stopping = false;

  asio::awaitable<void> AcceptLoop();
  void BeginShutdown();
  void MaybeStopIo();
  HttpReply HandleHttp(const std::string& path);
};

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

  // Every shard is a replication group whose voters are the peers (or this node alone).
  replication::DriverOptions dopt;
  dopt.node_id = ReplicaId(c);
  uint64_t replicas = c.peers.empty() ? 1 : c.peers.size();
  std::map<replication::NodeId, Endpoint> others;
  for (uint64_t id = 1; id <= replicas; ++id) {
    dopt.voters.push_back(id);
    if (id != dopt.node_id) others.emplace(id, c.peers[id - 1]);
  }
  dopt.group_count = 0;  // shard groups are hosted as the cluster map says (ClusterManager)
  dopt.sync = c.sync_policy == SyncPolicy::kSync;
  dopt.tick_interval = std::chrono::milliseconds(c.tick_ms);
  dopt.election_tick = static_cast<int>(c.election_ticks);
  dopt.seed = std::random_device{}();
  dopt.compact_after = c.log_compact_after;
  dopt.retain = c.log_retain;
  {
    SnapshotStoreOptions so;
    so.dir = (std::filesystem::path(c.data_dir) / "snapshots").string();
    so.advertise = ReplicaAddress(impl->config, dopt.node_id);
    so.workers = static_cast<int>(c.snapshot_workers);
    so.fetch_bytes_per_sec = uint64_t{c.snapshot_rate_mb} << 20;
    ASSIGN_OR_RETURN(auto pending, replication::PendingRestoreImages(impl->engine.get()));
    ASSIGN_OR_RETURN(impl->snapshots, SnapshotStore::Open(impl->engine.get(), so, pending));
  }
  impl->state_machine = std::make_unique<ReplicatedKv>(impl->engine.get(), c.shard_count, impl->snapshots.get());
  impl->transport = std::make_unique<PeerTransport>(impl->io, dopt.node_id, std::move(others));
  ASSIGN_OR_RETURN(impl->driver, replication::Driver::Start(dopt, impl->engine.get(), impl->transport.get(),
                                                            impl->state_machine.get()));
  // The metadata log lives on the first kMaxMetaVoters peers (or this node alone).
  ASSIGN_OR_RETURN(impl->meta, sharding::MetaStateMachine::Open(impl->engine.get()));
  // Every node hosts it: the founders (peers 1..5) as voters, the others empty until the
  // metadata leader adds them as learners, so every node learns the map from the log.
  std::vector<replication::NodeId> meta_voters = ClusterManager::MetaVoters(c);
  {
    std::vector<replication::NodeId> founders;
    if (dopt.node_id <= meta_voters.size()) founders = meta_voters;
    std::promise<Status> added;
    impl->driver->AddGroup(replication::GroupSpec{sharding::kMetaGroup, impl->meta.get(), founders},
                           [&added](Status s) { added.set_value(s); });
    RETURN_IF_ERROR(added.get_future().get().WithContext("hosting the metadata log"));
  }
  impl->manager = std::make_unique<ClusterManager>(impl->io, impl->config, impl->driver.get(), impl->meta.get(),
                                                   impl->state_machine.get(), impl->transport.get(),
                                                   impl->engine.get());
  // A one-node cluster initialises its map, hosts its shards and elects itself at once;
  // wait for that (running only the manager's timer), so "ready" means serving.
  if (c.peers.empty()) {
    impl->manager->Start();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    sharding::MetaStateMachine* meta = impl->meta.get();
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
  impl->node.config = &impl->config;
  impl->node.engine = impl->engine.get();
  impl->node.driver = impl->driver.get();
  if (!c.peers.empty()) {
    replication::Driver* driver = impl->driver.get();
    impl->node.on_peer_messages = [driver](uint64_t, std::vector<replication::GroupMessage> msgs) {
      driver->Deliver(std::move(msgs));
    };
  }
  impl->node.metrics = &impl->metrics;
  impl->node.snapshots = impl->snapshots.get();
  sharding::MetaStateMachine* meta = impl->meta.get();
  impl->node.cluster_map = [meta] { return meta->Map(); };
  ClusterManager* manager = impl->manager.get();
  impl->node.on_peer_report = [manager](uint64_t from, const pb::NodeReport& r) { manager->OnReport(from, r); };
  impl->node.cluster_admin = [manager](const pb::Request& req, pb::Response* resp,
                                       const std::function<void(pb::Response&&)>& later) {
    return manager->HandleAdmin(req, resp, later);
  };
  impl->node.shards = ShardRanges::Uniform(c.shard_count);
  impl->node.listen_address = impl->listen_address;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (impl_ && impl_->driver) impl_->driver->Stop();
  if (impl_ && impl_->snapshots) impl_->snapshots->Stop();
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
  manager->Stop();
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
    RenderReplicationMetrics(*driver, &text);
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
  m.manager->Start();
  spdlog::info("ringd {} serving on {} (metrics {}), data {}, sync_policy {}", m.config.node_id,
               m.listen_address, m.metrics_address.empty() ? "off" : m.metrics_address,
               m.config.data_dir, SyncPolicyName(m.config.sync_policy));
  m.io.run();
  // Everything received was answered or the grace period ran out. Stop the driver (a
  // proposal still pending is failed; its entry, if committed, is applied on restart),
  // close peer connections, then flush.
  m.driver->Stop();
  m.snapshots->Stop();
  m.transport->Stop();
  Status s = m.engine->Flush();
  if (!s.ok()) {
    spdlog::error("flush at shutdown failed: {}", s.ToString());
    return 1;
  }
  spdlog::info("shutdown complete");
  return 0;
}

}  // namespace ring::server
