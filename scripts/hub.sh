#!/usr/bin/env bash
# End-to-end tests of `wsx hub` with the official Centrifugo SDKs, unchanged:
#   centrifuge (npm, the JavaScript SDK), centrifuge-python (PyPI) and cent
#   (PyPI, the server HTTP API client).
#
#   scripts/hub.sh              # every case
#   scripts/hub.sh REGEX        # only the cases whose line matches REGEX (grep -E),
#                               # e.g. 'node +recovery' or '^api'
#   scripts/hub.sh --list       # print the cases with their hub flags, run nothing
#
# Each case starts its own `wsx hub` on 127.0.0.1 with a free port, waits until
# GET /health answers 200, runs one scenario of tests/hub/sdk_node.mjs or
# tests/hub/sdk_python.py against it under a time limit, and stops the hub
# (SIGTERM, SIGKILL 3 s later). A case fails when the scenario reports a failed
# check, times out, or when the hub exits during the case or panics.
#
# Installs what is missing: a Python venv with tests/hub/requirements.txt and
# node_modules from tests/hub/package-lock.json, both in $WSX_HUB_CACHE (default:
# $HOME/.cache/wsx-hub), reused while the pinned files are unchanged. Builds
# target/release/wsx only when it is missing (and WSX_BIN is unset): rebuild it
# yourself after editing the code.
#
# Prints one line per case
#   PASS|FAIL  <group> <scenario>
# (a failing case is followed by its failed checks and the logs' tails), and last
#   hub: N passed, M failed
# Exit status: 0 when M is 0, 1 otherwise (2 on a usage error).
#
# Environment:
#   WSX_BIN                 wsx binary (default: target/release/wsx)
#   WSX_HUB_CACHE           venv + node_modules (default: $HOME/.cache/wsx-hub)
#   WSX_HUB_OUT             logs, one folder per case (default: target/hub)
#   WSX_HUB_CASE_TIMEOUT    seconds per scenario (default: 40)
#   WSX_HUB_BUDGET          seconds for the whole run; cases left when it is spent
#                           fail as "not run" (default: 170)
#   WSX_HUB_NO_INSTALL=1    install nothing; missing tools fail their cases
#   HUB_SDK_DEBUG=1         the JavaScript SDK's debug log into the case's peer.err
#
# See tests/hub/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A binary given by relative path is relative to the caller's directory.
if [[ -n ${WSX_BIN:-} && $WSX_BIN != /* ]]; then WSX_BIN=$PWD/$WSX_BIN; fi
cd "$ROOT"

usage() {
    echo "usage: $0 [--list] [REGEX]" >&2
    exit 2
}
LIST=0
FILTER=
while (($#)); do
    case $1 in
    --list) LIST=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) [[ -z $FILTER ]] || usage; FILTER=$1 ;;
    esac
    shift
done

HDIR=$ROOT/tests/hub
CACHE=${WSX_HUB_CACHE:-$HOME/.cache/wsx-hub}
OUT=${WSX_HUB_OUT:-$ROOT/target/hub}
[[ $OUT == /* ]] || OUT=$PWD/$OUT
CASE_TIMEOUT=${WSX_HUB_CASE_TIMEOUT:-40}
BUDGET=${WSX_HUB_BUDGET:-170}
WSX_BIN_SET=${WSX_BIN:+1}
WSX_BIN=${WSX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx}
[[ $WSX_BIN == /* ]] || WSX_BIN=$ROOT/$WSX_BIN
VENV=$CACHE/venv
NODE_DIR=$CACHE/node
PY=$VENV/bin/python
export NODE_PATH=$NODE_DIR/node_modules
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export RUST_BACKTRACE=${RUST_BACKTRACE:-1} NO_COLOR=1
# The hub is on 127.0.0.1: no HTTP proxy from the environment may get between
# (requests, which cent uses, and Node's fetch would honour one).
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

# Fixed test credentials: each hub lives for one case on 127.0.0.1.
SECRET=wsx-hub-e2e-hmac-secret
KEY=wsx-hub-e2e-api-key

# ---------------------------------------------------------------- the cases
# One case a line: GROUP|SCENARIO|HUB FLAGS|PREPARATION
#   node:   node tests/hub/sdk_node.mjs SCENARIO
#   python: sdk_python.py SCENARIO;  api: sdk_python.py api-SCENARIO;
#   tokens: sdk_python.py tokens-SCENARIO
# @DIR@ in the flags is the case's log folder. PREPARATION "keys" writes RSA and
# ECDSA key pairs there first (tests/hub/common.py keys); "config" writes
# hub.toml there (write_config below).
# The usual flags: HMAC tokens, the server API, history (hence recovery),
# presence, join/leave, and clients may subscribe and publish.
STD="--token-hmac-secret $SECRET --api-key $KEY --history-size 100 --history-ttl 300 --presence --join-leave --allow-subscribe --allow-publish"
CASES=()
add() { CASES+=("$1|$2|$3|${4:-}"); }
add node pubsub "$STD"
add node presence "$STD"
add node history "$STD"
add node recovery "$STD"
add node recovery-gap "$STD"
add node refresh "$STD"
add node expire-no-gettoken "$STD"
add node expire-server "$STD --client-expired-grace 1"
add node bad-token "$STD"
add node forbidden "$STD"
# Without --allow-subscribe: subscriptions need a channel token.
add node sub-token "--token-hmac-secret $SECRET --api-key $KEY --history-size 10 --history-ttl 60 --presence"
add node server-subs "$STD"
add node namespaces "--token-hmac-secret $SECRET --api-key $KEY --config @DIR@/hub.toml" config
add node anonymous "--token-hmac-secret $SECRET --api-key $KEY --allow-anonymous --allow-subscribe --allow-publish --presence"
# App-level pings come from --client-ping-interval (--ping-interval is the
# WebSocket-level keepalive). 2 s, not 1: the hub pings on a 1-second tick, so a
# ping may come up to a second late, within this case's 1.5 s of slack.
add node ping "$STD --client-ping-interval 2"
add python pubsub "$STD"
add python presence "$STD"
add python history "$STD"
add python recovery "$STD"
add python refresh "$STD"
add python expire "$STD --client-expired-grace 1"
add python bad-token "$STD"
add python forbidden "$STD"
add api publish "$STD"
add api history "$STD"
add api history-ttl "--token-hmac-secret $SECRET --api-key $KEY --history-size 100 --history-ttl 2"
add api presence "$STD"
add api disconnect "$STD"
add api unsubscribe "$STD"
add api subscribe "$STD"
add api auth "$STD"
KEYS_BASE="--api-key $KEY --history-size 10 --history-ttl 60 --presence --allow-subscribe"
add tokens rs256 "--token-rsa-public-key @DIR@/rsa.pub.pem $KEYS_BASE" keys
add tokens es256 "--token-ecdsa-public-key @DIR@/ec.pub.pem $KEYS_BASE" keys
add tokens mixed "--token-hmac-secret $SECRET --token-rsa-public-key @DIR@/rsa.pub.pem --token-ecdsa-public-key @DIR@/ec.pub.pem $KEYS_BASE" keys

case_line() { # case_line SPEC -> "group scenario"
    local group name
    IFS='|' read -r group name _ <<<"$1"
    printf '%-7s %s' "$group" "$name"
}
SELECTED=()
for c in "${CASES[@]}"; do
    if [[ -z $FILTER ]] || grep -Eq -- "$FILTER" <<<"$(case_line "$c")"; then SELECTED+=("$c"); fi
done
if ((LIST)); then
    for c in "${SELECTED[@]}"; do
        IFS='|' read -r group name flags prep <<<"$c"
        printf '%-7s %-19s [wsx hub %s]%s\n' "$group" "$name" "$flags" "${prep:+ [$prep]}"
    done
    echo "${#SELECTED[@]} of ${#CASES[@]} cases"
    exit 0
fi
if ((${#SELECTED[@]} == 0)); then
    echo "no case matches ${FILTER@Q} (see $0 --list)" >&2
    exit 2
fi

# ------------------------------------------------------- process management
# Everything we start runs under `timeout` in the background and is recorded
# in BG_PIDS; the EXIT trap stops what is left. A PID leaves BG_PIDS as soon as
# it is reaped, so a recycled PID is never signalled.
BG_PIDS=()
BG_PID=
start_bg() { # start_bg SECONDS STDIN STDOUT STDERR COMMAND...  (sets BG_PID)
    local secs=$1 in=$2 out=$3 err=$4
    shift 4
    timeout -k 5 "$secs" "$@" <"$in" >"$out" 2>"$err" &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}
forget() {
    local p keep=()
    for p in "${BG_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
}
reap() { # reap PID: wait for it, forget it, return its status
    local rc=0
    wait "$1" 2>/dev/null || rc=$?
    forget "$1"
    return "$rc"
}
stop_pid() { # stop_pid PID: TERM (timeout passes it on), KILL after 3 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    reap "$pid" || true
}
cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
health() { # health PORT: the HTTP status of GET /health ("000" when nothing answers)
    curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/health" 2>/dev/null || true
}

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"
note() { echo "hub: $*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
can_install() { [[ ${WSX_HUB_NO_INSTALL:-0} != 1 ]]; }

# Serialise concurrent runs that share the cache.
if command -v flock >/dev/null 2>&1; then
    exec 8>"$CACHE/.lock"
    flock -w 600 8 || note "warning: could not lock $CACHE/.lock; going on"
fi

PY_IMPORTS='import centrifuge, cent, jwt, cryptography'
PY_SETUP_ERROR=
setup_python() {
    local stamp want log=$OUT/setup-python.log
    want=$(sha "$HDIR/requirements.txt")-$(python3 -c 'import sys; print(sys.version.split()[0])')
    stamp=$VENV/.wsx-hub-stamp
    if [[ -x $PY && -f $stamp && $(cat "$stamp") == "$want" ]] && "$PY" -c "$PY_IMPORTS" 2>/dev/null; then
        note "python: reusing $VENV"
        return 0
    fi
    can_install || { PY_SETUP_ERROR="no usable venv at $VENV (WSX_HUB_NO_INSTALL=1)"; return 1; }
    note "python: creating $VENV (log: $log)"
    if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
        PY_SETUP_ERROR="$VENV exists but is not a venv; refusing to touch it"
        return 1
    fi
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" && "$PY" -m pip install --disable-pip-version-check -q \
        -r "$HDIR/requirements.txt" && "$PY" -c "$PY_IMPORTS"; } >"$log" 2>&1; then
        tail -n 20 "$log"
        PY_SETUP_ERROR="venv setup failed (see $log)"
        rm -rf "$VENV"
        return 1
    fi
    echo "$want" >"$stamp"
}

NODE_SETUP_ERROR=
setup_node() {
    local stamp want log=$OUT/setup-node.log
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        NODE_SETUP_ERROR="node or npm not found"
        return 1
    fi
    want=$(sha "$HDIR/package.json" "$HDIR/package-lock.json")-$(node --version)
    stamp=$NODE_DIR/.wsx-hub-stamp
    if [[ -d $NODE_DIR/node_modules/centrifuge && -d $NODE_DIR/node_modules/ws && -f $stamp &&
        $(cat "$stamp") == "$want" ]]; then
        note "node: reusing $NODE_DIR/node_modules"
        return 0
    fi
    can_install || { NODE_SETUP_ERROR="no node_modules in $NODE_DIR (WSX_HUB_NO_INSTALL=1)"; return 1; }
    note "node: npm ci in $NODE_DIR (log: $log)"
    mkdir -p "$NODE_DIR"
    rm -rf "$NODE_DIR/node_modules" "$stamp"
    cp "$HDIR/package.json" "$HDIR/package-lock.json" "$NODE_DIR/"
    if ! (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1; then
        tail -n 20 "$log"
        NODE_SETUP_ERROR="npm ci failed (see $log)"
        return 1
    fi
    echo "$want" >"$stamp"
}

WSX_SETUP_ERROR=
setup_wsx() {
    if [[ ! -x $WSX_BIN && -z $WSX_BIN_SET ]]; then
        note "wsx: $WSX_BIN missing; cargo build --release -p wsx-cli --bin wsx"
        cargo build --release -p wsx-cli --bin wsx || true
    fi
    if [[ ! -x $WSX_BIN ]]; then
        WSX_SETUP_ERROR="$WSX_BIN not found (cargo build --release -p wsx-cli --bin wsx, or set WSX_BIN)"
        return 1
    fi
    # Read whole, not piped to grep -q (see scripts/interop.sh).
    local help
    help=$("$WSX_BIN" hub --help 2>&1) || true
    if [[ $help != *--listen* ]]; then
        WSX_SETUP_ERROR="$WSX_BIN has no working 'hub' subcommand (wsx hub --help: $(head -c 200 <<<"$help" | tr '\n' ' '))"
        return 1
    fi
    note "wsx: $WSX_BIN ($("$WSX_BIN" --version 2>&1 || true), built $(date -r "$WSX_BIN" '+%F %T'))"
}

NEED_PY=0 NEED_NODE=0
for c in "${SELECTED[@]}"; do
    if [[ ${c%%|*} == node ]]; then NEED_NODE=1; else NEED_PY=1; fi
done
setup_wsx || true
# The key pairs of the tokens cases are made with the venv's cryptography.
((NEED_PY)) && { setup_python || true; }
((NEED_NODE)) && { setup_node || true; }

# The budget counts from here: installing the SDKs may take a while the first time.
START=$SECONDS
PASSED=0
FAILED=0
report() { # report PASS|FAIL LINE
    echo "$1  $2"
    if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
show() { # show FILE TITLE: the tail of a log, without colours
    [[ -s $1 ]] || return 0
    echo "    --- $2 ($1) ---"
    tail -n 30 "$1" | cut -c 1-400 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    | /'
}

# ------------------------------------------------------------ self-checks
# Syntax of the scripts, and --list of each scenario script (which also loads
# the SDKs, so a broken install shows up here).
selfcheck() { # selfcheck NAME COMMAND...
    local log=$OUT/selfcheck-${1//[^A-Za-z0-9_.-]/_}.log
    if "${@:2}" >"$log" 2>&1; then
        report PASS "$(printf '%-7s %s' self "$1")"
    else
        report FAIL "$(printf '%-7s %s' self "$1")"
        show "$log" output
    fi
}
selfcheck "bash -n scripts/hub.sh" bash -n "$ROOT/scripts/hub.sh"
if ((NEED_NODE)); then
    if [[ -z $NODE_SETUP_ERROR ]]; then
        selfcheck "node sdk_node.mjs --list" node "$HDIR/sdk_node.mjs" --list
    else
        report FAIL "$(printf '%-7s %s' self "node setup: $NODE_SETUP_ERROR")"
    fi
fi
if ((NEED_PY)); then
    if [[ -z $PY_SETUP_ERROR ]]; then
        selfcheck "python sdk_python.py --list" "$PY" "$HDIR/sdk_python.py" --list
    else
        report FAIL "$(printf '%-7s %s' self "python setup: $PY_SETUP_ERROR")"
    fi
fi

# ------------------------------------------------------------------ cases
# start_hub DIR FLAGS...: start `wsx hub` on a free port and wait for
# GET /health -> 200 (sets PORT, HUB_PID). Prints why on failure.
start_hub() {
    local dir=$1 i _ code
    shift
    for _ in 1 2 3; do
        PORT=$(free_port)
        echo "$WSX_BIN hub --listen 127.0.0.1:$PORT $*" >>"$dir/command"
        start_bg $((CASE_TIMEOUT + 30)) /dev/null "$dir/hub.out" "$dir/hub.err" \
            "$WSX_BIN" hub --listen "127.0.0.1:$PORT" "$@"
        HUB_PID=$BG_PID
        for ((i = 0; i < 100; i++)); do
            code=$(health "$PORT")
            [[ $code == 200 ]] && return 0
            kill -0 "$HUB_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$HUB_PID" 2>/dev/null; then
            echo "wsx hub does not answer GET /health with 200 after 5 s (last status: $code)"
            return 1
        fi
        reap "$HUB_PID" || true
        # Retry only when the port was taken meanwhile.
        grep -qi 'in use' "$dir/hub.err" || break
    done
    echo "wsx hub exited at start: $(head -c 300 "$dir/hub.err" | tr '\n' ' ')"
    return 1
}

# stop_hub DIR: stop the hub; fail when it died during the case or panicked.
stop_hub() {
    local dir=$1 ok=0
    if ! kill -0 "$HUB_PID" 2>/dev/null; then
        echo "wsx hub exited during the case"
        ok=1
    fi
    stop_pid "$HUB_PID"
    if grep -q 'panicked' "$dir/hub.err"; then
        echo "wsx hub panicked"
        ok=1
    fi
    return "$ok"
}

# The --config of the namespaces case: a chat namespace open to subscribers.
write_config() { # write_config FILE
    cat >"$1" <<'EOF'
[namespaces.chat]
allow_subscribe = true
allow_publish = true
presence = true
history_size = 10
history_ttl = 60
EOF
}

run_case() { # run_case DIR GROUP SCENARIO FLAGS PREP
    local dir=$1 group=$2 name=$3 prep=$5 rc=0 ok=0
    local -a flags cmd
    read -ra flags <<<"${4//@DIR@/$dir}"
    case $group in
    node) cmd=(node "$HDIR/sdk_node.mjs" "$name") ;;
    python) cmd=("$PY" "$HDIR/sdk_python.py" "$name") ;;
    *) cmd=("$PY" "$HDIR/sdk_python.py" "$group-$name") ;;
    esac
    if [[ $prep == keys ]] && ! "$PY" "$HDIR/common.py" keys "$dir" >"$dir/keys.log" 2>&1; then
        echo "could not make the key pairs: $(tail -n 3 "$dir/keys.log" | tr '\n' ' ')"
        return 1
    fi
    [[ $prep == config ]] && write_config "$dir/hub.toml"
    start_hub "$dir" "${flags[@]}" || { stop_pid "$HUB_PID"; return 1; }
    cmd+=(--hub "http://127.0.0.1:$PORT" --api-key "$KEY" --secret "$SECRET")
    [[ $group == node ]] || cmd+=(--dir "$dir")
    echo "${cmd[*]}" >>"$dir/command"
    start_bg "$CASE_TIMEOUT" /dev/null "$dir/peer.out" "$dir/peer.err" "${cmd[@]}"
    reap "$BG_PID" || rc=$?
    if ((rc == 124)); then
        echo "the scenario timed out after $CASE_TIMEOUT s"
        ok=1
    elif ((rc != 0)); then
        echo "the scenario failed (status $rc):"
        grep -h 'FAIL' "$dir/peer.err" | sed -e 's/^\[[ 0-9.]*\] //' -e 's/^/  /' | cut -c 1-400 | sed -n '1,20p'
        ok=1
    fi
    stop_hub "$dir" || ok=1
    return "$ok"
}

for c in "${SELECTED[@]}"; do
    IFS='|' read -r group name flags prep <<<"$c"
    line=$(case_line "$c")
    casedir=$OUT/$group-$name
    rm -rf "$casedir"
    mkdir -p "$casedir"
    why=$casedir/why
    rc=0
    if ((SECONDS - START > BUDGET)); then
        echo "not run: the time budget of $BUDGET s is spent (WSX_HUB_BUDGET)" >"$why"
        rc=1
    elif [[ -n $WSX_SETUP_ERROR ]]; then
        echo "$WSX_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $group == node && -n $NODE_SETUP_ERROR ]]; then
        echo "$NODE_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $group != node && -n $PY_SETUP_ERROR ]]; then
        echo "$PY_SETUP_ERROR" >"$why"
        rc=1
    else
        run_case "$casedir" "$group" "$name" "$flags" "$prep" >"$why" 2>&1 || rc=$?
    fi
    if ((rc == 0)); then
        report PASS "$line"
    else
        report FAIL "$line"
        sed 's/^/    /' "$why"
        [[ -f $casedir/command ]] && sed 's/^/    $ /' "$casedir/command"
        show "$casedir/peer.err" "scenario log"
        show "$casedir/hub.err" "wsx hub stderr"
    fi
done

echo
note "logs in $OUT/<group>-<scenario> ($((SECONDS - START)) s)"
echo "hub: $PASSED passed, $FAILED failed"
((FAILED == 0))
