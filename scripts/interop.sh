#!/usr/bin/env bash
# Interoperability tests of wsx against independent peers:
#   Python `websockets` (PyPI), Node `ws` (npm), headless Chromium.
#
#   scripts/interop.sh              # the whole matrix
#   scripts/interop.sh REGEX        # only the cases whose line matches REGEX (grep -E),
#                                   # e.g. 'python client->wsx-serve default'
#   scripts/interop.sh --list       # print the cases, run nothing
#
# Installs what is missing: Debian's chromium when $CHROMIUM (default
# /usr/bin/chromium) is absent (apt-get; needs root), a Python venv with
# tests/interop/requirements.txt and node_modules from tests/interop/package-lock.json,
# both in $WSX_INTEROP_CACHE (default: $HOME/.cache/wsx-interop), reused while
# the pinned files are unchanged. Builds target/release/wsx only when it is
# missing (and WSX_BIN is unset): rebuild it yourself after editing the code.
#
# Prints one line per case
#   PASS|FAIL  <peer> <direction> <params>
# (a failing case is followed by the stderr of the peer and of wsx), and last
#   interop: N passed, M failed
# Exit status: 0 when M is 0, 1 otherwise (2 on a usage error).
#
# Environment:
#   WSX_BIN                    wsx binary (default: target/release/wsx)
#   WSX_INTEROP_CACHE          venv + node_modules (default: $HOME/.cache/wsx-interop)
#   WSX_INTEROP_OUT            logs, one folder per case (default: target/interop)
#   WSX_INTEROP_CASE_TIMEOUT   seconds per case (default: 30; Chromium cases get 30 more)
#   WSX_INTEROP_BUDGET         seconds for the whole matrix; cases left when it is
#                              spent fail as "not run" (default: 300; a
#                              passing run takes about 40 s)
#   WSX_INTEROP_NO_INSTALL=1   install nothing; missing tools fail their cases
#   WSX_INTEROP_SKIP_BROWSER=1 leave out the Chromium cases
#   CHROMIUM                   browser binary (default: /usr/bin/chromium)
#
# See tests/interop/README.md.
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

IDIR=$ROOT/tests/interop
CACHE=${WSX_INTEROP_CACHE:-$HOME/.cache/wsx-interop}
OUT=${WSX_INTEROP_OUT:-$ROOT/target/interop}
[[ $OUT == /* ]] || OUT=$PWD/$OUT
CASE_TIMEOUT=${WSX_INTEROP_CASE_TIMEOUT:-30}
BUDGET=${WSX_INTEROP_BUDGET:-300}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
WSX_BIN_SET=${WSX_BIN:+1}
WSX_BIN=${WSX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx}
[[ $WSX_BIN == /* ]] || WSX_BIN=$ROOT/$WSX_BIN
VENV=$CACHE/venv
NODE_DIR=$CACHE/node
PY=$VENV/bin/python
export NODE_PATH=$NODE_DIR/node_modules
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export RUST_BACKTRACE=${RUST_BACKTRACE:-1} NO_COLOR=1
export CHROMIUM

# ---------------------------------------------------------------- the matrix
# One case a line: PEER|DIRECTION|PARAMS|WSX ARGS|PEER ARGS
#   client->wsx-serve:   wsx serve WSX ARGS  <-  PEER client PEER ARGS
#   wsx-connect->server: PEER server PEER ARGS  <-  wsx connect WSX ARGS
#   chromium:            wsx serve WSX ARGS  <-  browser.js PEER ARGS
# PEER ARGS also carry the expectations (--expect-deflate, --expect-response,
# --expect-offer): see py_client.py / py_server.py --help.
CASES=()
add() { CASES+=("$1|$2|$3|$4|$5"); }
for peer in python node; do
    d=client-\>wsx-serve
    # The client's offer varies; wsx serve runs with its defaults.
    add "$peer" "$d" default "" "--expect-deflate on"
    add "$peer" "$d" offer:client_no_context_takeover "" "--client-no-context-takeover --expect-deflate on"
    add "$peer" "$d" offer:server_no_context_takeover "" \
        "--server-no-context-takeover --expect-deflate on --expect-response server_no_context_takeover"
    for n in 9 12 15; do
        add "$peer" "$d" "offer:server_max_window_bits=$n" "" \
            "--server-max-window-bits $n --expect-deflate on --expect-response server_max_window_bits<=$n"
    done
    for n in 9 12 15; do
        add "$peer" "$d" "offer:client_max_window_bits=$n" "" \
            "--client-max-window-bits $n --expect-deflate on --expect-response client_max_window_bits?<=$n"
    done
    add "$peer" "$d" client:no-deflate "" "--no-deflate --expect-deflate off"
    # wsx serve's own limits and requirements, the client offering its defaults
    # (both clients offer a bare client_max_window_bits).
    add "$peer" "$d" server:no-deflate "--no-deflate" "--expect-deflate off"
    add "$peer" "$d" server:server_no_context_takeover "--deflate-server-no-context-takeover" \
        "--expect-deflate on --expect-response server_no_context_takeover"
    add "$peer" "$d" server:client_no_context_takeover "--deflate-client-no-context-takeover" \
        "--expect-deflate on --expect-response client_no_context_takeover"
    add "$peer" "$d" server:server_max_window_bits=10 "--deflate-server-max-window-bits 10" \
        "--expect-deflate on --expect-response server_max_window_bits<=10"
    add "$peer" "$d" server:client_max_window_bits=10 "--deflate-client-max-window-bits 10" \
        "--expect-deflate on --expect-response client_max_window_bits<=10"
done
for peer in python node; do
    d=wsx-connect-\>server
    add "$peer" "$d" default "" "--expect-deflate on"
    # Our offer varies; the peer server runs with its defaults (accepts any offer).
    add "$peer" "$d" offer:client_no_context_takeover "--deflate-client-no-context-takeover" \
        "--expect-deflate on --expect-offer client_no_context_takeover"
    add "$peer" "$d" offer:server_no_context_takeover "--deflate-server-no-context-takeover" \
        "--expect-deflate on --expect-offer server_no_context_takeover"
    # 15 is the RFC's default: an offer may leave server_max_window_bits=15
    # out, and may send client_max_window_bits=15 as the bare parameter.
    for n in 9 12 15; do
        spec=server_max_window_bits=$n
        ((n == 15)) && spec="server_max_window_bits?=15"
        add "$peer" "$d" "offer:server_max_window_bits=$n" "--deflate-server-max-window-bits $n" \
            "--expect-deflate on --expect-offer $spec"
    done
    for n in 9 12 15; do
        spec=client_max_window_bits=$n
        ((n == 15)) && spec=client_max_window_bits
        add "$peer" "$d" "offer:client_max_window_bits=$n" "--deflate-client-max-window-bits $n" \
            "--expect-deflate on --expect-offer $spec"
    done
    # The peer server imposes parameters on our default offer.
    add "$peer" "$d" server:client_no_context_takeover "" "--client-no-context-takeover --expect-deflate on"
    add "$peer" "$d" server:server_no_context_takeover "" "--server-no-context-takeover --expect-deflate on"
    for n in 9 12 15; do
        add "$peer" "$d" "server:server_max_window_bits=$n" "" "--server-max-window-bits $n --expect-deflate on"
    done
    # ws declines an offer without client_max_window_bits when it must limit
    # the client's window: our default offer has to carry the bare parameter.
    cmwb_offer=
    [[ $peer == node ]] && cmwb_offer="--expect-offer client_max_window_bits"
    for n in 9 12 15; do
        add "$peer" "$d" "server:client_max_window_bits=$n" "" \
            "--client-max-window-bits $n --expect-deflate on $cmwb_offer"
    done
    add "$peer" "$d" client:no-deflate "--no-deflate" "--expect-deflate off"
    add "$peer" "$d" server:no-deflate "" "--no-deflate --expect-deflate off"
done
if [[ ${WSX_INTEROP_SKIP_BROWSER:-0} != 1 ]]; then
    add chromium client-\>wsx-serve deflate "" "--deflate on"
    add chromium client-\>wsx-serve server:no-deflate "--no-deflate" "--deflate off"
fi

case_line() { # case_line SPEC -> "peer direction params"
    local peer dir params
    IFS='|' read -r peer dir params _ <<<"$1"
    printf '%-8s %-20s %s' "$peer" "$dir" "$params"
}
SELECTED=()
for c in "${CASES[@]}"; do
    if [[ -z $FILTER ]] || grep -Eq -- "$FILTER" <<<"$(case_line "$c")"; then SELECTED+=("$c"); fi
done
if ((LIST)); then
    for c in "${SELECTED[@]}"; do
        IFS='|' read -r _ _ _ wargs pargs <<<"$c"
        echo "$(case_line "$c")    [wsx: ${wargs:-(defaults)}] [peer: $pargs]"
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
wait_exit() { # wait_exit PID SECONDS: reap PID if it exits in time (its status), else 124
    local pid=$1 i
    for ((i = 0; i < $2 * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then return 124; fi
    reap "$pid"
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
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"
rm -rf "$OUT/cases"
mkdir -p "$OUT/cases"
START=$SECONDS
note() { echo "interop: $*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
can_install() { [[ ${WSX_INTEROP_NO_INSTALL:-0} != 1 ]]; }

# Serialise concurrent runs that share the cache.
if command -v flock >/dev/null 2>&1; then
    exec 8>"$CACHE/.lock"
    flock -w 600 8 || note "warning: could not lock $CACHE/.lock; going on"
fi

PY_SETUP_ERROR=
setup_python() {
    local stamp want log=$OUT/setup-python.log
    want=$(sha "$IDIR/requirements.txt")-$(python3 -c 'import sys; print(sys.version.split()[0])')
    stamp=$VENV/.wsx-interop-stamp
    if [[ -x $PY && -f $stamp && $(cat "$stamp") == "$want" ]] && "$PY" -c 'import websockets' 2>/dev/null; then
        note "python: reusing $VENV"
        return 0
    fi
    can_install || { PY_SETUP_ERROR="no usable venv at $VENV (WSX_INTEROP_NO_INSTALL=1)"; return 1; }
    note "python: creating $VENV (log: $log)"
    if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
        PY_SETUP_ERROR="$VENV exists but is not a venv; refusing to touch it"
        return 1
    fi
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" && "$PY" -m pip install --disable-pip-version-check -q \
        -r "$IDIR/requirements.txt" && "$PY" -c 'import websockets'; } >"$log" 2>&1; then
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
    want=$(sha "$IDIR/package.json" "$IDIR/package-lock.json")-$(node --version)
    stamp=$NODE_DIR/.wsx-interop-stamp
    if [[ -d $NODE_DIR/node_modules/ws && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        note "node: reusing $NODE_DIR/node_modules"
        return 0
    fi
    can_install || { NODE_SETUP_ERROR="no node_modules in $NODE_DIR (WSX_INTEROP_NO_INSTALL=1)"; return 1; }
    note "node: npm ci in $NODE_DIR (log: $log)"
    mkdir -p "$NODE_DIR"
    rm -rf "$NODE_DIR/node_modules" "$stamp"
    cp "$IDIR/package.json" "$IDIR/package-lock.json" "$NODE_DIR/"
    # --ignore-scripts: nothing may download a browser (we use the system's Chromium).
    if ! (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1; then
        tail -n 20 "$log"
        NODE_SETUP_ERROR="npm ci failed (see $log)"
        return 1
    fi
    echo "$want" >"$stamp"
}

BROWSER_SETUP_ERROR=
setup_chromium() {
    local log=$OUT/setup-chromium.log
    if [[ -x $CHROMIUM ]]; then
        note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1) ($CHROMIUM)"
        return 0
    fi
    if ! can_install || [[ $CHROMIUM != /usr/bin/chromium ]] || ((EUID != 0)) || ! command -v apt-get >/dev/null; then
        BROWSER_SETUP_ERROR="$CHROMIUM not found (install Debian's chromium package)"
        return 1
    fi
    note "chromium: apt-get install chromium (log: $log)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } >"$log" 2>&1 ||
        [[ ! -x $CHROMIUM ]]; then
        tail -n 20 "$log"
        BROWSER_SETUP_ERROR="apt-get install chromium failed (see $log)"
        return 1
    fi
    note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
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
    note "wsx: $WSX_BIN ($("$WSX_BIN" --version 2>&1 || true), built $(date -r "$WSX_BIN" '+%F %T'))"
}

needs() { # which setups the selected cases need
    local c
    for c in "${SELECTED[@]}"; do
        case ${c%%|*} in
        python) NEED_PY=1 ;;
        node) NEED_NODE=1 ;;
        chromium) NEED_NODE=1 NEED_BROWSER=1 ;;
        esac
    done
}
NEED_PY=0 NEED_NODE=0 NEED_BROWSER=0
needs
setup_wsx || true
((NEED_PY)) && { setup_python || true; }
((NEED_NODE)) && { setup_node || true; }
((NEED_BROWSER)) && { setup_chromium || true; }

SHOW_HANDSHAKE=0
# The help is read whole (not piped to `grep -q`, which would stop reading at
# the match and, under pipefail, turn the writer's SIGPIPE into a "no").
if [[ -z $WSX_SETUP_ERROR ]] && [[ $("$WSX_BIN" connect --help 2>/dev/null) == *--show-handshake* ]]; then
    SHOW_HANDSHAKE=1
fi
note "wsx connect --show-handshake: $([[ $SHOW_HANDSHAKE == 1 ]] && echo yes || echo "no (response header not checked on our side)")"

# Input of `wsx connect`: one text message a line.
LINES=$OUT/connect-input.txt
python3 "$IDIR/common.py" lines "$LINES"
NLINES=$(wc -l <"$LINES")

PASSED=0
FAILED=0
report() { # report PASS|FAIL LINE
    echo "$1  $2"
    if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
show() { # show FILE TITLE: the tail of a log, without colours
    [[ -e $1 ]] || return 0
    echo "    --- $2 ($1) ---"
    tail -n 40 "$1" | cut -c 1-400 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    | /'
}

# ------------------------------------------------------------ self-checks
# Syntax of every script, and each peer's --help (which also loads its library).
selfcheck() { # selfcheck NAME COMMAND...
    local log=$OUT/cases/selfcheck-${1//[^A-Za-z0-9_.-]/_}.log
    if "${@:2}" >"$log" 2>&1; then
        report PASS "$(printf '%-8s %-20s %s' "$1" self-check "${*:3}")"
    else
        report FAIL "$(printf '%-8s %-20s %s' "$1" self-check "${*:3}")"
        show "$log" output
    fi
}
selfcheck bash bash -n "$ROOT"/scripts/*.sh
if ((NEED_PY)); then
    if [[ -z $PY_SETUP_ERROR ]]; then
        selfcheck python "$PY" "$IDIR/py_client.py" --help
        selfcheck python "$PY" "$IDIR/py_server.py" --help
    else
        report FAIL "$(printf '%-8s %-20s %s' python self-check "setup: $PY_SETUP_ERROR")"
    fi
fi
if ((NEED_NODE)); then
    if [[ -z $NODE_SETUP_ERROR ]]; then
        selfcheck node node "$IDIR/node_client.js" --help
        selfcheck node node "$IDIR/node_server.js" --help
        ((NEED_BROWSER)) && selfcheck chromium node "$IDIR/browser.js" --help
    else
        report FAIL "$(printf '%-8s %-20s %s' node self-check "setup: $NODE_SETUP_ERROR")"
    fi
fi

# ------------------------------------------------------------------ cases
# Each returns 0 on success; on failure it prints why (the caller adds logs).

# start_wsx_serve DIR ARGS...: start `wsx serve` on a free port (sets PORT, WSX_PID).
start_wsx_serve() {
    local dir=$1 i _
    shift
    for _ in 1 2 3; do
        PORT=$(free_port)
        start_bg $((CASE_TIMEOUT + 30)) /dev/null "$dir/wsx.out" "$dir/wsx.err" \
            "$WSX_BIN" serve --listen "127.0.0.1:$PORT" "$@"
        WSX_PID=$BG_PID
        for ((i = 0; i < 100; i++)); do
            port_open "$PORT" && return 0
            kill -0 "$WSX_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$WSX_PID" 2>/dev/null; then
            echo "wsx serve does not listen on 127.0.0.1:$PORT after 5 s"
            return 1
        fi
        reap "$WSX_PID" || true
        # Retry only when the port was taken meanwhile.
        grep -qi 'in use' "$dir/wsx.err" || break
    done
    echo "wsx serve exited at start (${*:-no options}): $(head -c 300 "$dir/wsx.err" | tr '\n' ' ')"
    return 1
}

# stop_wsx_serve DIR: stop wsx serve; fail when it died during the case or panicked.
stop_wsx_serve() {
    local dir=$1 ok=0
    if ! kill -0 "$WSX_PID" 2>/dev/null; then
        echo "wsx serve exited during the case"
        ok=1
    fi
    stop_pid "$WSX_PID"
    if grep -q 'panicked' "$dir/wsx.err"; then
        echo "wsx serve panicked"
        ok=1
    fi
    return "$ok"
}

run_client_case() { # run_client_case DIR PEER WSX_ARGS PEER_ARGS
    local dir=$1 peer=$2 rc=0 ok=0
    local -a wargs pargs cmd
    read -ra wargs <<<"$3"
    read -ra pargs <<<"$4"
    case $peer in
    python) cmd=("$PY" "$IDIR/py_client.py") ;;
    node) cmd=(node "$IDIR/node_client.js") ;;
    chromium) cmd=(node "$IDIR/browser.js" --result "$dir/result.json" --timeout "$CASE_TIMEOUT") ;;
    esac
    start_wsx_serve "$dir" "${wargs[@]}" || { stop_pid "$WSX_PID"; return 1; }
    local url=ws://127.0.0.1:$PORT/ secs=$CASE_TIMEOUT
    [[ $peer == chromium ]] && secs=$((CASE_TIMEOUT + 30))
    if [[ $peer == chromium ]]; then cmd+=(--url "$url"); else cmd+=("$url"); fi
    echo "${cmd[*]} ${pargs[*]}" >"$dir/command"
    start_bg "$secs" /dev/null "$dir/peer.out" "$dir/peer.err" "${cmd[@]}" "${pargs[@]}"
    reap "$BG_PID" || rc=$?
    if ((rc == 124)); then
        echo "$peer client timed out after $secs s"
        ok=1
    elif ((rc != 0)); then
        echo "$peer client failed (status $rc):"
        grep -h '^FAIL' "$dir/peer.err" | sed -n 's/^/  /;1,10p'
        ok=1
    fi
    stop_wsx_serve "$dir" || ok=1
    return "$ok"
}

run_server_case() { # run_server_case DIR PEER WSX_ARGS PEER_ARGS
    local dir=$1 peer=$2 rc=0 src=0 ok=0 i
    local -a wargs pargs cmd
    read -ra wargs <<<"$3"
    read -ra pargs <<<"$4"
    case $peer in
    python) cmd=("$PY" "$IDIR/py_server.py") ;;
    node) cmd=(node "$IDIR/node_server.js") ;;
    esac
    cmd+=(--port-file "$dir/port" --once --timeout "$CASE_TIMEOUT")
    echo "${cmd[*]} ${pargs[*]}" >"$dir/command"
    start_bg $((CASE_TIMEOUT + 5)) /dev/null "$dir/peer.out" "$dir/peer.err" "${cmd[@]}" "${pargs[@]}"
    local spid=$BG_PID
    for ((i = 0; i < 200; i++)); do
        [[ -s $dir/port ]] && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    if [[ ! -s $dir/port ]]; then
        echo "$peer server did not start listening"
        stop_pid "$spid"
        return 1
    fi
    local url
    url=ws://127.0.0.1:$(cat "$dir/port")/
    ((SHOW_HANDSHAKE)) && wargs+=(--show-handshake)
    echo "$WSX_BIN connect ${wargs[*]} $url  < $LINES" >>"$dir/command"

    # wsx reads its stdin from a FIFO; the feeder writes every line, waits
    # (bounded) until every echo is printed, then closes it: at EOF wsx sends
    # close 1000 and waits for the close handshake.
    mkfifo "$dir/stdin"
    start_bg "$CASE_TIMEOUT" "$dir/stdin" "$dir/wsx.out" "$dir/wsx.err" \
        "$WSX_BIN" connect "${wargs[@]}" "$url"
    local wpid=$BG_PID
    (
        exec 3>"$dir/stdin"
        cat "$LINES" >&3 2>/dev/null || exit 0
        for ((i = 0; i < 400; i++)); do
            (($(wc -l <"$dir/wsx.out") >= NLINES)) && break
            kill -0 "$wpid" 2>/dev/null || break
            sleep 0.05
        done
    ) &
    local fpid=$!
    BG_PIDS+=("$fpid")
    reap "$wpid" || rc=$?
    stop_pid "$fpid"
    # The server decides once the connection is closed; give it a moment (none
    # when no connection got through the handshake: it would wait in vain).
    local grace=1
    grep -q '^connection from' "$dir/peer.err" && grace=10
    wait_exit "$spid" "$grace" || src=$?
    if ((src == 124)); then
        stop_pid "$spid"
    fi

    if ((rc == 124)); then
        echo "wsx connect timed out after $CASE_TIMEOUT s"
        ok=1
    elif ((rc != 0)); then
        echo "wsx connect exited with status $rc (0 expected)$( ((rc == 2)) && echo ': handshake failed')"
        ok=1
    fi
    if ! cmp -s "$dir/wsx.out" "$LINES"; then
        echo "wsx connect printed $(wc -l <"$dir/wsx.out") of $NLINES echoed lines, or different ones:" \
            "$(cmp "$dir/wsx.out" "$LINES" 2>&1 | head -n 1)"
        ok=1
    fi
    if ((src == 124)); then
        if ((grace == 10)); then
            echo "$peer server did not finish within 10 s of the end of wsx connect (killed)"
        else
            echo "$peer server saw no WebSocket connection"
        fi
        ok=1
    elif ((src != 0)); then
        echo "$peer server reported failure (status $src):"
        grep -h '^FAIL' "$dir/peer.err" | sed -n 's/^/  /;1,10p'
        ok=1
    fi
    if grep -q 'panicked' "$dir/wsx.err"; then
        echo "wsx connect panicked"
        ok=1
    fi
    # With --show-handshake: the Sec-WebSocket-Extensions of the response wsx
    # shows (after its "HTTP/1.1 101" line) must be the one the peer server sent.
    if ((SHOW_HANDSHAKE)) && grep -q '^RESPONSE-EXTENSIONS:' "$dir/peer.err"; then
        local theirs ours
        theirs=$(sed -n '/^RESPONSE-EXTENSIONS:/{s/^RESPONSE-EXTENSIONS: *//;p;q}' "$dir/peer.err")
        ours=$(sed -e 's/\x1b\[[0-9;]*m//g' -e 's/\r$//' "$dir/wsx.err" | awk '
            /HTTP\/1\.[01] 101/ { resp = 1; next }
            resp && tolower($0) ~ /sec-websocket-extensions *:/ { sub(/^[^:]*: */, ""); print; exit }')
        if ! grep -q 'HTTP/1\.[01] 101' "$dir/wsx.err"; then
            echo "wsx --show-handshake printed no 'HTTP/1.1 101' response line"
            ok=1
        elif [[ $(norm_ext "$theirs") != $(norm_ext "$ours") ]]; then
            echo "wsx --show-handshake shows Sec-WebSocket-Extensions '${ours}', the server sent '${theirs}'"
            ok=1
        fi
    fi
    return "$ok"
}

# norm_ext HEADER: "name; a; b=1" with the parameters sorted (for comparisons).
norm_ext() {
    python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
import common
print(", ".join(n + "".join(sorted("; " + (k if v is None else k + "=" + v) for k, v in p.items()))
                for n, p in common.parse_extensions(sys.argv[2])))' "$IDIR" "$1"
}

n=0
for c in "${SELECTED[@]}"; do
    n=$((n + 1))
    IFS='|' read -r peer dir params wargs pargs <<<"$c"
    line=$(case_line "$c")
    casedir=$OUT/cases/$(printf '%02d' "$n")-$peer-${dir%%-*}-${params//[^A-Za-z0-9_=.-]/_}
    mkdir -p "$casedir"
    why=$casedir/why
    rc=0
    if ((SECONDS - START > BUDGET)); then
        echo "not run: the time budget of $BUDGET s is spent (WSX_INTEROP_BUDGET)" >"$why"
        rc=1
    elif [[ -n $WSX_SETUP_ERROR ]]; then
        echo "$WSX_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $peer == python && -n $PY_SETUP_ERROR ]]; then
        echo "$PY_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $peer != python && -n $NODE_SETUP_ERROR ]]; then
        echo "$NODE_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $peer == chromium && -n $BROWSER_SETUP_ERROR ]]; then
        echo "$BROWSER_SETUP_ERROR" >"$why"
        rc=1
    elif [[ $dir == client* ]]; then
        run_client_case "$casedir" "$peer" "$wargs" "$pargs" >"$why" 2>&1 || rc=$?
    else
        run_server_case "$casedir" "$peer" "$wargs" "$pargs" >"$why" 2>&1 || rc=$?
    fi
    if ((rc == 0)); then
        report PASS "$line"
    else
        report FAIL "$line"
        sed 's/^/    /' "$why"
        [[ -f $casedir/command ]] && sed 's/^/    $ /' "$casedir/command"
        show "$casedir/peer.err" "$peer stderr"
        show "$casedir/wsx.err" "wsx stderr"
    fi
done

echo
note "logs in $OUT/cases ($((SECONDS - START)) s)"
echo "interop: $PASSED passed, $FAILED failed"
((FAILED == 0))
