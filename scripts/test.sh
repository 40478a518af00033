#!/usr/bin/env bash
# The wsx test command:  ./scripts/test.sh
#
# Runs, in order:
#   1. cargo test --workspace --all-targets, cargo test --workspace --doc
#   2. the self-test of the Autobahn report checker (scripts/test_check_autobahn.py)
#   3. cargo build --release -p wsx-cli --bin wsx -p wsx --example autobahn_client
#   4. scripts/autobahn-setup.sh (Python 2.7 venv with the Autobahn|Testsuite)
#   5. Autobahn: server core, client core, server compression, client compression
#      (compression skipped when WSX_SKIP_COMPRESSION=1)
#   6. scripts/interop.sh, when it exists and is executable
#   7. scripts/faults.sh (load and fault tests of wsx serve), when it exists and is
#      executable
#   8. scripts/hub.sh (wsx hub with the official Centrifugo SDKs: centrifuge-js,
#      centrifuge-python, cent), when it exists and is executable
#   9. scripts/chat.sh (examples/chat in headless Chromium on wsx hub), when it
#      exists and is executable
#  10. scripts/redis.sh (several wsx hub nodes on one redis-server: kill -9 of a
#      node, Redis restarts, cut links, a network partition), when it exists and
#      is executable
#
# A failing step does not stop the later ones, so one run shows every failing
# test and every failing Autobahn case. The exit status is non-zero when
# anything failed. The last line of output is always
#   autobahn: N passed, M failed
# counting Autobahn suite runs (not cases); a run that could not start because
# the build or the setup failed counts as failed.
#
# Environment:
#   WSX_SKIP_COMPRESSION=1  skip the two compression runs (12.*, 13.*)
#   WSX_TEST_TIMEOUT        seconds allowed for each `cargo test` run, after
#                           compiling (default: 600)
#   WSX_AUTOBAHN_UPDATE=1   record Autobahn results in autobahn/expected/*.json
#   plus the variables of scripts/autobahn.sh and scripts/autobahn-setup.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TEST_TIMEOUT=${WSX_TEST_TIMEOUT:-600}
FAILED_STEPS=()
AB_PASSED=0
AB_FAILED=0

section() {
    echo
    echo "==== $* ===="
}

# step NAME COMMAND...: run COMMAND, remember NAME when it fails; never aborts.
step() {
    local name=$1 start=$SECONDS rc=0
    shift
    section "$name"
    "$@" || rc=$?
    if ((rc == 0)); then
        echo "---- $name: ok ($((SECONDS - start)) s)"
    else
        echo "---- $name: FAILED (status $rc, $((SECONDS - start)) s)"
        FAILED_STEPS+=("$name")
    fi
    return "$rc"
}

# limited SECONDS COMMAND...: run COMMAND under `timeout`, which signals the
# command's whole process group (cargo and a hanging test binary alike) when
# time is up. `timeout` has its own process group, so terminal Ctrl-C does not
# reach it: it runs in the background and the trap below forwards INT/TERM.
LIMITED_PID=
limited() {
    local secs=$1 rc=0
    shift
    timeout -k 10 "$secs" "$@" </dev/null &
    LIMITED_PID=$!
    wait "$LIMITED_PID" || rc=$?
    LIMITED_PID=
    if ((rc == 124)); then
        echo "timed out after ${secs} s: $*"
    fi
    return "$rc"
}
interrupted() {
    if [[ -n $LIMITED_PID ]]; then
        kill -TERM "$LIMITED_PID" 2>/dev/null || true
        wait "$LIMITED_PID" 2>/dev/null || true
    fi
    exit "$1"
}
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# 0. redis-server, which crates/wsx-hub/tests/redis.rs starts (its own, on free
#    ports): Debian's package is installed when missing and we may (root, apt).
if [[ -x scripts/redis.sh ]]; then
    scripts/redis.sh --install || echo "redis-server is missing: the cargo tests of the Redis broker will fail"
fi

# 1. Unit, integration and doc tests. Compile first without a time limit, then
#    run the tests under a timeout so a hanging test cannot eat CI's budget.
cargo_tests() {
    cargo test --workspace --all-targets --no-run &&
        limited "$TEST_TIMEOUT" cargo test --workspace --all-targets
}
step "cargo test --workspace --all-targets" cargo_tests || true
step "cargo test --workspace --doc" limited "$TEST_TIMEOUT" cargo test --workspace --doc || true

# 2. The checker's own tests (fast; guards the Autobahn verdicts below).
step "check_autobahn self-test" python3 scripts/test_check_autobahn.py || true

# 3./4. What the Autobahn runs need.
AUTOBAHN_READY=1
step "release build" cargo build --release -p wsx-cli --bin wsx -p wsx --example autobahn_client ||
    AUTOBAHN_READY=0
step "autobahn setup" scripts/autobahn-setup.sh || AUTOBAHN_READY=0

# 5. Autobahn runs.
RUNS=("server core" "client core")
if [[ ${WSX_SKIP_COMPRESSION:-0} == 1 ]]; then
    echo
    echo "WSX_SKIP_COMPRESSION=1: skipping the compression runs (12.*, 13.*)"
else
    RUNS+=("server compression" "client compression")
fi
for run in "${RUNS[@]}"; do
    # shellcheck disable=SC2086  # "$run" is "MODE GROUP"
    if ((AUTOBAHN_READY)); then
        if step "autobahn $run" scripts/autobahn.sh $run; then
            AB_PASSED=$((AB_PASSED + 1))
        else
            AB_FAILED=$((AB_FAILED + 1))
        fi
    else
        section "autobahn $run"
        echo "---- autobahn $run: NOT RUN (release build or autobahn setup failed)"
        FAILED_STEPS+=("autobahn $run (not run)")
        AB_FAILED=$((AB_FAILED + 1))
    fi
done

# 6. Interoperability tests, when present.
if [[ -x scripts/interop.sh ]]; then
    step "interop" scripts/interop.sh || true
fi

# 7. Load and fault tests of `wsx serve`, when present (about 30 s).
if [[ -x scripts/faults.sh ]]; then
    step "faults" scripts/faults.sh || true
fi

# 8. wsx hub against the real Centrifugo SDKs and server API client (about 80 s).
if [[ -x scripts/hub.sh ]]; then
    step "hub" scripts/hub.sh || true
fi

# 9. The browser chat of `wsx hub` (examples/chat) in headless Chromium, when
# present (about 10 s).
if [[ -x scripts/chat.sh ]]; then
    step "chat" scripts/chat.sh || true
fi

# 10. Several `wsx hub` nodes sharing one Redis (wsx hub --redis), with real
# redis-server and wsx processes and the centrifuge SDK, when present (about 40 s).
if [[ -x scripts/redis.sh ]]; then
    step "redis" scripts/redis.sh || true
fi

section "summary"
if ((${#FAILED_STEPS[@]} == 0)); then
    echo "all steps passed"
else
    echo "failed steps:"
    printf '  %s\n' "${FAILED_STEPS[@]}"
fi
echo "autobahn: $AB_PASSED passed, $AB_FAILED failed"
((${#FAILED_STEPS[@]} == 0))
