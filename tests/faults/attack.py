"""Many hostile clients at once against one `wsx serve`, with legitimate echo clients
measuring their service throughout (issue: overload protection).

    python3 tests/faults/attack.py                 # one round of every attack (CI: ~2.5 min)
    python3 tests/faults/attack.py --soak 30       # rounds for 30 minutes (RELIABILITY.md)
    python3 tests/faults/attack.py --phase-seconds 5 --scale 0.2   # a quick look

Also run as the `attack` scenario of tests/faults/faults.py (scripts/faults.sh attack).

The server: `wsx serve --memory-budget 256M --metrics` with short handshake, keepalive and
write timeouts. The legitimate clients (50 by default) run in a process of their own, so
that the attackers' event loop does not delay their measurements; each echoes a 100-byte
text message every 100 ms. The attacks, one after another:

1. bombs: 100 concurrent clients, each sending one permessage-deflate message that inflates
   to 200 MiB (about 200 KiB on the wire), reconnecting and repeating for a phase;
2. hold: 5,000 slowloris connections (the request head at one byte per second) and 5,000
   connections that upgrade, send 4 x 64 KiB messages and never read the echoes;
3. slow fragments: 200 clients each sending a 60 MiB message in 64 KiB fragments, one every
   100 ms, for a phase;
4. churn: 2,000 connection open/close cycles per second (as many as this machine's one
   Python process manages; the rate reached is reported) for a phase.

Passes when: the server's RSS (sampled every 50 ms) never exceeds the budget + 64 MiB;
every legitimate client got every echo and none waited 2 s or more for one (p50/p99 are
reported for the record); every hostile connection got a defined answer (a close code,
an HTTP status, or, for those that never read or never finished their request head, the
server closing TCP); after the attack RSS comes back to within 10% of its start or 8 MiB
above it, whichever is larger, and the server's file descriptors to their count before.
"""

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import queue as queue_mod
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxfault import (  # noqa: E402
    HOST, OP_BIN, OP_CLOSE, OP_CONT, OP_TEXT, Conn, Fail, RssSampler, Server, close_payload,
    deflate_raw, frame, http_status, mib, ms, percentile, raise_nofile, request,
)

BUDGET_MIB = 256
SERVER_FLAGS = [
    "--memory-budget", f"{BUDGET_MIB}M", "--metrics",
    "--handshake-timeout", "3", "--ping-interval", "2", "--pong-timeout", "2",
    "--write-timeout", "5", "--close-timeout", "2",
]
NEEDS = ["--memory-budget", "--metrics"]

# ------------------------------------------------------------------ legitimate clients


def legit_main(port, n, stop, out):
    """In its own process: n clients echoing until `stop` is set; puts a summary in `out`."""
    out.put(asyncio.run(_legit(port, n, stop)))


async def _legit(port, n, stop):
    lat, errors, sent, got = [], collections.Counter(), [0], [0]

    async def one(i):
        try:
            c = await Conn.upgrade(port, timeout=10)
        except Exception as e:  # noqa: BLE001
            errors[f"connect: {e}"[:60]] += 1
            return
        payload_base = b"x" * 90
        seq = 0
        try:
            while not stop.is_set():
                seq += 1
                payload = payload_base + b"%010d" % seq
                t0 = time.perf_counter()
                c.send(OP_TEXT, payload)
                sent[0] += 1
                op, data, _ = await c.recv_message(30)
                lat.append(time.perf_counter() - t0)
                if data != payload:
                    errors["echo mismatch"] += 1
                    return
                got[0] += 1
                await asyncio.sleep(0.1)
            await c.close(timeout=10)
        except Exception as e:  # noqa: BLE001
            errors[f"{type(e).__name__}: {e}"[:60]] += 1
        finally:
            c.abort()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return {
        "clients": n, "sent": sent[0], "received": got[0],
        "p50": percentile(lat, 50), "p99": percentile(lat, 99),
        "max": max(lat) if lat else float("nan"),
        "errors": dict(errors),
    }


# ------------------------------------------------------------------ attackers


class Outcomes:
    """What the server answered the hostile connections of one attack."""

    def __init__(self, name):
        self.name, self.c = name, collections.Counter()

    def add(self, what):
        self.c[what] += 1

    def undefined(self):
        return sum(v for k, v in self.c.items() if k.startswith("UNDEFINED"))

    def __str__(self):
        body = ",".join(f"{k}x{v}" for k, v in self.c.most_common(6))
        return f"{self.name}[{body}]"


async def upgrade_or_status(port, deflate=False, rcvbuf=None):
    """(Conn, None) on 101, (None, "http NNN") when refused with a status."""
    c = await Conn.connect(port, rcvbuf=rcvbuf, timeout=10)
    try:
        r = await c.handshake(request("/", None, (), deflate), 10)
    except BaseException:
        c.abort()
        raise
    if r.status != 101:
        c.abort()
        return None, f"http {r.status}"
    return c, None


async def open_hostile(port, out, **kw):
    """An upgraded connection, or None with the refusal (an HTTP status, or a failure to
    connect) recorded in `out`."""
    try:
        c, status = await upgrade_or_status(port, **kw)
    except Exception as e:  # noqa: BLE001
        out.add(f"UNDEFINED connect {type(e).__name__}")
        return None
    if status:
        out.add(status)
    return c


async def server_answer(c, timeout):
    """How the server ended a connection: 'close NNNN', 'tcp closed', or UNDEFINED."""
    try:
        code = await c.wait_close(timeout, answer_pings=False)
        return f"close {code}"
    except Fail as e:
        if "without a close frame" in str(e) or "reset" in str(e):
            return "tcp closed"
        return "UNDEFINED open"
    finally:
        c.abort()


async def bombs(port, seconds, n, size):
    out = Outcomes("bombs")
    bomb = frame(OP_BIN, deflate_raw(b"\0" * size), rsv1=True, zero_mask=True)
    end = time.monotonic() + seconds

    async def worker():
        while time.monotonic() < end:
            c = await open_hostile(port, out, deflate=True)
            if c is None:
                await asyncio.sleep(0.2)
                continue
            c.writer.write(bomb)
            out.add(await server_answer(c, 15))

    await asyncio.gather(*(worker() for _ in range(n)))
    return out, f"bomb={len(bomb) >> 10}KiB->{size >> 20}MiB"


async def hold(port, n_slow, n_deaf, grace):
    """Slowloris and never-reading connections, opened in batches; then waits (`grace`
    seconds at most) for the server to end them all."""
    slow_out, deaf_out = Outcomes("slowloris"), Outcomes("never-reading")
    head = request("/", None, (), False)
    msg = frame(OP_BIN, b"\0" * 65536, zero_mask=True)

    async def slow(i):
        try:
            c = await Conn.connect(port, timeout=10)
        except Exception as e:  # noqa: BLE001
            slow_out.add(f"UNDEFINED connect {type(e).__name__}")
            return
        try:
            async def dribble():
                for b in head:
                    c.writer.write(bytes([b]))
                    await asyncio.sleep(1.0)
            t = asyncio.create_task(dribble())
            try:
                async with asyncio.timeout(grace):
                    data = await c.reader.read(4096)
            except TimeoutError:
                slow_out.add("UNDEFINED still open")
                return
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            finally:
                t.cancel()
            status = http_status(data) if data else None
            slow_out.add(f"http {status}" if status else "tcp closed")
        finally:
            c.abort()

    async def deaf(i):
        c = await open_hostile(port, deaf_out, rcvbuf=16384)
        if c is None:
            return
        try:
            for _ in range(4):
                c.writer.write(msg)
                try:
                    await asyncio.wait_for(c.writer.drain(), 3)
                except (TimeoutError, asyncio.TimeoutError):
                    break
            # Never read: the server's keepalive ping goes unanswered, its output stalls.
            await asyncio.sleep(grace / 2)
            deaf_out.add(await server_answer(c, grace / 2))
        except (ConnectionResetError, BrokenPipeError):
            deaf_out.add("tcp closed")
        finally:
            c.abort()

    tasks = []
    for start in range(0, max(n_slow, n_deaf), 250):
        for i in range(start, min(n_slow, start + 250)):
            tasks.append(asyncio.create_task(slow(i)))
        for i in range(start, min(n_deaf, start + 250)):
            tasks.append(asyncio.create_task(deaf(i)))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    return (slow_out, deaf_out), ""


async def slow_fragments(port, seconds, n, total, every):
    out = Outcomes("slow-fragments")
    first = frame(OP_BIN, b"\0" * 65536, fin=False, zero_mask=True)
    cont = frame(OP_CONT, b"\0" * 65536, fin=False, zero_mask=True)
    frags = total // 65536
    end = time.monotonic() + seconds
    sent_bytes = [0]

    async def one(i):
        c = await open_hostile(port, out)
        if c is None:
            return
        answer = asyncio.create_task(c.wait_close(seconds + 30, answer_pings=True))
        try:
            await asyncio.sleep(i * every / n)  # spread the senders over one interval
            for k in range(frags):
                if answer.done() or time.monotonic() >= end:
                    break
                c.writer.write(first if k == 0 else cont)
                sent_bytes[0] += 65536
                await asyncio.sleep(every)
            if not answer.done():
                # Still sending when the phase ended: close it ourselves (counted as such).
                out.add("open at phase end, closed by client")
                c.send(OP_CLOSE, close_payload(1000))
                try:
                    await asyncio.wait_for(answer, 5)
                except Exception:  # noqa: BLE001
                    pass
                return
            try:
                out.add(f"close {answer.result()}")
            except Fail as e:
                out.add("tcp closed" if "without a close frame" in str(e) or "reset" in str(e)
                        else f"UNDEFINED {e}"[:40])
        except (ConnectionResetError, BrokenPipeError):
            out.add("tcp closed")
        finally:
            answer.cancel()
            c.abort()

    await asyncio.gather(*(one(i) for i in range(n)))
    return out, f"sent={sent_bytes[0] >> 20}MiB"


async def churn(port, seconds, rate, workers=96):
    out = Outcomes("churn")
    end = time.monotonic() + seconds
    start = time.monotonic()
    done = [0]
    slot = [start]

    async def worker():
        while True:
            # A shared schedule: one cycle per 1/rate seconds.
            t = slot[0]
            slot[0] = max(t, time.monotonic() - 0.05) + 1.0 / rate
            if t >= end:
                return
            delay = t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                c, status = await upgrade_or_status(port)
                if status:
                    out.add(status)
                else:
                    code = await c.close(timeout=10)
                    out.add(f"close {code}")
            except Exception as e:  # noqa: BLE001
                out.add(f"UNDEFINED {type(e).__name__}")
            done[0] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    took = time.monotonic() - start
    return out, f"rate={done[0] / took:.0f}/s"


# ------------------------------------------------------------------ the run


def metrics(port):
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            vals[k.removeprefix("wsx_memory_budget_")] = int(v)
    return vals


async def settle(srv, rss0, fds0, timeout):
    """Waits until RSS and fds are back (or `timeout`); returns (rss, fds)."""
    target = max(rss0 * 1.10, rss0 + 8 * 1024)
    deadline = time.monotonic() + timeout
    while True:
        rss, fds = srv.rss_kib(), srv.fds()
        if (rss <= target and fds <= fds0) or time.monotonic() > deadline:
            return rss, fds
        await asyncio.sleep(0.5)


async def attack(srv, args, log=print):
    """Runs the attacks against `srv` with legitimate clients throughout; returns
    (passed, summary line)."""
    port = srv.port
    scale, phase = args.scale, args.phase_seconds
    n = lambda x: max(1, int(x * scale))  # noqa: E731
    mp = multiprocessing.get_context("spawn")
    stop, results = mp.Event(), mp.Queue()
    legit = mp.Process(target=legit_main, args=(port, args.legit, stop, results), daemon=True)
    legit.start()
    await asyncio.sleep(3)  # connected and warm
    await asyncio.sleep(1)
    rss0, fds0 = srv.rss_kib(), srv.fds()
    problems, parts = [], []
    deadline = time.monotonic() + args.soak * 60
    rounds = 0
    with RssSampler(srv) as rs:
        while True:
            rounds += 1
            for name, run in [
                ("bombs", lambda: bombs(port, phase, n(100), 200 << 20)),
                ("hold", lambda: hold(port, n(5000), n(5000), grace=12)),
                ("slow-fragments", lambda: slow_fragments(port, phase, n(200), 60 << 20, 0.1)),
                ("churn", lambda: churn(port, phase, n(2000))),
            ]:
                if args.only and name not in args.only:
                    continue
                t0 = time.monotonic()
                outs, extra = await run()
                outs = outs if isinstance(outs, tuple) else (outs,)
                line = " ".join(str(o) for o in outs) + (f" {extra}" if extra else "")
                line += (f" ({time.monotonic() - t0:.0f}s, rss_max={mib(rs.max)},"
                         f" rss_now={mib(srv.rss_kib())})")
                log(f"  round {rounds} {name}: {line}")
                if rounds == 1:
                    parts.append(line)
                for o in outs:
                    if o.undefined():
                        problems.append(f"{o.name}: {o.undefined()} without a defined answer")
                if not srv.alive():
                    problems.append(f"server died during {name}")
                    break
            if not srv.alive() or time.monotonic() >= deadline:
                break
        peak = rs.max
    stop.set()
    try:
        good = results.get(timeout=60)
    except queue_mod.Empty:
        good = {"errors": {"legitimate clients did not report": 1}, "sent": 0, "received": 0,
                "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    legit.join(10)
    counters = metrics(port) if srv.alive() else {}
    rss1, fds1 = await settle(srv, rss0, fds0, args.settle)
    limit_kib = (BUDGET_MIB + 64) * 1024
    summary = (
        f"rounds={rounds} legit: {good['received']}/{good['sent']} echoes "
        f"p50={ms(good['p50'])} p99={ms(good['p99'])} max={ms(good['max'])} "
        f"errors={good['errors'] or 0}; rss start={mib(rss0)} peak={mib(peak)} "
        f"(limit {mib(limit_kib)}) after={mib(rss1)}; fds {fds0}->{fds1}; "
        f"budget counters {counters}"
    )
    if peak > limit_kib:
        problems.append(f"RSS peaked at {mib(peak)} > budget + 64 MiB")
    if good["errors"] or good["received"] != good["sent"] or good["sent"] == 0:
        problems.append("a legitimate client lost an echo or its connection")
    if not good["max"] < 2.0:
        problems.append(f"a legitimate echo waited {ms(good['max'])}")
    if rss1 > max(rss0 * 1.10, rss0 + 8 * 1024):
        problems.append(f"RSS did not come back: {mib(rss0)} -> {mib(rss1)}")
    if fds1 > fds0:
        problems.append(f"file descriptors left open: {fds0} -> {fds1}")
    if counters and counters.get("refused_messages_total", 0) == 0:
        problems.append("the budget refused no message (was it exercised?)")
    return not problems, "; ".join(parts) + " || " + summary + (
        " || PROBLEMS: " + "; ".join(problems) if problems else "")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wsx", default=os.environ.get("WSX_BIN", "target/release/wsx"))
    p.add_argument("--out", default=os.environ.get("WSX_FAULTS_OUT", "target/faults"))
    p.add_argument("--soak", type=float, default=0, help="minutes of repeated rounds (0: one)")
    p.add_argument("--phase-seconds", type=float, default=20)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the attacker counts")
    p.add_argument("--legit", type=int, default=50)
    p.add_argument("--only", action="append", help="run only this attack (repeatable)")
    p.add_argument("--settle", type=float, default=45, help="seconds allowed to recover")
    args = p.parse_args(argv)
    raise_nofile()
    os.makedirs(args.out, exist_ok=True)

    async def run():
        srv = await Server(os.path.abspath(args.wsx), "attack", SERVER_FLAGS, args.out).start()
        try:
            return await attack(srv, args)
        finally:
            srv.stop()

    ok, line = asyncio.run(run())
    print(("PASS" if ok else "FAIL") + " attack " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
