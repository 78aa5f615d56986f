#!/usr/bin/env bash
# Adding a 4th node to a loaded 3-node cluster, on loopback:
#   1. three ringd nodes (of a four-node --peers list; the 4th is not started), 64 shards,
#      RF 3, sync; load DATASET_MB of 4 KiB values with ringbench --load;
#   2. baseline: ringbench, workload 0.9 (90% reads), CLIENTS clients, for DURATION s;
#   3. start node 4 (with --snapshot-rate-mb RATE_MB; 0 = unthrottled) and run the same
#      ringbench while the controller moves replicas onto it, until no shard has a
#      learner and node 4 holds its share; report the time taken, the snapshot bytes node
#      4 fetched, the replicas moved against the minimum (RF x shards / 4), and
#      foreground throughput and p99 during the move against the baseline.
# The nodes compact their logs after COMPACT_AFTER entries per shard (default 1000), as a
# long-running cluster would have, so node 4 gets SST snapshots and not years of log.
# Env: DATASET_MB (default 1024), RATE_MB (default 0), CLIENTS (8), DURATION (20),
# COMPACT_AFTER (1000), MOVES (max_concurrent_moves, default 4), WORKERS (snapshot_workers
# per node, default 4), BUILD.
set -uo pipefail
cd "$(dirname "$0")/.."
DATASET_MB=${DATASET_MB:-1024}
RATE_MB=${RATE_MB:-0}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-20}
COMPACT_AFTER=${COMPACT_AFTER:-1000}
MOVES=${MOVES:-4}
WORKERS=${WORKERS:-4}
BUILD=${BUILD:-build}
W=$(mktemp -d /tmp/ring-bench-move-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
log() { echo "bench-move: $*" >&2; }

RINGD=$BUILD/bin/ringd
RINGBENCH=$BUILD/bin/ringbench
RINGCTL=$BUILD/bin/ringctl
PEERS="127.0.0.1:7601,127.0.0.1:7602,127.0.0.1:7603,127.0.0.1:7604"
SEEDS="127.0.0.1:7601,127.0.0.1:7602,127.0.0.1:7603"
KEYS=$((DATASET_MB * 256))  # 4 KiB values

start_node() {  # index [extra...]
  local i=$1; shift
  "$RINGD" --data-dir "$W/n$i" --listen "127.0.0.1:$((7601 + i))" --metrics-listen "127.0.0.1:$((9601 + i))" \
    --peers "$PEERS" --sync-policy sync --log-level warn \
    --log-compact-after "$COMPACT_AFTER" --log-retain "$((COMPACT_AFTER / 2))" \
    --max-concurrent-moves "$MOVES" --snapshot-workers "$WORKERS" "$@" >>"$W/n$i.log" 2>&1 &
  pids+=($!)
}
metric() {  # index name
  curl -s "http://127.0.0.1:$((9601 + $1))/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
bench() {  # -> "ops p99_ms"
  "$RINGBENCH" --cluster "$SEEDS" --workload 0.9 --clients "$CLIENTS" --value-size 4096 --keys "$KEYS" \
    --duration "$DURATION" --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["run"]; print("%d %.3f" % (r["ops_per_sec"], r["latency_ms"]["all"]["p99"]))'
}
# Prints "replicas_on_node4 learners" from the cluster map.
map_state() {
  "$RINGCTL" --cluster "$SEEDS" --json status 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)["cluster_map"]
on4 = sum(1 for s in m["shards"] if 4 in s["voters"])
learners = sum(len(s["learners"]) for s in m["shards"])
print(on4, learners)'
}

log "3 nodes of 4; loading $DATASET_MB MiB ($KEYS keys of 4 KiB)"
for i in 0 1 2; do start_node "$i"; done
for _ in $(seq 150); do "$RINGCTL" --cluster "$SEEDS" --timeout-ms 500 put warm 1 >/dev/null 2>&1 && break; sleep 0.2; done
load_start=$(date +%s)
"$RINGBENCH" --cluster "$SEEDS" --workload read --clients 50 --pipeline 8 --value-size 4096 --keys "$KEYS" \
  --duration 1 --load --json 2>/dev/null >"$W/load.json" || { log "load failed"; exit 1; }
log "loaded in $(( $(date +%s) - load_start )) s"
du -sm "$W"/n0 | awk '{ print "bench-move: node 1 data directory: " $1 " MiB" }' >&2

log "baseline: workload 0.9, $CLIENTS clients, $DURATION s"
read -r base_ops base_p99 < <(bench)

log "starting node 4 (snapshot rate cap: ${RATE_MB} MB/s, 0 = none; $MOVES moves at once, $WORKERS snapshot workers)"
start_node 3 --snapshot-rate-mb "$RATE_MB"
move_start=$(date +%s.%N)
bench >"$W/during" &
bench_pid=$!
done_at=""
for _ in $(seq 3600); do
  read -r on4 learners < <(map_state) || true
  if [[ ${on4:-0} -ge 44 && ${learners:-1} -eq 0 ]]; then done_at=$(date +%s.%N); break; fi
  sleep 0.5
done
wait "$bench_pid"
read -r dur_ops dur_p99 <"$W/during"
[[ -n $done_at ]] || { log "the move did not finish within 30 minutes"; exit 1; }
secs=$(python3 -c "print('%.1f' % ($done_at - $move_start))")
fetched=$(metric 3 ringd_snapshot_fetched_bytes_total)
read -r on4 learners < <(map_state)
python3 - "$DATASET_MB" "$RATE_MB" "$secs" "${fetched:-0}" "$on4" "$base_ops" "$base_p99" "$dur_ops" "$dur_p99" "$DURATION" <<'EOF'
import sys
mb, rate, secs, fetched, on4, bo, bp, do, dp, dur = sys.argv[1:]
secs, fetched, on4 = float(secs), int(fetched), int(on4)
minimum = 3 * 64 / 4
print("| dataset | rate cap | move time | bytes fetched by node 4 | MB/s | replicas moved (min %d) | ratio |" % minimum)
print("|---|---|---|---|---|---|---|")
print("| %s MiB | %s | %.1f s | %.0f MiB | %.1f | %d | %.2fx |" % (mb, rate + " MB/s" if rate != "0" else "none", secs,
      fetched / 2**20, fetched / 2**20 / secs, on4, on4 / minimum))
print()
print("| foreground (0.9 reads, %s s) | ops/s | p99 ms |" % dur)
print("|---|---|---|")
print("| before the move | %s | %s |" % (bo, bp))
print("| during the move | %s | %s |" % (do, dp))
print("| during / before | %.2fx | %.2fx |" % (float(do) / float(bo), float(dp) / float(bp)))
EOF
