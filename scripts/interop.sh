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

SUITE=interop
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$ROOT/scripts/lib/peers.sh"
resolve_wsx_bin
cd "$ROOT"
parse_args "[--list] [REGEX]" "$@"

IDIR=$ROOT/tests/interop
suite_dirs
CASE_TIMEOUT=${WSX_INTEROP_CASE_TIMEOUT:-30}
BUDGET=${WSX_INTEROP_BUDGET:-300}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
venv_and_node_modules
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
select_cases
list_line() { # list_line SPEC: the case and the arguments of both sides
    local wargs pargs
    IFS='|' read -r _ _ _ wargs pargs <<<"$1"
    echo "$(case_line "$1")    [wsx: ${wargs:-(defaults)}] [peer: $pargs]"
}
if ((LIST)); then list_cases; fi
require_cases

# ------------------------------------------------------- process management
# start_bg, reap, stop_pid and the rest: scripts/lib/peers.sh.
trap_cleanup

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"
rm -rf "$OUT/cases"
mkdir -p "$OUT/cases"
START=$SECONDS
lock_cache

PY_SETUP_ERROR= NODE_SETUP_ERROR= BROWSER_SETUP_ERROR= WSX_SETUP_ERROR=
setup_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        NODE_SETUP_ERROR="node or npm not found"
        return 1
    fi
    npm_ci node "$IDIR" "$NODE_DIR" ws || { NODE_SETUP_ERROR=$SETUP_ERROR; return 1; }
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
setup_wsx || WSX_SETUP_ERROR=$SETUP_ERROR
((NEED_PY)) && { setup_venv "$IDIR/requirements.txt" 'import websockets' || PY_SETUP_ERROR=$SETUP_ERROR; }
((NEED_NODE)) && { setup_node || true; }
((NEED_BROWSER)) && { setup_chromium || BROWSER_SETUP_ERROR=$SETUP_ERROR; }

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

# Unlike the library's show: a header even for an empty log, and 40 lines.
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
    local dir=$1 rc=0
    shift
    start_server $((CASE_TIMEOUT + 30)) 100 port_open "$dir/wsx" "" \
        "$WSX_BIN" serve --listen "127.0.0.1:@PORT@" "$@" || rc=$?
    WSX_PID=$SERVER_PID
    case $rc in
    0) return 0 ;;
    1) echo "wsx serve does not listen on 127.0.0.1:$PORT after 5 s" ;;
    *) echo "wsx serve exited at start (${*:-no options}): $(head -c 300 "$dir/wsx.err" | tr '\n' ' ')" ;;
    esac
    return 1
}

# stop_wsx_serve DIR: stop wsx serve; fail when it died during the case or panicked.
stop_wsx_serve() { stop_server "$WSX_PID" "$1/wsx.err" "wsx serve"; }

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
    # What the case needs that could not be set up, the first of them.
    err=$WSX_SETUP_ERROR
    case $peer in
    python) err=${err:-$PY_SETUP_ERROR} ;;
    node) err=${err:-$NODE_SETUP_ERROR} ;;
    chromium) err=${err:-${NODE_SETUP_ERROR:-$BROWSER_SETUP_ERROR}} ;;
    esac
    run=run_server_case
    [[ $dir == client* ]] && run=run_client_case
    rc=0
    run_checked "$casedir/why" "$err" "$run" "$casedir" "$peer" "$wargs" "$pargs" || rc=$?
    report_case "$rc" "$line" "$casedir" "$peer stderr" wsx.err "wsx stderr"
done

finish "$OUT/cases"
