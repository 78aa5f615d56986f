#!/usr/bin/env bash
# scripts/bench-vs-redis.sh: ringstore and Redis side by side, in one run, on loopback.
#
#   Redis standalone (no persistence) measured with redis-benchmark: SET and GET, 50 clients,
#   100-byte values, 1M-key space (-r 1000000), unpipelined and -P 16.
#   One ringd node, once with --sync-policy async and once with sync, measured with
#   ringbench: write-only and read-only (after --load), 50 clients, 100-byte values,
#   pipeline 1 and 16, DURATION seconds each.
#
# Then prints a markdown table: system, op, pipeline, ops/s, p99 ms, and ringstore/Redis
# throughput for the same op and pipeline depth.
#
# Environment (all optional):
#   DURATION=10          seconds per ringbench run; also sizes the redis-benchmark runs
#   KEYS=100000          ringstore key space (every key is written by --load)
#   BUILD=build          build directory holding bin/ringd and bin/ringbench
#   REDIS_PORT=7379      loopback ports; each must be free
#   RING_PORT=7401       ringd client port; the sync run uses RING_PORT+10
#   RING_METRICS_PORT=7402
#
# Only loopback addresses are used. Every server this script starts is stopped on exit.
# Exit status: 0 when every row was measured, 1 otherwise (the table still shows the rest).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
DURATION=${DURATION:-10}
KEYS=${KEYS:-100000}
REDIS_PORT=${REDIS_PORT:-7379}
RING_PORT=${RING_PORT:-7401}
RING_METRICS_PORT=${RING_METRICS_PORT:-7402}
HOST=127.0.0.1
CLIENTS=50
VALUE_SIZE=100
RINGD="$BUILD/bin/ringd"
RINGBENCH="$BUILD/bin/ringbench"

die() { echo "bench-vs-redis: $*" >&2; exit 1; }
log() { echo "bench-vs-redis: $*" >&2; }

[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive whole number of seconds, not '$DURATION'"
[[ "$KEYS" =~ ^[1-9][0-9]*$ ]] || die "KEYS must be a positive whole number, not '$KEYS'"
for tool in redis-server redis-cli redis-benchmark python3 timeout; do
  command -v "$tool" >/dev/null || die "$tool not found (redis: RING_SETUP_BENCH=1 scripts/setup)"
done
[[ -x "$RINGD" && -x "$RINGBENCH" ]] || die "$RINGD or $RINGBENCH missing: run 'make build' first"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-redis.XXXXXX") || die "cannot create a temp dir"
RESULTS="$WORK/results.tsv"  # system, op, pipeline, ops/s, p99 ms, note
: >"$RESULTS"
server_pids=()

# Stops a server we started: SIGTERM, then SIGKILL if it lingers for 10 s.
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  for pid in "${server_pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Refuse to run against a server we did not start.
for port in "$REDIS_PORT" "$RING_PORT" "$RING_METRICS_PORT" $((RING_PORT + 10)) $((RING_METRICS_PORT + 10)); do
  port_in_use "$port" && die "port $port on $HOST is already in use; set REDIS_PORT/RING_PORT/RING_METRICS_PORT"
done

# --- Redis ------------------------------------------------------------------------------
redis_version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
REDIS_SYSTEM="Redis ${redis_version:-?} standalone, no persistence"

log "starting redis-server on $HOST:$REDIS_PORT"
redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
  --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
server_pids+=($!)
redis_pid=$!
for _ in $(seq 100); do
  [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
  kill -0 "$redis_pid" 2>/dev/null || die "redis-server exited; see its log above"
  sleep 0.1
done
[[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] || die "redis-server did not answer"

# redis-benchmark counts requests, not seconds: size each run to last roughly DURATION
# seconds at the throughput this machine kind reaches (see ../shared/bench/REFERENCE.md).
for pipeline in 1 16; do
  if [[ $pipeline == 1 ]]; then requests=$((DURATION * 50000)); else requests=$((DURATION * 350000)); fi
  log "redis-benchmark SET,GET pipeline $pipeline, $requests requests each"
  pipe_flag=()
  rows_before=$(wc -l <"$RESULTS")
  [[ $pipeline == 1 ]] || pipe_flag=(-P "$pipeline")
  csv=$(redis-benchmark -h "$HOST" -p "$REDIS_PORT" -t set,get -n "$requests" -c "$CLIENTS" \
          -r 1000000 -d "$VALUE_SIZE" "${pipe_flag[@]}" --csv 2>/dev/null)
  # CSV columns: test, rps, avg, min, p50, p95, p99, max (latencies in ms).
  while IFS=, read -r test rps _avg _min _p50 _p95 p99 _max; do
    test=${test//\"/}; rps=${rps//\"/}; p99=${p99//\"/}
    case "$test" in
      SET) op='write' ;;
      GET) op='read' ;;
      *) continue ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$REDIS_SYSTEM" "$op" "$pipeline" "$rps" "$p99" "" >>"$RESULTS"
  done <<<"$csv"
  (( $(wc -l <"$RESULTS") > rows_before )) || log "redis-benchmark pipeline $pipeline produced no results"
done
redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
stop_pid "$redis_pid"

# --- ringstore --------------------------------------------------------------------------

# Appends one ringbench --json result to RESULTS; the note carries errors and load speed.
record_ringbench() {
  local system=$1 op=$2 pipeline=$3 json=$4
  python3 - "$system" "$op" "$pipeline" "$json" >>"$RESULTS" <<'EOF'
import json, sys
system, op, pipeline, path = sys.argv[1:5]
try:
    with open(path) as f:
        d = json.load(f)
    run = d["run"]
    notes = []
    if run["errors"]:
        codes = ", ".join(f"{k} {v}" for k, v in run["errors_by_code"].items())
        notes.append(f"{run['errors']} errors ({codes})")
    if d.get("load"):
        notes.append(f"load {d['load']['ops_per_sec']:.0f} keys/s")
    print(f"{system}\t{op}\t{pipeline}\t{run['ops_per_sec']:.2f}\t"
          f"{run['latency_ms']['all']['p99']:.3f}\t{'; '.join(notes)}")
except Exception as e:  # a failed run still gets a row, so the table shows the gap
    print(f"{system}\t{op}\t{pipeline}\t\t\tringbench failed: {type(e).__name__}")
EOF
}

# Shows why a ringbench run failed; its row in the table says that it did.
report_failure() {
  log "ringbench failed; its last messages:"
  tail -n 5 "$WORK/ringbench.err" >&2
}

# Runs ringbench against $1 with the remaining arguments; writes its JSON to stdout.
ringbench() {
  local cluster=$1
  shift
  # SIGINT first, so an overrunning ringbench still prints what it measured.
  # --connections = --clients: one TCP connection per logical client, as redis-benchmark
  # -c opens, so "unpipelined" means one request in flight per connection, not 50
  # requests multiplexed over a few connections (which would be pipelining in disguise).
  timeout -s INT -k 10 $((DURATION * 3 + 300)) \
    "$RINGBENCH" --cluster "$cluster" --clients "$CLIENTS" --connections "$CLIENTS" --value-size "$VALUE_SIZE" \
    --keys "$KEYS" --json "$@"
}

for policy in async sync; do
  if [[ $policy == async ]]; then offset=0; else offset=10; fi
  port=$((RING_PORT + offset))
  metrics_port=$((RING_METRICS_PORT + offset))
  cluster="$HOST:$port"
  system="ringstore 1 node, sync-policy $policy"
  data_dir="$WORK/ring-$policy"
  mkdir -p "$data_dir"

  log "starting ringd ($policy) on $cluster"
  "$RINGD" --data-dir "$data_dir" --listen "$cluster" --metrics-listen "$HOST:$metrics_port" \
    --sync-policy "$policy" >"$WORK/ringd-$policy.log" 2>&1 &
  ringd_pid=$!
  server_pids+=("$ringd_pid")

  # Ready means a short write run succeeds without errors, not merely an open port: the
  # node may still be electing shard leaders.
  ready=0
  for _ in $(seq 60); do
    kill -0 "$ringd_pid" 2>/dev/null || break
    if port_in_use "$port" &&
       "$RINGBENCH" --cluster "$cluster" --workload write --clients 4 --keys 1000 --duration 1 \
         --timeout-ms 1000 --json 2>/dev/null >"$WORK/ready.json" &&
       python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["run"]; sys.exit(r["errors"] > 0 or r["ops"] == 0)' \
         "$WORK/ready.json" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.5
  done
  if [[ $ready != 1 ]]; then
    log "ringd ($policy) did not become ready; last lines of its log:"
    tail -n 20 "$WORK/ringd-$policy.log" >&2
    for op in write read; do
      for pipeline in 1 16; do
        printf '%s\t%s\t%s\t\t\t%s\n' "$system" "$op" "$pipeline" "ringd not ready" >>"$RESULTS"
      done
    done
    stop_pid "$ringd_pid"
    continue
  fi

  for pipeline in 1 16; do
    log "ringbench ($policy) write, pipeline $pipeline, ${DURATION}s"
    ringbench "$cluster" --workload write --pipeline "$pipeline" --duration "$DURATION" \
      >"$WORK/out.json" 2>"$WORK/ringbench.err" || report_failure
    record_ringbench "$system" write "$pipeline" "$WORK/out.json"
  done
  for pipeline in 1 16; do
    # Load once, pipelined deeply so it is quick; then every read finds its key.
    load=()
    if [[ $pipeline == 1 ]]; then load=(--load); fi
    log "ringbench ($policy) read, pipeline $pipeline, ${DURATION}s${load:+ after --load}"
    ringbench "$cluster" --workload read --pipeline "$pipeline" --duration "$DURATION" \
      "${load[@]}" >"$WORK/out.json" 2>"$WORK/ringbench.err" || report_failure
    record_ringbench "$system" read "$pipeline" "$WORK/out.json"
  done
  stop_pid "$ringd_pid"
done

# --- Report -----------------------------------------------------------------------------
python3 - "$RESULTS" "$DURATION" "$KEYS" "$(nproc)" <<'EOF'
import sys
path, duration, keys, cores = sys.argv[1:5]
rows = []
with open(path) as f:
    for line in f:
        system, op, pipeline, ops, p99, note = line.rstrip("\n").split("\t")
        rows.append(dict(system=system, op=op, pipeline=int(pipeline),
                         ops=float(ops) if ops else None, p99=p99, note=note))

redis = {(r["op"], r["pipeline"]): r["ops"] for r in rows if r["system"].startswith("Redis")}
print(f"\nLoopback, {cores} cores. 50 clients, 100-byte values. Redis: redis-benchmark, "
      f"1M-key space. ringstore: ringbench, {keys} keys, {duration} s per run.\n")
print("| system | op | pipeline | ops/s | p99 ms | ringstore/Redis |")
print("|---|---|---|---|---|---|")
notes = []
for op in ("write", "read"):
    for pipeline in (1, 16):
        for r in rows:
            if r["op"] != op or r["pipeline"] != pipeline:
                continue
            ops = f"{r['ops']:,.0f}" if r["ops"] is not None else "n/a"
            base = redis.get((op, pipeline))
            if r["system"].startswith("Redis"):
                ratio = "-"
            elif r["ops"] is not None and base:
                ratio = f"{r['ops'] / base:.2f}"
            else:
                ratio = "n/a"
            print(f"| {r['system']} | {op} | {pipeline} | {ops} | {r['p99'] or 'n/a'} | {ratio} |")
            if r["note"]:
                notes.append(f"- {r['system']}, {op}, pipeline {pipeline}: {r['note']}")
if notes:
    print("\nNotes:")
    print("\n".join(notes))
# A missing measurement fails the script, so `make bench` cannot quietly succeed without it.
sys.exit(1 if any(r["ops"] is None for r in rows) else 0)
EOF
