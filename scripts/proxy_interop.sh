#!/usr/bin/env bash
# wsx connect through a real HTTP CONNECT proxy: Debian's tinyproxy on 127.0.0.1, without
# and with Basic authentication, in front of `wsx serve`.
#
#   scripts/proxy_interop.sh
#
# Installs tinyproxy with apt-get when it is missing (needs root). Uses $WSX_BIN or builds
# target/debug/wsx. Prints one PASS/FAIL line per case and last
#   proxy-interop: N passed, M failed
# Exit status 0 when M is 0, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v tinyproxy >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy >/dev/null
fi
if [[ -z "${WSX_BIN:-}" ]]; then
    cargo build -q -p wsx-cli
    WSX_BIN=target/debug/wsx
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

echo_port=$(free_port)
"$WSX_BIN" serve --listen "127.0.0.1:$echo_port" 2>"$work/serve.log" &
pids+=($!)
wait_port "$echo_port"

start_tinyproxy() { # name port [basic-auth line]
    local conf="$work/$1.conf"
    {
        echo "Port $2"
        echo "Listen 127.0.0.1"
        echo "Timeout 30"
        echo "Allow 127.0.0.1"
        echo "LogLevel Info"
        [[ $(id -u) == 0 ]] && echo "User nobody" && echo "Group nogroup"
        [[ -n "${3:-}" ]] && echo "$3"
    } >"$conf"
    tinyproxy -d -c "$conf" >"$work/$1.log" 2>&1 &
    pids+=($!)
    wait_port "$2"
}

plain_port=$(free_port)
auth_port=$(free_port)
start_tinyproxy plain "$plain_port"
start_tinyproxy auth "$auth_port" "BasicAuth alice s3cret"

passed=0 failed=0
check() { # name expect-exit expect-stdout args...
    local name=$1 want_code=$2 want_out=$3
    shift 3
    local out code=0
    out=$(printf 'hello through tinyproxy\n' | timeout 20 "$WSX_BIN" connect "$@" 2>"$work/err") || code=$?
    if [[ $code == "$want_code" && $out == "$want_out" ]]; then
        echo "PASS  $name"
        passed=$((passed + 1))
    else
        echo "FAIL  $name (exit $code, stdout: $out)"
        cat "$work/err"
        failed=$((failed + 1))
    fi
}

target="ws://127.0.0.1:$echo_port/"
check "tinyproxy CONNECT" 0 "hello through tinyproxy" --proxy "http://127.0.0.1:$plain_port" "$target"
check "tinyproxy CONNECT with Basic auth" 0 "hello through tinyproxy" \
    --proxy "http://alice:s3cret@127.0.0.1:$auth_port" "$target"
check "tinyproxy 407 without credentials" 2 "" --proxy "http://127.0.0.1:$auth_port" "$target"
check "tinyproxy 407 with wrong credentials" 2 "" --proxy "http://alice:nope@127.0.0.1:$auth_port" "$target"
check "tinyproxy refuses an unreachable target" 2 "" --proxy "http://127.0.0.1:$plain_port" "ws://127.0.0.1:1/"
grep -q "proxy http://127.0.0.1:$plain_port: the proxy refused the tunnel with HTTP 5" "$work/err" \
    && { echo "PASS  refusal names the proxy and the status"; passed=$((passed + 1)); } \
    || { echo "FAIL  refusal message"; cat "$work/err"; failed=$((failed + 1)); }

echo "proxy-interop: $passed passed, $failed failed"
[[ $failed == 0 ]]
