#include "replication/applied_table.h"

#include "common/coding.h"
#include "common/keyspace.h"

namespace ring::replication {

std::string AppliedTable::ChunkKey(uint64_t group) { return "aq/" + HashPrefix(group / kChunk); }
std::string AppliedTable::LegacyKey(uint64_t group) { return "ap/" + HashPrefix(group); }

Result<AppliedTable::Chunk*> AppliedTable::Load(uint64_t chunk) {
  if (auto it = chunks_.find(chunk); it != chunks_.end()) return &it->second;
  std::string v;
  Status s = engine_->Get(storage::Cf::kMeta, ChunkKey(chunk * kChunk), &v);
  if (!s.ok() && !s.IsNotFound()) return s.WithContext("reading applied indexes of groups " +
                                                        std::to_string(chunk * kChunk) + "..");
  if (v.size() % 16 != 0) {
    return Status::Corruption("applied indexes of groups " + std::to_string(chunk * kChunk) + "..: " +
                              std::to_string(v.size()) + " bytes is not a whole number of records");
  }
  Chunk c;
  for (size_t pos = 0; pos < v.size();) {
    uint64_t group = 0, index = 0;
    ReadBe64(v, &pos, &group);  // whole records: checked above
    ReadBe64(v, &pos, &index);
    c[group] = index;
  }
  return &chunks_.emplace(chunk, std::move(c)).first->second;
}

Result<uint64_t> AppliedTable::Get(uint64_t group) {
  ASSIGN_OR_RETURN(Chunk * c, Load(group / kChunk));
  if (auto it = c->find(group); it != c->end()) return it->second;
  std::string v;
  Status s = engine_->Get(storage::Cf::kMeta, LegacyKey(group), &v);
  if (s.IsNotFound()) return uint64_t{0};
  if (!s.ok()) return s.WithContext("reading the applied index of group " + std::to_string(group));
  uint64_t index = 0;
  size_t pos = 0;
  if (v.size() != 8 || !ReadBe64(v, &pos, &index)) {
    return Status::Corruption("applied index of group " + std::to_string(group) + ": bad length");
  }
  return index;
}

Status AppliedTable::Stage(const Changes& changes, storage::WriteBatch* batch) {
  auto it = changes.begin();
  while (it != changes.end()) {
    const uint64_t chunk = it->first / kChunk;
    ASSIGN_OR_RETURN(Chunk * stored, Load(chunk));
    Chunk next = *stored;
    for (; it != changes.end() && it->first / kChunk == chunk; ++it) {
      if (it->second) {
        next[it->first] = *it->second;
      } else {
        next.erase(it->first);
      }
    }
    std::string v;
    v.reserve(next.size() * 16);
    for (const auto& [group, index] : next) {
      AppendBe64(&v, group);
      AppendBe64(&v, index);
    }
    if (v.empty()) {
      batch->Delete(storage::Cf::kMeta, ChunkKey(chunk * kChunk));
    } else {
      batch->Put(storage::Cf::kMeta, ChunkKey(chunk * kChunk), v);
    }
  }
  return Status::OK();
}

void AppliedTable::Commit(const Changes& changes) {
  for (const auto& [group, index] : changes) {
    Chunk& c = chunks_[group / kChunk];  // loaded by Stage
    if (index) {
      c[group] = *index;
    } else {
      c.erase(group);
    }
  }
}

}  // namespace ring::replication
