#!/usr/bin/env python3
"""Echo-server comparison: wsx vs tokio-tungstenite vs fastwebsockets, same run.

Each server (crates/wsx-bench, single-threaded runtime) is pinned to CPU 0 with taskset and
`wsx bench` (single-threaded, prebuilt masked frames) to CPU 1. For every scenario the
implementations run in a rotated order per round (interleaved), ROUNDS rounds of DURATION
seconds after a 1 s warm-up; the table shows medians and the ratio to wsx. Server CPU time
(utime+stime from /proc) per million messages is measured alongside, and memory per idle
connection as server RSS growth over 1000 connections that only did the handshake.

  scripts/bench_compare.py [--rounds 3] [--duration 5] [--quick]

It builds what it runs (cargo build --release -p wsx-bench -p wsx-cli), so the numbers are
never those of a stale binary; set ECHO_SERVERS and WSX_BIN to run other binaries instead.
"""
import argparse, json, os, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVERS = os.environ.get("ECHO_SERVERS", os.path.join(ROOT, "target/release/echo-servers"))
WSX = os.environ.get("WSX_BIN", os.path.join(ROOT, "target/release/wsx"))
IMPLS = ["wsx", "tungstenite", "fastwebsockets"]
SCENARIOS = [  # (label, connections, size, binary)
    ("100 x 20 B text", 100, 20, False),
    ("10 x 16 KiB binary", 10, 16384, True),
    ("2 x 1 MiB binary", 2, 1 << 20, True),
    ("1000 x 20 B text", 1000, 20, False),
]
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(impl):
    port = free_port()
    p = subprocess.Popen(["taskset", "-c", "0", SERVERS, impl, f"127.0.0.1:{port}"],
                         stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{impl} did not start")


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


def run_one(impl, conns, size, binary, duration):
    p, port = start(impl)
    try:
        cmd = ["taskset", "-c", "1", WSX, "bench", f"ws://127.0.0.1:{port}/", "-c", str(conns),
               "-s", str(size), "-d", str(duration), "--warmup", "1", "--json"]
        if binary:
            cmd.append("--binary")
        # CPU of the measured window only: sample after the warm-up, before the end.
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0 + 0.05)
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
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.duration = 1, 2
    if "ECHO_SERVERS" not in os.environ and "WSX_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsx-bench", "-p", "wsx-cli"],
                       cwd=ROOT, check=True)
    results = {}
    for label, conns, size, binary in SCENARIOS:
        for rnd in range(a.rounds):
            order = IMPLS[rnd % 3:] + IMPLS[:rnd % 3]
            for impl in order:
                r = run_one(impl, conns, size, binary, a.duration)
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

    print(f"\nmedians of {a.rounds} x {a.duration:g} s, server pinned to CPU 0, load to CPU 1\n")
    print("| scenario | metric | " + " | ".join(IMPLS) + " | wsx / best other |")
    print("|---|---|" + "---|" * len(IMPLS) + "---|")
    for label, *_ in SCENARIOS:
        rates = {i: med(label, i, "messages_per_second") for i in IMPLS}
        best = max(rates[i] for i in IMPLS[1:])
        print(f"| {label} | msg/s | " + " | ".join(f"{rates[i]:,.0f}" for i in IMPLS) + f" | {rates['wsx'] / best:.2f}x |")
        p50 = {i: med(label, i, ("latency_ms", "p50")) for i in IMPLS}
        p99 = {i: med(label, i, ("latency_ms", "p99")) for i in IMPLS}
        print(f"| | p50 / p99 ms | " + " | ".join(f"{p50[i]:.3f} / {p99[i]:.3f}" for i in IMPLS) + " | |")
        cpu = {i: med(label, i, "cpu_s_per_million") for i in IMPLS}
        bestc = min(cpu[i] for i in IMPLS[1:])
        print(f"| | server CPU s per 1M msgs | " + " | ".join(f"{cpu[i]:.2f}" for i in IMPLS) + f" | {cpu['wsx'] / bestc:.2f}x |")
    mem = {i: idle_memory(i) for i in IMPLS}
    print("| 1000 idle connections | RSS growth per connection | " + " | ".join(f"{mem[i] / 1024:.2f} KiB" for i in IMPLS) + " | |")


if __name__ == "__main__":
    main()
