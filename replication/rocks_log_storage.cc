#include "replication/rocks_log_storage.h"

#include "common/coding.h"
#include "common/keyspace.h"

namespace ring::replication {

namespace {


std::string GroupPrefix(uint64_t group) { return HashPrefix(group); }

std::string MetaKey(uint64_t group, const char* what) {
  std::string k = "rl/";
  AppendBe64(&k, group);
  k += what;
  return k;
}

std::string EncodeHardState(const HardState& hs) {
  std::string out;
  AppendBe64(&out, hs.term);
  AppendBe64(&out, hs.vote);
  AppendBe64(&out, hs.commit);
  return out;
}

void EncodeIds(const std::vector<NodeId>& ids, std::string* out) {
  AppendBe64(out, ids.size());
  for (NodeId id : ids) AppendBe64(out, id);
}

bool DecodeIds(std::string_view in, size_t* pos, std::vector<NodeId>* ids) {
  uint64_t n = 0;
  if (!ReadBe64(in, pos, &n) || n > (in.size() - *pos) / 8) return false;
  ids->resize(n);
  for (auto& id : *ids) {
    if (!ReadBe64(in, pos, &id)) return false;
  }
  return true;
}

}  // namespace

std::string EncodeSnapshot(const Snapshot& s) {
  std::string out;
  AppendBe64(&out, s.meta.index);
  AppendBe64(&out, s.meta.term);
  EncodeIds(s.meta.conf.voters, &out);
  EncodeIds(s.meta.conf.learners, &out);
  out += s.data;
  return out;
}

Result<Snapshot> DecodeSnapshot(uint64_t group, std::string_view in) {
  Snapshot s;
  size_t pos = 0;
  if (!ReadBe64(in, &pos, &s.meta.index) || !ReadBe64(in, &pos, &s.meta.term) ||
      !DecodeIds(in, &pos, &s.meta.conf.voters) || !DecodeIds(in, &pos, &s.meta.conf.learners)) {
    return Status::Corruption("group " + std::to_string(group) + ": snapshot record is truncated");
  }
  s.data = std::string(in.substr(pos));
  return s;
}


std::string EncodeEntry(const Entry& e) {
  std::string out;
  out.reserve(9 + e.data.size());
  out.push_back(static_cast<char>(e.type));
  AppendBe64(&out, e.term);
  out += e.data;
  return out;
}

Result<Entry> DecodeEntry(uint64_t index, std::string_view bytes) {
  size_t pos = 1;
  Entry e;
  if (bytes.empty() || !ReadBe64(bytes, &pos, &e.term)) {
    return Status::Corruption("log entry " + std::to_string(index) + " is truncated");
  }
  auto type = static_cast<uint8_t>(bytes[0]);
  if (type > static_cast<uint8_t>(EntryType::kBatch)) {
    return Status::Corruption("log entry " + std::to_string(index) + " has unknown type " + std::to_string(type));
  }
  e.type = static_cast<EntryType>(type);
  e.index = index;
  e.data = std::string(bytes.substr(pos));
  return e;
}

std::string RocksLogStorage::EntryKey(uint64_t index) const {
  std::string k = GroupPrefix(group_);
  AppendBe64(&k, index);
  return k;
}

Result<std::unique_ptr<RocksLogStorage>> RocksLogStorage::Open(storage::Engine* engine, uint64_t group) {
  std::unique_ptr<RocksLogStorage> s(new RocksLogStorage(engine, group));
  RETURN_IF_ERROR(s->LoadMeta());
  return s;
}

Status RocksLogStorage::LoadMeta() {
  const std::string ctx = "group " + std::to_string(group_);
  std::string v;
  Status s = engine_->Get(storage::Cf::kMeta, MetaKey(group_, "/hs"), &v);
  if (s.ok()) {
    size_t pos = 0;
    if (!ReadBe64(v, &pos, &hard_state_.term) || !ReadBe64(v, &pos, &hard_state_.vote) ||
        !ReadBe64(v, &pos, &hard_state_.commit)) {
      return Status::Corruption(ctx + ": hard state record is truncated");
    }
  } else if (!s.IsNotFound()) {
    return s.WithContext(ctx + ": reading hard state");
  }
  s = engine_->Get(storage::Cf::kMeta, MetaKey(group_, "/snap"), &v);
  if (s.ok()) {
    ASSIGN_OR_RETURN(snapshot_, DecodeSnapshot(group_, v));
  } else if (!s.IsNotFound()) {
    return s.WithContext(ctx + ": reading snapshot");
  }
  first_index_ = snapshot_.meta.index + 1;
  last_index_ = snapshot_.meta.index;
  // The last entry is the greatest key of the group's range.
  uint64_t last = 0;
  bool corrupt = false;
  RETURN_IF_ERROR(engine_->Scan(storage::Cf::kRaftLog, EntryKey(first_index_), GroupPrefix(group_ + 1),
                                [&](std::string_view key, std::string_view) {
                                  size_t pos = 8;
                                  if (!ReadBe64(key, &pos, &last)) corrupt = true;
                                  return !corrupt;
                                }));
  if (corrupt) return Status::Corruption(ctx + ": malformed log key");
  if (last >= first_index_) last_index_ = last;
  return Status::OK();
}

Result<StoredState> RocksLogStorage::InitialState() const {
  return StoredState{hard_state_, snapshot_.meta.conf};
}

const Entry* RocksLogStorage::Cached(uint64_t index) const {
  if (cache_.empty() || index < cache_.front().index || index > cache_.back().index) return nullptr;
  return &cache_[index - cache_.front().index];
}

Result<std::vector<Entry>> RocksLogStorage::Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  if (lo < first_index_) return CompactedError(lo, first_index_);
  if (hi > last_index_ + 1) {
    return Status::Unavailable("entries up to " + std::to_string(hi - 1) + " requested; last index is " +
                               std::to_string(last_index_));
  }
  std::vector<Entry> out;
  if (lo >= hi) return out;
  uint64_t bytes = 0;
  if (Cached(lo) != nullptr) {
    for (uint64_t i = lo; i < hi; ++i) {
      const Entry& e = *Cached(i);
      bytes += e.ByteSize();
      if (!out.empty() && bytes > max_bytes) break;
      out.push_back(e);
    }
    return out;
  }
  Status decode_status;
  RETURN_IF_ERROR(engine_->Scan(storage::Cf::kRaftLog, EntryKey(lo), EntryKey(hi),
                                [&](std::string_view key, std::string_view value) {
                                  size_t pos = 8;
                                  uint64_t index = 0;
                                  ReadBe64(key, &pos, &index);
                                  auto e = DecodeEntry(index, value);
                                  if (!e.ok()) {
                                    decode_status = e.status();
                                    return false;
                                  }
                                  bytes += e->ByteSize();
                                  if (!out.empty() && bytes > max_bytes) return false;
                                  out.push_back(std::move(e).value());
                                  return true;
                                }));
  RETURN_IF_ERROR(decode_status.WithContext("group " + std::to_string(group_)));
  if (out.empty() || out.front().index != lo) {
    return Status::Corruption("group " + std::to_string(group_) + ": log entry " + std::to_string(lo) + " is missing");
  }
  return out;
}

Result<uint64_t> RocksLogStorage::Term(uint64_t index) const {
  if (index + 1 == first_index_) return snapshot_.meta.term;
  if (index + 1 < first_index_) return CompactedError(index, first_index_);
  if (index > last_index_) {
    return Status::Unavailable("term of " + std::to_string(index) + " requested; last index is " +
                               std::to_string(last_index_));
  }
  if (const Entry* e = Cached(index)) return e->term;
  std::string v;
  Status s = engine_->Get(storage::Cf::kRaftLog, EntryKey(index), &v);
  if (s.IsNotFound()) {
    return Status::Corruption("group " + std::to_string(group_) + ": log entry " + std::to_string(index) + " is missing");
  }
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(Entry e, DecodeEntry(index, v));
  return e.term;
}

Result<Snapshot> RocksLogStorage::Snapshot() const {
  if (snapshot_source_) return snapshot_source_();
  return snapshot_;
}

Status RocksLogStorage::Append(const std::vector<Entry>& entries, storage::WriteBatch* batch) {
  if (entries.empty()) return Status::OK();
  uint64_t first = pending_.first_index.value_or(first_index_);
  uint64_t last = pending_.last_index.value_or(last_index_);
  uint64_t lo = entries.front().index;
  if (lo > last + 1) {
    return Status::InvalidArgument("group " + std::to_string(group_) + ": append at " + std::to_string(lo) +
                                   " would leave a gap after " + std::to_string(last));
  }
  // Entries staged earlier in this cycle from lo on are replaced too.
  auto& staged = pending_.entries;
  while (!staged.empty() && staged.back().index >= lo) staged.pop_back();
  for (const Entry& e : entries) {
    if (e.index < first) continue;  // already covered by the snapshot
    batch->Put(storage::Cf::kRaftLog, EntryKey(e.index), EncodeEntry(e));
    staged.push_back(e);
  }
  uint64_t new_last = entries.back().index;
  if (new_last < last) {
    // A conflicting suffix from an older term is replaced: drop what lies beyond.
    // The range starts just after new_last's key rather than at new_last + 1's: a range
    // deletion may not begin with an entry-shaped key (storage/engine.h, insert hints).
    std::string after = EntryKey(new_last);
    after.push_back('\0');
    batch->DeleteRange(storage::Cf::kRaftLog, after, EntryKey(last + 1));
  }
  if (new_last >= first) pending_.last_index = new_last;
  return Status::OK();
}

void RocksLogStorage::Bootstrap(const ConfState& conf, uint64_t index, storage::WriteBatch* batch) {
  replication::Snapshot snap;
  snap.meta.conf = conf;
  if (index == 0) {
    batch->Put(storage::Cf::kMeta, MetaKey(group_, "/snap"), EncodeSnapshot(snap));
    pending_.snapshot = std::move(snap);
    return;
  }
  snap.meta.index = index;
  snap.meta.term = 1;
  ApplySnapshot(snap, batch);
  HardState hs;
  hs.term = 1;
  hs.commit = index;
  SetHardState(hs, batch);
}

void RocksLogStorage::SetHardState(const HardState& hs, storage::WriteBatch* batch) {
  batch->Put(storage::Cf::kMeta, MetaKey(group_, "/hs"), EncodeHardState(hs));
  pending_.hard_state = hs;
}

void RocksLogStorage::ApplySnapshot(const replication::Snapshot& snap, storage::WriteBatch* batch) {
  batch->DeleteRange(storage::Cf::kRaftLog, GroupPrefix(group_), GroupPrefix(group_ + 1));
  batch->Put(storage::Cf::kMeta, MetaKey(group_, "/snap"), EncodeSnapshot(snap));
  pending_.snapshot = snap;
  pending_.first_index = snap.meta.index + 1;
  pending_.last_index = snap.meta.index;
  pending_.entries.clear();
  pending_.reset_cache = true;
}

Status RocksLogStorage::Compact(const replication::Snapshot& snap, storage::WriteBatch* batch) {
  uint64_t first = pending_.first_index.value_or(first_index_);
  uint64_t last = pending_.last_index.value_or(last_index_);
  uint64_t idx = snap.meta.index;
  if (idx + 1 < first) return Status::OK();  // already compacted further
  if (idx > last) {
    return Status::InvalidArgument("group " + std::to_string(group_) + ": cannot compact to " +
                                   std::to_string(idx) + " past the last index " + std::to_string(last));
  }
  // From the group's prefix (everything below `first` is gone already): a range deletion
  // may not begin with an entry-shaped key (storage/engine.h, insert hints).
  batch->DeleteRange(storage::Cf::kRaftLog, GroupPrefix(group_), EntryKey(idx + 1));
  batch->Put(storage::Cf::kMeta, MetaKey(group_, "/snap"), EncodeSnapshot(snap));
  pending_.snapshot = snap;
  pending_.first_index = idx + 1;
  return Status::OK();
}

void RocksLogStorage::OnWritten() {
  if (pending_.snapshot) snapshot_ = std::move(*pending_.snapshot);
  if (pending_.first_index) first_index_ = *pending_.first_index;
  if (pending_.last_index) last_index_ = *pending_.last_index;
  if (pending_.hard_state) hard_state_ = *pending_.hard_state;
  PublishToCache(std::move(pending_.entries), pending_.reset_cache);
  pending_ = Pending{};
}

void RocksLogStorage::PublishToCache(std::vector<Entry> appended, bool reset) {
  auto drop_back = [&] {
    cache_bytes_ -= cache_.back().ByteSize();
    cache_.pop_back();
  };
  auto drop_front = [&] {
    cache_bytes_ -= cache_.front().ByteSize();
    cache_.pop_front();
  };
  if (reset) {
    cache_.clear();
    cache_bytes_ = 0;
  }
  if (!appended.empty()) {
    uint64_t lo = appended.front().index;
    while (!cache_.empty() && cache_.back().index >= lo) drop_back();  // a replaced suffix
    if (!cache_.empty() && cache_.back().index + 1 != lo) {
      cache_.clear();  // not contiguous with what is cached: start over from here
      cache_bytes_ = 0;
    }
    for (Entry& e : appended) {
      cache_bytes_ += e.ByteSize();
      cache_.push_back(std::move(e));
    }
  }
  // The cache mirrors the published log: nothing compacted away, nothing past the end.
  while (!cache_.empty() && cache_.back().index > last_index_) drop_back();
  while (!cache_.empty() && (cache_.front().index < first_index_ || cache_bytes_ > kEntryCacheBytes)) drop_front();
}

void RocksLogStorage::OnWriteFailed() { pending_ = Pending{}; }

void RocksLogStorage::Destroy(storage::WriteBatch* batch) {
  batch->DeleteRange(storage::Cf::kRaftLog, GroupPrefix(group_), GroupPrefix(group_ + 1));
  batch->Delete(storage::Cf::kMeta, MetaKey(group_, "/hs"));
  batch->Delete(storage::Cf::kMeta, MetaKey(group_, "/snap"));
  cache_.clear();
  cache_bytes_ = 0;
}

}  // namespace ring::replication
