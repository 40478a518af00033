#!/usr/bin/env bash
# End-to-end tests of several `wsx hub` nodes sharing one Redis, or one Redis
# Cluster (wsx hub --redis): real redis-server and wsx processes, the official
# Centrifugo JavaScript SDK (centrifuge 5.8.0, pinned in tests/hub) as the
# clients, fetch() for the server API. The scenarios are in tests/redis/nodes.mjs.
#
#   scripts/redis.sh              # every case (about 70 s)
#   scripts/redis.sh REGEX        # only the cases whose line matches REGEX (grep -E),
#                                 # e.g. 'kill' or '^redis' or '^cluster'
#   scripts/redis.sh --list       # print the cases, run nothing
#   scripts/redis.sh --install    # only install redis-server when it is missing
#
# Each case of the groups nodes and redis starts its own redis-server (127.0.0.1,
# a free port, AOF with appendfsync always, no RDB, its files in the case's
# folder) under a small supervisor that can start it again on the same port and
# dir; each case of the group cluster a Redis Cluster of three masters instead:
# three such redis-servers (each under its supervisor, its files in
# CASEDIR/redisI) with --cluster-enabled yes --cluster-config-file nodes-PORT.conf
# (and its cluster bus on another free port), joined by
#   redis-cli --cluster create 127.0.0.1:P1 127.0.0.1:P2 127.0.0.1:P3 --cluster-replicas 0 --cluster-yes
# and waited for until CLUSTER INFO says cluster_state:ok on all three (20 s at
# most). Then 2 or 3 nodes
#   wsx hub --name nodeN --redis URL --redis-prefix wsx-e2e-GROUP-SCENARIO
#           --history-size 1000 --history-ttl 300 --presence --join-leave
#           --allow-anonymous --allow-subscribe --allow-publish --presence-ttl 6 ...
# (URL: redis://127.0.0.1:RPORT, or redis+cluster://127.0.0.1:P1,127.0.0.1:P2,
# 127.0.0.1:P3, with which a node keeps a channel's keys on the master of its
# slot, publishes with SPUBLISH and keeps one pub/sub link per master, subscribed
# with SSUBSCRIBE) on free ports; it waits for GET /health -> 200, runs the
# scenario under a time limit, and stops everything (SIGTERM, SIGKILL 3 s later).
# The cluster cases use twelve channels, c0..c11, spread over the masters' slots,
# each checked on its own; the others one, c.
#
#   nodes  three      three nodes as one: publications through the three APIs in
#                     turn reach a client on each node, in order, once; presence,
#                     join and history shared
#   nodes  kill-9     node A killed with SIGKILL under a client that came through a
#                     TCP load balancer: it reconnects to node B and recovers every
#                     acknowledged publication; A's client leaves presence (ttl)
#   redis  restart    redis-server stopped (SIGTERM) and started again 1.5 s later
#                     during publishing: nothing acknowledged is lost or duplicated
#   redis  crash      the same with SIGKILL (appendfsync always)
#   redis  link-cut   CLIENT KILL TYPE pubsub, twice: subscribers see no gap and
#                     no disconnect; the link reconnects
#   redis  partition  node 1 in a network namespace loses its route to Redis for
#                     ~3 s (ip link set ... down) while node 2 publishes
#   cluster three     nodes three on the cluster, twelve channels; and every node's
#                     /metrics says wsx_hub_redis_link_up 3 (one link per master)
#   cluster kill-9    nodes kill-9 on the cluster, twelve channels
#   cluster link-cut  CLIENT KILL TYPE pubsub on each master in turn (0.5 s apart)
#                     while publishing: no gap, no duplicate, no disconnect; each
#                     node's link_reconnects_total grows by 3
#   cluster master-restart
#                     the master of c0 killed with SIGKILL and started again 1.5 s
#                     later on the same port and dir (its AOF, its nodes-PORT.conf)
#                     during publishing; cluster_state:ok again; nothing
#                     acknowledged lost or duplicated; link_up back to 3
#
# The partition case needs root and `ip netns`: it makes the namespace wsxr<PID>
# and two veth pairs (10.231.X.0/30 for Redis, 10.232.X.0/30 for the clients,
# X from the PID), deleted at the end. Without them it fails ("needs root and ip
# netns"), unless WSX_REDIS_NO_NETNS=1, which prints it as
#   PASS  redis   partition (skipped: WSX_REDIS_NO_NETNS=1)
#
# Installs what is missing: redis-server (Debian's redis-server, with apt-get,
# as root; the package's own service is kept from starting), and node_modules
# from tests/hub/package-lock.json in tests/hub's cache (the same one
# scripts/hub.sh uses, $WSX_HUB_CACHE or $HOME/.cache/wsx-hub), reused while the
# pinned files are unchanged. Builds target/release/wsx only when it is missing
# (and WSX_BIN is unset): rebuild it yourself after editing the code.
#
# Prints one line per case
#   PASS|FAIL  <group> <scenario>
# (followed by what the scenario measured, and for a failing case its failed
# checks and the logs' tails), and last
#   redis: N passed, M failed
# Exit status: 0 when M is 0, 1 otherwise (2 on a usage error).
#
# Environment:
#   WSX_BIN                  wsx binary (default: target/release/wsx)
#   WSX_REDIS_CACHE          node_modules (default: $WSX_HUB_CACHE, else
#                            $HOME/.cache/wsx-hub: tests/hub's)
#   WSX_REDIS_OUT            logs, one folder per case (default: target/redis)
#   WSX_REDIS_CASE_TIMEOUT   seconds per scenario (default: 40)
#   WSX_REDIS_BUDGET         seconds for the whole run; cases left when it is
#                            spent fail as "not run" (default: 400, ten cases
#                            of at most 40 s; a run takes about 70 s)
#   WSX_REDIS_NO_INSTALL=1   install nothing; missing tools fail their cases
#   WSX_REDIS_NO_NETNS=1     skip the partition case (printed as PASS ... skipped)
#   HUB_SDK_DEBUG=1          the JavaScript SDK's debug log into the case's peer.err
#
# See tests/redis/README.md.
set -euo pipefail

SUITE=redis
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$ROOT/scripts/lib/peers.sh"
resolve_wsx_bin
cd "$ROOT"
INSTALL_ONLY=0
if [[ ${1:-} == --install ]]; then
    INSTALL_ONLY=1
    shift
fi
parse_args "[--install | --list] [REGEX]" "$@"

TDIR=$ROOT/tests/redis
HDIR=$ROOT/tests/hub
# The SDK comes from tests/hub's pinned files and cache: nothing new to install.
WSX_REDIS_CACHE=${WSX_REDIS_CACHE:-${WSX_HUB_CACHE:-$HOME/.cache/wsx-hub}}
suite_dirs
CASE_TIMEOUT=${WSX_REDIS_CASE_TIMEOUT:-40}
BUDGET=${WSX_REDIS_BUDGET:-400}
venv_and_node_modules
export RUST_BACKTRACE=${RUST_BACKTRACE:-1} NO_COLOR=1
# Nothing of ours goes through an HTTP proxy: loopback, and the partition case's
# veth addresses (10.231.X.0/30, 10.232.X.0/30).
export NO_PROXY=127.0.0.1,localhost,10.231.0.0/16,10.232.0.0/16
export no_proxy=$NO_PROXY

# Fixed test credentials: each node lives for one case.
SECRET=wsx-redis-e2e-hmac-secret
KEY=wsx-redis-e2e-api-key
PRESENCE_TTL=6
NODE_FLAGS=(--token-hmac-secret "$SECRET" --api-key "$KEY" --allow-anonymous --allow-subscribe
    --allow-publish --history-size 1000 --history-ttl 300 --presence --join-leave
    --presence-ttl "$PRESENCE_TTL")

# ---------------------------------------------------------------- the cases
# One case a line: GROUP|SCENARIO|NODES|NEEDS (NEEDS: netns for the partition case,
# cluster for a three-master Redis Cluster instead of one redis-server).
# The channels of the cluster cases: twelve, spread over the three masters' slots.
CLUSTER_CHANNELS=c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,c10,c11
CASES=()
add() { CASES+=("$1|$2|$3|${4:-}"); }
add nodes three 3
add nodes kill-9 3
add redis restart 2
add redis crash 2
add redis link-cut 2
add redis partition 2 netns
add cluster three 3 cluster
add cluster kill-9 3 cluster
add cluster link-cut 2 cluster
add cluster master-restart 2 cluster

case_line() { # case_line SPEC -> "group scenario"
    local group name
    IFS='|' read -r group name _ <<<"$1"
    printf '%-7s %s' "$group" "$name"
}
select_cases
list_line() {
    local group name nodes needs
    IFS='|' read -r group name nodes needs <<<"$1"
    local on="one redis-server"
    [[ $needs != cluster ]] || on="a Redis Cluster of 3 masters; channels ${CLUSTER_CHANNELS%%,*}..${CLUSTER_CHANNELS##*,}"
    [[ $needs != netns ]] || on+="; root and ip netns"
    printf '%-7s %-14s [%s nodes on %s]\n' "$group" "$name" "$nodes" "$on"
}
if ((LIST)); then list_cases; fi
require_cases

# ------------------------------------------------------- process management
# start_bg, reap, stop_pid and the rest: scripts/lib/peers.sh. The EXIT trap also
# removes the partition case's namespace and veths (after the processes in it).
trap_cleanup
NS= NS_MADE=0 NS_LINKS=()
netns_down() {
    local l
    for l in "${NS_LINKS[@]}"; do ip link del "$l" 2>/dev/null || true; done
    NS_LINKS=()
    if ((NS_MADE)); then ip netns del "$NS" 2>/dev/null || true; fi
    NS_MADE=0
}
trap 'cleanup; netns_down' EXIT

# ------------------------------------------------------------------ setup
mkdir -p "$OUT" "$CACHE"

NODE_SETUP_ERROR= WSX_SETUP_ERROR= REDIS_SETUP_ERROR=
setup_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        NODE_SETUP_ERROR="node or npm not found"
        return 1
    fi
    # tests/hub's node_modules, under its stamp (.wsx-hub-stamp): first a check
    # that installs nothing and takes no lock, then, only when that fails, npm ci
    # under the cache's lock, as scripts/hub.sh would do it.
    if SUITE=hub WSX_REDIS_NO_INSTALL=1 npm_ci node "$HDIR" "$NODE_DIR" centrifuge ws >/dev/null 2>&1; then
        note "node: reusing $NODE_DIR/node_modules (tests/hub's)"
        return 0
    fi
    lock_cache
    SUITE=hub npm_ci node "$HDIR" "$NODE_DIR" centrifuge ws || { NODE_SETUP_ERROR=$SETUP_ERROR; return 1; }
}

# setup_redis: redis-server and redis-cli, or Debian's redis-server package when
# we may install (root, apt-get). A policy-rc.d of our own (only when there is
# none) keeps the package from starting its service; we start our own servers.
setup_redis() {
    local log=$OUT/setup-redis.log made=0 rc=0
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        note "redis-server: $(redis-server --version | cut -d' ' -f1-3) ($(command -v redis-server))"
        return 0
    fi
    if ! can_install || ((EUID != 0)) || ! command -v apt-get >/dev/null; then
        REDIS_SETUP_ERROR="redis-server not found (install Debian's redis-server package)"
        return 1
    fi
    note "redis-server: apt-get install redis-server (log: $log)"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# scripts/redis.sh: no service starts during its install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made=1
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >"$log" 2>&1 || rc=$?
    ((made == 0)) || rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)) || ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        tail -n 20 "$log"
        REDIS_SETUP_ERROR="apt-get install redis-server failed (see $log)"
        return 1
    fi
    note "redis-server: $(redis-server --version | cut -d' ' -f1-3)"
}

# --install: only make sure redis-server is there (scripts/test.sh, before the
# cargo tests, whose crates/wsx-hub/tests/redis.rs starts its own servers).
if ((INSTALL_ONLY)); then
    setup_redis || { note "$REDIS_SETUP_ERROR"; exit 1; }
    exit 0
fi

setup_wsx --redis "no --redis flag (a build without the Redis broker)" || WSX_SETUP_ERROR=$SETUP_ERROR
setup_redis || true
setup_node || true

# The budget counts from here: installing may take a while the first time.
START=$SECONDS

# ------------------------------------------------------------ self-checks
selfcheck() { # selfcheck NAME COMMAND...
    local log=$OUT/selfcheck-${1//[^A-Za-z0-9_.-]/_}.log
    if "${@:2}" >"$log" 2>&1; then
        report PASS "$(printf '%-7s %s' self "$1")"
    else
        report FAIL "$(printf '%-7s %s' self "$1")"
        show "$log" output
    fi
}
selfcheck "bash -n scripts/redis.sh" bash -n "$ROOT/scripts/redis.sh"
if [[ -z $NODE_SETUP_ERROR ]]; then
    selfcheck "node nodes.mjs --list" node "$TDIR/nodes.mjs" --list
else
    report FAIL "$(printf '%-7s %s' self "node setup: $NODE_SETUP_ERROR")"
fi

# ------------------------------------------------------------------ redis
# The supervisor of a case's redis-server (run with bash -c): it runs the
# server, writes its pid to DIR/redis.pid, and when the server exits while
# DIR/redis.restart exists (a scenario wrote it, then stopped the server) starts
# it again with the same arguments (same port, same dir, so the same AOF) that
# many seconds later. Otherwise it exits with the server's status. Stopped, it
# stops the server and waits for it (no zombie left behind). The server's log
# and the supervisor's lines go to stderr (redis.err).
# shellcheck disable=SC2016  # expanded by the bash -c that runs it
SUPERVISOR='dir=$1
shift
pid=
# Stopped (by scripts/redis.sh at the end of the case): stop the server and reap it.
trap '\''[[ -z $pid ]] || { kill -TERM "$pid" 2>/dev/null; wait "$pid"; }; exit 143'\'' TERM INT
while :; do
    "$@" >&2 &
    pid=$!
    echo "$pid" >"$dir/redis.pid"
    rc=0
    wait "$pid" || rc=$?
    echo "supervisor: redis-server (pid $pid) exited with status $rc at $(date +%T.%3N)" >&2
    [[ -f $dir/redis.restart ]] || exit "$rc"
    delay=$(<"$dir/redis.restart")
    rm -f "$dir/redis.restart"
    sleep "$delay"
    echo "supervisor: starting redis-server again at $(date +%T.%3N)" >&2
done'

redis_ok() { [[ $(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null) == PONG ]]; }

# start_redis CASEDIR BIND...: redis-server on a free port (sets RPORT; its
# supervisor's pid is appended to REDIS_PIDS).
start_redis() {
    local dir=$1 rc=0
    shift
    mkdir -p "$dir/redis"
    local -a cmd=(redis-server --port @PORT@ --bind "$@" --protected-mode no --save ''
        --appendonly yes --appendfsync always --dir "$dir/redis" --daemonize no)
    start_server $((CASE_TIMEOUT + 60)) 100 redis_ok "$dir/redis" "" \
        bash -c "$SUPERVISOR" redis-supervisor "$dir/redis" "${cmd[@]}" || rc=$?
    RPORT=$PORT
    REDIS_PIDS+=("$SERVER_PID")
    cmd=("${cmd[@]//@PORT@/$PORT}")
    echo "$(printf '%q ' "${cmd[@]}")  # under its supervisor" >>"$dir/command"
    case $rc in
    0) return 0 ;;
    1) echo "redis-server does not answer PING after 5 s" ;;
    *) echo "redis-server exited at start: $(tail -n 5 "$dir/redis.err" | tr '\n' ' ' | cut -c 1-400)" ;;
    esac
    return 1
}

# start_cluster CASEDIR: a Redis Cluster of three masters on 127.0.0.1: three
# redis-servers with --cluster-enabled yes, each under its supervisor (as above:
# it can start its server again on the same port and dir, so the same AOF and the
# same nodes-PORT.conf, the server's identity in the cluster), its files in
# CASEDIR/redisI, its log in CASEDIR/redisI.err, on a free port and its cluster
# bus on another (PORT+10000 may be past 65535); then redis-cli --cluster create
# (no replicas) and a wait of at most 20 s for cluster_state:ok on all three.
# Sets RPORTS and RDIRS; the supervisors' pids are appended to REDIS_PIDS.
start_cluster() {
    local dir=$1 i rc bus d p
    RPORTS=() RDIRS=()
    for i in 1 2 3; do
        d=$dir/redis$i
        mkdir -p "$d"
        bus=$(free_port)
        local -a cmd=(redis-server --port @PORT@ --bind 127.0.0.1 --protected-mode no
            --cluster-enabled yes --cluster-config-file nodes-@PORT@.conf --cluster-port "$bus"
            --save '' --appendonly yes --appendfsync always --dir "$d" --daemonize no)
        rc=0
        start_server $((CASE_TIMEOUT + 60)) 100 redis_ok "$d" "" \
            bash -c "$SUPERVISOR" redis-supervisor "$d" "${cmd[@]}" || rc=$?
        REDIS_PIDS+=("$SERVER_PID")
        cmd=("${cmd[@]//@PORT@/$PORT}")
        echo "$(printf '%q ' "${cmd[@]}")  # under its supervisor" >>"$dir/command"
        case $rc in
        0) RPORTS+=("$PORT") RDIRS+=("$d") ;;
        1) echo "redis-server $i does not answer PING after 5 s"; return 1 ;;
        *) echo "redis-server $i exited at start: $(tail -n 5 "$d.err" | tr '\n' ' ' | cut -c 1-400)"; return 1 ;;
        esac
    done
    local -a hosts=()
    for p in "${RPORTS[@]}"; do hosts+=("127.0.0.1:$p"); done
    cmd=(redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes)
    echo "${cmd[*]}" >>"$dir/command"
    if ! timeout 20 "${cmd[@]}" >"$dir/cluster-create.log" 2>&1; then
        echo "redis-cli --cluster create failed: $(tail -n 5 "$dir/cluster-create.log" | tr '\n' ' ' | cut -c 1-400)"
        return 1
    fi
    local t0=$SECONDS states st ok
    while :; do
        states= ok=1
        for p in "${RPORTS[@]}"; do
            st=$(redis-cli -h 127.0.0.1 -p "$p" CLUSTER INFO 2>&1 | tr -d '\r' | sed -n 's/^cluster_state://p')
            states+=" $p:${st:-?}"
            [[ $st == ok ]] || ok=0
        done
        ((ok == 0)) || break
        if ((SECONDS - t0 >= 20)); then
            echo "no cluster_state:ok on all three masters 20 s after redis-cli --cluster create (${states# })"
            return 1
        fi
        sleep 0.1
    done
    echo "cluster_state:ok on all three after $((SECONDS - t0)) s" >>"$dir/cluster-create.log"
}

# stop_redis: stop every redis-server (its supervisor) of the case.
stop_redis() {
    local p
    for p in "${REDIS_PIDS[@]}"; do stop_pid "$p"; done
    REDIS_PIDS=()
}

# ------------------------------------------------------------------ netns
# netns_up CASEDIR: the partition case's namespace and veths (sets NS, LINK, the
# host side of the Redis veth, RHOST, where redis-server also listens, and
# NS_ADDR, where node 1 listens inside the namespace).
netns_up() {
    local dir=$1 x i
    if ((EUID != 0)) || ! command -v ip >/dev/null; then
        echo "needs root and ip netns (uid $EUID, ip: $(command -v ip || echo missing)); WSX_REDIS_NO_NETNS=1 skips this case"
        return 1
    fi
    x=$(($$ % 250 + 2))
    for ((i = 0; i < 50; i++)); do
        ip -o addr show | grep -Eq "10\.23[12]\.$x\." || break
        x=$(((x + 7) % 250 + 2))
    done
    NS=wsxr$$
    if ! ip netns add "$NS" >"$dir/netns.log" 2>&1; then
        echo "needs root and ip netns: ip netns add $NS failed: $(tr '\n' ' ' <"$dir/netns.log")"
        return 1
    fi
    NS_MADE=1
    local rh=wxR$$h rn=wxR$$n ch=wxC$$h cn=wxC$$n
    if ! {
        ip link add "$rh" type veth peer name "$rn" && NS_LINKS+=("$rh") &&
            ip link add "$ch" type veth peer name "$cn" && NS_LINKS+=("$ch") &&
            ip link set "$rn" netns "$NS" && ip link set "$cn" netns "$NS" &&
            ip addr add "10.231.$x.1/30" dev "$rh" && ip link set "$rh" up &&
            ip addr add "10.232.$x.1/30" dev "$ch" && ip link set "$ch" up &&
            ip -n "$NS" link set lo up &&
            ip -n "$NS" addr add "10.231.$x.2/30" dev "$rn" && ip -n "$NS" link set "$rn" up &&
            ip -n "$NS" addr add "10.232.$x.2/30" dev "$cn" && ip -n "$NS" link set "$cn" up
    } >>"$dir/netns.log" 2>&1; then
        echo "needs root and ip netns: setting up the veths failed: $(tail -n 3 "$dir/netns.log" | tr '\n' ' ')"
        return 1
    fi
    LINK=$rh RHOST=10.231.$x.1 NS_ADDR=10.232.$x.2
    {
        echo "namespace $NS: $rn 10.231.$x.2/30 (Redis), $cn 10.232.$x.2/30 (clients)"
        echo "host: $rh 10.231.$x.1/30 (cut in the case), $ch 10.232.$x.1/30"
    } >>"$dir/netns.log"
}
health_ns() { # GET /health of the node inside the namespace
    HEALTH_CODE=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time 1 \
        "http://$NS_ADDR:$1/health" 2>/dev/null || true)
    [[ $HEALTH_CODE == 200 ]]
}

# ------------------------------------------------------------------ nodes
# start_node CASEDIR I REDIS_URL PREFIX [NETNS]: node I on a free port, on
# 127.0.0.1, or inside NETNS on NS_ADDR; waits for GET /health -> 200. Appends
# to NODE_URLS, NODE_PIDS (the timeout wrapper) and WSX_PIDS (wsx itself).
start_node() {
    local dir=$1 i=$2 url=$3 prefix=$4 ns=${5:-} rc=0 host=127.0.0.1 ready=health_ok
    local -a pre=()
    if [[ -n $ns ]]; then pre=(ip netns exec "$ns") host=$NS_ADDR ready=health_ns; fi
    start_server $((CASE_TIMEOUT + 30)) 100 "$ready" "$dir/node$i" "$dir/command" \
        "${pre[@]}" "$WSX_BIN" hub --listen "$host:@PORT@" --name "node$i" "${NODE_FLAGS[@]}" \
        --redis "$url" --redis-prefix "$prefix" || rc=$?
    NODE_PIDS+=("$SERVER_PID")
    case $rc in
    0)
        NODE_URLS+=("http://$host:$PORT")
        # timeout's child: wsx (ip netns exec execs it).
        WSX_PIDS+=("$(child_pid "$SERVER_PID")")
        return 0
        ;;
    1) echo "node$i does not answer GET /health with 200 after 5 s (last status: $HEALTH_CODE)" ;;
    *) echo "node$i exited at start: $(head -c 300 "$dir/node$i.err" | tr '\n' ' ')" ;;
    esac
    return 1
}

child_pid() { # child_pid PID: its first child (wsx, under timeout)
    local kids=
    kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || true
    [[ -n $kids ]] || kids=$(pgrep -P "$1" 2>/dev/null) || true
    echo "${kids%% *}" | head -n 1
}

# stop_nodes CASEDIR [KILLED]: stop every node; fail when one died during the case
# or panicked. Node KILLED (1-based) was killed on purpose: it must be gone.
stop_nodes() {
    local dir=$1 killed=${2:-0} i ok=0
    for ((i = 1; i <= ${#NODE_PIDS[@]}; i++)); do
        local pid=${NODE_PIDS[i - 1]}
        [[ -n $pid ]] || continue
        if ((i == killed)); then
            if wait_exit "$pid" 2; then :; else
                local st=$?
                if ((st == 124)); then
                    echo "node$i is still running (the scenario did not kill it)"
                    stop_pid "$pid"
                    ok=1
                fi
            fi
            if grep -q 'panicked' "$dir/node$i.err"; then
                echo "node$i panicked"
                ok=1
            fi
        else
            stop_server "$pid" "$dir/node$i.err" "node$i (wsx hub)" || ok=1
        fi
    done
    NODE_PIDS=()
    return "$ok"
}

# ------------------------------------------------------------------ cases
run_case() { # run_case DIR GROUP SCENARIO NODES NEEDS
    local dir=$1 group=$2 name=$3 n=$4 needs=$5 rc=0 ok=0 i killed=0
    local rhost=127.0.0.1 ns= url rdirs channels=c
    local -a binds=(127.0.0.1) cmd
    NODE_URLS=() NODE_PIDS=() WSX_PIDS=() REDIS_PIDS=() RPORTS=() RDIRS=()
    if [[ $needs == cluster ]]; then
        start_cluster "$dir" || { stop_redis; return 1; }
        url=redis+cluster://$(printf '127.0.0.1:%s,' "${RPORTS[@]}")
        url=${url%,}
        rdirs=$(IFS=,; echo "${RDIRS[*]}")
        channels=$CLUSTER_CHANNELS
    else
        if [[ $needs == netns ]]; then
            netns_up "$dir" || return 1
            binds+=("$RHOST") ns=$NS
        fi
        start_redis "$dir" "${binds[@]}" || { stop_redis; return 1; }
        url=redis://127.0.0.1:$RPORT rdirs=$dir/redis
    fi
    local prefix=wsx-e2e-$group-$name
    for ((i = 1; i <= n; i++)); do
        local nsi= u=$url
        if ((i == 1)) && [[ -n $ns ]]; then u=redis://$RHOST:$RPORT nsi=$ns; fi
        if ! start_node "$dir" "$i" "$u" "$prefix" ${nsi:+"$nsi"}; then
            stop_nodes "$dir" >/dev/null
            stop_redis
            return 1
        fi
    done
    [[ $name == kill-9 ]] && killed=1
    cmd=(node "$TDIR/nodes.mjs" "$name" --nodes "$(IFS=,; echo "${NODE_URLS[*]}")" --api-key "$KEY"
        --pids "$(IFS=,; echo "${WSX_PIDS[*]}")" --redis "$url" --redis-dir "$rdirs"
        --prefix "$prefix" --channels "$channels" --presence-ttl "$PRESENCE_TTL")
    [[ -z $ns ]] || cmd+=(--link "$LINK")
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
    stop_nodes "$dir" "$killed" || ok=1
    for ((i = 0; i < ${#REDIS_PIDS[@]}; i++)); do
        if ! kill -0 "${REDIS_PIDS[i]}" 2>/dev/null; then
            echo "redis-server$( ((${#REDIS_PIDS[@]} == 1)) || echo " $((i + 1))") (its supervisor) exited during the case"
            ok=1
        fi
    done
    stop_redis
    return "$ok"
}

# report_redis_case RC LINE DIR: PASS/FAIL, what the scenario measured (its
# stdout), and on failure why, the commands and the logs' tails.
report_redis_case() {
    local rc=$1 line=$2 dir=$3 f
    if ((rc == 0)); then report PASS "$line"; else report FAIL "$line"; fi
    [[ ! -s $dir/peer.out ]] || sed 's/^/    · /' "$dir/peer.out" | cut -c 1-300
    ((rc != 0)) || return 0
    sed 's/^/    /' "$dir/why"
    if [[ -f $dir/command ]]; then sed 's/^/    $ /' "$dir/command"; fi
    show "$dir/peer.err" "scenario log" 40
    for f in "$dir"/node*.err; do [[ -e $f ]] && show "$f" "$(basename "$f" .err) stderr" 15; done
    show "$dir/redis.err" "redis-server log" 15
    for f in "$dir"/redis[0-9].err; do [[ -e $f ]] && show "$f" "$(basename "$f" .err) log" 10; done
    show "$dir/cluster-create.log" "redis-cli --cluster create" 5
    show "$dir/netns.log" "namespace" 5
}

for c in "${SELECTED[@]}"; do
    IFS='|' read -r group name nodes needs <<<"$c"
    line=$(case_line "$c")
    casedir=$OUT/$group-$name
    rm -rf "$casedir"
    mkdir -p "$casedir"
    if [[ $needs == netns && ${WSX_REDIS_NO_NETNS:-0} == 1 ]]; then
        report PASS "$line (skipped: WSX_REDIS_NO_NETNS=1)"
        continue
    fi
    err=${WSX_SETUP_ERROR:-${REDIS_SETUP_ERROR:-$NODE_SETUP_ERROR}}
    rc=0
    run_checked "$casedir/why" "$err" run_case "$casedir" "$group" "$name" "$nodes" "$needs" || rc=$?
    netns_down # whatever the case left of its namespace, also after a failed setup
    report_redis_case "$rc" "$line" "$casedir"
done

finish "$OUT/<group>-<scenario>"
