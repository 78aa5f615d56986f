#!/usr/bin/env bash
# Replicated ringstore side by side with etcd and Redis Cluster, on loopback, in one run:
#   - ringstore: 3 nodes, replication factor 3, sync policy `sync` (fsync before ack);
#     ringbench write-only and read-only, 50 clients (one connection each), 100-byte
#     values, unpipelined and pipeline 16;
#     Writes again with 500 clients unpipelined: the concurrency of etcd's check below;
#   - etcd 3.4, 3 nodes: `etcdctl check perf --load=l` (as ../shared/bench does: 500
#     clients, one put outstanding each, capped at 8,000 writes/s);
#   - Redis 7 Cluster, 3 primaries + 3 replicas: redis-benchmark --cluster SET/GET;
#   - failover: TRIALS times, kill -9 the leader of one shard and time until a write to
#     that shard succeeds again (p50 and max).
# Needs (installed when missing): redis-server redis-tools etcd-server etcd-client.
# Env: DURATION (s per ringbench run, default 10), TRIALS (default 10), BUILD (build dir).
set -uo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
TRIALS=${TRIALS:-10}
BUILD=${BUILD:-build}
W=$(mktemp -d /tmp/ring-bench-cluster-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
log() { echo "bench-cluster: $*" >&2; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

RINGD=$BUILD/bin/ringd
RINGBENCH=$BUILD/bin/ringbench
RINGCTL=$BUILD/bin/ringctl
PORTS=(7501 7502 7503)
PEERS="127.0.0.1:7501,127.0.0.1:7502,127.0.0.1:7503"

start_node() {  # index
  local i=$1
  "$RINGD" --data-dir "$W/ring$i" --listen "127.0.0.1:${PORTS[$i]}" --metrics-listen "127.0.0.1:$((9501 + i))" \
    --peers "$PEERS" --sync-policy sync --log-level warn >>"$W/ring$i.log" 2>&1 &
  node_pid[$i]=$!
  pids+=($!)
}

leader_of() {  # shard -> node index
  for i in 0 1 2; do
    if curl -s "http://127.0.0.1:$((9501 + i))/metrics" 2>/dev/null | grep -q "^ringd_shard_is_leader{shard=\"$1\"} 1"; then
      echo "$i"; return 0
    fi
  done
  return 1
}

echo "| system | op | pipeline | ops/s | p99 ms |"
echo "|---|---|---|---|---|"

log "ringstore: 3 nodes, sync"
declare -a node_pid
for i in 0 1 2; do start_node "$i"; done
for _ in $(seq 100); do "$RINGCTL" --cluster "$PEERS" --timeout-ms 500 put warm 1 >/dev/null 2>&1 && break; sleep 0.2; done
rb() {  # op pipeline [clients [extra]]
  local op=$1 p=$2 c=${3:-50}; shift 3 2>/dev/null || shift 2
  "$RINGBENCH" --cluster "$PEERS" --workload "$op" --clients "$c" --connections "$c" --value-size 100 \
    --keys 100000 --pipeline "$p" --duration "$DURATION" --json "$@" 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["run"]; print("%d %.3f" % (r["ops_per_sec"], r["latency_ms"]["all"]["p99"]))'
}
for p in 1 16; do
  read -r ops p99 < <(rb write "$p"); row "ringstore 3 nodes RF3 sync" write "$p" "$ops" "$p99"
done
# etcd's figure below comes from `check perf --load=l`: 500 clients, each with one put
# outstanding. This row loads ringstore the same way, for a like-for-like ratio.
read -r ops p99 < <(rb write 1 500); row "ringstore 3 nodes RF3 sync, 500 clients (etcd's check perf l)" write 1 "$ops" "$p99"
read -r ops p99 < <(rb read 1 50 --load); row "ringstore 3 nodes RF3 sync" read 1 "$ops" "$p99"
read -r ops p99 < <(rb read 16); row "ringstore 3 nodes RF3 sync" read 16 "$ops" "$p99"

log "failover: $TRIALS trials"
KEY="failover-probe"
times=()
for t in $(seq "$TRIALS"); do
  shard=$("$RINGCTL" --cluster "$PEERS" --json shard locate "$KEY" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["shard"])' 2>/dev/null || echo 0)
  l=""
  for _ in $(seq 100); do l=$(leader_of "$shard") && break; sleep 0.1; done
  [[ -n $l ]] || { log "no leader for shard $shard after 10 s; skipping trial $t"; continue; }
  start=$(date +%s%N)
  kill -9 "${node_pid[$l]}"
  until "$RINGCTL" --cluster "$PEERS" --timeout-ms 200 put "$KEY" "t$t" >/dev/null 2>&1; do :; done
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
  start_node "$l"
  sleep 2
done
printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v=[int(x) for x in sys.stdin.read().split()]
if v: print("| failover kill -9 leader -> first write | trials %d | p50 %d ms | max %d ms | |" % (len(v), v[len(v)//2], max(v)))'
for p in "${node_pid[@]}"; do kill "$p" 2>/dev/null; done

if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
  log "etcd 3 nodes"
  C="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
  for i in 1 2 3; do
    etcd --name e$i --data-dir "$W/etcd/e$i" --listen-client-urls http://127.0.0.1:${i}2379 \
      --advertise-client-urls http://127.0.0.1:${i}2379 --listen-peer-urls http://127.0.0.1:${i}2380 \
      --initial-advertise-peer-urls http://127.0.0.1:${i}2380 --initial-cluster $C \
      --initial-cluster-state new >"$W/e$i.log" 2>&1 &
    pids+=($!)
  done
  sleep 4
  out=$(ETCDCTL_API=3 timeout 100 etcdctl --endpoints=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379 check perf --load=l 2>&1 | tr '\r' '\n' | grep -E "Throughput" | head -1)
  row "etcd 3.4 3 nodes (check perf --load=l)" write - "$(echo "$out" | grep -oE '[0-9]+' | head -1)" -
else
  log "etcd not installed; skipping (apt-get install etcd-server etcd-client)"
fi

if command -v redis-server >/dev/null; then
  log "redis cluster 3+3"
  for p in 7601 7602 7603 7604 7605 7606; do
    mkdir -p "$W/rc/$p"
    redis-server --port $p --dir "$W/rc/$p" --cluster-enabled yes --save '' --appendonly no --daemonize yes --logfile "$W/rc/$p.log"
  done
  sleep 1
  echo yes | redis-cli --cluster create 127.0.0.1:7601 127.0.0.1:7602 127.0.0.1:7603 127.0.0.1:7604 127.0.0.1:7605 127.0.0.1:7606 --cluster-replicas 1 >/dev/null 2>&1
  sleep 3
  for p in 1 16; do
    redis-benchmark -p 7601 --cluster -t set,get -n $((p == 1 ? 400000 : 2000000)) -c 50 -r 1000000 -d 100 -P $p --csv 2>/dev/null |
      grep -E '^"(SET|GET)"' | while IFS=, read -r name rps avg min p50 p95 p99 max; do
        row "Redis 7 Cluster 3+3 (async repl, memory)" "$(echo "$name" | tr -d '"')" "$p" "$(echo "$rps" | tr -d '"')" "$(echo "$p99" | tr -d '"')"
      done
  done
  for p in 7601 7602 7603 7604 7605 7606; do redis-cli -p $p shutdown nosave >/dev/null 2>&1; done
fi
