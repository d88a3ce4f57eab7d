#!/usr/bin/env bash
# Reproduces the numbers in docs/benchmarks.md: starts a real etcd and moto_server on
# 127.0.0.1 free ports, runs `shale agent` (release build) against them, and runs the
# benches. Prints one JSON object per bench on stdout, each with the agent's CPU seconds for
# that bench (`agent_cpu_seconds_proc`, read from /proc/<pid>/stat, so it works for any
# agent binary) and per GB moved; then a summary with the medians over the runs. Progress
# goes to stderr.
#
#   scripts/bench.sh [RECORDS]        (records written and read back by the consume benches;
#                                      default 200000 of 1 KiB, which fit the default 256 MiB
#                                      memory tier: "consume from the cache" is a consumer
#                                      that keeps up; "consume from the object store" is one
#                                      that fell behind)
#
#   RUNS=3                 how many times the headline benches repeat (medians over them)
#   SHALE_AGENT_BIN=path   run this `shale` binary as the agent (e.g. an older build, for a
#                          before/after comparison); the load generator is always this tree's
#   ENCODINGS="client agent"  which `--encoding`s the headline benches use (an agent that
#                          predates record_batches understands only `agent`)
#   QUICK=1                only the headline benches (PUT ceiling, produce, consume)
#   CACHE_SIZE=2GiB        the agent's --cache-size (0: memory-only cache, no disk writes)
#   AGENT_ARGS="..."       extra flags for `shale agent`
#   PIN=1                  the S3 server on CPU 1, everything else (etcd, agent, load generator)
#                          on CPU 0: the store's ceiling no longer depends on how much CPU the
#                          agent leaves it, so "vs raw PUT" says whether the agent keeps the
#                          store busy (on 2 shared cores it mostly says who gets the CPU)
#   STORE_OPTIONS=k=v&...  extra object-store URL options for the agent and the PUT ceiling
#                          (e.g. unsigned_payload=true: moto listens on plain http, where
#                          bodies are SHA-256-hashed for signing by default)
#
# Needs what scripts/test.sh installs (etcd, .venv with moto). Stops everything it started,
# by PID, on exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
records="${1:-200000}"
runs="${RUNS:-3}"
target="${CARGO_TARGET_DIR:-$repo/target}"
[ -d "$repo/../target" ] && [ -z "${CARGO_TARGET_DIR:-}" ] && target="$(cd "$repo/../target" && pwd)"
export CARGO_TARGET_DIR="$target"
cargo build --release --locked --bin shale >&2
shale="$target/release/shale"
agent_bin="${SHALE_AGENT_BIN:-$shale}"
encodings="${ENCODINGS:-client agent}"

store_cpu=(); rest_cpu=()
if [ -n "${PIN:-}" ]; then store_cpu=(taskset -c 1); rest_cpu=(taskset -c 0); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d /dev/shm/shale-bench.XXXX 2>/dev/null || mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { printf 'bench.sh: %s\n' "$*" >&2; }
results="$work/results.jsonl"
: >"$results"

etcd_port=$(free_port); peer_port=$(free_port)
"${rest_cpu[@]}" etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$peer_port" --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
s3_port=$(free_port)
"${store_cpu[@]}" .venv/bin/moto_server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null; do sleep 0.1; done
until curl -s -o /dev/null "http://127.0.0.1:$s3_port/moto-api/"; do sleep 0.1; done

store() { echo "s3://shale-bench/$1?endpoint=http://127.0.0.1:$s3_port&region=us-east-1&access_key_id=test&secret_access_key=test&allow_http=true${STORE_OPTIONS:+&$STORE_OPTIONS}"; }
grpc_port=$(free_port); http_port=$(free_port)
export SHALE_ADDR="http://127.0.0.1:$grpc_port" SHALE_METRICS_URL="http://127.0.0.1:$http_port/metrics"
create_bucket=()
"$agent_bin" agent --help 2>/dev/null | grep -q -- --create-bucket && create_bucket=(--create-bucket)

start_agent() {
    "${rest_cpu[@]}" "$agent_bin" agent --metadata "etcd://127.0.0.1:$etcd_port" --object-store "$(store cluster)" "${create_bucket[@]}" \
        --cache-dir "$work/cache" --cache-size "${CACHE_SIZE:-2GiB}" --agent-id bench \
        --grpc-addr "127.0.0.1:$grpc_port" --http-addr "127.0.0.1:$http_port" ${AGENT_ARGS:-} >>"$work/agent.log" 2>&1 &
    agent_pid=$!
    pids+=("$agent_pid")
    until curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null; do sleep 0.1; done
}

# The agent's user + system CPU seconds so far.
agent_cpu() { python3 -c '
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))' "$agent_pid"; }

# Runs one bench (its arguments), tags its JSON with LABEL and the agent's CPU for the run,
# prints it and keeps it for the summary. Output of the bench other than its JSON is dropped.
bench() {
    local label="$1"; shift
    local before after
    before=$(agent_cpu)
    "${rest_cpu[@]}" "$shale" bench "$@" --json >"$work/one.json"
    after=$(agent_cpu)
    python3 - "$label" "$before" "$after" "$work/one.json" <<'EOF' | tee -a "$results"
import json, sys
label, before, after, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
report = json.loads(open(path).read().strip().splitlines()[-1])
report["label"] = label
cpu = after - before
report["agent_cpu_seconds_proc"] = round(cpu, 3)
if report.get("bytes"):
    report["agent_cpu_seconds_per_gb_proc"] = round(cpu / (report["bytes"] / 1e9), 3)
print(json.dumps(report))
EOF
}

start_agent
log "agent: $agent_bin ($("$agent_bin" --version 2>/dev/null || echo unknown version))"

# Headline: produce against the store's own ceiling, measured side by side in each run, and
# consume from the cache, with each encoding; RUNS times.
"$shale" topic create bench-read --partitions 8 >&2
for run in $(seq "$runs"); do
    log "run $run/$runs: raw PUT 8 MiB x 40, 4 in flight (the agent's upload concurrency)"
    bench "put-8MiB" put --object-store "$(store raw)" --size 8MiB --count 40 --concurrency 4
    for encoding in $encodings; do
        log "run $run/$runs: produce 15s, 1 KiB records, 8 partitions, encoding $encoding"
        bench "produce-8p-$encoding" produce --duration 15s --record-size 1024 --partitions 8 \
            --concurrency 8 --batch-records 100 --encoding "$encoding"
    done
done
first_encoding="${encodings%% *}"
log "fill bench-read with $records records"
"$shale" bench produce --topic bench-read --records "$records" --record-size 1024 \
    --concurrency 8 --encoding "$first_encoding" --json >/dev/null
for run in $(seq "$runs"); do
    for encoding in $encodings; do
        log "run $run/$runs: consume $records records from the cache, encoding $encoding"
        bench "consume-cache-$encoding" consume --topic bench-read --records "$records" \
            --concurrency 8 --encoding "$encoding"
    done
done

if [ -z "${QUICK:-}" ]; then
    log "raw PUT 1 MiB x 200 (latency reference)"
    bench "put-1MiB" put --object-store "$(store raw)" --size 1MiB --count 200 --concurrency 4
    for partitions in 1 1000; do
        log "produce: as fast as acked for 15s, $partitions partitions, encoding $first_encoding"
        bench "produce-${partitions}p-$first_encoding" produce --duration 15s --record-size 1024 \
            --partitions "$partitions" --concurrency 8 --batch-records 100 --encoding "$first_encoding"
    done
    for partitions in 1 1000; do
        log "produce at 20000 rec/s for 20s (PUT rate, latency), $partitions partitions"
        bench "rate-${partitions}p" produce --duration 20s --rate 20000 --record-size 1024 \
            --partitions "$partitions" --concurrency 4 --batch-records 50 --encoding "$first_encoding"
    done
    log "e2e: produce and consume at once"
    bench "e2e" e2e --records 100000 --record-size 1024 --partitions 8 --concurrency 4 \
        --encoding "$first_encoding"
    log "consume from the object store (agent restarted with an empty cache)"
    kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
    rm -rf "$work/cache"
    start_agent
    bench "consume-store-$first_encoding" consume --topic bench-read --records "$records" \
        --concurrency 8 --encoding "$first_encoding"
fi

log "summary (medians over $runs runs)"
python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for row in rows:
    by.setdefault(row["label"], []).append(row)
puts = [row["mb_per_sec"] for row in by.get("put-8MiB", [])]
summary = {}
for label, group in sorted(by.items()):
    entry = {
        "runs": len(group),
        "mb_per_sec": [round(r["mb_per_sec"], 1) for r in group],
        "median_mb_per_sec": round(statistics.median(r["mb_per_sec"] for r in group), 1),
    }
    cpu = [r["agent_cpu_seconds_per_gb_proc"] for r in group if "agent_cpu_seconds_per_gb_proc" in r]
    if cpu and not label.startswith("put"):
        entry["agent_cpu_s_per_gb"] = [round(c, 2) for c in cpu]
        entry["median_agent_cpu_s_per_gb"] = round(statistics.median(cpu), 2)
    per_gb = [r.get("per_gb") for r in group if r.get("per_gb")]
    if per_gb:
        entry["median_puts_per_gb"] = round(statistics.median(p["puts"] for p in per_gb), 1)
        entry["median_gets_per_gb"] = round(statistics.median(p["gets"] for p in per_gb), 1)
    if label.startswith("produce-8p") and len(puts) == len(group):
        ratios = [r["mb_per_sec"] / p for r, p in zip(group, puts)]
        entry["vs_raw_put"] = [round(x, 2) for x in ratios]
        entry["median_vs_raw_put"] = round(statistics.median(ratios), 2)
    summary[label] = entry
print(json.dumps({"summary": summary}, indent=1))
EOF
log "done"
