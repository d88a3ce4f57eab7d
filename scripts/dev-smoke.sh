#!/usr/bin/env bash
# Starts `shale dev` from an already built binary on free ports and checks that it answers:
# a gRPC call (create and list a topic) and /healthz. test.sh runs it after building with a
# protoc that always fails first in PATH, which proves a build needs no system protoc.
#
#   scripts/dev-smoke.sh PATH_TO_SHALE_BINARY
set -euo pipefail

shale="$1"
work="$(mktemp -d)"
agent_pid=""
cleanup() {
    if [ -n "$agent_pid" ]; then
        kill "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port="$(free_port)"
http_port="$(free_port)"
addr="http://127.0.0.1:$grpc_port"
"$shale" dev --data-dir "$work/data" --grpc-addr "127.0.0.1:$grpc_port" \
    --http-addr "127.0.0.1:$http_port" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 300); do
    if "$shale" topic list --addr "$addr" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        cat "$work/agent.log" >&2
        echo "dev-smoke: shale dev exited" >&2
        exit 1
    fi
    sleep 0.1
done
"$shale" topic create smoke --partitions 1 --addr "$addr"
"$shale" topic list --addr "$addr" | grep -q smoke
python3 - "$http_port" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=5) as r:
    assert r.status == 200, r.status
PY
echo "dev-smoke: shale dev answers gRPC and /healthz"
