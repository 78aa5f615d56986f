#include "server/replicated_kv.h"

#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "common/coding.h"
#include "common/keyspace.h"
#include "proto/ring.pb.h"

namespace ring::server {

namespace {

// A shard's dedup records are the meta keys "x/" be64(group) be64(client): one range.
std::string ClientPrefix(uint64_t group) { return "x/" + HashPrefix(group); }

std::string ClientKey(uint64_t group, uint64_t client) {
  std::string k = ClientPrefix(group);
  AppendBe64(&k, client);
  return k;
}

// Record and result encodings. A record is rewritten with every batch of its client's
// writes to its shard, so it is kept small.
//   version 1: byte 1, varint last_active_ms, varint count, then per result: varint seq
//              (the first absolute, then the difference from the previous one), varint
//              length, the result: byte status code, byte flags (1 existed, 2 swapped,
//              4 current follows), varint message length, message, current value.
//   version 0 (written before version 1; its first byte, the top byte of a be64
//              millisecond time, is always 0): be64 last_active_ms, be64 count, then per
//              result be64 seq, be64 length, the result, with its message length as be64.
// Records are read in either version and always written in version 1.
constexpr char kRecordV1 = 1;

std::string EncodeResult(const KvResult& r) {
  std::string out;
  out.push_back(static_cast<char>(r.status.code()));
  out.push_back(static_cast<char>((r.existed ? 1 : 0) | (r.swapped ? 2 : 0) | (r.current ? 4 : 0)));
  AppendVarint(&out, r.status.message().size());
  out += r.status.message();
  if (r.current) out += *r.current;
  return out;
}

KvResult DecodeResult(std::string_view in, bool v1 = true) {
  KvResult r;
  size_t pos = 2;
  uint64_t mlen = 0;
  if (in.size() < 2 || !(v1 ? ReadVarint(in, &pos, &mlen) : ReadBe64(in, &pos, &mlen)) || in.size() - pos < mlen) {
    r.status = Status::Corruption("dedup record is truncated");
    return r;
  }
  auto code = static_cast<StatusCode>(static_cast<uint8_t>(in[0]));
  std::string msg(in.substr(pos, mlen));
  pos += mlen;
  if (code != StatusCode::kOk) r.status = Status(code, msg);
  uint8_t flags = static_cast<uint8_t>(in[1]);
  r.existed = flags & 1;
  r.swapped = flags & 2;
  if (flags & 4) r.current = std::string(in.substr(pos));
  return r;
}

std::string EncodeRecord(const ClientRecord& rec) {
  std::string out;
  out.push_back(kRecordV1);
  AppendVarint(&out, rec.last_active_ms);
  AppendVarint(&out, rec.results.size());
  uint64_t prev = 0;
  for (const auto& [seq, res] : rec.results) {
    AppendVarint(&out, seq - prev);
    prev = seq;
    AppendVarint(&out, res.size());
    out += res;
  }
  return out;
}

// In memory, results are held in version 1 (older ones are converted as they are read).
bool DecodeRecord(std::string_view in, ClientRecord* rec) {
  const bool v1 = !in.empty() && in[0] == kRecordV1;
  auto read = [&](size_t* pos, uint64_t* v) { return v1 ? ReadVarint(in, pos, v) : ReadBe64(in, pos, v); };
  size_t pos = v1 ? 1 : 0;
  uint64_t n = 0;
  if (!read(&pos, &rec->last_active_ms) || !read(&pos, &n)) return false;
  uint64_t seq = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t s = 0, len = 0;
    if (!read(&pos, &s) || !read(&pos, &len) || in.size() - pos < len) return false;
    seq = v1 ? seq + s : s;
    std::string_view res = in.substr(pos, len);
    rec->results.emplace(seq, v1 ? std::string(res) : EncodeResult(DecodeResult(res, /*v1=*/false)));
    pos += len;
  }
  return true;
}

// A shard's range record sits at the first key of its dedup-record range, so it travels
// with them (snapshots, drops) and sorts before every client's record.
std::string RangeKey(uint64_t group) { return ClientPrefix(group); }

bool InRange(const ReplicatedKv::HashRange& r, uint64_t hash) { return hash >= r.start && (r.end == 0 || hash < r.end); }

// The first key of `op` outside `r`, or null.
const std::string* KeyOutside(const KvOp& op, const ReplicatedKv::HashRange& r) {
  if (op.kind != KvOp::Kind::kBatchPut) return InRange(r, KeyHash(op.key)) ? nullptr : &op.key;
  for (const auto& [k, v] : op.pairs) {
    if (!InRange(r, KeyHash(k))) return &k;
  }
  return nullptr;
}

// Moves the mutation out of *req (a decoded command, discarded after).
bool ToOp(pb::Request* req, KvOp* op) {
  switch (req->body_case()) {
    case pb::Request::kPut:
      op->kind = KvOp::Kind::kPut;
      op->key = std::move(*req->mutable_put()->mutable_key());
      op->value = std::move(*req->mutable_put()->mutable_value());
      return true;
    case pb::Request::kDel:
      op->kind = KvOp::Kind::kDelete;
      op->key = std::move(*req->mutable_del()->mutable_key());
      return true;
    case pb::Request::kCas:
      op->kind = KvOp::Kind::kCas;
      op->key = std::move(*req->mutable_cas()->mutable_key());
      op->value = std::move(*req->mutable_cas()->mutable_value());
      op->expected = std::move(*req->mutable_cas()->mutable_expected());
      op->expect_absent = req->cas().expect_absent();
      return true;
    case pb::Request::kBatchPut:
      op->kind = KvOp::Kind::kBatchPut;
      for (auto& kv : *req->mutable_batch_put()->mutable_pairs()) {
        op->pairs.emplace_back(std::move(*kv.mutable_key()), std::move(*kv.mutable_value()));
      }
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string EncodeCommand(const pb::Request& req, uint64_t now_ms) {
  std::string out;
  AppendBe64(&out, now_ms);
  req.AppendToString(&out);
  return out;
}

void ReplicatedKv::Apply(uint64_t group, const std::vector<replication::Command>& commands,
                         storage::WriteBatch* batch, std::vector<std::any>* results) {
  results->assign(commands.size(), std::any());
  // Decode every command; find which are duplicates. Records come from the cache, or are
  // loaded once per client.
  if (cached_records_ > kMaxCachedRecords) {
    records_.clear();
    cached_records_ = 0;
  }
  auto& cached = records_[group];
  std::map<uint64_t, ClientRecord*> clients;  // this call's clients, in key order
  // What becomes of each command, and what it is answered.
  enum class Fate { kApply, kDuplicate, kRefused, kSameAsEarlier };
  struct Cmd {
    KvOp op;
    Fate fate = Fate::kApply;
    KvResult result;          // set here unless kApply; by the key-value machine if so
    size_t same_as = 0;       // kSameAsEarlier: the command of this call it repeats
    ClientRecord* record = nullptr;  // its client's dedup record (null: no exactly-once)
    uint64_t seq = 0;
    HashRange range;          // the shard's range as this command sees it
  };
  std::vector<Cmd> cmds(commands.size());
  std::map<std::pair<uint64_t, uint64_t>, size_t> in_batch;  // (client, seq) -> first command
  uint64_t newest_ms = 0;
  // A split narrows the shard's range for the commands after it.
  const std::optional<HashRange> known = CurrentRange(group);
  HashRange range = known.value_or(HashRange{0, 0});
  struct Split {
    pb::SplitCommand command;
    HashRange parent, child;
  };
  std::vector<Split> splits;
  for (size_t i = 0; i < commands.size(); ++i) {
    Cmd& cmd = cmds[i];
    std::string_view data = commands[i].data;
    size_t pos = 0;
    uint64_t stamp = 0;
    pb::Request req;
    cmd.range = range;
    const bool decoded =
        ReadBe64(data, &pos, &stamp) && req.ParseFromArray(data.data() + pos, static_cast<int>(data.size() - pos));
    if (decoded && req.has_split()) {
      cmd.fate = Fate::kRefused;  // nothing for the key-value machine to do
      const pb::SplitCommand& sc = req.split();
      const bool inside = sc.mid() > range.start && (range.end == 0 || sc.mid() < range.end);
      if (!inside || sc.child() == group || sc.founders().empty()) {
        cmd.result.status = Status::InvalidArgument("log entry " + std::to_string(commands[i].index) +
                                                    ": split outside the shard's range or malformed; ignored");
        continue;
      }
      splits.push_back(Split{sc, HashRange{range.start, sc.mid()}, HashRange{sc.mid(), range.end}});
      range.end = sc.mid();
      continue;  // answered OK
    }
    if (!decoded || !ToOp(&req, &cmd.op)) {
      cmd.fate = Fate::kRefused;
      cmd.result.status = Status::Corruption("log entry " + std::to_string(commands[i].index) + " is not a command");
      continue;
    }
    newest_ms = std::max(newest_ms, stamp);
    uint64_t client = req.client_id();
    if (client == 0) continue;  // a caller that opted out of exactly-once
    auto [it, fresh] = clients.try_emplace(client, nullptr);
    if (fresh) {
      auto [c, missing] = cached.try_emplace(client);
      if (missing) {
        ++cached_records_;
        std::string v;
        if (engine_->Get(storage::Cf::kMeta, ClientKey(group, client), &v).ok() && !DecodeRecord(v, &c->second)) {
          // Every replica holds the same bytes and decodes them alike; what was read is kept.
          spdlog::error("shard {}: client {:x}: the exactly-once record ({} bytes) does not decode; "
                        "retries of its earlier writes may be applied again",
                        group, client, v.size());
        }
      }
      it->second = &c->second;
    }
    ClientRecord& rec = *it->second;
    cmd.record = &rec;
    cmd.seq = req.seq();
    rec.last_active_ms = std::max(rec.last_active_ms, stamp);
    // Results the client has seen answered are no longer needed.
    rec.results.erase(rec.results.begin(), rec.results.lower_bound(req.first_incomplete_seq()));
    if (auto [b, first] = in_batch.try_emplace({client, req.seq()}, i); !first) {
      // A retry that reached the log while its original is in this very batch.
      cmd.fate = Fate::kSameAsEarlier;
      cmd.same_as = b->second;
    } else if (auto r = rec.results.find(req.seq()); r != rec.results.end()) {
      cmd.fate = Fate::kDuplicate;
      cmd.result = DecodeResult(r->second);
    } else if (req.seq() < req.first_incomplete_seq()) {
      cmd.fate = Fate::kRefused;
      cmd.result.status = Status::InvalidArgument("request seq " + std::to_string(req.seq()) +
                                                  " was already answered (stale retry)");
    }
  }

  // A command for a key a split has given away is refused (unless it was a retry of one
  // applied before the split: that one got its original result above).
  for (size_t i = 0; i < cmds.size() && known; ++i) {
    Cmd& cmd = cmds[i];
    if (cmd.fate != Fate::kApply) continue;
    if (const std::string* key = KeyOutside(cmd.op, cmd.range)) {
      cmd.fate = Fate::kRefused;
      cmd.result.status = Status::WrongShard("key " + std::to_string(KeyHash(*key)) +
                                             " (hash) is no longer in shard " + std::to_string(group) +
                                             " after a split; route by the newer cluster map");
    }
  }

  std::vector<const KvOp*> to_apply;
  std::vector<Cmd*> applying;
  for (Cmd& cmd : cmds) {
    if (cmd.fate != Fate::kApply) continue;
    to_apply.push_back(&cmd.op);
    applying.push_back(&cmd);
  }
  std::vector<KvResult> applied;
  kv_.Apply(to_apply, batch, &applied);
  for (size_t k = 0; k < applying.size(); ++k) {
    Cmd& cmd = *applying[k];
    cmd.result = std::move(applied[k]);
    if (cmd.record != nullptr) {
      ClientRecord& rec = *cmd.record;
      rec.results[cmd.seq] = EncodeResult(cmd.result);
      while (rec.results.size() > kMaxResultsPerClient) rec.results.erase(rec.results.begin());
    }
  }
  for (Cmd& cmd : cmds) {
    if (cmd.fate == Fate::kSameAsEarlier) cmd.result = cmds[cmd.same_as].result;
  }
  for (const auto& [client, rec] : clients) {
    batch->Put(storage::Cf::kMeta, ClientKey(group, client), EncodeRecord(*rec));
  }
  for (const Split& sp : splits) StageSplit(group, sp.command, sp.parent, sp.child, batch);
  // Forget idle clients now and then; the trigger is the log index, so every replica
  // expires the same clients at the same point.
  if (!commands.empty() && commands.back().index / 1024 != (commands.front().index - 1) / 1024 && newest_ms > kClientRetentionMs) {
    std::string prefix = ClientPrefix(group);
    std::string end = ClientPrefix(group + 1);
    engine_->Scan(storage::Cf::kMeta, prefix, end, [&](std::string_view key, std::string_view value) {
      if (key.size() == prefix.size()) return true;  // the shard's range record
      ClientRecord rec;
      if (DecodeRecord(value, &rec) && rec.last_active_ms + kClientRetentionMs < newest_ms) {
        size_t pos = prefix.size();
        uint64_t client = 0;
        ReadBe64(key, &pos, &client);
        if (!clients.count(client)) {
          batch->Delete(storage::Cf::kMeta, key);
          cached_records_ -= cached.erase(client);
        }
      }
      return true;
    }).ok();
  }
  for (size_t i = 0; i < cmds.size(); ++i) (*results)[i] = std::move(cmds[i].result);
}

ReplicatedKv::RangeSource ReplicatedKv::UniformRanges(uint32_t count) {
  return [ranges = ShardRanges::Uniform(count)](uint64_t group) -> std::optional<HashRange> {
    if (group >= ranges.count()) return std::nullopt;
    const auto shard = static_cast<ShardId>(group);
    return HashRange{ranges.Start(shard), shard + 1 < ranges.count() ? ranges.Start(shard + 1) : 0};
  };
}

std::optional<ReplicatedKv::RangeRecord> ReplicatedKv::ReadRangeRecord(uint64_t group) const {
  std::string v;
  if (!engine_->Get(storage::Cf::kMeta, RangeKey(group), &v).ok()) return std::nullopt;
  pb::ShardRangeRecord r;
  if (!r.ParseFromString(v)) return std::nullopt;
  return RangeRecord{HashRange{r.start(), r.end()}, {r.founders().begin(), r.founders().end()}};
}

std::optional<ReplicatedKv::HashRange> ReplicatedKv::DurableRange(uint64_t group) const {
  if (auto r = ReadRangeRecord(group)) return r->range;
  return ranges_(group);
}

std::optional<std::vector<replication::NodeId>> ReplicatedKv::SplitFounders(uint64_t group) const {
  auto r = ReadRangeRecord(group);
  if (!r || r->founders.empty()) return std::nullopt;
  return r->founders;
}

std::optional<ReplicatedKv::HashRange> ReplicatedKv::CurrentRange(uint64_t group) {
  if (auto it = range_cache_.find(group); it != range_cache_.end()) return it->second;
  std::optional<HashRange> r = DurableRange(group);
  if (r) range_cache_.emplace(group, *r);
  return r;
}

void ReplicatedKv::StageSplit(uint64_t group, const pb::SplitCommand& split, HashRange parent, HashRange child,
                              storage::WriteBatch* batch) {
  const uint64_t child_id = split.child();
  pb::ShardRangeRecord p;
  p.set_start(parent.start);
  p.set_end(parent.end);
  batch->Put(storage::Cf::kMeta, RangeKey(group), p.SerializeAsString());
  pb::ShardRangeRecord c;
  c.set_start(child.start);
  c.set_end(child.end);
  *c.mutable_founders() = split.founders();
  batch->Put(storage::Cf::kMeta, RangeKey(child_id), c.SerializeAsString());
  // The child answers retries of anything the parent applied: it gets every client's
  // record as of now (the cache holds this batch's updates; the engine the rest).
  const auto& cached = records_[group];
  const std::string prefix = ClientPrefix(group);
  std::set<uint64_t> copied;
  for (const auto& [client, rec] : cached) {
    batch->Put(storage::Cf::kMeta, ClientKey(child_id, client), EncodeRecord(rec));
    copied.insert(client);
  }
  engine_->Scan(storage::Cf::kMeta, prefix, ClientPrefix(group + 1), [&](std::string_view key, std::string_view value) {
    size_t pos = prefix.size();
    uint64_t client = 0;
    if (key.size() == prefix.size() + 8 && ReadBe64(key, &pos, &client) && !copied.count(client)) {
      batch->Put(storage::Cf::kMeta, ClientKey(child_id, client), value);
    }
    return true;
  }).ok();
  range_cache_[group] = parent;
  range_cache_[child_id] = child;
  if (auto it = records_.find(child_id); it != records_.end()) {
    cached_records_ -= it->second.size();
    records_.erase(it);
  }
}

Result<std::vector<SnapshotRange>> ReplicatedKv::Ranges(uint64_t group) {
  std::optional<HashRange> r = CurrentRange(group);
  if (!r) return Status::NotFound("shard " + std::to_string(group) + " is not in this node's cluster map");
  return std::vector<SnapshotRange>{
      SnapshotRange{storage::Cf::kData, HashPrefix(r->start), r->end == 0 ? std::string() : HashPrefix(r->end)},
      SnapshotRange{storage::Cf::kMeta, ClientPrefix(group), ClientPrefix(group + 1)}};
}

void ReplicatedKv::Snapshot(uint64_t group, std::function<void(Result<std::string>)> done) {
  auto ranges = Ranges(group);
  if (!ranges.ok()) return done(ranges.status());
  // The manifest names the data range, so a follower replaces exactly that range.
  const HashRange range = *CurrentRange(group);
  snapshots_->Export(group, std::move(ranges).value(), [range, done = std::move(done)](Result<std::string> image) {
    if (!image.ok()) return done(std::move(image));
    pb::SnapshotManifest m;
    if (!m.ParseFromString(*image)) return done(Status::Corruption("snapshot manifest does not decode"));
    m.set_has_range(true);
    m.set_range_start(range.start);
    m.set_range_end(range.end);
    done(m.SerializeAsString());
  });
}

bool ReplicatedKv::NeedsFetch(std::string_view image) const { return SnapshotStore::IsRemote(image); }

void ReplicatedKv::Fetch(uint64_t group, std::string image, std::function<void(Result<std::string>)> done) {
  auto ranges = Ranges(group);
  if (!ranges.ok()) return done(ranges.status());
  snapshots_->Fetch(group, std::move(image), std::move(ranges).value(), std::move(done));
}

Status ReplicatedKv::Restore(uint64_t group, std::string_view image, storage::WriteBatch*) {
  ASSIGN_OR_RETURN(std::vector<LocalSnapshotFile> files, snapshots_->LocalFiles(image));
  ASSIGN_OR_RETURN(std::vector<SnapshotRange> ranges, Ranges(group));
  pb::SnapshotManifest m;
  if (m.ParseFromArray(image.data(), static_cast<int>(image.size())) && m.has_range()) {
    // The shard's range when the image was made (narrower after a split: the child's
    // keys on this node are not the parent's to replace).
    ranges[0].begin = HashPrefix(m.range_start());
    ranges[0].end = m.range_end() == 0 ? std::string() : HashPrefix(m.range_end());
  }
  // Each range is replaced atomically; the driver's restore record covers the two steps.
  // The store checked the files when it fetched them: no second full read here, on the
  // driver thread.
  for (const SnapshotRange& r : ranges) {
    std::vector<std::string> paths;
    for (const auto& f : files) {
      if (f.cf == r.cf) paths.push_back(f.path);
    }
    RETURN_IF_ERROR(engine_->IngestRange(r.cf, r.begin, r.end, paths, /*checked=*/true)
                        .WithContext("shard " + std::to_string(group) + ": restoring a snapshot"));
  }
  range_cache_.erase(group);  // the image carried its range record
  if (auto it = records_.find(group); it != records_.end()) {
    cached_records_ -= it->second.size();
    records_.erase(it);
  }
  return Status::OK();
}

void ReplicatedKv::Restored(uint64_t, std::string_view image) { snapshots_->Release(image); }

Status ReplicatedKv::Drop(uint64_t group, storage::WriteBatch* batch) {
  ASSIGN_OR_RETURN(std::vector<SnapshotRange> ranges, Ranges(group));
  for (const SnapshotRange& r : ranges) batch->DeleteRange(r.cf, r.begin, r.end);
  range_cache_.erase(group);
  if (auto it = records_.find(group); it != records_.end()) {
    cached_records_ -= it->second.size();
    records_.erase(it);
  }
  return Status::OK();
}

void ReplicatedKv::OnWriteFailed() {
  records_.clear();
  cached_records_ = 0;
  range_cache_.clear();
}

}  // namespace ring::server
