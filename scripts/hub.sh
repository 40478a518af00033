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

SUITE=hub
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$ROOT/scripts/lib/peers.sh"
resolve_wsx_bin
cd "$ROOT"
parse_args "[--list] [REGEX]" "$@"

HDIR=$ROOT/tests/hub
suite_dirs
CASE_TIMEOUT=${WSX_HUB_CASE_TIMEOUT:-40}
BUDGET=${WSX_HUB_BUDGET:-170}
venv_and_node_modules
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
select_cases
list_line() { # list_line SPEC: the case with its hub flags
    local group name flags prep
    IFS='|' read -r group name flags prep <<<"$1"
    printf '%-7s %-19s [wsx hub %s]%s\n' "$group" "$name" "$flags" "${prep:+ [$prep]}"
}
if ((LIST)); then list_cases; fi
require_cases

# ------------------------------------------------------- process management
# start_bg, reap, stop_pid and the rest: scripts/lib/peers.sh.
trap_cleanup

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"
lock_cache

PY_SETUP_ERROR= NODE_SETUP_ERROR= WSX_SETUP_ERROR=
setup_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        NODE_SETUP_ERROR="node or npm not found"
        return 1
    fi
    npm_ci node "$HDIR" "$NODE_DIR" centrifuge ws || { NODE_SETUP_ERROR=$SETUP_ERROR; return 1; }
}

NEED_PY=0 NEED_NODE=0
for c in "${SELECTED[@]}"; do
    if [[ ${c%%|*} == node ]]; then NEED_NODE=1; else NEED_PY=1; fi
done
setup_wsx --listen "no working 'hub' subcommand" || WSX_SETUP_ERROR=$SETUP_ERROR
# The key pairs of the tokens cases are made with the venv's cryptography.
((NEED_PY)) && { setup_venv "$HDIR/requirements.txt" 'import centrifuge, cent, jwt, cryptography' ||
    PY_SETUP_ERROR=$SETUP_ERROR; }
((NEED_NODE)) && { setup_node || true; }

# The budget counts from here: installing the SDKs may take a while the first time.
START=$SECONDS

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
    local dir=$1 rc=0
    shift
    start_server $((CASE_TIMEOUT + 30)) 100 health_ok "$dir/hub" "$dir/command" \
        "$WSX_BIN" hub --listen "127.0.0.1:@PORT@" "$@" || rc=$?
    HUB_PID=$SERVER_PID
    case $rc in
    0) return 0 ;;
    1) echo "wsx hub does not answer GET /health with 200 after 5 s (last status: $HEALTH_CODE)" ;;
    *) echo "wsx hub exited at start: $(head -c 300 "$dir/hub.err" | tr '\n' ' ')" ;;
    esac
    return 1
}

# stop_hub DIR: stop the hub; fail when it died during the case or panicked.
stop_hub() { stop_server "$HUB_PID" "$1/hub.err" "wsx hub"; }

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
    # What the case needs that could not be set up, the first of them.
    err=$WSX_SETUP_ERROR
    if [[ $group == node ]]; then err=${err:-$NODE_SETUP_ERROR}; else err=${err:-$PY_SETUP_ERROR}; fi
    rc=0
    run_checked "$casedir/why" "$err" run_case "$casedir" "$group" "$name" "$flags" "$prep" || rc=$?
    report_case "$rc" "$line" "$casedir" "scenario log" hub.err "wsx hub stderr"
done

finish "$OUT/<group>-<scenario>"
