#!/usr/bin/env bash
# Builds every fuzz target of fuzz/ and runs each for a short time from the committed seed
# corpus (fuzz/seeds/<target>/). Exits non-zero if any target crashes, leaks past its limits,
# or fails to build.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]     (default 20)
#
# Works on the pinned stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its unstable
# flags, and --sanitizer none avoids needing a nightly-only sanitizer runtime (the crates
# fuzzed forbid unsafe code, so AddressSanitizer would add little). Installs cargo-fuzz if
# it is missing. Builds into "${CARGO_TARGET_DIR:-<repo>/target}/fuzz" so the main build's
# artifacts are not invalidated.
set -euo pipefail

seconds="${1:-20}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}/fuzz"
targets=(batch_decode batch_iter segment_decode segment_ranged_read meta_records meta_keys embedded_codec cache_block object_names grpc_produce grpc_join_group)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# cargo-fuzz takes --target-dir; keep CARGO_TARGET_DIR from overriding it.
unset CARGO_TARGET_DIR
cd "$repo/fuzz"

start=$(date +%s)
cargo fuzz build --sanitizer none --target-dir "$target_dir"
echo "fuzz-smoke: built in $(( $(date +%s) - start )) s"

for target in "${targets[@]}"; do
    corpus="$repo/fuzz/corpus/$target"   # git-ignored; grows across local runs
    artifacts="$repo/fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz-smoke: running $target for ${seconds}s"
    log="$artifacts/run.log"
    # -rss_limit_mb: decoders must stay bounded; -timeout: no input may take seconds.
    status=0
    cargo fuzz run --sanitizer none --target-dir "$target_dir" "$target" \
        "$corpus" "$repo/fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz-smoke: $target FAILED (exit $status); last output:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
done
echo "fuzz-smoke: all ${#targets[@]} targets ran ${seconds}s each without a crash ($(( $(date +%s) - start )) s total)"
