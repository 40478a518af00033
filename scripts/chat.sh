#!/usr/bin/env bash
# End-to-end test of the browser chat (examples/chat) on `wsx hub`, in headless
# Chromium driven by playwright-core (tests/chat/chat_test.js).
#
#   scripts/chat.sh            # run it
#   scripts/chat.sh --list     # print the cases, run nothing
#
# Serves a copy of examples/chat (without its node_modules; with the centrifuge
# SDK installed from examples/chat/package-lock.json) with
#   wsx hub --config examples/chat/hub.toml --static COPY --api-key KEY
# on 127.0.0.1 and a free port, waits until GET /health answers 200, and runs one
# scenario: two users (two browser contexts) in the same room, history on join,
# presence, live messages, one user offline while messages are published through
# the server API and by the other, then back online (recovery: every message
# once, in order), a reload, a change of room. Then stops the hub (SIGTERM,
# SIGKILL 3 s later).
#
# Installs what is missing: Debian's chromium when $CHROMIUM (default
# /usr/bin/chromium) is absent (apt-get; needs root); node_modules from
# tests/chat/package-lock.json (playwright-core) and from
# examples/chat/package-lock.json (centrifuge), both in $WSX_CHAT_CACHE (default:
# $HOME/.cache/wsx-chat), reused while the pinned files are unchanged. Builds
# target/release/wsx only when it is missing (and WSX_BIN is unset): rebuild it
# yourself after editing the code.
#
# Prints one line per case
#   PASS|FAIL  <case>
# (a failing case is followed by why, and the logs' tails), and last
#   chat: N passed, M failed
# Exit status: 0 when M is 0, 1 otherwise (2 on a usage error).
#
# Environment:
#   WSX_BIN                 wsx binary (default: target/release/wsx)
#   WSX_CHAT_CACHE          node_modules (default: $HOME/.cache/wsx-chat)
#   WSX_CHAT_OUT            logs and the served copy (default: target/chat)
#   WSX_CHAT_TIMEOUT        seconds for the scenario (default: 60; a passing
#                           run takes about 10 s)
#   WSX_CHAT_NO_INSTALL=1   install nothing; missing tools fail the run
#   CHROMIUM                browser binary (default: /usr/bin/chromium)
#
# See tests/chat/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A binary given by relative path is relative to the caller's directory.
if [[ -n ${WSX_BIN:-} && $WSX_BIN != /* ]]; then WSX_BIN=$PWD/$WSX_BIN; fi
cd "$ROOT"

usage() {
    echo "usage: $0 [--list]" >&2
    exit 2
}
LIST=0
while (($#)); do
    case $1 in
    --list) LIST=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
    esac
    shift
done

TDIR=$ROOT/tests/chat
APP=$ROOT/examples/chat
CACHE=${WSX_CHAT_CACHE:-$HOME/.cache/wsx-chat}
OUT=${WSX_CHAT_OUT:-$ROOT/target/chat}
[[ $OUT == /* ]] || OUT=$PWD/$OUT
TIMEOUT=${WSX_CHAT_TIMEOUT:-60}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
WSX_BIN_SET=${WSX_BIN:+1}
WSX_BIN=${WSX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsx}
[[ $WSX_BIN == /* ]] || WSX_BIN=$ROOT/$WSX_BIN
DRIVER_DIR=$CACHE/driver # playwright-core, for chat_test.js
APP_DIR=$CACHE/app       # centrifuge, served with the page
export CHROMIUM NO_COLOR=1 RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
# A fixed key: the hub lives for this run only, on 127.0.0.1.
KEY=wsx-chat-e2e-api-key

if ((LIST)); then
    node "$TDIR/chat_test.js" --list | sed 's/^/chat  /'
    echo "hub   wsx hub still running afterwards, no panic"
    exit 0
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
note() { echo "chat: $*"; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
can_install() { [[ ${WSX_CHAT_NO_INSTALL:-0} != 1 ]]; }

# Serialise concurrent runs that share the cache.
if command -v flock >/dev/null 2>&1; then
    exec 8>"$CACHE/.lock"
    flock -w 600 8 || note "warning: could not lock $CACHE/.lock; going on"
fi

SETUP_ERRORS=()

# npm_ci NAME SRC_DIR DEST_DIR MODULE: node_modules of SRC_DIR's package-lock.json
# in DEST_DIR, unless already there (MODULE is a package it must hold).
npm_ci() {
    local name=$1 src=$2 dest=$3 module=$4 stamp want log=$OUT/setup-$1.log
    want=$(sha "$src/package.json" "$src/package-lock.json")-$(node --version)
    stamp=$dest/.wsx-chat-stamp
    if [[ -d $dest/node_modules/$module && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        note "$name: reusing $dest/node_modules"
        return 0
    fi
    can_install || { SETUP_ERRORS+=("no node_modules in $dest (WSX_CHAT_NO_INSTALL=1)"); return 1; }
    note "$name: npm ci in $dest (log: $log)"
    mkdir -p "$dest"
    rm -rf "$dest/node_modules" "$stamp"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    # --ignore-scripts: nothing may download a browser (we use the system's Chromium).
    if ! (cd "$dest" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1; then
        tail -n 20 "$log"
        SETUP_ERRORS+=("npm ci of $src/package-lock.json failed (see $log)")
        return 1
    fi
    echo "$want" >"$stamp"
}

setup_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        SETUP_ERRORS+=("node or npm not found")
        return 1
    fi
    npm_ci driver "$TDIR" "$DRIVER_DIR" playwright-core || true
    npm_ci app "$APP" "$APP_DIR" centrifuge || true
}

setup_chromium() {
    local log=$OUT/setup-chromium.log
    if [[ -x $CHROMIUM ]]; then
        note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1) ($CHROMIUM)"
        return 0
    fi
    if ! can_install || [[ $CHROMIUM != /usr/bin/chromium ]] || ((EUID != 0)) || ! command -v apt-get >/dev/null; then
        SETUP_ERRORS+=("$CHROMIUM not found (install Debian's chromium package)")
        return 1
    fi
    note "chromium: apt-get install chromium (log: $log)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } >"$log" 2>&1 ||
        [[ ! -x $CHROMIUM ]]; then
        tail -n 20 "$log"
        SETUP_ERRORS+=("apt-get install chromium failed (see $log)")
        return 1
    fi
    note "chromium: $("$CHROMIUM" --version 2>/dev/null | tail -n 1)"
}

setup_wsx() {
    if [[ ! -x $WSX_BIN && -z $WSX_BIN_SET ]]; then
        note "wsx: $WSX_BIN missing; cargo build --release -p wsx-cli --bin wsx"
        cargo build --release -p wsx-cli --bin wsx || true
    fi
    if [[ ! -x $WSX_BIN ]]; then
        SETUP_ERRORS+=("$WSX_BIN not found (cargo build --release -p wsx-cli --bin wsx, or set WSX_BIN)")
        return 1
    fi
    # Read whole, not piped to grep -q (see scripts/interop.sh).
    local help
    help=$("$WSX_BIN" hub --help 2>&1) || true
    if [[ $help != *--static* ]]; then
        SETUP_ERRORS+=("$WSX_BIN has no 'hub' subcommand with --static (wsx hub --help: $(head -c 200 <<<"$help" | tr '\n' ' '))")
        return 1
    fi
    note "wsx: $WSX_BIN ($("$WSX_BIN" --version 2>&1 || true), built $(date -r "$WSX_BIN" '+%F %T'))"
}

setup_wsx || true
setup_node || true
setup_chromium || true

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
    tail -n "${3:-30}" "$1" | cut -c 1-400 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    | /'
}
finish() {
    echo
    note "logs in $OUT ($((SECONDS - START)) s)"
    echo "chat: $PASSED passed, $FAILED failed"
    if ((FAILED == 0)); then exit 0; fi
    exit 1
}

# ------------------------------------------------------------ self-checks
selfcheck() { # selfcheck NAME COMMAND...
    local log=$OUT/selfcheck-${1//[^A-Za-z0-9_.-]/_}.log
    if "${@:2}" >"$log" 2>&1; then
        report PASS "self  $1"
    else
        report FAIL "self  $1"
        show "$log" output
    fi
}
selfcheck "bash -n scripts/chat.sh" bash -n "$ROOT/scripts/chat.sh"
selfcheck "node --check examples/chat/chat.js" node --check "$APP/chat.js"
if ((${#SETUP_ERRORS[@]})); then
    for e in "${SETUP_ERRORS[@]}"; do report FAIL "self  setup: $e"; done
    finish
fi
export NODE_PATH=$DRIVER_DIR/node_modules
selfcheck "chat_test.js --help" node "$TDIR/chat_test.js" --help

# ----------------------------------------------------------- the scenario
# The page as `npm ci` in examples/chat would leave it, without touching the
# work tree: the example's files, and node_modules from the cache.
SITE=$OUT/site
rm -rf "$SITE" "$OUT/driver" "$OUT/hub.out" "$OUT/hub.err" "$OUT/command"
mkdir -p "$SITE"
tar -C "$APP" --exclude=./node_modules -cf - . | tar -C "$SITE" -xf -
cp -a "$APP_DIR/node_modules" "$SITE/node_modules"

HUB_PID=
start_hub() { # start_hub: wsx hub on a free port, GET /health -> 200 (sets PORT, HUB_PID)
    local i _ code=000
    for _ in 1 2 3; do
        PORT=$(free_port)
        echo "$WSX_BIN hub --config $APP/hub.toml --static $SITE --listen 127.0.0.1:$PORT --api-key $KEY" >>"$OUT/command"
        start_bg $((TIMEOUT + 60)) /dev/null "$OUT/hub.out" "$OUT/hub.err" \
            "$WSX_BIN" hub --config "$APP/hub.toml" --static "$SITE" --listen "127.0.0.1:$PORT" --api-key "$KEY"
        HUB_PID=$BG_PID
        for ((i = 0; i < 200; i++)); do
            code=$(health "$PORT")
            [[ $code == 200 ]] && return 0
            kill -0 "$HUB_PID" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$HUB_PID" 2>/dev/null; then
            echo "wsx hub does not answer GET /health with 200 after 10 s (last status: $code)"
            return 1
        fi
        reap "$HUB_PID" || true
        HUB_PID=
        # Retry only when the port was taken meanwhile.
        grep -qi 'in use' "$OUT/hub.err" || break
    done
    echo "wsx hub exited at start: $(head -c 300 "$OUT/hub.err" | tr '\n' ' ')"
    return 1
}

mapfile -t CASES < <(node "$TDIR/chat_test.js" --list | awk '{print $1}')
if ! start_hub >"$OUT/why" 2>&1; then
    for c in "${CASES[@]}"; do report FAIL "chat  $c"; done
    report FAIL "hub   wsx hub still running afterwards, no panic"
    sed 's/^/    /' "$OUT/why"
    show "$OUT/hub.err" "wsx hub stderr"
    if [[ -n $HUB_PID ]]; then stop_pid "$HUB_PID"; fi
    finish
fi

# The driver prints "PASS <case>" or "FAIL <case>: why" (indented lines follow).
cmd=(node "$TDIR/chat_test.js" --url "http://127.0.0.1:$PORT/" --api-key "$KEY"
    --timeout "$TIMEOUT" --out "$OUT/driver")
echo "${cmd[*]}" >>"$OUT/command"
rc=0
start_bg $((TIMEOUT + 45)) /dev/null "$OUT/driver.out" "$OUT/driver.err" "${cmd[@]}"
reap "$BG_PID" || rc=$?
any_fail=0
for c in "${CASES[@]}"; do
    line=$(grep -m 1 -E "^(PASS|FAIL) $c(:|$)" "$OUT/driver.out" || true)
    if [[ $line == "PASS $c" ]]; then
        report PASS "chat  $c"
        continue
    fi
    any_fail=1
    report FAIL "chat  $c"
    if [[ -n $line ]]; then
        # The reason: the rest of the line, and its indented continuation.
        awk -v c="$c" '
            index($0, "FAIL " c ":") == 1 { on = 1; sub("^FAIL " c ": *", ""); print "    " $0; next }
            on && /^    / { print; next }
            { on = 0 }' "$OUT/driver.out" | cut -c 1-1200
    elif ((rc == 124)); then
        echo "    not reported: chat_test.js timed out after $((TIMEOUT + 45)) s"
    else
        echo "    not reported: chat_test.js exited with status $rc"
    fi
done

why=
kill -0 "$HUB_PID" 2>/dev/null || why="wsx hub exited during the scenario"
stop_pid "$HUB_PID"
grep -q 'panicked' "$OUT/hub.err" && why="${why:+$why; }wsx hub panicked"
if [[ -z $why ]]; then
    report PASS "hub   wsx hub still running afterwards, no panic"
else
    any_fail=1
    report FAIL "hub   wsx hub still running afterwards, no panic"
    echo "    $why"
fi
if ((any_fail)); then
    sed 's/^/    $ /' "$OUT/command"
    show "$OUT/driver.err" "chat_test.js stderr" 20
    for f in "$OUT"/driver/*.log; do
        if [[ -e $f ]]; then show "$f" "$(basename "$f" .log)" 25; fi
    done
    show "$OUT/hub.err" "wsx hub stderr" 25
fi
finish
