#!/usr/bin/env bash
# Fuzz the protocol core (crates/wsx-proto) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  libFuzzer -max_total_time for each target (default 60)
#   TARGET...           targets to run (default: all of fuzz/fuzz_targets/*.rs)
#
# Builds every target once, then runs them one after the other, each on its hand-made seeds
# (fuzz/seeds/TARGET, committed) plus a working corpus (fuzz/corpus/TARGET, gitignored, kept
# between runs so coverage accumulates). Prints one line per target,
#   fuzz TARGET: N execs, crashes 0 (S s, corpus C)
# and finally `fuzz: N passed, M failed`. Any crash, timeout (-timeout=10), out-of-memory
# (-rss_limit_mb=2048) or build failure makes the exit status non-zero; the crash input is
# in fuzz/artifacts/TARGET/ and the reproduction command is printed. Full libFuzzer output:
# fuzz/target/fuzz-logs/TARGET.log.
#
# Toolchain: cargo-fuzz needs unstable compiler flags (sanitizers, coverage). The script uses
# the `nightly` rustup toolchain when installed, else `stable` with RUSTC_BOOTSTRAP=1 when
# that can build a sanitized binary, else prints `fuzz: skipped (...)` and exits 0. cargo-fuzz
# itself is installed with `cargo install cargo-fuzz --locked` when missing.
#
# Environment:
#   FUZZ_TOOLCHAIN  force a rustup toolchain (e.g. `stable`: RUSTC_BOOTSTRAP=1 is then set
#                   unless the toolchain is a nightly)
#   FUZZ_JOBS       cargo build jobs (default: cargo's default, i.e. all cores)
#   FUZZ_ARGS       extra libFuzzer arguments for every target (e.g. `-max_len=65536`)
#
# Reproduce a crash by hand (from fuzz/): cargo +nightly fuzz run TARGET ARTIFACT
# (the connection target explains itself with WSX_FUZZ_TRACE=1).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/fuzz
SECS=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))

if ! [[ $SECS =~ ^[0-9]+$ ]] || (( SECS < 1 )); then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

skip() {
    echo "fuzz: skipped ($*)"
    exit 0
}

if (( $# > 0 )); then
    TARGETS=("$@")
else
    TARGETS=()
    for f in "$FUZZ"/fuzz_targets/*.rs; do
        TARGETS+=("$(basename "$f" .rs)")
    done
fi
for t in "${TARGETS[@]}"; do
    if [[ ! -f $FUZZ/fuzz_targets/$t.rs ]]; then
        echo "fuzz: unknown target $t" >&2
        exit 2
    fi
done

command -v cargo >/dev/null 2>&1 || skip "cargo not found"

# ---------------------------------------------------------------- toolchain

# Can this toolchain compile a sanitized, coverage-instrumented binary? ($1: `+toolchain` or
# empty; RUSTC_BOOTSTRAP as exported by the caller.)
probe() {
    local dir ok
    dir=$(mktemp -d)
    printf 'fn main() {}\n' >"$dir/probe.rs"
    if rustc ${1:+"$1"} --edition 2021 -Zsanitizer=address -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        "$dir/probe.rs" -o "$dir/probe" >"$dir/log" 2>&1; then
        ok=0
    else
        ok=1
    fi
    rm -rf "$dir"
    return $ok
}

TC=()           # `+toolchain` argument for cargo, if any
TC_DESC=""
if [[ -n ${FUZZ_TOOLCHAIN:-} ]]; then
    TC=("+$FUZZ_TOOLCHAIN")
    TC_DESC=$FUZZ_TOOLCHAIN
    if [[ $(rustc "+$FUZZ_TOOLCHAIN" -vV 2>/dev/null) != *$'\nrelease: '*nightly* ]]; then
        export RUSTC_BOOTSTRAP=1
        TC_DESC="$FUZZ_TOOLCHAIN with RUSTC_BOOTSTRAP=1"
    fi
    probe "+$FUZZ_TOOLCHAIN" || skip "toolchain $TC_DESC cannot build sanitized binaries"
elif command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    TC=(+nightly)
    TC_DESC=nightly
elif command -v rustup >/dev/null 2>&1 && rustup run stable rustc --version >/dev/null 2>&1; then
    if RUSTC_BOOTSTRAP=1 probe +stable; then
        export RUSTC_BOOTSTRAP=1
        TC=(+stable)
        TC_DESC="stable with RUSTC_BOOTSTRAP=1"
    else
        skip "no nightly toolchain, and stable with RUSTC_BOOTSTRAP=1 cannot build sanitized binaries"
    fi
elif [[ $(rustc -vV 2>/dev/null) == *$'\nrelease: '*nightly* ]]; then
    TC_DESC="$(rustc --version)"
elif RUSTC_BOOTSTRAP=1 probe ""; then
    export RUSTC_BOOTSTRAP=1
    TC_DESC="$(rustc --version) with RUSTC_BOOTSTRAP=1"
else
    skip "no nightly toolchain, and $(rustc --version 2>/dev/null || echo rustc) with RUSTC_BOOTSTRAP=1 cannot build sanitized binaries"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked >&2 || skip "cargo-fuzz is missing and could not be installed"
    cargo fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz installed but \`cargo fuzz\` does not run (is ~/.cargo/bin on PATH?)"
fi

# ---------------------------------------------------------------- build

LOGS=$FUZZ/target/fuzz-logs
mkdir -p "$LOGS"
export CARGO_TARGET_DIR=$FUZZ/target   # ignore a CARGO_TARGET_DIR meant for the main workspace
if [[ -n ${FUZZ_JOBS:-} ]]; then
    export CARGO_BUILD_JOBS=$FUZZ_JOBS
fi

START=$SECONDS
echo "fuzz: toolchain $TC_DESC, $(cargo fuzz --version), ${SECS}s per target: ${TARGETS[*]}"
cd "$FUZZ" || exit 1
if ! cargo "${TC[@]}" fuzz build >"$LOGS/build.log" 2>&1; then
    tail -n 40 "$LOGS/build.log"
    echo "fuzz: build failed (full log: $LOGS/build.log)"
    echo "fuzz: 0 passed, ${#TARGETS[@]} failed"
    exit 1
fi

# ---------------------------------------------------------------- run

REPRO_ENV=""
[[ -n ${RUSTC_BOOTSTRAP:-} ]] && REPRO_ENV="RUSTC_BOOTSTRAP=1 "
passed=0
failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$LOGS/$t.log
    t0=$SECONDS
    # libFuzzer stops itself after -max_total_time; `timeout` only guards against a hang
    # outside of it (e.g. in the rebuild check or at exit).
    # shellcheck disable=SC2086
    timeout -k 10 $((SECS + 300)) cargo "${TC[@]}" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    elapsed=$((SECONDS - t0))
    execs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -oE '[0-9]+')
    if [[ -z $execs ]]; then
        execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$')
    fi
    corpus=$(find "corpus/$t" -type f | wc -l)
    artifact=$(grep -oE '(Test unit|artifact) written to [^ ]+' "$log" | tail -n 1 | sed -E 's/.* written to //')
    if [[ $status -eq 0 && -z $artifact && -n $execs ]]; then
        echo "fuzz $t: ${execs:-?} execs, crashes 0 (${elapsed} s, corpus $corpus)"
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        if [[ -n $artifact ]]; then
            [[ $artifact = /* ]] || artifact=$FUZZ/${artifact#./}
            kind=$(basename "$artifact" | cut -d- -f1)
            echo "fuzz $t: ${execs:-?} execs, crashes 1 (${kind}, ${elapsed} s)"
            # The panic message (up to the backtrace), or the sanitizer / libFuzzer verdict.
            awk '/panicked at/ {p = 1; n = 0} p && /stack backtrace|^note: / {exit} p && n++ < 6 {print "    " $0}' "$log"
            grep -m 1 -E "ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|ALARM" "$log" | sed 's/^/    /'
            echo "    artifact: $artifact"
            echo "    reproduce: (cd fuzz && ${REPRO_ENV}cargo ${TC[*]} fuzz run $t $artifact)"
            if [[ $t == connection ]]; then
                echo "    trace: (cd fuzz && WSX_FUZZ_TRACE=1 ${REPRO_ENV}cargo ${TC[*]} fuzz run $t $artifact)"
            fi
        else
            echo "fuzz $t: ${execs:-?} execs, failed (status $status, no crash artifact, no libFuzzer summary; ${elapsed} s)"
            tail -n 15 "$log" | sed 's/^/    /'
        fi
        echo "    log: $log"
    fi
done

echo "fuzz: $passed passed, $failed failed ($((SECONDS - START)) s)"
(( failed == 0 ))
