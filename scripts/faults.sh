#!/usr/bin/env bash
# Bounded load and fault tests of `wsx serve` (tests/faults/faults.py).
#
#   scripts/faults.sh            # every scenario
#   scripts/faults.sh REGEX      # the scenarios whose name matches REGEX (Python re.search)
#   scripts/faults.sh --list     # print the scenarios and the flags they need, run nothing
#
# Each scenario starts its own `wsx serve --listen 127.0.0.1:0 ...` (a separate process)
# and drives it over loopback only: 10,000 concurrent connections, a connection burst,
# slowloris, vanishing (RST) peers, a never-reading client, decompression bombs, frame /
# fragment / message / handshake limits, connection caps, origin checks, keepalive, idle
# timeout and graceful shutdown. Every loop is bounded in count and time.
#
# Prints one line per scenario
#   PASS|FAIL <scenario> <measured figures>
# (a failing scenario is followed by the path of the server's log), and last exactly
#   faults: N passed, M failed
# Exit status: 0 when M is 0, 1 otherwise.
#
# A scenario needing a `wsx serve` flag that the binary lacks fails at once with
# "needs --FLAG (not in this wsx serve)".
#
# Builds target/release/wsx only when it is missing (and WSX_BIN is unset): rebuild it
# yourself after editing the code. Python >= 3.11; the `websockets` package (used by one
# check of the keepalive scenario) comes from the interop venv when that exists, else from
# a venv of its own in $WSX_FAULTS_CACHE.
#
# Environment:
#   WSX_BIN                  wsx binary (default: target/release/wsx)
#   WSX_FAULTS_OUT           server logs, one per scenario (default: target/faults)
#   WSX_FAULTS_BUDGET        seconds for the whole run (default: 480; a passing run
#                            takes about 190 s); the runner is killed when it is spent
#   WSX_FAULTS_CONNS         connections of the conn-10k scenario (default: 10000)
#   WSX_FAULTS_SKIP          regex of scenarios to leave out (printed as SKIP, not counted)
#   WSX_FAULTS_CACHE         own venv, if the interop one is unusable
#                            (default: $HOME/.cache/wsx-faults)
#   WSX_INTEROP_CACHE        where scripts/interop.sh keeps its venv
#                            (default: $HOME/.cache/wsx-interop)
#   WSX_FAULTS_NO_INSTALL=1  create no venv (the websockets check then fails)
#
# See tests/faults/README.md and RELIABILITY.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A binary given by relative path is relative to the caller's directory.
if [[ -n ${WSX_BIN:-} && $WSX_BIN != /* ]]; then WSX_BIN=$PWD/$WSX_BIN; fi
cd "$ROOT"

ARGS=()
while (($#)); do
    case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --list) ARGS+=(--list) ;;
    -*) echo "usage: $0 [--list] [REGEX]" >&2; exit 2 ;;
    *) ARGS+=("$1") ;;
    esac
    shift
done

OUT=${WSX_FAULTS_OUT:-$ROOT/target/faults}
[[ $OUT == /* ]] || OUT=$PWD/$OUT
BUDGET=${WSX_FAULTS_BUDGET:-480}
CACHE=${WSX_FAULTS_CACHE:-$HOME/.cache/wsx-faults}
INTEROP_VENV=${WSX_INTEROP_CACHE:-$HOME/.cache/wsx-interop}/venv
WSX_BIN=${WSX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx}
[[ $WSX_BIN == /* ]] || WSX_BIN=$ROOT/$WSX_BIN
export WSX_BIN WSX_FAULTS_OUT=$OUT
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 NO_COLOR=1
export RUST_LOG=${RUST_LOG:-info}
mkdir -p "$OUT"
note() { echo "faults: $*"; }

# The runner (timeout, its own process group, with the servers it starts) is stopped on
# INT/TERM; `timeout` passes the signal on to its whole group.
RUN_PID=
interrupted() {
    if [[ -n $RUN_PID ]]; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    exit "$1"
}
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# 10,000 client sockets in the runner and as many in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true

# ------------------------------------------------------------------ python
py_ok() { [[ -x $1 ]] && "$1" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; }
has_websockets() { "$1" -c 'import websockets' 2>/dev/null; }
PY=
if py_ok "$INTEROP_VENV/bin/python" && has_websockets "$INTEROP_VENV/bin/python"; then
    PY=$INTEROP_VENV/bin/python
elif py_ok "$CACHE/venv/bin/python" && has_websockets "$CACHE/venv/bin/python"; then
    PY=$CACHE/venv/bin/python
elif [[ ${WSX_FAULTS_NO_INSTALL:-0} != 1 ]] && py_ok "$(command -v python3 || true)"; then
    mkdir -p "$CACHE"
    log=$OUT/setup-python.log
    note "creating $CACHE/venv (log: $log)"
    (
        if command -v flock >/dev/null 2>&1; then
            exec 8>"$CACHE/.lock"
            flock -w 300 8 || true
        fi
        if ! has_websockets "$CACHE/venv/bin/python" 2>/dev/null; then
            rm -rf "$CACHE/venv"
            python3 -m venv "$CACHE/venv" &&
                "$CACHE/venv/bin/python" -m pip install --disable-pip-version-check -q \
                    -r tests/interop/requirements.txt
        fi
    ) >"$log" 2>&1 || { tail -n 5 "$log"; note "venv setup failed; going on without websockets"; }
    if has_websockets "$CACHE/venv/bin/python"; then PY=$CACHE/venv/bin/python; fi
fi
if [[ -z $PY ]]; then
    PY=$(command -v python3 || true)
    if ! py_ok "$PY"; then
        echo "FAIL setup no Python >= 3.11 found"
        echo "faults: 0 passed, 1 failed"
        exit 1
    fi
fi

if [[ " ${ARGS[*]} " == *" --list "* ]]; then
    exec "$PY" tests/faults/faults.py --list
fi

# ------------------------------------------------------------------ wsx
if [[ ! -x $WSX_BIN ]]; then
    if [[ $WSX_BIN == "${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx" ]]; then
        note "building $WSX_BIN"
        if ! cargo build --release -p wsx-cli --bin wsx; then
            echo "FAIL build cargo build --release -p wsx-cli --bin wsx failed"
            echo "faults: 0 passed, 1 failed"
            exit 1
        fi
    else
        echo "FAIL setup WSX_BIN=$WSX_BIN is not an executable"
        echo "faults: 0 passed, 1 failed"
        exit 1
    fi
fi
note "wsx: $WSX_BIN; python: $PY; fd limit: $(ulimit -n); logs: $OUT"

# ------------------------------------------------------------------ run
PASSED=0
FAILED=0
FIFO=$OUT/.runner-output
rm -f "$FIFO"
mkfifo "$FIFO"
START=$SECONDS
timeout -k 10 "$BUDGET" "$PY" tests/faults/faults.py "${ARGS[@]}" </dev/null >"$FIFO" 2>&1 &
RUN_PID=$!
while IFS= read -r line; do
    echo "$line"
    case $line in
    PASS\ *) PASSED=$((PASSED + 1)) ;;
    FAIL\ *) FAILED=$((FAILED + 1)) ;;
    esac
done <"$FIFO"
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=
rm -f "$FIFO"
if ((rc == 124 || rc == 137)); then
    echo "FAIL runner stopped after the ${BUDGET} s budget (WSX_FAULTS_BUDGET); scenarios left were not run"
    FAILED=$((FAILED + 1))
elif ((rc != 0 && rc != 1)); then
    echo "FAIL runner exited with status $rc"
    FAILED=$((FAILED + 1))
elif ((rc == 1 && FAILED == 0)); then
    echo "FAIL runner reported a failure without a FAIL line"
    FAILED=$((FAILED + 1))
fi
echo "(runtime $((SECONDS - START)) s)"
echo "faults: $PASSED passed, $FAILED failed"
((FAILED == 0))
