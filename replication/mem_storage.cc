#include "replication/mem_storage.h"

#include <utility>

namespace ring::replication {

MemStorage::MemStorage(ConfState bootstrap) { snapshot_.meta.conf = std::move(bootstrap); }

Result<StoredState> MemStorage::InitialState() const {
  return StoredState{hard_state_, snapshot_.meta.conf, snapshot_.meta.index};
}

Result<std::vector<Entry>> MemStorage::Entries(uint64_t lo, uint64_t hi,
                                               uint64_t max_bytes) const {
  if (lo < FirstIndex()) return CompactedError(lo, FirstIndex());
  if (hi > LastIndex() + 1) {
    return Status::Unavailable("entries up to " + std::to_string(hi - 1) +
                               " requested, last index is " + std::to_string(LastIndex()));
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; i++) {
    const Entry& e = entries_[i - offset_ - 1];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<uint64_t> MemStorage::Term(uint64_t index) const {
  if (index < offset_) return CompactedError(index, FirstIndex());
  if (index == offset_) return offset_term_;
  if (index > LastIndex()) {
    return Status::Unavailable("term of " + std::to_string(index) + " requested, last index is " +
                               std::to_string(LastIndex()));
  }
  return entries_[index - offset_ - 1].term;
}

Result<Snapshot> MemStorage::Snapshot() const { return snapshot_; }

Status MemStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return Status::OK();
  for (size_t i = 1; i < entries.size(); i++) {
    if (entries[i].index != entries[i - 1].index + 1) {
      return Status::InvalidArgument("append: entries are not consecutive at index " +
                                     std::to_string(entries[i].index));
    }
  }
  const uint64_t first = entries.front().index;
  if (first > LastIndex() + 1) {
    return Status::InvalidArgument("append at index " + std::to_string(first) +
                                   " leaves a gap after last index " +
                                   std::to_string(LastIndex()));
  }
  size_t skip = 0;
  if (first <= offset_) {
    skip = offset_ + 1 - first;  // already covered by the snapshot
    if (skip >= entries.size()) return Status::OK();
  }
  const uint64_t start = entries[skip].index;
  entries_.resize(start - offset_ - 1);  // drop the conflicting suffix, if any
  entries_.insert(entries_.end(), entries.begin() + static_cast<std::ptrdiff_t>(skip),
                  entries.end());
  return Status::OK();
}

Status MemStorage::ApplySnapshot(replication::Snapshot snap) {
  if (snap.meta.index <= snapshot_.meta.index) {
    return Status::InvalidArgument("snapshot at " + std::to_string(snap.meta.index) +
                                   " is not newer than the stored one at " +
                                   std::to_string(snapshot_.meta.index));
  }
  offset_ = snap.meta.index;
  offset_term_ = snap.meta.term;
  entries_.clear();
  snapshot_ = std::move(snap);
  return Status::OK();
}

Status MemStorage::CreateSnapshot(uint64_t index, ConfState conf, std::string data) {
  if (index < snapshot_.meta.index) {
    return Status::InvalidArgument("snapshot at " + std::to_string(index) +
                                   " is older than the stored one at " +
                                   std::to_string(snapshot_.meta.index));
  }
  if (index > LastIndex()) {
    return Status::InvalidArgument("snapshot at " + std::to_string(index) +
                                   " is past the last index " + std::to_string(LastIndex()));
  }
  ASSIGN_OR_RETURN(uint64_t term, Term(index));
  snapshot_.meta = SnapshotMeta{index, term, std::move(conf)};
  snapshot_.data = std::move(data);
  return Status::OK();
}

Status MemStorage::Compact(uint64_t index) {
  if (index <= offset_) return Status::OK();
  if (index > snapshot_.meta.index) {
    return Status::InvalidArgument("compact to " + std::to_string(index) +
                                   " is past the latest snapshot at " +
                                   std::to_string(snapshot_.meta.index));
  }
  ASSIGN_OR_RETURN(uint64_t term, Term(index));
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(index - offset_));
  offset_ = index;
  offset_term_ = term;
  return Status::OK();
}

}  // namespace ring::replication
