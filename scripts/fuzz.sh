#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time (issue 17, "Fuzzing"; scripts/test.sh
# calls it). A crash fails the run and leaves the input in the artifacts directory.
#
#   scripts/fuzz.sh               # every target, CINDERBLOCK_FUZZ_SECONDS (30) each
#   scripts/fuzz.sh nbd_decode    # one target
#
# The machine has only a stable toolchain: cargo-fuzz's few unstable flags are allowed with
# RUSTC_BOOTSTRAP=1, and targets build without a sanitizer (`--sanitizer none`: libFuzzer's
# coverage guidance and Rust's own checks — panics, overflow, bounds — still apply).
# Outside the clone, and kept between runs: the build (CINDERBLOCK_FUZZ_TARGET_DIR,
# /var/tmp/cinderblock-fuzz-target) and the corpus (CINDERBLOCK_FUZZ_CORPUS,
# /var/tmp/cinderblock-fuzz-corpus), so each run starts from what earlier runs found.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${CINDERBLOCK_FUZZ_SECONDS:-30}
export CARGO_TARGET_DIR=${CINDERBLOCK_FUZZ_TARGET_DIR:-/var/tmp/cinderblock-fuzz-target}
CORPUS=${CINDERBLOCK_FUZZ_CORPUS:-/var/tmp/cinderblock-fuzz-corpus}
ARTIFACTS=${CINDERBLOCK_FUZZ_ARTIFACTS:-/var/tmp/cinderblock-fuzz-artifacts}
log() { printf '==> %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
cd "$ROOT/fuzz"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
for t in "${TARGETS[@]}"; do
    rm -rf "$ARTIFACTS/$t"
    mkdir -p "$CORPUS/$t" "$ARTIFACTS/$t"
    log "fuzz $t for ${SECS}s (corpus $CORPUS/$t)"
    out="$ARTIFACTS/$t.log"
    set +e
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" --sanitizer none --release "$CORPUS/$t" -- \
        -max_total_time="$SECS" -artifact_prefix="$ARTIFACTS/$t/" -print_final_stats=1 >"$out" 2>&1
    rc=$?
    set -e
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$out" >&2 || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "$out" >&2
        log "fuzz $t failed (exit $rc); inputs in $ARTIFACTS/$t: $(ls "$ARTIFACTS/$t" 2>/dev/null | tr '\n' ' ')"
        exit 1
    fi
done
