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

SUITE=chat
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$ROOT/scripts/lib/peers.sh"
resolve_wsx_bin
cd "$ROOT"
parse_args "[--list]" "$@"

TDIR=$ROOT/tests/chat
APP=$ROOT/examples/chat
suite_dirs
TIMEOUT=${WSX_CHAT_TIMEOUT:-60}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
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
# start_bg, reap, stop_pid and the rest: scripts/lib/peers.sh.
trap_cleanup

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"
lock_cache

SETUP_ERRORS=()
# Two installs here: npm ci gets 300 s each, and its failure names the lock file.
NPM_CI_TIMEOUT=300 NPM_CI_SAYS_LOCK=1
setup_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        SETUP_ERRORS+=("node or npm not found")
        return 1
    fi
    npm_ci driver "$TDIR" "$DRIVER_DIR" playwright-core || SETUP_ERRORS+=("$SETUP_ERROR")
    npm_ci app "$APP" "$APP_DIR" centrifuge || SETUP_ERRORS+=("$SETUP_ERROR")
}

setup_wsx --static "no 'hub' subcommand with --static" || SETUP_ERRORS+=("$SETUP_ERROR")
setup_node || true
setup_chromium || SETUP_ERRORS+=("$SETUP_ERROR")

START=$SECONDS

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
    finish "$OUT"
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
    local rc=0
    start_server $((TIMEOUT + 60)) 200 health_ok "$OUT/hub" "$OUT/command" \
        "$WSX_BIN" hub --config "$APP/hub.toml" --static "$SITE" --listen "127.0.0.1:@PORT@" --api-key "$KEY" || rc=$?
    HUB_PID=$SERVER_PID
    case $rc in
    0) return 0 ;;
    1) echo "wsx hub does not answer GET /health with 200 after 10 s (last status: $HEALTH_CODE)" ;;
    *) echo "wsx hub exited at start: $(head -c 300 "$OUT/hub.err" | tr '\n' ' ')" ;;
    esac
    return 1
}

mapfile -t CASES < <(node "$TDIR/chat_test.js" --list | awk '{print $1}')
if ! start_hub >"$OUT/why" 2>&1; then
    for c in "${CASES[@]}"; do report FAIL "chat  $c"; done
    report FAIL "hub   wsx hub still running afterwards, no panic"
    sed 's/^/    /' "$OUT/why"
    show "$OUT/hub.err" "wsx hub stderr"
    if [[ -n $HUB_PID ]]; then stop_pid "$HUB_PID"; fi
    finish "$OUT"
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
finish "$OUT"
