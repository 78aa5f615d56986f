#include "server/kv_state_machine.h"

#include <algorithm>
#include <unordered_map>

#include "common/keyspace.h"

namespace ring::server {

void KvStateMachine::Apply(const std::vector<const KvOp*>& ops, storage::WriteBatch* batch,
                           std::vector<KvResult>* results) {
  // Values written earlier in this batch, by storage key (nullopt = deleted), for the
  // reads of later Deletes and CASes; views of the ops' values, which outlive the call.
  // A batch without reads (all Puts) needs none.
  const bool reads = std::any_of(ops.begin(), ops.end(), [](const KvOp* op) {
    return op->kind == KvOp::Kind::kDelete || op->kind == KvOp::Kind::kCas;
  });
  std::unordered_map<std::string, std::optional<std::string_view>> overlay;
  auto read = [&](const std::string& dkey, std::optional<std::string>* out) -> Status {
    if (auto it = overlay.find(dkey); it != overlay.end()) {
      if (it->second) *out = std::string(*it->second);
      else out->reset();
      return Status::OK();
    }
    std::string v;
    Status s = engine_->Get(storage::Cf::kData, dkey, &v);
    if (s.ok()) *out = std::move(v);
    else if (s.IsNotFound()) out->reset();
    else return s;
    return Status::OK();
  };
  auto write = [&](std::string dkey, std::string_view value) {
    batch->Put(storage::Cf::kData, dkey, value);
    if (reads) overlay[std::move(dkey)] = value;
  };

  results->assign(ops.size(), KvResult{});
  for (size_t i = 0; i < ops.size(); ++i) {
    const KvOp& op = *ops[i];
    KvResult& r = (*results)[i];
    switch (op.kind) {
      case KvOp::Kind::kPut:
        write(DataKey(op.key), op.value);
        break;
      case KvOp::Kind::kBatchPut:
        for (const auto& [k, v] : op.pairs) write(DataKey(k), v);
        break;
      case KvOp::Kind::kDelete: {
        std::string dkey = DataKey(op.key);
        std::optional<std::string> cur;
        r.status = read(dkey, &cur);
        if (!r.status.ok()) break;
        r.existed = cur.has_value();
        if (r.existed) {
          batch->Delete(storage::Cf::kData, dkey);
          overlay[std::move(dkey)] = std::nullopt;  // (a Delete: reads is true)
        }
        break;
      }
      case KvOp::Kind::kCas: {
        std::string dkey = DataKey(op.key);
        std::optional<std::string> cur;
        r.status = read(dkey, &cur);
        if (!r.status.ok()) break;
        bool match = op.expect_absent ? !cur.has_value() : (cur && *cur == op.expected);
        if (match) {
          r.swapped = true;
          write(std::move(dkey), op.value);
        } else {
          r.current = std::move(cur);
        }
        break;
      }
    }
  }
}

}  // namespace ring::server
