#include "sharding/meta_state_machine.h"

namespace ring::sharding {

Result<std::unique_ptr<MetaStateMachine>> MetaStateMachine::Open(storage::Engine* engine) {
  std::unique_ptr<MetaStateMachine> m(new MetaStateMachine(engine));
  RETURN_IF_ERROR(m->Load());
  return m;
}

Status MetaStateMachine::Load() {
  std::string bytes;
  Status s = engine_->Get(storage::Cf::kMeta, kMapKey, &bytes);
  if (s.IsNotFound()) {
    Publish(ClusterMap{});
    return Status::OK();
  }
  RETURN_IF_ERROR(s.WithContext("reading the cluster map"));
  ASSIGN_OR_RETURN(ClusterMap map, DecodeMap(bytes));
  Publish(std::move(map));
  return Status::OK();
}

void MetaStateMachine::Publish(ClusterMap map) {
  auto p = std::make_shared<const ClusterMap>(std::move(map));
  std::lock_guard lock(mu_);
  map_ = std::move(p);
}

std::shared_ptr<const ClusterMap> MetaStateMachine::Map() const {
  std::lock_guard lock(mu_);
  return map_;
}

void MetaStateMachine::Apply(uint64_t, const std::vector<replication::Command>& commands,
                             storage::WriteBatch* batch, std::vector<std::any>* results) {
  ClusterMap map = *Map();
  const uint64_t before = map.version;
  results->clear();
  for (const replication::Command& c : commands) {
    MetaResult r;
    auto change = DecodeChange(c.data);
    if (!change.ok()) {
      r.status = change.status().WithContext("metadata log entry " + std::to_string(c.index));
    } else if (auto next = sharding::Apply(map, *change); next.ok()) {
      map = std::move(next).value();
    } else {
      r.status = next.status();
    }
    r.version = map.version;
    results->push_back(r);
  }
  if (map.version != before) {
    batch->Put(storage::Cf::kMeta, kMapKey, EncodeMap(map));
    Publish(std::move(map));
  }
}

void MetaStateMachine::Snapshot(uint64_t, std::function<void(Result<std::string>)> done) {
  done(EncodeMap(*Map()));
}

Status MetaStateMachine::Restore(uint64_t, std::string_view image, storage::WriteBatch* batch) {
  ASSIGN_OR_RETURN(ClusterMap map, DecodeMap(image));
  batch->Put(storage::Cf::kMeta, kMapKey, EncodeMap(map));
  Publish(std::move(map));
  return Status::OK();
}

void MetaStateMachine::OnWriteFailed() {
  // What was published may not have reached the engine; the entries come again.
  Status s = Load();
  (void)s;  // the engine just failed a write; a failed read leaves the last map in place
}

}  // namespace ring::sharding
