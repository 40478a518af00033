#!/usr/bin/env python3
"""Fan-out comparison: `wsx serve --broadcast` against uWebSockets, a tokio-tungstenite hub and
Node `ws`, same run, interleaved.

Every server relays each message to every other client. `wsx bench --fanout` (pinned to
CPU 1) opens S subscriber connections that only read and check every message (in order,
byte-exact) and one publisher that keeps W publications in flight; a publication completes
when every subscriber has it. Each server runs pinned to CPU 0 on one thread:

  wsx-serve    wsx serve --broadcast --threads 1 --no-deflate
  wsx-hub      wsx hub --threads 1 --allow-anonymous --allow-subscribe --allow-publish: the
               connections speak Centrifugo's client protocol (`wsx bench --fanout --hub`):
               each publication is a `publish` command, each delivery a `pub` push around
               the payload (about 60 bytes more), every connection subscribed to one channel
  tungstenite  crates/wsx-bench `echo-servers tungstenite-broadcast`: tokio-tungstenite on a
               tokio::sync::broadcast ring, feeding everything queued, then flushing once
  node-ws      scripts/bench_node_broadcast.js (needs NODE_PATH with `ws`; the interop
               tests' cache, $HOME/.cache/wsx-interop/node/node_modules, is used if present)
  uws          uWebSockets' topics (subscribe on open, publish on message), built beside the
               project, never committed: UWS_BROADCAST=/path/to/uws-broadcast (see
               BENCHMARKS.md for the few lines of it)

For each scenario the implementations run in a rotated order per round, ROUNDS rounds of
DURATION seconds after a warm-up; the table gives medians, and the paired ratio of wsx to
each other implementation (per round, then the median). Server CPU per million deliveries
and RSS come from /proc (`wsx bench --server-pid`). With --syscalls, one extra run per
implementation and scenario counts the server's send system calls (sendto, sendmsg, write,
writev) with `perf stat`, switched on and off at the bench's measured window, per delivery.

  scripts/bench_fanout.py [--rounds 3] [--duration 3] [--warmup 1] [--impls ...]
                          [--scenarios REGEX] [--syscalls] [--base IMPL]

The paired ratios are of --base (default wsx-serve) to each other implementation.

It builds what it runs (cargo build --release -p wsx-bench -p wsx-cli) unless ECHO_SERVERS
or WSX_BIN name other binaries.
"""
import argparse, json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, start_pinned  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVERS = os.environ.get("ECHO_SERVERS", os.path.join(ROOT, "target/release/echo-servers"))
WSX = os.environ.get("WSX_BIN", os.path.join(ROOT, "target/release/wsx"))
UWS = os.environ.get("UWS_BROADCAST")
NODE_PATH = os.environ.get("NODE_PATH") or os.path.expanduser("~/.cache/wsx-interop/node/node_modules")
SCENARIOS = [  # (label, subscribers, size, publications in flight)
    ("1000 subscribers x 100 B, 4 in flight", 1000, 100, 4),
    ("100 subscribers x 1 KiB, 16 in flight", 100, 1024, 16),
    ("10,000 subscribers x 100 B, 1 in flight", 10000, 100, 1),
]
SEND_CALLS = ["sendto", "sendmsg", "write", "writev"]


def impls_available():
    out = ["wsx-serve", "wsx-hub", "tungstenite"]
    if os.path.isdir(os.path.join(NODE_PATH, "ws")):
        out.append("node-ws")
    if UWS:
        out.append("uws")
    return out


def start(impl):
    port = free_port()
    env = dict(os.environ)
    if impl == "wsx-serve":
        cmd = [WSX, "serve", "--broadcast", "--listen", f"127.0.0.1:{port}", "--threads", "1",
               "--no-deflate", "--log-format", "json"]
        env["RUST_LOG"] = "warn"
    elif impl == "wsx-hub":
        cmd = [WSX, "--log-format", "json", "hub", "--listen", f"127.0.0.1:{port}", "--threads",
               "1", "--allow-anonymous", "--allow-subscribe", "--allow-publish"]
        env["RUST_LOG"] = "warn"
    elif impl == "tungstenite":
        cmd = [SERVERS, "tungstenite-broadcast", f"127.0.0.1:{port}"]
    elif impl == "node-ws":
        cmd = ["node", os.path.join(ROOT, "scripts/bench_node_broadcast.js"), str(port)]
        env["NODE_PATH"] = NODE_PATH
    elif impl == "uws":
        cmd = [UWS, str(port)]
    else:
        raise ValueError(impl)
    return start_pinned(impl, cmd, port, env), port


def run_one(impl, subs, size, in_flight, duration, warmup, syscalls=False):
    p, port = start(impl)
    perf = None
    try:
        url = f"ws://127.0.0.1:{port}/"
        hub = []
        if impl == "wsx-hub":
            url += "connection/websocket"
            hub = ["--hub", "bench"]
        cmd = ["taskset", "-c", "1", WSX, "bench", "--fanout", url, *hub,
               "-c", str(subs), "-s", str(size), "--in-flight", str(in_flight),
               "-d", str(duration), "--warmup", str(warmup), "--json", "--server-pid", str(p.pid)]
        env = dict(os.environ)
        if syscalls:
            # perf counts exactly over the bench's measured window: it starts with its events
            # off and is told "enable" / "disable" through a FIFO when the bench logs the
            # window's start and end.
            fifos = tempfile.mkdtemp()
            ctl, ack = os.path.join(fifos, "ctl"), os.path.join(fifos, "ack")
            os.mkfifo(ctl)
            os.mkfifo(ack)
            ctl_fd, ack_fd = os.open(ctl, os.O_RDWR), os.open(ack, os.O_RDWR)
            events = ",".join(f"syscalls:sys_enter_{c}" for c in SEND_CALLS)
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-D", "-1", "--control",
                                     f"fifo:{ctl},{ack}", "-e", events, "-p", str(p.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            env["RUST_LOG"] = "warn,wsx::fanout=debug"
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
        err = ""
        if perf:
            for line in bench.stderr:
                err += line
                for marker, command in (("measured window starts", b"enable\n"),
                                        ("measured window ends", b"disable\n")):
                    if marker in line:
                        os.write(ctl_fd, command)
                        os.read(ack_fd, 16)
        out, rest = bench.communicate(timeout=duration + warmup + 120)
        err += rest or ""
        sends = None
        if perf:
            perf.send_signal(2)
            _, perr = perf.communicate(timeout=10)
            perf = None
            os.close(ctl_fd)
            os.close(ack_fd)
            shutil.rmtree(fifos, ignore_errors=True)
            sends = 0
            for line in perr.splitlines():
                f = line.split(",")
                if len(f) > 2 and f[0].strip().isdigit():
                    sends += int(f[0])
        if bench.returncode != 0 and not out.strip():
            return {"error": (err or out).strip()[-300:]}
        r = json.loads(out)
        if r.get("errors") or r.get("mismatches"):
            return {"error": f"errors {r.get('errors')}, mismatches {r.get('mismatches')}"}
        if sends is not None:
            r["sends"] = sends
        return r
    finally:
        if perf:
            perf.kill()
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--impls", default=",".join(impls_available()))
    ap.add_argument("--scenarios", default="", help="regex: only the scenarios whose label matches")
    ap.add_argument("--syscalls", action="store_true", help="also count send syscalls per delivery")
    ap.add_argument("--base", default="wsx-serve", help="the implementation the ratios are of")
    a = ap.parse_args()
    impls = [i for i in a.impls.split(",") if i]
    scenarios = [sc for sc in SCENARIOS if re.search(a.scenarios, sc[0])]
    if "ECHO_SERVERS" not in os.environ and "WSX_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsx-bench", "-p", "wsx-cli"],
                       cwd=ROOT, check=True)
    results = {}
    for label, subs, size, in_flight in scenarios:
        for rnd in range(a.rounds):
            k = rnd % len(impls)
            for impl in impls[k:] + impls[:k]:
                r = run_one(impl, subs, size, in_flight, a.duration, a.warmup)
                results.setdefault((label, impl), []).append(r)
                if "error" in r:
                    print(f"  {label:42s} {impl:12s} ERROR {r['error']}", file=sys.stderr)
                else:
                    print(f"  {label:42s} {impl:12s} {r['deliveries_per_second']:>11,.0f} deliveries/s  "
                          f"p50 {r['latency_ms']['p50']:.3f} p99 {r['latency_ms']['p99']:.3f} ms  "
                          f"cpu {r.get('server_cpu_s_per_million') or float('nan'):.2f} s/M  "
                          f"rss {r.get('server_rss_kib') or 0:,} KiB", file=sys.stderr)
        if a.syscalls:
            for impl in impls:
                r = run_one(impl, subs, size, in_flight, a.duration, a.warmup, syscalls=True)
                if "sends" in r and r.get("deliveries"):
                    rate = r["sends"] / r["deliveries"]
                    results[(label, impl, "sends")] = rate
                    print(f"  {label:42s} {impl:12s} {rate:.3f} send calls per delivery",
                          file=sys.stderr)

    def med(label, impl, key):
        vals = []
        for r in results.get((label, impl), []):
            if "error" in r:
                continue
            v = r[key[0]][key[1]] if isinstance(key, tuple) else r.get(key)
            if v is not None:
                vals.append(v)
        return statistics.median(vals) if vals else float("nan")

    def paired(label, other, key):
        ratios = []
        for mine, theirs in zip(results[(label, a.base)], results[(label, other)]):
            if "error" in mine or "error" in theirs or not mine.get(key) or not theirs.get(key):
                continue
            ratios.append(mine[key] / theirs[key])
        return f"{statistics.median(ratios):.2f}x" if ratios else "n/a"

    print(f"\nmedians of {a.rounds} x {a.duration:g} s, server pinned to CPU 0, load to CPU 1; "
          f"{a.base} / other: median of the per-round ratios\n")
    others = [i for i in impls if i != a.base]
    print("| scenario | metric | " + " | ".join(impls) + " | " +
          " | ".join(f"{a.base} / {o}" for o in others) + " |")
    print("|---|---|" + "---|" * (len(impls) + len(others)))
    for label, *_ in scenarios:
        first = [label]

        def row(metric, fmt, key):
            cells = [fmt(med(label, i, key)) for i in impls]
            ratios = [paired(label, o, key) if a.base in impls and not isinstance(key, tuple)
                      else "" for o in others]
            shown = first.pop() if first else ""
            print(f"| {shown} | {metric} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")

        row("deliveries/s", lambda v: f"{v:,.0f}", "deliveries_per_second")
        row("p50 ms", lambda v: f"{v:.3f}", ("latency_ms", "p50"))
        row("p99 ms", lambda v: f"{v:.3f}", ("latency_ms", "p99"))
        row("server CPU s per 1M deliveries", lambda v: f"{v:.2f}", "server_cpu_s_per_million")
        row("server RSS KiB", lambda v: f"{v:,.0f}", "server_rss_kib")
        if a.syscalls:
            cells = [f"{results.get((label, i, 'sends'), float('nan')):.3f}" for i in impls]
            print("| | send syscalls per delivery | " + " | ".join(cells) + " |" + " |" * len(others))

if __name__ == "__main__":
    main()
