#!/usr/bin/env python3
"""The hub across nodes on Redis: throughput, Redis CPU per publication, and the latency a
hop through Redis adds, against the same load on one node in memory, same run, interleaved.

Every server process (redis-server and the `wsx hub` nodes, each --threads 1) runs pinned
to CPU 0; `wsx bench --fanout --hub` runs pinned to CPU 1. So three nodes and Redis share
one core, which is the honest limit of this 2-core machine (Centrifugo's published Redis
figures come from many cores: see BENCHMARKS.md).

Scenarios (SUBSCRIBERS x SIZE, publications in flight):
  hop        100 x 100 B, 1 in flight: publish to last delivery. memory: one node;
             redis: the publisher on node A, every subscriber on node B.
  publish    1 x 100 B, 64 in flight: publications per second end to end (memory: one
             node; redis: publisher on A, subscriber on B).
  fanout     3000 x 100 B, 4 in flight. memory: 3000 subscribers on one node; redis: 1000
             on each of three nodes, the publisher on the first.

For each round the two configurations run in turn (the order alternates); the table gives
medians over rounds and the paired ratio redis/memory. CPU seconds of each process are read
from /proc at the bench's measured window's start and end (its debug log marks them), so
connection set-up is not counted. Channels keep history (100, 300 s), as with recovery.

  scripts/bench_redis.py [--rounds 3] [--duration 3] [--warmup 1] [--scenarios REGEX]

Needs redis-server on the PATH and target/release/wsx (WSX_BIN to use another).
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, start_pinned  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WSX = os.environ.get("WSX_BIN", os.path.join(ROOT, "target/release/wsx"))
TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = [  # (name, subscribers, size, in flight, nodes with redis)
    ("hop", 100, 100, 1, 2),
    ("publish", 1, 100, 64, 2),
    ("fanout", 3000, 100, 4, 3),
]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def hub(port, redis_url=None):
    cmd = [WSX, "hub", "--listen", f"127.0.0.1:{port}", "--threads", "1",
           "--allow-anonymous", "--allow-subscribe", "--allow-publish",
           "--history-size", "100", "--history-ttl", "300",
           "--max-connections", "20000"]
    if redis_url:
        cmd += ["--redis", redis_url]
    env = dict(os.environ, RUST_LOG="warn")
    return start_pinned("wsx hub", cmd, port, env=env)


def run(config, subs, size, in_flight, nodes, duration, warmup):
    """One bench run; returns its report with the CPU seconds of each server process."""
    procs = {}
    tmp = tempfile.mkdtemp()
    try:
        if config == "redis":
            rport = free_port()
            procs["redis"] = start_pinned("redis-server", [
                "redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", tmp], rport)
            url = f"redis://127.0.0.1:{rport}"
            ports = [free_port() for _ in range(nodes)]
            for i, p in enumerate(ports):
                procs[f"node{i}"] = hub(p, url)
        else:
            ports = [free_port()]
            procs["node0"] = hub(ports[0])
        urls = [f"ws://127.0.0.1:{p}/connection/websocket" for p in ports]
        publisher = urls[0]
        # With two nodes every subscriber is one hop away; with three they are spread.
        sub_urls = urls[1:] if len(urls) == 2 else urls
        cmd = ["taskset", "-c", "1", WSX, "bench", "--fanout", publisher, "--hub", "bench",
               "-c", str(subs), "-s", str(size), "--in-flight", str(in_flight),
               "-d", str(duration), "--warmup", str(warmup), "--json"]
        for u in sub_urls:
            cmd += ["--subscribe-url", u]
        env = dict(os.environ, RUST_LOG="warn,wsx::fanout=debug")
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env)
        start = end = None
        err = ""
        for line in bench.stderr:
            err += line
            if "measured window starts" in line:
                start = {k: cpu_seconds(p.pid) for k, p in procs.items()}
            elif "measured window ends" in line:
                end = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        out = bench.stdout.read()
        bench.wait(timeout=60)
        if bench.returncode != 0 or not out.strip():
            return {"error": (err or out).strip()[-300:]}
        r = json.loads(out)
        if r.get("errors") or r.get("mismatches"):
            return {"error": f"errors {r.get('errors')}, mismatches {r.get('mismatches')}"}
        if start and end:
            r["cpu"] = {k: end[k] - start[k] for k in procs}
        return r
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", tmp])


def per(value, count):
    return value / count if count else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--scenarios", default=".")
    a = ap.parse_args()
    for name, subs, size, in_flight, nodes in SCENARIOS:
        if not re.search(a.scenarios, name):
            continue
        results = {"memory": [], "redis": []}
        for rnd in range(a.rounds):
            order = ["memory", "redis"] if rnd % 2 == 0 else ["redis", "memory"]
            for config in order:
                r = run(config, subs, size, in_flight, nodes, a.duration, a.warmup)
                if "error" in r:
                    print(f"{name} {config}: {r['error']}", file=sys.stderr)
                    continue
                results[config].append(r)
        print(f"\n## {name}: {subs} subscribers x {size} B, {in_flight} in flight, "
              f"{a.rounds} rounds of {a.duration:g} s")
        print("| config | publications/s | deliveries/s | p50 ms | p99 ms "
              "| node CPU µs/publication | Redis CPU µs/publication |")
        print("|---|---|---|---|---|---|---|")
        for config, rs in results.items():
            if not rs:
                print(f"| {config} | failed | | | | | |")
                continue
            med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
            node_cpu = med(lambda r: per(sum(v for k, v in r.get("cpu", {}).items()
                                             if k.startswith("node")),
                                         r["publications"]) * 1e6)
            redis_cpu = med(lambda r: per(r.get("cpu", {}).get("redis", 0),
                                          r["publications"]) * 1e6)
            print(f"| {config} | {med(lambda r: r['publications_per_second']):,.0f} "
                  f"| {med(lambda r: r['deliveries_per_second']):,.0f} "
                  f"| {med(lambda r: r['latency_ms']['p50']):.3f} "
                  f"| {med(lambda r: r['latency_ms']['p99']):.3f} "
                  f"| {node_cpu:.1f} "
                  f"| {'-' if config == 'memory' else f'{redis_cpu:.1f}'} |")
        pairs = list(zip(results["memory"], results["redis"]))
        if pairs:
            ratio = statistics.median(r["deliveries_per_second"] / m["deliveries_per_second"]
                                      for m, r in pairs)
            added = [r["latency_ms"]["p50"] - m["latency_ms"]["p50"] for m, r in pairs]
            added99 = [r["latency_ms"]["p99"] - m["latency_ms"]["p99"] for m, r in pairs]
            print(f"\npaired redis/memory deliveries/s: {ratio:.2f}x; "
                  f"added latency p50 {statistics.median(added):+.3f} ms, "
                  f"p99 {statistics.median(added99):+.3f} ms")


if __name__ == "__main__":
    main()
