#!/usr/bin/env python3
"""Echo-server comparison: wsx vs tokio-tungstenite vs fastwebsockets, same run.

Each server (crates/wsx-bench, single-threaded runtime) is pinned to CPU 0 with taskset and
`wsx bench` (single-threaded, prebuilt masked frames) to CPU 1. `wsx-serve` is the shipped
binary, `wsx serve --threads 1 --no-deflate` (its accept loop and one worker thread, both on
CPU 0): the library's `Server` with caps, shutdown registry and logging, where `wsx` is the
bare `accept_with` loop the other two are measured with. For every scenario the
implementations run in a rotated order per round (interleaved), ROUNDS rounds of DURATION
seconds after a 1 s warm-up; the table shows medians and the ratio to wsx. Server CPU time
(utime+stime from /proc) per million messages is measured alongside, and memory per idle
connection as server RSS growth over 1000 connections that only did the handshake.

  scripts/bench_compare.py [--rounds 3] [--duration 5] [--warmup 1] [--quick]
                           [--impls wsx,tungstenite,fastwebsockets,wsx-serve]
                           [--scenarios REGEX] [--no-idle]

This machine's speed drifts by tens of percent over seconds (other tenants), so besides the
medians per implementation the table gives the paired ratio: in every round the ratio of
wsx to the best other implementation of that same round (runs seconds apart), then the
median and the quartiles of those ratios over the rounds. Many short rounds (e.g.
`--rounds 20 --duration 1 --warmup 0.3`) make the paired ratio the steadier figure.

It builds what it runs (cargo build --release -p wsx-bench -p wsx-cli), so the numbers are
never those of a stale binary; set ECHO_SERVERS and WSX_BIN to run other binaries instead.
"""
import argparse, json, os, re, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, start_pinned  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVERS = os.environ.get("ECHO_SERVERS", os.path.join(ROOT, "target/release/echo-servers"))
WSX = os.environ.get("WSX_BIN", os.path.join(ROOT, "target/release/wsx"))
IMPLS = ["wsx", "tungstenite", "fastwebsockets", "wsx-serve"]
# Not in the default set: wsx behind a hyper 1 server (`wsx::hyper`), and one axum app with
# wsx's extractor (`axum-wsx`) or axum's own WebSocketUpgrade (`axum-ws`, tokio-tungstenite).
EXTRA_IMPLS = ["wsx-hyper", "axum-wsx", "axum-ws"]
OURS = ("wsx", "wsx-serve", "wsx-hyper", "axum-wsx")
SCENARIOS = [  # (label, connections, size, binary, messages in flight per connection)
    ("100 x 20 B text", 100, 20, False, 1),
    ("10 x 16 KiB binary", 10, 16384, True, 1),
    ("2 x 1 MiB binary", 2, 1 << 20, True, 1),
    ("1000 x 20 B text", 1000, 20, False, 1),
    # Pipelined: a burst of 16 per connection, answered with one write by the best servers.
    ("100 x 20 B, 16 in flight", 100, 20, False, 16),
]
# uWebSockets, built beside the project (never committed): UWS_ECHO=/path/to/uws-echo, a
# server taking its port as the only argument (see BENCHMARKS.md).
UWS = os.environ.get("UWS_ECHO")
if UWS:
    IMPLS.append("uws")
TICK = os.sysconf("SC_CLK_TCK")


def start(impl):
    port = free_port()
    if impl == "wsx-serve":
        cmd = [WSX, "serve", "--listen", f"127.0.0.1:{port}", "--threads", "1", "--no-deflate"]
    elif impl == "uws":
        cmd = [UWS, str(port)]
    else:
        cmd = [SERVERS, impl, f"127.0.0.1:{port}"]
    return start_pinned(impl, cmd, port), port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def run_one(impl, conns, size, binary, in_flight, duration, warmup=1.0):
    p, port = start(impl)
    try:
        cmd = ["taskset", "-c", "1", WSX, "bench", f"ws://127.0.0.1:{port}/", "-c", str(conns),
               "-s", str(size), "--in-flight", str(in_flight), "-d", str(duration),
               "--warmup", str(warmup), "--json"]
        if binary:
            cmd.append("--binary")
        # CPU of the measured window only: sample after the warm-up, before the end.
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(warmup + 0.05)
        c0 = cpu_seconds(p.pid)
        t0 = time.time()
        out, err = bench.communicate(timeout=duration + 60)
        c1 = cpu_seconds(p.pid)
        t1 = time.time()
        if bench.returncode != 0:
            return {"error": (err or out).strip()[-300:]}
        r = json.loads(out)
        # Scale the CPU sample to the measured window.
        cpu = (c1 - c0) * min(1.0, r["seconds"] / max(t1 - t0, 1e-9))
        r["cpu_s_per_million"] = cpu / max(r["messages"], 1) * 1e6
        return r
    finally:
        p.kill()
        p.wait()


def idle_memory(impl, n=1000):
    p, port = start(impl)
    try:
        req = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        warm = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            s.recv(4096)
            warm.append(s)
        time.sleep(0.5)
        base = rss_kib(p.pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            socks.append(s)
        for s in socks:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        time.sleep(2.0)
        grown = rss_kib(p.pid) - base
        for s in socks + warm:
            s.close()
        return grown * 1024 / n
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma-separated subset of " + ",".join(IMPLS + EXTRA_IMPLS))
    ap.add_argument("--scenarios", default="", help="regex: only the scenarios whose label matches")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle-memory measurement")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.duration = 1, 2
    impls = [i for i in a.impls.split(",") if i]
    unknown = set(impls) - set(IMPLS + EXTRA_IMPLS)
    if unknown:
        ap.error(f"unknown implementations {sorted(unknown)}: choose from {IMPLS + EXTRA_IMPLS}")
    scenarios = [sc for sc in SCENARIOS if re.search(a.scenarios, sc[0])]
    if "ECHO_SERVERS" not in os.environ and "WSX_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsx-bench", "-p", "wsx-cli"],
                       cwd=ROOT, check=True)
    results = {}
    for label, conns, size, binary, in_flight in scenarios:
        for rnd in range(a.rounds):
            k = rnd % len(impls)
            order = impls[k:] + impls[:k]
            for impl in order:
                r = run_one(impl, conns, size, binary, in_flight, a.duration, a.warmup)
                results.setdefault((label, impl), []).append(r)
                if "error" in r:
                    print(f"  {label:20s} {impl:15s} ERROR {r['error']}", file=sys.stderr)
                else:
                    print(f"  {label:20s} {impl:15s} {r['messages_per_second']:>10.0f} msg/s  "
                          f"p50 {r['latency_ms']['p50']:.3f} ms  p99 {r['latency_ms']['p99']:.3f} ms  "
                          f"cpu {r['cpu_s_per_million']:.2f} s/M", file=sys.stderr)

    def med(label, impl, key):
        vals = [r[key] if not isinstance(key, tuple) else r[key[0]][key[1]]
                for r in results[(label, impl)] if "error" not in r]
        return statistics.median(vals) if vals else float("nan")

    def paired(label, ours, key, better):
        """Per round: ours against the best other of the same round; median [quartiles]."""
        ratios = []
        for rnd in range(a.rounds):
            mine = results[(label, ours)][rnd]
            theirs = [results[(label, o)][rnd] for o in others]
            theirs = [t[key] for t in theirs if "error" not in t]
            if "error" in mine or not theirs:
                continue
            ratios.append(mine[key] / better(theirs))
        if len(ratios) < 2:
            return f"{ratios[0]:.2f}x" if ratios else "n/a"
        q = statistics.quantiles(ratios, n=4)
        return f"{statistics.median(ratios):.2f}x [{q[0]:.2f}-{q[2]:.2f}]"

    others = [i for i in impls if i not in OURS]
    print(f"\nmedians of {a.rounds} x {a.duration:g} s, server pinned to CPU 0, load to CPU 1; "
          "paired: median [quartiles] of the per-round ratios\n")
    ours_in = [o for o in impls if o in OURS]
    ratio_head = " | ".join(f"{o} / best other | {o} / best other, paired" for o in ours_in) if others else ""
    print("| scenario | metric | " + " | ".join(impls) + " |" + (f" {ratio_head} |" if ratio_head else ""))
    print("|---|---|" + "---|" * len(impls) + ("---|" * 2 * len(ours_in) if ratio_head else ""))

    def row(label, metric, cells, ratios):
        line = f"| {label} | {metric} | " + " | ".join(cells) + " |"
        if ratio_head:
            line += " " + " | ".join(ratios) + " |"
        print(line)

    for label, *_ in scenarios:
        rates = {i: med(label, i, "messages_per_second") for i in impls}
        cpu = {i: med(label, i, "cpu_s_per_million") for i in impls}
        p50 = {i: med(label, i, ("latency_ms", "p50")) for i in impls}
        p99 = {i: med(label, i, ("latency_ms", "p99")) for i in impls}
        best = max(rates[i] for i in others) if others else float("nan")
        bestc = min(cpu[i] for i in others) if others else float("nan")
        ours = [o for o in impls if o in OURS]
        row(label, "msg/s", [f"{rates[i]:,.0f}" for i in impls],
            [f"{rates[o] / best:.2f}x | {paired(label, o, 'messages_per_second', max)}" for o in ours])
        row("", "p50 / p99 ms", [f"{p50[i]:.3f} / {p99[i]:.3f}" for i in impls], [" | " for _ in ours])
        row("", "server CPU s per 1M msgs", [f"{cpu[i]:.2f}" for i in impls],
            [f"{cpu[o] / bestc:.2f}x | {paired(label, o, 'cpu_s_per_million', min)}" for o in ours])
    if not a.no_idle:
        mem = {i: idle_memory(i) for i in impls}
        row("1000 idle connections", "RSS growth per connection", [f"{mem[i] / 1024:.2f} KiB ({mem[i]:.0f} B)" for i in impls],
            [" | " for o in impls if o in OURS])


if __name__ == "__main__":
    main()
