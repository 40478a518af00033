# shellcheck shell=bash
# What scripts/interop.sh, scripts/hub.sh and scripts/chat.sh share: they all
# run wsx against peers installed from pinned files, one case after another,
# and print PASS/FAIL lines and a last "SUITE: N passed, M failed" line that CI
# reads. Sourced, never run:
#
#   SUITE=hub
#   ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
#   source "$ROOT/scripts/lib/peers.sh"
#   resolve_wsx_bin     # before any cd: a relative WSX_BIN is the caller's
#   cd "$ROOT"
#
# SUITE names the run in its messages ("hub: ..."), its environment
# (WSX_HUB_NO_INSTALL, WSX_HUB_BUDGET) and the stamp files in its cache
# (.wsx-hub-stamp), so each script keeps the names it had before this library.
# The script sets ROOT, OUT (its log folder) and, for the installs, CACHE,
# VENV and PY; functions read them when they run.
#
# Defines only functions and a few variables; sourcing it starts nothing and
# sets no trap (call trap_cleanup for that).
#
# Command line and settings
#   parse_args USAGE "$@"     --list (LIST=1), -h/--help (the script's header),
#                             and one REGEX (FILTER) when USAGE mentions REGEX
#   suite_dirs                CACHE and OUT from WSX_<SUITE>_CACHE, WSX_<SUITE>_OUT
#   venv_and_node_modules     VENV, PY, NODE_DIR in CACHE; NODE_PATH, PYTHON* exported
#   select_cases              SELECTED: the CASES whose `case_line` matches FILTER
#   list_cases                --list: `list_line` of each selected case, then exit
#   require_cases             exit 2 when SELECTED is empty
# Process management (everything runs under `timeout`, in the background)
#   start_bg SECONDS STDIN STDOUT STDERR COMMAND...   sets BG_PID
#   reap PID / wait_exit PID SECONDS / stop_pid PID / trap_cleanup
#   start_server SECONDS TRIES READY LOGS CMDLOG COMMAND...   sets PORT, SERVER_PID
#   stop_server PID ERRFILE NAME
#   free_port / port_open PORT / health PORT / health_ok PORT
# Installs (each returns 1 with the reason in SETUP_ERROR)
#   lock_cache / setup_venv REQUIREMENTS IMPORTS / npm_ci NAME SRC DEST MODULE...
#   setup_chromium / setup_wsx [HUB_FLAG WHAT_IS_MISSING]
# Bookkeeping
#   note TEXT / report PASS|FAIL LINE / show FILE TITLE [LINES]
#   budget_spent WHYFILE / run_checked WHYFILE SETUP_ERROR COMMAND...
#   report_case RC LINE DIR PEER_TITLE SERVER_LOG SERVER_TITLE / finish LOGS_WHERE

: "${SUITE:?set SUITE (interop, hub, chat) before sourcing scripts/lib/peers.sh}"
# The environment of a suite is spelt in capitals: WSX_HUB_NO_INSTALL.
PEERS_ENV=WSX_${SUITE^^}

# ------------------------------------------------------------ command line
# A binary given by relative path is relative to the caller's directory, so
# this runs before the script changes to $ROOT. WSX_BIN_SET remembers that the
# caller chose the binary: then setup_wsx never builds one.
resolve_wsx_bin() {
    if [[ -n ${WSX_BIN:-} && $WSX_BIN != /* ]]; then WSX_BIN=$PWD/$WSX_BIN; fi
    WSX_BIN_SET=${WSX_BIN:+1}
    WSX_BIN=${WSX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx}
    [[ $WSX_BIN == /* ]] || WSX_BIN=$ROOT/$WSX_BIN
}

usage() {
    echo "usage: $0 $PEERS_USAGE" >&2
    exit 2
}
# parse_args USAGE ARGS...: the usage line names what the script takes; only a
# script whose usage mentions REGEX takes a positional argument (one).
parse_args() {
    PEERS_USAGE=$1
    shift
    LIST=0
    FILTER=
    while (($#)); do
        case $1 in
        --list) LIST=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) usage ;;
        *) [[ $PEERS_USAGE == *REGEX* && -z $FILTER ]] || usage; FILTER=$1 ;;
        esac
        shift
    done
}

# suite_dirs: the cache of installed peers, shared by runs and kept between
# them, and the log folder of this run (a relative one is taken from $ROOT).
suite_dirs() {
    local cache=${PEERS_ENV}_CACHE out=${PEERS_ENV}_OUT
    CACHE=${!cache:-$HOME/.cache/wsx-$SUITE}
    OUT=${!out:-$ROOT/target/$SUITE}
    [[ $OUT == /* ]] || OUT=$PWD/$OUT
}

# venv_and_node_modules: where setup_venv and npm_ci put the peers, and the
# environment that makes Node find them; Python's output unbuffered so that a
# log cut by a timeout still shows the last line.
venv_and_node_modules() {
    VENV=$CACHE/venv
    NODE_DIR=$CACHE/node
    PY=$VENV/bin/python
    export NODE_PATH=$NODE_DIR/node_modules
    export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
}

# The filter is matched against what the user sees (case_line, defined by the
# script), not against the internal spec with its flags.
select_cases() {
    local c
    SELECTED=()
    for c in "${CASES[@]}"; do
        if [[ -z $FILTER ]] || grep -Eq -- "$FILTER" <<<"$(case_line "$c")"; then SELECTED+=("$c"); fi
    done
}
list_cases() {
    local c
    for c in "${SELECTED[@]}"; do list_line "$c"; done
    echo "${#SELECTED[@]} of ${#CASES[@]} cases"
    exit 0
}
require_cases() {
    if ((${#SELECTED[@]} == 0)); then
        echo "no case matches ${FILTER@Q} (see $0 --list)" >&2
        exit 2
    fi
}

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
# stop_pid PID: TERM (timeout passes it on), KILL after 3 s. An empty PID (a
# server that already exited and was reaped) is nothing to stop.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
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
# A trapped INT/TERM exits through the EXIT trap, which stops what is left.
trap_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
health() { # health PORT: the HTTP status of GET /health ("000" when nothing answers)
    curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/health" 2>/dev/null || true
}
# health_ok PORT: GET /health answers 200; the status is kept in HEALTH_CODE
# for the message of a server that never gets there.
HEALTH_CODE=000
health_ok() {
    HEALTH_CODE=$(health "$1")
    [[ $HEALTH_CODE == 200 ]]
}

# start_server SECONDS TRIES READY LOGS CMDLOG COMMAND...: start COMMAND, with
# @PORT@ in its arguments replaced by a free port, for at most SECONDS, its
# output in LOGS.out and LOGS.err (and the command line appended to CMDLOG
# unless that is empty); then poll `READY PORT` every 0.05 s, TRIES times.
# Sets PORT and SERVER_PID. Returns 0 when ready; 1 when the server runs but is
# not ready (SERVER_PID is still to be stopped); 2 when it exited at start
# (SERVER_PID is empty). The port is free when picked but may be taken before
# the server binds it: then, and only then, it tries again with another.
SERVER_PID=
start_server() {
    local secs=$1 tries=$2 ready=$3 logs=$4 cmdlog=$5 i _
    shift 5
    local -a cmd
    for _ in 1 2 3; do
        PORT=$(free_port)
        cmd=("${@//@PORT@/$PORT}")
        [[ -z $cmdlog ]] || echo "${cmd[*]}" >>"$cmdlog"
        start_bg "$secs" /dev/null "$logs.out" "$logs.err" "${cmd[@]}"
        SERVER_PID=$BG_PID
        for ((i = 0; i < tries; i++)); do
            "$ready" "$PORT" && return 0
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
        reap "$SERVER_PID" || true
        SERVER_PID=
        grep -qi 'in use' "$logs.err" || break
    done
    return 2
}

# stop_server PID ERRFILE NAME: stop the server of a case; fail (saying why)
# when it died during the case or panicked.
stop_server() {
    local pid=$1 err=$2 name=$3 ok=0
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$name exited during the case"
        ok=1
    fi
    stop_pid "$pid"
    if grep -q 'panicked' "$err"; then
        echo "$name panicked"
        ok=1
    fi
    return "$ok"
}

# ------------------------------------------------------------------ installs
note() { echo "$SUITE: $*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
can_install() {
    local no_install=${PEERS_ENV}_NO_INSTALL
    [[ ${!no_install:-0} != 1 ]]
}
SETUP_ERROR=

# Serialise concurrent runs that share the cache (fd 8 stays open, and the
# lock held, until the script exits).
lock_cache() {
    if command -v flock >/dev/null 2>&1; then
        exec 8>"$CACHE/.lock"
        flock -w 600 8 || note "warning: could not lock $CACHE/.lock; going on"
    fi
}

# setup_venv REQUIREMENTS IMPORTS: the venv $VENV with REQUIREMENTS installed,
# reused while the requirements and the Python version are those of its stamp
# and IMPORTS (a line of Python) still work; a broken one is made again.
setup_venv() {
    local req=$1 imports=$2 stamp want log=$OUT/setup-python.log
    want=$(sha "$req")-$(python3 -c 'import sys; print(sys.version.split()[0])')
    stamp=$VENV/.wsx-$SUITE-stamp
    if [[ -x $PY && -f $stamp && $(cat "$stamp") == "$want" ]] && "$PY" -c "$imports" 2>/dev/null; then
        note "python: reusing $VENV"
        return 0
    fi
    can_install || { SETUP_ERROR="no usable venv at $VENV (${PEERS_ENV}_NO_INSTALL=1)"; return 1; }
    note "python: creating $VENV (log: $log)"
    # rm -rf below: only on something that is recognisably a venv.
    if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
        SETUP_ERROR="$VENV exists but is not a venv; refusing to touch it"
        return 1
    fi
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" && "$PY" -m pip install --disable-pip-version-check -q \
        -r "$req" && "$PY" -c "$imports"; } >"$log" 2>&1; then
        tail -n 20 "$log"
        SETUP_ERROR="venv setup failed (see $log)"
        rm -rf "$VENV"
        return 1
    fi
    echo "$want" >"$stamp"
}

# npm_ci NAME SRC DEST MODULE...: node_modules of SRC's package-lock.json in
# DEST, reused while package.json, the lock file and the Node version are those
# of its stamp and every MODULE is there. The caller checks that node and npm
# exist. Two optional settings keep each script's old behaviour:
# NPM_CI_TIMEOUT bounds npm ci (chat.sh: 300 s; unset: no bound), and
# NPM_CI_SAYS_LOCK=1 names the lock file when npm ci fails (chat.sh installs two).
npm_ci() {
    local name=$1 src=$2 dest=$3 stamp want m log=$OUT/setup-$1.log
    shift 3
    local -a limit=()
    [[ -z ${NPM_CI_TIMEOUT:-} ]] || limit=(timeout "$NPM_CI_TIMEOUT")
    want=$(sha "$src/package.json" "$src/package-lock.json")-$(node --version)
    stamp=$dest/.wsx-$SUITE-stamp
    local have=1
    for m in "$@"; do [[ -d $dest/node_modules/$m ]] || have=0; done
    if ((have)) && [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
        note "$name: reusing $dest/node_modules"
        return 0
    fi
    can_install || { SETUP_ERROR="no node_modules in $dest (${PEERS_ENV}_NO_INSTALL=1)"; return 1; }
    note "$name: npm ci in $dest (log: $log)"
    mkdir -p "$dest"
    rm -rf "$dest/node_modules" "$stamp"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    # --ignore-scripts: nothing may download a browser (we use the system's Chromium).
    if ! (cd "$dest" && "${limit[@]}" npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1; then
        tail -n 20 "$log"
        SETUP_ERROR="npm ci${NPM_CI_SAYS_LOCK:+ of $src/package-lock.json} failed (see $log)"
        return 1
    fi
    echo "$want" >"$stamp"
}

# setup_chromium: $CHROMIUM, or Debian's chromium installed with apt-get when
# that is the default path and we may (root, installs allowed).
setup_chromium() {
    local log=$OUT/setup-chromium.log
    if [[ -x $CHROMIUM ]]; then
        note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1) ($CHROMIUM)"
        return 0
    fi
    if ! can_install || [[ $CHROMIUM != /usr/bin/chromium ]] || ((EUID != 0)) || ! command -v apt-get >/dev/null; then
        SETUP_ERROR="$CHROMIUM not found (install Debian's chromium package)"
        return 1
    fi
    note "chromium: apt-get install chromium (log: $log)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } >"$log" 2>&1 ||
        [[ ! -x $CHROMIUM ]]; then
        tail -n 20 "$log"
        SETUP_ERROR="apt-get install chromium failed (see $log)"
        return 1
    fi
    note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
}

# setup_wsx [HUB_FLAG WHAT_IS_MISSING]: $WSX_BIN, built when it is missing and
# the caller chose none. With HUB_FLAG, `wsx hub --help` must mention it
# (an older binary would fail every case in a less readable way); otherwise
# SETUP_ERROR says "$WSX_BIN has WHAT_IS_MISSING".
setup_wsx() {
    if [[ ! -x $WSX_BIN && -z $WSX_BIN_SET ]]; then
        note "wsx: $WSX_BIN missing; cargo build --release -p wsx-cli --bin wsx"
        cargo build --release -p wsx-cli --bin wsx || true
    fi
    if [[ ! -x $WSX_BIN ]]; then
        SETUP_ERROR="$WSX_BIN not found (cargo build --release -p wsx-cli --bin wsx, or set WSX_BIN)"
        return 1
    fi
    if (($#)); then
        # The help is read whole (not piped to `grep -q`, which would stop reading
        # at the match and, under pipefail, turn the writer's SIGPIPE into a "no").
        local help
        help=$("$WSX_BIN" hub --help 2>&1) || true
        if [[ $help != *"$1"* ]]; then
            SETUP_ERROR="$WSX_BIN has $2 (wsx hub --help: $(head -c 200 <<<"$help" | tr '\n' ' '))"
            return 1
        fi
    fi
    note "wsx: $WSX_BIN ($("$WSX_BIN" --version 2>&1 || true), built $(date -r "$WSX_BIN" '+%F %T'))"
}

# --------------------------------------------------------------- bookkeeping
PASSED=0
FAILED=0
report() { # report PASS|FAIL LINE
    echo "$1  $2"
    if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}
show() { # show FILE TITLE [LINES]: the tail of a non-empty log, without colours
    [[ -s $1 ]] || return 0
    echo "    --- $2 ($1) ---"
    tail -n "${3:-30}" "$1" | cut -c 1-400 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    | /'
}

# budget_spent WHYFILE: true, with the reason in WHYFILE, once the run has used
# its BUDGET seconds since START: the cases left then fail as "not run" rather
# than keep CI waiting.
budget_spent() {
    ((SECONDS - START > BUDGET)) || return 1
    echo "not run: the time budget of $BUDGET s is spent (${PEERS_ENV}_BUDGET)" >"$1"
}

# run_checked WHYFILE SETUP_ERROR COMMAND...: run one case, what it says in
# WHYFILE. It fails without running once the budget is spent, or when
# SETUP_ERROR is not empty (something it needs could not be installed).
run_checked() {
    local why=$1 err=$2
    shift 2
    if budget_spent "$why"; then return 1; fi
    if [[ -n $err ]]; then
        echo "$err" >"$why"
        return 1
    fi
    "$@" >"$why" 2>&1
}

# report_case RC LINE DIR PEER_TITLE SERVER_LOG SERVER_TITLE: PASS when RC is
# 0; otherwise FAIL followed by DIR/why, the commands in DIR/command and the
# tails of DIR/peer.err and DIR/SERVER_LOG, so that CI's log alone says why.
report_case() {
    local rc=$1 line=$2 dir=$3
    if ((rc == 0)); then
        report PASS "$line"
        return 0
    fi
    report FAIL "$line"
    sed 's/^/    /' "$dir/why"
    if [[ -f $dir/command ]]; then sed 's/^/    $ /' "$dir/command"; fi
    show "$dir/peer.err" "$4"
    show "$dir/$5" "$6"
}

# finish LOGS_WHERE: the last lines, which CI reads; exit 0 when nothing failed.
finish() {
    echo
    note "logs in $1 ($((SECONDS - START)) s)"
    echo "$SUITE: $PASSED passed, $FAILED failed"
    if ((FAILED == 0)); then exit 0; fi
    exit 1
}
