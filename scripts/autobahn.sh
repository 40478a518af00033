#!/usr/bin/env bash
# Run the Autobahn|Testsuite against wsx and check the result.
#
#   scripts/autobahn.sh MODE GROUP
#
#   MODE   server  wstest -m fuzzingclient tests `wsx serve` (our server)
#          client  wstest -m fuzzingserver serves the cases to our client
#                  (examples/autobahn_client.rs)
#   GROUP  core         cases 1.* - 10.*  (everything except 12.* and 13.*)
#          compression  cases 12.* and 13.* (permessage-deflate)
#          all          all cases
#
# The binaries must already be built:
#   cargo build --release -p wsx-cli --bin wsx -p wsx --example autobahn_client
#
# Environment:
#   WSX_BIN               wsx binary          (default: target/release/wsx)
#   WSX_AUTOBAHN_CLIENT   client example      (default: target/release/examples/autobahn_client)
#   WSX_AUTOBAHN_UPDATE=1 record the result in autobahn/expected/MODE.json (checker --update)
#   WSX_AUTOBAHN_TIMEOUT  seconds for the suite run (default: 300 core, 1200 compression, 1800 all)
#   WSX_AUTOBAHN_VENV     venv with wstest (see scripts/autobahn-setup.sh)
#
# Output (all under target/, which is gitignored):
#   target/autobahn/MODE-GROUP/            wstest reports (index.json, index.html, per-case JSON)
#   target/autobahn/MODE-GROUP.spec.json   the wstest spec used
#   target/autobahn/MODE-GROUP.wstest.log  wstest output
#   target/autobahn/MODE-GROUP.wsx.log     output of `wsx serve` / the client example
#
# Exit status: the checker's (scripts/check_autobahn.py), or non-zero when the
# run itself failed (timeout, crash, client error).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Binaries given by relative path are relative to the caller's directory.
for var in WSX_BIN WSX_AUTOBAHN_CLIENT; do
    if [[ -n ${!var:-} && ${!var} != /* ]]; then
        printf -v "$var" '%s' "$PWD/${!var}"
    fi
done
cd "$ROOT"

usage() {
    echo "usage: $0 server|client core|compression|all" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
MODE=$1
GROUP=$2
case $MODE in server | client) ;; *) usage ;; esac

# Case selection, suite timeout, and how many cases autobahntestsuite 25.10.1
# has in the group (517 in total, 216 of them in 12.*/13.*). The count lets the
# checker notice a truncated report even when no expected file exists yet.
case $GROUP in
core)
    CASES='["*"]'
    EXCLUDE='["12.*", "13.*"]'
    DEFAULT_TIMEOUT=300
    EXPECT_CASES=301
    ;;
compression)
    CASES='["12.*", "13.*"]'
    EXCLUDE='[]'
    DEFAULT_TIMEOUT=1200
    EXPECT_CASES=216
    ;;
all)
    CASES='["*"]'
    EXCLUDE='[]'
    DEFAULT_TIMEOUT=1800
    EXPECT_CASES=517
    ;;
*) usage ;;
esac
SUITE_TIMEOUT=${WSX_AUTOBAHN_TIMEOUT:-$DEFAULT_TIMEOUT}

TARGET_DIR=${CARGO_TARGET_DIR:-target}
WSX_BIN=${WSX_BIN:-$TARGET_DIR/release/wsx}
WSX_AUTOBAHN_CLIENT=${WSX_AUTOBAHN_CLIENT:-$TARGET_DIR/release/examples/autobahn_client}
AGENT=wsx
NAME=$MODE-$GROUP
BASE=target/autobahn
OUT=$BASE/$NAME
SPEC=$BASE/$NAME.spec.json
WSTEST_LOG=$BASE/$NAME.wstest.log
WSX_LOG=$BASE/$NAME.wsx.log
EXPECTED=autobahn/expected/$MODE.json
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# wstest is Python 2: unbuffered output keeps its log current (shows the case
# it was running when a run times out).
export PYTHONUNBUFFERED=1

log() { echo "autobahn $MODE $GROUP: $*" >&2; }

if [[ $MODE == server ]]; then UNDER_TEST=$WSX_BIN; else UNDER_TEST=$WSX_AUTOBAHN_CLIENT; fi
if [[ ! -x $UNDER_TEST ]]; then
    log "ERROR: $UNDER_TEST not found or not executable; build it first:"
    log "  cargo build --release -p wsx-cli --bin wsx -p wsx --example autobahn_client"
    exit 1
fi

WSTEST=$("$ROOT/scripts/autobahn-setup.sh" | tail -n 1)

rm -rf "$OUT"
mkdir -p "$OUT"
rm -f "$WSTEST_LOG" "$WSX_LOG"

# A free TCP port on 127.0.0.1 (tiny race until the peer binds it; fine here).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for_port PORT PID SECONDS: wait until 127.0.0.1:PORT accepts a
# connection; fail early when PID (the process that should listen) exits.
wait_for_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "ERROR: the process that should listen on port $port exited"
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    log "ERROR: nothing listens on 127.0.0.1:$port after $3 s"
    return 1
}

# Processes we start run under `timeout` (which puts itself and the command in
# a new process group and signals that group, escalating to KILL), always in
# the background: a trapped INT/TERM interrupts our `wait` at once, whereas a
# foreground child would delay the trap until it finished. A PID leaves
# BG_PIDS as soon as it is reaped, so a recycled PID is never signalled.
BG_PIDS=()
BG_PID=
start_bg() { # start_bg SECONDS LOGFILE COMMAND...  (sets BG_PID)
    local secs=$1 logfile=$2
    shift 2
    timeout -k 10 "$secs" "$@" </dev/null >"$logfile" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}
reap() { # reap PID: wait for it to exit, forget it, return its status
    local pid=$1 rc=0 p keep=()
    wait "$pid" || rc=$?
    for p in "${BG_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
    return "$rc"
}
stop_pid() { # stop_pid PID: TERM, then after 5 s KILL its whole process group
    local pid=$1 _
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
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

# Ask the fuzzingserver to write its reports (what a client does at the end
# via /updateReports?agent=...). Used when our client died before doing so,
# so the cases it did run still show up. Minimal WebSocket handshake with the
# Python 3 standard library; waits for the server's close frame.
request_update_reports() {
    python3 - "$1" "$AGENT" <<'EOF'
import base64, os, socket, sys
port, agent = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=60)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /updateReports?agent=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n" % (agent, port, key)).encode())
data = b""
while True:  # read until the server closes (it sends a close frame after writing reports)
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    if b" 101 " not in data.split(b"\r\n", 1)[0]:
        sys.exit("updateReports handshake failed: %r" % data[:200])
    head, sep, frames = data.partition(b"\r\n\r\n")
    if sep and frames[:1] == b"\x88":  # close frame: reports are written
        s.sendall(b"\x88\x80\x00\x00\x00\x00")  # masked empty close
        break
s.close()
EOF
}

PORT=$(free_port)
URL=ws://127.0.0.1:$PORT

# Write the wstest spec (format from shared/README.md).
python3 - "$MODE" "$SPEC" "$OUT" "$URL" "$AGENT" "$CASES" "$EXCLUDE" <<'EOF'
import json, sys
mode, spec_path, outdir, url, agent, cases, exclude = sys.argv[1:]
spec = {"outdir": outdir, "cases": json.loads(cases),
        "exclude-cases": json.loads(exclude), "exclude-agent-cases": {}}
if mode == "server":
    spec["servers"] = [{"agent": agent, "url": url}]
else:
    spec.update({"url": url, "webport": 0})
with open(spec_path, "w") as f:
    json.dump(spec, f, indent=2, sort_keys=True)
    f.write("\n")
EOF

RUN_OK=1
if [[ $MODE == server ]]; then
    # --- our server, Autobahn's fuzzing client ---------------------------------
    log "starting $WSX_BIN serve --listen 127.0.0.1:$PORT (log: $WSX_LOG)"
    start_bg $((SUITE_TIMEOUT + 60)) "$WSX_LOG" "$WSX_BIN" serve --listen "127.0.0.1:$PORT"
    SERVER_PID=$BG_PID
    if wait_for_port "$PORT" "$SERVER_PID" 30; then
        log "running wstest -m fuzzingclient (timeout ${SUITE_TIMEOUT}s, log: $WSTEST_LOG)"
        start=$SECONDS
        rc=0
        start_bg "$SUITE_TIMEOUT" "$WSTEST_LOG" "$WSTEST" -m fuzzingclient -s "$SPEC"
        reap "$BG_PID" || rc=$?
        log "wstest finished in $((SECONDS - start)) s"
        if ((rc == 124)); then
            log "ERROR: wstest timed out after ${SUITE_TIMEOUT}s"
            RUN_OK=0
        elif ((rc != 0)); then
            log "ERROR: wstest exited with status $rc"
            RUN_OK=0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            src=0
            reap "$SERVER_PID" || src=$?
            log "ERROR: wsx serve exited during the run (status $src)"
            RUN_OK=0
        fi
    else
        RUN_OK=0
    fi
    cleanup
else
    # --- Autobahn's fuzzing server, our client ---------------------------------
    log "starting wstest -m fuzzingserver on $URL (log: $WSTEST_LOG)"
    # --webport 0: no embedded web server (its default port 8080 may be taken).
    start_bg $((SUITE_TIMEOUT + 60)) "$WSTEST_LOG" "$WSTEST" -m fuzzingserver --webport 0 -s "$SPEC"
    FUZZ_PID=$BG_PID
    if wait_for_port "$PORT" "$FUZZ_PID" 60; then
        log "running $WSX_AUTOBAHN_CLIENT $URL $AGENT (timeout ${SUITE_TIMEOUT}s, log: $WSX_LOG)"
        start=$SECONDS
        rc=0
        start_bg "$SUITE_TIMEOUT" "$WSX_LOG" "$WSX_AUTOBAHN_CLIENT" "$URL" "$AGENT"
        reap "$BG_PID" || rc=$?
        log "client finished in $((SECONDS - start)) s"
        if ((rc == 124)); then
            log "ERROR: the client timed out after ${SUITE_TIMEOUT}s"
            RUN_OK=0
        elif ((rc != 0)); then
            log "ERROR: the client exited with status $rc"
            RUN_OK=0
        fi
        if [[ ! -f $OUT/index.json ]] && kill -0 "$FUZZ_PID" 2>/dev/null; then
            log "no report yet; asking the fuzzingserver for one (/updateReports)"
            request_update_reports "$PORT" || log "WARNING: could not trigger /updateReports"
        fi
    else
        RUN_OK=0
    fi
    cleanup
fi

# --- check ---------------------------------------------------------------------
CHECK_ARGS=("$OUT/index.json" "$EXPECTED" --group "$GROUP" --mode "$MODE" --expect-cases "$EXPECT_CASES")
if [[ ${WSX_AUTOBAHN_UPDATE:-0} == 1 ]]; then
    CHECK_ARGS+=(--update)
fi
status=0
python3 "$ROOT/scripts/check_autobahn.py" "${CHECK_ARGS[@]}" || status=$?

if ((status != 0 || RUN_OK == 0)); then
    echo "---- last lines of $WSX_LOG ----"
    tail -n 40 "$WSX_LOG" 2>/dev/null || true
    echo "---- last lines of $WSTEST_LOG ----"
    # (without the one huge "Cases = [...]" line the fuzzingserver prints)
    grep -v '^Cases = ' "$WSTEST_LOG" 2>/dev/null | tail -n 20 || true
    echo "----"
    if [[ -f $OUT/index.json ]]; then
        echo "reports: $OUT/index.html, $OUT/index.json"
    fi
fi
if ((status == 0 && RUN_OK == 0)); then
    status=1
fi
exit "$status"
