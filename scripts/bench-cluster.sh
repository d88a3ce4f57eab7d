#!/usr/bin/env bash
# Produce and consume throughput of a cluster of N agents against one agent, on this one
# machine: starts a real etcd and moto_server on 127.0.0.1 free ports, then for N in
# $SIZES (default "1 3") runs N `shale agent` processes (release build) and the headline
# benches against them (`--addr` lists every agent; the SDK sends each partition's produce
# to its leader, reads go to the first agent). Prints one JSON object per bench, with the
# CPU seconds of all agents together for the bench and per GB, then medians.
#
#   scripts/bench-cluster.sh
#   RUNS=3 SIZES="1 3" RECORDS=200000 STORE_OPTIONS=unsigned_payload=true scripts/bench-cluster.sh
#
# Needs what scripts/test.sh installs (etcd, .venv with moto). Stops everything it started,
# by PID, on exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs="${RUNS:-3}"
sizes="${SIZES:-1 3}"
records="${RECORDS:-200000}"
target="${CARGO_TARGET_DIR:-$repo/target}"
[ -d "$repo/../target" ] && [ -z "${CARGO_TARGET_DIR:-}" ] && target="$(cd "$repo/../target" && pwd)"
export CARGO_TARGET_DIR="$target"
cargo build --release --locked --bin shale >&2
shale="$target/release/shale"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d /dev/shm/shale-cluster-bench.XXXX 2>/dev/null || mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { printf 'bench-cluster.sh: %s\n' "$*" >&2; }
results="$work/results.jsonl"
: >"$results"

etcd_port=$(free_port); peer_port=$(free_port)
etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$peer_port" --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
s3_port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null; do sleep 0.1; done
until curl -s -o /dev/null "http://127.0.0.1:$s3_port/moto-api/"; do sleep 0.1; done
store() { echo "s3://shale-bench/$1?endpoint=http://127.0.0.1:$s3_port&region=us-east-1&access_key_id=test&secret_access_key=test&allow_http=true${STORE_OPTIONS:+&$STORE_OPTIONS}"; }

agent_pids=()
addrs=""
# Starts N agents of cluster PREFIX (each size gets its own key prefix and bucket prefix).
start_agents() {
    local n="$1" prefix="$2"
    agent_pids=(); addrs=""; metrics=""
    for i in $(seq "$n"); do
        local grpc http
        grpc=$(free_port); http=$(free_port)
        "$shale" agent --metadata "etcd://127.0.0.1:$etcd_port" --object-store "$(store "$prefix")" --create-bucket \
            --cache-dir "$work/cache-$prefix-$i" --cache-size 1GiB --agent-id "$prefix-$i" \
            --grpc-addr "127.0.0.1:$grpc" --http-addr "127.0.0.1:$http" \
            >>"$work/agent-$prefix-$i.log" 2>&1 &
        agent_pids+=($!); pids+=($!)
        until curl -sf "http://127.0.0.1:$http/readyz" >/dev/null; do sleep 0.1; done
        addrs="${addrs:+$addrs,}http://127.0.0.1:$grpc"
        [ -z "$metrics" ] && metrics="http://127.0.0.1:$http/metrics"
    done
    export SHALE_ADDR="$addrs" SHALE_METRICS_URL="$metrics"
}
stop_agents() { for pid in "${agent_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }

# User + system CPU seconds of every agent so far.
agents_cpu() { python3 -c '
import os, sys
total = 0
for pid in sys.argv[1:]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    total += int(fields[11]) + int(fields[12])
print(total / os.sysconf("SC_CLK_TCK"))' "${agent_pids[@]}"; }

bench() {
    local label="$1"; shift
    local before after
    before=$(agents_cpu)
    "$shale" bench "$@" --json >"$work/one.json"
    after=$(agents_cpu)
    python3 - "$label" "$before" "$after" "$work/one.json" <<'PY' | tee -a "$results"
import json, sys
label, before, after, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
report = json.loads(open(path).read().strip().splitlines()[-1])
report["label"] = label
cpu = after - before
report["agents_cpu_seconds"] = round(cpu, 3)
if report.get("bytes"):
    report["agents_cpu_seconds_per_gb"] = round(cpu / (report["bytes"] / 1e9), 3)
print(json.dumps(report))
PY
}

for n in $sizes; do
    start_agents "$n" "c$n"
    log "$n agent(s): $addrs"
    "$shale" topic create "read-$n" --partitions 8 >&2
    # Leaders spread over the agents before the clock starts.
    sleep 2
    for run in $(seq "$runs"); do
        log "$n agent(s), run $run/$runs: produce 15s, 1 KiB records, 8 partitions"
        bench "produce-${n}agents" produce --duration 15s --record-size 1024 --partitions 8 \
            --concurrency 8 --batch-records 100
    done
    "$shale" bench produce --topic "read-$n" --records "$records" --record-size 1024 --concurrency 8 --json >/dev/null
    for run in $(seq "$runs"); do
        log "$n agent(s), run $run/$runs: consume $records records"
        bench "consume-${n}agents" consume --topic "read-$n" --records "$records" --concurrency 8
    done
    stop_agents
done

log "summary (medians over $runs runs)"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for row in rows:
    by.setdefault(row["label"], []).append(row)
summary = {}
for label, group in sorted(by.items()):
    entry = {
        "mb_per_sec": [round(r["mb_per_sec"], 1) for r in group],
        "median_mb_per_sec": round(statistics.median(r["mb_per_sec"] for r in group), 1),
    }
    cpu = [r["agents_cpu_seconds_per_gb"] for r in group if "agents_cpu_seconds_per_gb" in r]
    if cpu:
        entry["agents_cpu_s_per_gb"] = [round(c, 2) for c in cpu]
        entry["median_agents_cpu_s_per_gb"] = round(statistics.median(cpu), 2)
    per_gb = [r.get("per_gb") for r in group if r.get("per_gb")]
    if per_gb:
        entry["median_puts_per_gb"] = round(statistics.median(p["puts"] for p in per_gb), 1)
        entry["median_gets_per_gb"] = round(statistics.median(p["gets"] for p in per_gb), 1)
    summary[label] = entry
print(json.dumps({"summary": summary}, indent=1))
PY
log "done"
