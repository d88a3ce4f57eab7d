#!/usr/bin/env bash
# Reproduces the numbers in docs/benchmarks.md: starts a real etcd and moto_server on
# 127.0.0.1 free ports, runs `shale agent` (release build) against them, and runs the
# benches. Prints one JSON object per bench on stdout; progress on stderr.
#
#   scripts/bench.sh [RECORDS]        (records written and read back by the consume benches;
#                                      default 500000 of 1 KiB)
#
# Needs what scripts/test.sh installs (etcd, .venv with moto). Stops everything it started,
# by PID, on exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
records="${1:-500000}"
target="${CARGO_TARGET_DIR:-$repo/target}"
[ -d "$repo/../target" ] && [ -z "${CARGO_TARGET_DIR:-}" ] && target="$(cd "$repo/../target" && pwd)"
export CARGO_TARGET_DIR="$target"
cargo build --release --locked --bin shale >&2
shale="$target/release/shale"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d /dev/shm/shale-bench.XXXX 2>/dev/null || mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { printf 'bench.sh: %s\n' "$*" >&2; }

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

store() { echo "s3://shale-bench/$1?endpoint=http://127.0.0.1:$s3_port&region=us-east-1&access_key_id=test&secret_access_key=test&allow_http=true"; }
grpc_port=$(free_port); http_port=$(free_port)
export SHALE_ADDR="http://127.0.0.1:$grpc_port" SHALE_METRICS_URL="http://127.0.0.1:$http_port/metrics"

start_agent() {
    "$shale" agent --metadata "etcd://127.0.0.1:$etcd_port" --object-store "$(store cluster)" \
        --cache-dir "$work/cache" --cache-size 2GiB --agent-id bench \
        --grpc-addr "127.0.0.1:$grpc_port" --http-addr "127.0.0.1:$http_port" >>"$work/agent.log" 2>&1 &
    agent_pid=$!
    pids+=("$agent_pid")
    until curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null; do sleep 0.1; done
}

# The agent creates the bucket at start-up; it idles during the raw PUTs.
start_agent
# The store's own ceiling: create-only PUTs of segment-sized objects, as many at once as
# the agent uploads (upload_concurrency 4), and small ones for latency.
log "raw PUT 8 MiB x 40"
"$shale" bench put --object-store "$(store raw)" --size 8MiB --count 40 --concurrency 4 --json
log "raw PUT 1 MiB x 200"
"$shale" bench put --object-store "$(store raw)" --size 1MiB --count 200 --concurrency 4 --json

for partitions in 1 1000; do
    log "produce: as fast as acked for 15s, 1 KiB records, $partitions partitions"
    "$shale" bench produce --duration 15s --record-size 1024 --partitions "$partitions" \
        --concurrency 8 --batch-records 100 --json
done
for partitions in 1 1000; do
    log "produce at 20000 rec/s for 20s (PUT rate, latency), $partitions partitions"
    "$shale" bench produce --duration 20s --rate 20000 --record-size 1024 \
        --partitions "$partitions" --concurrency 4 --batch-records 50 --json
done
log "e2e: produce and consume at once"
"$shale" bench e2e --records 100000 --record-size 1024 --partitions 8 --concurrency 4 --json

log "consume from the cache (just written)"
"$shale" topic create bench-read --partitions 8 >&2
"$shale" bench produce --topic bench-read --records "$records" --record-size 1024 \
    --concurrency 8 --json >/dev/null
"$shale" bench consume --topic bench-read --records "$records" --concurrency 8 --json
log "consume from the object store (agent restarted with an empty cache)"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
rm -rf "$work/cache"
start_agent
"$shale" bench consume --topic bench-read --records "$records" --concurrency 8 --json
log "done"
