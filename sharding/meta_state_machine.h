// sharding/meta_state_machine.h: the state machine of the metadata log, whose state is the
// cluster map.
//
// The metadata log is a replication group like any shard (id kMetaGroup), hosted on up to
// kMaxMetaVoters nodes, so the map needs no external service. Every entry is one encoded
// MapChange; applying it runs sharding::Apply on the current map. A change Apply refuses
// (a stale epoch, a second init) leaves the map as it was, and its proposer gets the
// refusal as the entry's result; the log moves on. The map is persisted in the `meta`
// column family ("cm/map") in the same batch as the applied index, and it is the whole of
// the group's snapshot.
//
// Thread-safety: Apply, Snapshot, Restore and OnWriteFailed run on the driver thread;
// Map() may be called from any thread.
#pragma once

#include <memory>
#include <mutex>

#include "replication/driver.h"
#include "sharding/cluster_map.h"
#include "storage/engine.h"

namespace ring::sharding {

// The metadata group's id: far above any shard id, so they never collide.
inline constexpr uint64_t kMetaGroup = uint64_t{1} << 40;
inline constexpr size_t kMaxMetaVoters = 5;

// What a proposer of a MapChange gets back (as the std::any result of the proposal).
struct MetaResult {
  Status status;         // OK, or why the change was refused
  uint64_t version = 0;  // the map's version after the entry
};

class MetaStateMachine final : public replication::StateMachine {
 public:
  // Loads the persisted map (an empty, uninitialised one on first start). Corruption if
  // the stored map does not decode.
  static Result<std::unique_ptr<MetaStateMachine>> Open(storage::Engine* engine);

  void Apply(uint64_t group, const std::vector<replication::Command>& commands, storage::WriteBatch* batch,
             std::vector<std::any>* results) override;
  void Snapshot(uint64_t group, std::function<void(Result<std::string>)> done) override;
  Status Restore(uint64_t group, std::string_view image, storage::WriteBatch* batch) override;
  void OnWriteFailed() override;

  // The map as of the last applied entry.
  std::shared_ptr<const ClusterMap> Map() const;

 private:
  explicit MetaStateMachine(storage::Engine* engine) : engine_(engine) {}
  Status Load();
  void Publish(ClusterMap map);

  storage::Engine* const engine_;
  mutable std::mutex mu_;
  std::shared_ptr<const ClusterMap> map_;  // guarded by mu_
};

// The meta-CF key holding the encoded map.
inline constexpr const char* kMapKey = "cm/map";

}  // namespace ring::sharding
