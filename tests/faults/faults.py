#!/usr/bin/env python3
"""Bounded load and fault scenarios against `wsx serve` (run by scripts/faults.sh).

    faults.py [--list] [REGEX]

Each scenario starts its own `wsx serve --listen 127.0.0.1:0 ...` (a separate process; its
log goes to $WSX_FAULTS_OUT/NAME.log), drives it from this process over loopback, and prints

    PASS|FAIL <scenario> <measured figures>

A scenario that needs a `wsx serve` flag missing from the binary's --help fails at once with
"needs --flag". Exit status: 0 when all selected scenarios passed, 1 otherwise.

Environment: WSX_BIN (required), WSX_FAULTS_OUT (default target/faults),
WSX_FAULTS_CONNS (connections of conn-10k, default 10000), WSX_FAULTS_CONN_DEFLATE=1
(conn-10k clients offer permessage-deflate), WSX_FAULTS_SKIP (regex of scenarios to leave
out; they print SKIP and are not counted).
"""

import argparse
import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxfault import (  # noqa: E402
    OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, Conn, Fail, RssSampler, Server, check,
    close_payload, deflate_raw, frame, http_status, mib, ms, percentile, raw_exchange,
    request,
)

import attack as attack_mod  # noqa: E402

SCENARIOS = []


def scenario(name, needs=(), timeout=60):
    def deco(fn):
        SCENARIOS.append((name, tuple(needs), timeout, fn))
        return fn

    return deco


class Ctx:
    def __init__(self, binary, out_dir):
        self.binary, self.out_dir = binary, out_dir
        self.servers, self.conns = [], []

    async def server(self, name, args):
        s = Server(self.binary, name, args, self.out_dir)
        self.servers.append(s)
        return await s.start()

    def track(self, c):
        self.conns.append(c)
        return c

    def cleanup(self):
        for c in self.conns:
            try:
                c.abort()
            except Exception:
                pass
        self.conns.clear()
        for s in self.servers:
            s.stop()
        self.servers.clear()


async def gather_batches(n, batch, make):
    """Runs make(i) for i in range(n), `batch` at a time; returns the results (exceptions
    included)."""
    out = []
    for start in range(0, n, batch):
        out += await asyncio.gather(*(make(i) for i in range(start, min(n, start + batch))),
                                    return_exceptions=True)
    return out


def tally(results):
    """Counts of exception kinds among results."""
    c = collections.Counter(
        f"{type(r).__name__}: {r}"[:80] for r in results if isinstance(r, BaseException))
    return ", ".join(f"{k} x{v}" for k, v in c.most_common(3))


async def fresh_echo(srv):
    c = await Conn.upgrade(srv.port)
    try:
        await c.echo(b"still alive?")
        await c.close()
    finally:
        c.abort()


# ============================================================ 1. many connections


@scenario("conn-10k", timeout=150)
async def conn_10k(ctx):
    """Round 1: open n connections in batches, one echo each, a second echo on every one
    while all are held, close all. Round 2 repeats open/echo/close; a leak check: its RSS
    peak may exceed round 1's by at most half of round 1's growth (the allocator keeps and
    fragments freed memory, so RSS does creep: about +25 % in round 2, flattening after;
    a leak of the whole per-connection state would double it)."""
    import resource

    n = int(os.environ.get("WSX_FAULTS_CONNS", "10000"))
    deflate = os.environ.get("WSX_FAULTS_CONN_DEFLATE") == "1"  # offer permessage-deflate
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    check(soft >= n + 500, f"fd limit {soft} too low for {n} connections (ulimit -n)")
    srv = await ctx.server("conn-10k", [])
    await fresh_echo(srv)  # warm up the server's lazily made state
    rss0, fd0 = srv.rss_kib(), srv.fds()
    figs = f"conns={n}{' (deflate offered)' if deflate else ''}"
    peaks = []

    for rnd in (1, 2):
        conns = [None] * n
        hs, rtts, rtts2 = [], [], []

        async def open_one(i):
            t = time.perf_counter()
            c = ctx.track(await Conn.upgrade(srv.port, deflate=deflate, timeout=15))
            hs.append(time.perf_counter() - t)
            conns[i] = c
            rtts.append(await c.echo(b"hello %d" % i, timeout=15))

        async def again(i):
            rtts2.append(await conns[i].echo(b"again %d" % i, timeout=15))

        async def close_one(i):
            code = await conns[i].close(timeout=15)
            if code != 1000:
                raise Fail(f"close code {code}")

        # Batches of 100 stay under the listen backlog (accept-burst tests bigger bursts).
        t0 = time.monotonic()
        res = await gather_batches(n, 100, open_one)
        t_open = time.monotonic() - t0
        opened = sum(c is not None for c in conns)
        fd_peak = srv.fds()
        if rnd == 1:
            figs += (f" opened={opened} echoed={len(rtts)} open_time={t_open:.1f}s "
                     f"upgrade_p99={ms(percentile(hs, 99))} echo_p50={ms(percentile(rtts, 50))} "
                     f"echo_p99={ms(percentile(rtts, 99))}")
        check(opened == n and len(rtts) == n, f"{figs} round {rnd} errors: {tally(res)}")
        check(fd_peak - fd0 == n, f"{figs} round {rnd}: server fds {fd0} -> {fd_peak}, not +{n}")
        if rnd == 1:
            # All held open: a second echo on every connection.
            res = await gather_batches(n, 1000, again)
            figs += f" held_echo_p99={ms(percentile(rtts2, 99))}"
            check(len(rtts2) == n, f"{figs} second echo failed on {n - len(rtts2)}: {tally(res)}")
        peaks.append(srv.rss_kib())
        t0 = time.monotonic()
        res = await gather_batches(n, 1000, close_one)
        t_close = time.monotonic() - t0
        closed = sum(r is None for r in res)
        fd_end = await srv.wait_fds(fd0, 15)
        ctx.conns.clear()
        if rnd == 1:
            figs += f" closed={closed} close_time={t_close:.1f}s"
        check(closed == n, f"{figs} round {rnd} close errors: {tally(res)}")
        check(fd_end <= fd0, f"{figs} round {rnd}: server fds {fd_end}, not back to {fd0}")
    await asyncio.sleep(0.5)
    rss1 = srv.rss_kib()
    per = (peaks[0] - rss0) / n
    figs += (f" rss_before={mib(rss0)} rss_peak={mib(peaks[0])} rss_per_conn={per:.1f}KiB "
             f"rss_peak_round2={mib(peaks[1])} (+{(peaks[1] - peaks[0]) / n:.1f}KiB/conn) "
             f"rss_after={mib(rss1)} server_cpu={srv.cpu_seconds():.1f}s")
    check(peaks[1] - peaks[0] <= 0.5 * (peaks[0] - rss0),
          f"{figs}: round 2 peak grew by more than half of round 1's growth (leak?)")
    check(srv.alive(), f"{figs}: server died")
    return figs


def listen_overflows():
    """System-wide TcpExtListenOverflows (loopback is all ours during a run)."""
    try:
        with open("/proc/net/netstat") as f:
            rows = [line.split() for line in f if line.startswith("TcpExt:")]
        return int(rows[1][rows[0].index("ListenOverflows")])
    except (OSError, ValueError, IndexError):
        return -1


@scenario("accept-burst", timeout=60)
async def accept_burst(ctx, n=1000):
    """A reconnect storm: n clients connect at once. With a listen backlog smaller than the
    burst, the kernel drops SYNs and the clients retry after 1 s (Linux's initial RTO)."""
    srv = await ctx.server("accept-burst", [])
    ov0 = listen_overflows()
    times = []

    async def one(i):
        t = time.perf_counter()
        c = ctx.track(await Conn.upgrade(srv.port, timeout=10))
        times.append(time.perf_counter() - t)
        await c.echo(b"burst")

    t0 = time.monotonic()
    res = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    total = time.monotonic() - t0
    ov = listen_overflows() - ov0
    figs = (f"burst={n} upgraded={len(times)} all_in={total:.2f}s "
            f"upgrade_p50={ms(percentile(times, 50))} p99={ms(percentile(times, 99))} "
            f"max={ms(max(times, default=0))} listen_overflows={ov}")
    check(len(times) == n, f"{figs} errors: {tally(res)}")
    check(max(times) < 0.9, f"{figs}: some upgrades took >= 0.9 s (SYN dropped and retried?)")
    return figs


# ============================================================ 2. slowloris


@scenario("slowloris", needs=["--handshake-timeout"], timeout=60)
async def slowloris(ctx, hs_timeout=3, n_slow=1000, n_normal=20, flags=None):
    flags = ["--handshake-timeout", str(hs_timeout)] if flags is None else flags
    srv = await ctx.server("slowloris", flags)
    req = request()
    cut = []  # (seconds from connect to server close, status or None, how)
    still_open = 0

    async def slow(i):
        nonlocal still_open
        c = ctx.track(await Conn.connect(srv.port, timeout=10))
        t0 = time.monotonic()

        async def dribble():
            for b in req:
                c.writer.write(bytes([b]))
                await asyncio.sleep(1.0)

        d = asyncio.create_task(dribble())
        got, how = bytearray(), "open"
        try:
            async with asyncio.timeout(hs_timeout + 6):
                while True:
                    chunk = await c.reader.read(4096)
                    if not chunk:
                        how = "eof"
                        break
                    got += chunk
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
        except TimeoutError:
            pass
        t = time.monotonic() - t0
        d.cancel()
        c.abort()
        if how == "open":
            still_open += 1
        else:
            cut.append((t, http_status(bytes(got)), how))

    # Open the slow connections in batches, then measure normal clients while they dribble.
    slow_tasks = []
    for start in range(0, n_slow, 200):
        batch = [asyncio.create_task(slow(i)) for i in range(start, min(n_slow, start + 200))]
        slow_tasks += batch
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    rtts, hs_times, errors = [], [], []

    async def normal(i):
        t0 = time.perf_counter()
        c = ctx.track(await Conn.upgrade(srv.port, timeout=10))
        hs_times.append(time.perf_counter() - t0)
        end = time.monotonic() + hs_timeout + 1.5  # spans the moment the slow ones are cut
        while time.monotonic() < end:
            rtts.append(await c.echo(b"x" * 64, timeout=5))
            await asyncio.sleep(0.05)
        await c.close()

    res = await asyncio.gather(*(normal(i) for i in range(n_normal)), return_exceptions=True)
    errors = [r for r in res if isinstance(r, BaseException)]
    slow_res = await asyncio.gather(*slow_tasks, return_exceptions=True)
    slow_errors = [r for r in slow_res if isinstance(r, BaseException)]
    times = [t for t, _, _ in cut]
    n408 = sum(1 for _, s, _ in cut if s == 408)
    other = collections.Counter((s, h) for _, s, h in cut if s != 408)
    p99 = percentile(rtts, 99)
    figs = (f"slow={n_slow} cut={len(cut)} still_open={still_open} "
            f"cut_at min/p50/max={min(times, default=0):.2f}/{percentile(times, 50):.2f}/"
            f"{max(times, default=0):.2f}s answered_408={n408} other_endings={dict(other)} "
            f"normal={n_normal} handshake_max={ms(max(hs_times, default=0))} "
            f"echo_n={len(rtts)} p50={ms(percentile(rtts, 50))} p99={ms(p99)} "
            f"max={ms(max(rtts, default=0))}")
    check(not errors, f"{figs} normal client errors: {tally(errors)}")
    check(not slow_errors, f"{figs} slow client errors: {tally(slow_errors)}")
    check(p99 < 0.050, f"{figs}: normal clients' p99 >= 50 ms")
    check(len(cut) == n_slow, f"{figs}: not every slow connection was cut")
    check(min(times) >= hs_timeout - 0.5 and max(times) <= hs_timeout + 2.0,
          f"{figs}: cut outside [{hs_timeout - 0.5}, {hs_timeout + 2.0}] s")
    check(all(s in (None, 408) for _, s, _ in cut), f"{figs}: a slow client got another status")
    check(srv.alive(), f"{figs}: server died")
    return figs


# ============================================================ 3. vanishing peers


@scenario("vanishing-peers", timeout=60)
async def vanishing_peers(ctx):
    srv = await ctx.server("vanishing-peers", [])
    await fresh_echo(srv)
    await asyncio.sleep(0.2)
    rss0, fd0 = srv.rss_kib(), srv.fds()
    req = request()
    big = b"\x5a" * (256 << 10)
    counts = collections.Counter()
    fd_peak = fd0

    async def mid_handshake(i):
        c = ctx.track(await Conn.connect(srv.port))
        c.writer.write(req[: len(req) // 2])
        await asyncio.sleep(0.1)
        c.reset()
        counts["mid-handshake"] += 1

    async def mid_frame(i):
        c = ctx.track(await Conn.upgrade(srv.port))
        # A 64 KiB frame announced, 1000 bytes of it sent.
        c.writer.write(frame(OP_BIN, b"\x01" * 1000, length=65536, zero_mask=True))
        await asyncio.sleep(0.1)
        c.reset()
        counts["mid-frame"] += 1

    async def mid_echo(i):
        c = ctx.track(await Conn.upgrade(srv.port))
        c.writer.write(frame(OP_BIN, big, zero_mask=True))
        await c.writer.drain()
        c.reset()  # while the server is reading it or writing the echo
        counts["mid-echo"] += 1

    async def after_upgrade(i):
        c = ctx.track(await Conn.upgrade(srv.port))
        c.reset()
        counts["after-upgrade"] += 1

    with RssSampler(srv) as rs:
        for fn, n in ((mid_handshake, 300), (mid_frame, 300), (mid_echo, 200),
                      (after_upgrade, 200)):
            res = await gather_batches(n, 100, fn)
            fd_peak = max(fd_peak, srv.fds())
            errs = [r for r in res if isinstance(r, BaseException)]
            check(not errs, f"{fn.__name__}: client errors {tally(errs)}")
        fd_end = await srv.wait_fds(fd0, 10)
    await asyncio.sleep(0.5)
    rss1 = srv.rss_kib()
    figs = (f"resets={dict(counts)} fds={fd0}->{fd_peak}->{fd_end} rss_before={mib(rss0)} "
            f"rss_max={mib(rs.max)} rss_after={mib(rss1)}")
    check(srv.alive(), f"{figs}: server died")
    try:
        await fresh_echo(srv)
    except Exception as e:
        raise Fail(f"{figs}: fresh client failed: {e!r}")
    check(fd_end <= fd0, f"{figs}: server fds did not return to baseline")
    check(rss1 <= rss0 + 16 * 1024, f"{figs}: RSS after > baseline + 16 MiB")
    return figs + " fresh_echo=ok"


# ============================================================ 4. never-reading client


@scenario("never-reading", needs=["--write-timeout"], timeout=60)
async def never_reading(ctx, write_timeout=3, flags=None, limit_s=None):
    flags = ["--write-timeout", str(write_timeout)] if flags is None else flags
    srv = await ctx.server("never-reading", flags)
    await fresh_echo(srv)
    await asyncio.sleep(0.2)
    rss0, fd0 = srv.rss_kib(), srv.fds()
    c = ctx.track(await Conn.upgrade(srv.port, rcvbuf=16384))
    t_open = time.monotonic()
    msg = frame(OP_BIN, b"\x00" * (1 << 20), zero_mask=True)
    sent = 0
    last_progress = t_open
    stall_at = None
    dropped_at = None
    write_error = None
    state = {"buf": 0}
    limit_s = limit_s or (write_timeout + 12)

    with RssSampler(srv) as rs:
        deadline = t_open + limit_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            if c.writer.transport.is_closing():
                write_error = write_error or "transport closed"
            elif sent < (256 << 20) and c.writer.transport.get_write_buffer_size() < (4 << 20):
                c.writer.write(msg)
                sent += len(msg)
            buf = c.writer.transport.get_write_buffer_size()
            if buf < state["buf"] or (buf > state["buf"] and sent and stall_at is None):
                last_progress = now
            state["buf"] = buf
            if stall_at is None and now - last_progress > 0.5:
                stall_at = last_progress
            if dropped_at is None and srv.fds() <= fd0:
                dropped_at = now
                break
            await asyncio.sleep(0.02)
        try:
            c.writer.write(b"")
            await asyncio.wait_for(c.writer.drain(), 0.5)
        except (ConnectionResetError, BrokenPipeError) as e:
            write_error = type(e).__name__
        except (asyncio.TimeoutError, TimeoutError):
            pass
    stall_at = stall_at or last_progress
    pushed = sent - state["buf"]
    figs = (f"pushed={mib(pushed / 1024)} rss_before={mib(rss0)} rss_max={mib(rs.max)} "
            f"(+{mib(rs.max - rss0)}) stalled_after={stall_at - t_open:.1f}s ")
    if dropped_at:
        figs += (f"dropped_after={dropped_at - t_open:.1f}s "
                 f"(stall+{dropped_at - stall_at:.1f}s) client_saw={write_error}")
    else:
        figs += f"not dropped within {limit_s}s"
    check(rs.max - rss0 <= 64 * 1024, f"{figs}: server RSS grew by more than 64 MiB")
    check(pushed >= (2 << 20), f"{figs}: the server read less than 2 MiB before backpressure")
    check(dropped_at is not None, f"{figs}: connection not dropped")
    check(dropped_at - stall_at <= write_timeout + 3,
          f"{figs}: dropped later than write timeout + 3 s after the stall")
    check(srv.alive(), f"{figs}: server died")
    await fresh_echo(srv)
    return figs


# ============================================================ 5. decompression bomb


@scenario("deflate-bomb", needs=["--max-message-size"], timeout=60)
async def deflate_bomb(ctx, flags=None, limit=1 << 20):
    flags = ["--max-message-size", str(limit)] if flags is None else flags
    srv = await ctx.server("deflate-bomb", flags)
    await fresh_echo(srv)
    await asyncio.sleep(0.2)
    rss0 = srv.rss_kib()
    parts = []

    async def upgrade_deflate():
        c = ctx.track(await Conn.upgrade(srv.port, deflate=True))
        ext = c.response.headers.get("sec-websocket-extensions", "")
        check("permessage-deflate" in ext, f"permessage-deflate not negotiated ({ext!r})")
        return c

    with RssSampler(srv) as rs:
        # Sanity: a compressed message under the limit is echoed.
        c = await upgrade_deflate()
        ok = b"\0" * (limit // 2)
        c.send(OP_BIN, deflate_raw(ok), rsv1=True)
        op, data, compressed = await c.recv_message(10)
        check(data == ok, "a compressed message under the limit was not echoed intact")
        await c.close()
        parts.append(f"under_limit_echo=ok({mib(len(ok) / 1024)})")
        # Bombs: one small frame, one big frame, and a fragmented one.
        small, big = 4 * limit, max(4 * limit, min(256 * limit, 1 << 30))
        cases = [
            (f"bomb{small >> 20}M", [(OP_BIN, True, deflate_raw(b"\0" * small))]),
            (f"bomb{big >> 20}M", [(OP_BIN, True, deflate_raw(b"\0" * big))]),
        ]
        # 64 fragments of one compressed stream, each inflating to limit/16 (4 x limit).
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        frags = [z.compress(b"\0" * (limit // 16)) + z.flush(zlib.Z_SYNC_FLUSH)
                 for _ in range(64)]
        frags[-1] = frags[-1][:-4]  # the message's tail 00 00 ff ff is implied
        cases.append((f"fragmented{small >> 20}M",
                      [(OP_BIN if i == 0 else OP_CONT, i == len(frags) - 1, f)
                       for i, f in enumerate(frags)]))
        for name, frames_ in cases:
            c = await upgrade_deflate()
            size = sum(len(f) for _, _, f in frames_)
            t0 = time.monotonic()
            for i, (op, fin, payload) in enumerate(frames_):
                c.writer.write(frame(op, payload, fin=fin, rsv1=(i == 0), zero_mask=True))
            try:
                code = await c.wait_close(10)
            except Fail as e:
                raise Fail(f"{' '.join(parts)} {name}: {e}")
            dt = time.monotonic() - t0
            parts.append(f"{name}({size}B)->close={code} in {ms(dt)}")
            check(code == 1009, f"{' '.join(parts)}: {name} closed with {code}, not 1009")
            c.abort()
    figs = " ".join(parts) + f" rss_before={mib(rss0)} rss_max={mib(rs.max)}"
    check(rs.max - rss0 <= 64 * 1024, f"{figs}: server RSS grew by more than 64 MiB")
    check(srv.alive(), f"{figs}: server died")
    return figs


# ============================================================ 6. limits


@scenario("limit-frame-size", needs=["--max-frame-size"], timeout=30)
async def limit_frame_size(ctx):
    srv = await ctx.server("limit-frame-size", ["--max-frame-size", "65536"])
    c = ctx.track(await Conn.upgrade(srv.port))
    await c.echo(b"\x07" * 65536, 10)
    c.send(OP_BIN, b"\x07" * 65537, zero_mask=True)
    code = await c.wait_close(5)
    check(code == 1009, f"frame of 65537 bytes: close {code}, not 1009")
    # Announced only: the header alone must be enough to refuse it.
    c2 = ctx.track(await Conn.upgrade(srv.port))
    c2.writer.write(frame(OP_BIN, b"", length=1 << 40, zero_mask=True))
    code2 = await c2.wait_close(5)
    check(code2 == 1009, f"header announcing 1 TiB: close {code2}, not 1009")
    return "65536B_frame=echoed 65537B_frame->1009 1TiB_header->1009"


@scenario("limit-fragments", needs=["--max-fragments"], timeout=30)
async def limit_fragments(ctx):
    srv = await ctx.server("limit-fragments", ["--max-fragments", "16"])

    async def send_fragments(c, n, ping_between=False):
        for i in range(n):
            c.send(OP_TEXT if i == 0 else OP_CONT, b"frag%02d;" % i, fin=(i == n - 1))
            if ping_between and i == 3:
                c.send(OP_PING, b"p")

    c = ctx.track(await Conn.upgrade(srv.port))
    await send_fragments(c, 16, ping_between=True)
    op, data, _ = await c.recv_message(5)
    check(data == b"".join(b"frag%02d;" % i for i in range(16)),
          "16 fragments (with a ping between) not echoed as one message")
    await send_fragments(c, 17)
    code = await c.wait_close(5)
    check(code == 1008, f"17 fragments: close {code}, not 1008")
    return "16_fragments+ping=echoed 17_fragments->1008"


@scenario("limit-message-size", needs=["--max-message-size"], timeout=30)
async def limit_message_size(ctx):
    srv = await ctx.server("limit-message-size", ["--max-message-size", "65536"])
    c = ctx.track(await Conn.upgrade(srv.port))
    for i in range(4):
        c.send(OP_BIN if i == 0 else OP_CONT, b"\x01" * 16384, fin=(i == 3))
    op, data, _ = await c.recv_message(5)
    check(len(data) == 65536, "a 64 KiB message in 4 fragments was not echoed")
    for i in range(5):
        c.send(OP_BIN if i == 0 else OP_CONT, b"\x01" * 16384, fin=(i == 4))
    code = await c.wait_close(5)
    check(code == 1009, f"80 KiB message: close {code}, not 1009")
    return "64KiB_in_4_fragments=echoed 80KiB_in_5_fragments->1009"


@scenario("bad-handshakes", timeout=30)
async def bad_handshakes(ctx):
    srv = await ctx.server("bad-handshakes", [])
    cases = [
        ("POST", request(method="POST"), 405),
        ("HTTP/1.0", request(version="HTTP/1.0"), 400),
        ("no-Upgrade", request(omit=("upgrade",)), 400),
        ("no-Connection", request(omit=("connection",)), 400),
        ("no-Key", request(omit=("sec-websocket-key",)), 400),
        ("bad-Key", request(key="c2hvcnQ="), 400),
        ("no-Host", request(omit=("host",)), 400),
        ("version-8", request(omit=("sec-websocket-version",),
                              headers=[("Sec-WebSocket-Version", "8")]), 426),
        ("head-20KiB", request(headers=[("X-Pad", "a" * 20480)]), 431),
        ("200-headers", request(headers=[(f"X-H{i}", "1") for i in range(200)]), 431),
        # Empty lines before the request line are skipped, so they must not make an
        # endless head look finished (the buffer would grow until the handshake timeout).
        ("blank-lines-endless-head", b"\r\n\r\nGET / HTTP/1.1\r\nX-Pad: " + b"a" * 20480,
         431),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
         400),
    ]
    got, bad = [], []
    for name, data, want in cases:
        resp, how = await raw_exchange(srv.port, data, timeout=5)
        st = http_status(resp)
        got.append(f"{name}={st}/{how}")
        if st != want or how != "eof":
            bad.append(f"{name}: want {want} then EOF, got {st} then {how}")
        if want == 426 and b"sec-websocket-version: 13" not in resp.lower():
            bad.append(f"{name}: 426 without Sec-WebSocket-Version: 13")
    figs = " ".join(got)
    check(not bad, f"{figs} | " + "; ".join(bad))
    check(srv.alive(), f"{figs}: server died")
    await fresh_echo(srv)
    return figs


# ============================================================ 7. caps and origin


@scenario("cap-connections", needs=["--max-connections"], timeout=30)
async def cap_connections(ctx):
    srv = await ctx.server("cap-connections", ["--max-connections", "50"])
    conns = [ctx.track(await Conn.upgrade(srv.port)) for _ in range(50)]
    resp, how = await raw_exchange(srv.port, request(), timeout=5)
    st = http_status(resp)
    body = resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in resp else b""
    figs = f"held=50 51st={st}/{how} body={body[:60]!r}({len(body)}B)"
    check(st == 503 and how in ("eof", "reset"), f"{figs}: want 503 then closed")
    check(len(body) < 1024, f"{figs}: body not short")
    await conns[0].close()
    # The freed slot is usable again (within 2 s).
    deadline, st2 = time.monotonic() + 2, None
    while time.monotonic() < deadline:
        try:
            c = ctx.track(await Conn.upgrade(srv.port))
            st2 = 101
            await c.echo(b"in")
            break
        except Fail:
            await asyncio.sleep(0.1)
    figs += f" after_one_closed={st2}"
    check(st2 == 101, f"{figs}: the freed slot was not reusable")
    return figs


@scenario("cap-per-ip", needs=["--max-connections-per-ip"], timeout=30)
async def cap_per_ip(ctx):
    srv = await ctx.server("cap-per-ip", ["--max-connections-per-ip", "5"])
    conns = [ctx.track(await Conn.upgrade(srv.port, src="127.0.0.1")) for _ in range(5)]
    resp, how = await raw_exchange(srv.port, request(), timeout=5, src="127.0.0.1")
    st = http_status(resp)
    figs = f"held=5 6th_same_ip={st}/{how}"
    check(st == 429 and how in ("eof", "reset"), f"{figs}: want 429 then closed")
    other = ctx.track(await Conn.upgrade(srv.port, src="127.0.0.2"))
    await other.echo(b"other ip")
    figs += " other_ip(127.0.0.2)=101"
    await conns[0].close()
    deadline, st2 = time.monotonic() + 2, None
    while time.monotonic() < deadline:
        try:
            ctx.track(await Conn.upgrade(srv.port, src="127.0.0.1"))
            st2 = 101
            break
        except Fail:
            await asyncio.sleep(0.1)
    figs += f" after_one_closed={st2}"
    check(st2 == 101, f"{figs}: the freed slot was not reusable")
    return figs


@scenario("origin", needs=["--allow-origin"], timeout=30)
async def origin(ctx):
    srv = await ctx.server("origin", ["--allow-origin", "https://ok.example",
                                      "--allow-origin", "https://*.wild.example"])
    cases = [
        ("https://ok.example", 101),
        (None, 101),
        ("https://a.wild.example", 101),
        ("https://evil.example", 403),
        ("http://ok.example", 403),
        ("https://ok.example:8443", 403),
        ("https://ok.example.evil.com", 403),
        ("https://evilwild.example", 403),
        ("null", 403),
    ]
    got, bad = [], []
    for o, want in cases:
        hdrs = [("Origin", o)] if o else []
        resp, how = await raw_exchange(srv.port, request(headers=hdrs), timeout=1.0)
        st = http_status(resp)
        got.append(f"{o or '(none)'}={st}")
        if st != want:
            bad.append(f"{o}: {st}, want {want}")
        if want == 403 and how not in ("eof", "reset"):
            bad.append(f"{o}: connection left open after 403")
    figs = " ".join(got)
    check(not bad, f"{figs} | " + "; ".join(bad))
    return figs


# ============================================================ 8. keepalive and idle


@scenario("keepalive", needs=["--ping-interval", "--pong-timeout"], timeout=30)
async def keepalive(ctx):
    srv = await ctx.server("keepalive", ["--ping-interval", "1", "--pong-timeout", "1"])

    async def deaf():
        c = ctx.track(await Conn.upgrade(srv.port))
        code = await c.wait_close(8, answer_pings=False)
        t = time.monotonic() - c.opened_at
        c.send(OP_CLOSE, close_payload(code or 1000))
        eof = await c.wait_eof(3)
        return code, t, c.pings, eof

    async def polite():
        try:
            from websockets.asyncio.client import connect
        except ImportError as e:
            raise Fail(f"python websockets not available: {e}")
        async with connect(f"ws://127.0.0.1:{srv.port}/", ping_interval=None,
                           open_timeout=5, close_timeout=2) as ws:
            await asyncio.sleep(5)
            await ws.send("still here")
            got = await asyncio.wait_for(ws.recv(), 3)
            if got != "still here":
                raise Fail("websockets client: bad echo")
        return "ok"

    (code, t, pings, eof), pol = await asyncio.gather(deaf(), polite())
    figs = (f"deaf_client: pings_seen={pings} close={code} after={t:.2f}s tcp_closed={eof}; "
            f"websockets_client: open_5s+echo={pol}")
    check(code == 1011, f"{figs}: want close 1011")
    check(t <= 3.5, f"{figs}: closed later than 3.5 s")
    check(pings >= 1, f"{figs}: no ping seen")
    check(eof, f"{figs}: TCP not closed")
    return figs


@scenario("idle-timeout", needs=["--idle-timeout", "--close-timeout", "--ping-interval"],
          timeout=30)
async def idle_timeout(ctx):
    srv = await ctx.server("idle-timeout", ["--idle-timeout", "2", "--close-timeout", "2",
                                            "--ping-interval", "0"])

    async def silent():
        c = ctx.track(await Conn.upgrade(srv.port))
        code = await c.wait_close(6)
        t_close = time.monotonic() - c.opened_at
        # Never answer the close: the server must drop TCP after its close timeout.
        eof = await c.wait_eof(6)
        t_eof = time.monotonic() - c.opened_at
        return code, t_close, eof, t_eof

    async def chatty():
        c = ctx.track(await Conn.upgrade(srv.port))
        for i in range(9):
            await c.echo(b"tick %d" % i)
            await asyncio.sleep(0.5)
        await c.close()
        return "ok"

    (code, t_close, eof, t_eof), ch = await asyncio.gather(silent(), chatty())
    figs = (f"silent: close={code} at {t_close:.2f}s, tcp_dropped={eof} at {t_eof:.2f}s "
            f"(close not answered); chatty 4.5s: {ch}")
    check(code == 1001, f"{figs}: want 1001")
    check(1.5 <= t_close <= 3.5, f"{figs}: idle close outside [1.5, 3.5] s")
    check(eof and t_eof - t_close <= 3.5, f"{figs}: TCP not dropped within close timeout + 1.5 s")
    return figs


# ============================================================ 9. graceful shutdown


async def _shutdown(ctx, name, n_good, n_stubborn, flags, shutdown_timeout):
    srv = await ctx.server(name, flags)
    good = await asyncio.gather(*(Conn.upgrade(srv.port) for _ in range(n_good)))
    stubborn = await asyncio.gather(*(Conn.upgrade(srv.port) for _ in range(n_stubborn)))
    for c in good + stubborn:
        ctx.track(c)
    await asyncio.gather(*(c.echo(b"pre") for c in good))

    async def behave(c):
        code = await c.wait_close(shutdown_timeout + 5)
        t = time.monotonic() - t0
        c.send(OP_CLOSE, close_payload(code or 1000))
        await c.wait_eof(shutdown_timeout + 5)
        return code, t

    async def refuse(c):  # reads the close frame, never answers it
        code = await c.wait_close(shutdown_timeout + 5)
        eof = await c.wait_eof(shutdown_timeout + 5)
        return code, eof, time.monotonic() - t0

    async def exit_watch():
        rc = await srv.wait_exit(shutdown_timeout + 5)
        return rc, time.monotonic() - t0

    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    watch = asyncio.create_task(exit_watch())
    tasks = [asyncio.create_task(behave(c)) for c in good]
    stasks = [asyncio.create_task(refuse(c)) for c in stubborn]
    # The listener must be gone (or at least not upgrading) while connections drain.
    await asyncio.sleep(0.2)
    try:
        resp, how = await raw_exchange(srv.port, request(), timeout=2)
        late = f"{http_status(resp)}/{how}"
    except OSError as e:
        late = type(e).__name__
    rc, t_exit = await watch
    res = await asyncio.gather(*tasks, return_exceptions=True)
    sres = await asyncio.gather(*stasks, return_exceptions=True)
    codes = collections.Counter(r[0] if not isinstance(r, BaseException) else type(r).__name__
                                for r in res)
    scodes = collections.Counter((r[0], r[1]) if not isinstance(r, BaseException)
                                 else type(r).__name__ for r in sres)
    lines = [ln for ln in srv.log_text().splitlines() if "closed cleanly" in ln]
    logline = lines[-1].strip()[-120:] if lines else None
    figs = (f"clients={n_good} close_codes={dict(codes)} "
            + (f"stubborn={dict(scodes)} " if n_stubborn else "")
            + f"new_conn_after_sigterm={late} exit={rc} after={t_exit:.2f}s log={logline!r}")
    check(codes == {1001: n_good}, f"{figs}: not every client got 1001")
    check(rc == 0, f"{figs}: want exit status 0")
    check(t_exit <= shutdown_timeout + 1.0, f"{figs}: exited later than shutdown timeout + 1 s")
    check(logline is not None, f"{figs}: no 'closed cleanly' log line")
    check(re.search(rf"\b{n_good}\b", logline), f"{figs}: log line lacks the count {n_good}")
    check(not late.startswith("101"), f"{figs}: a connection made after SIGTERM was upgraded")
    if n_stubborn:
        check(all(not isinstance(r, BaseException) and r[0] == 1001 and r[1] for r in sres),
              f"{figs}: stubborn clients not sent 1001 and dropped")
    return figs


@scenario("shutdown", needs=["--shutdown-timeout"], timeout=40)
async def shutdown(ctx):
    return await _shutdown(ctx, "shutdown", 100, 0, ["--shutdown-timeout", "5"], 5)


@scenario("shutdown-timeout", needs=["--shutdown-timeout", "--close-timeout"], timeout=40)
async def shutdown_timeout(ctx):
    return await _shutdown(ctx, "shutdown-timeout", 10, 2,
                           ["--shutdown-timeout", "2", "--close-timeout", "30"], 2)


# ============================================================ attack (overload)


@scenario("attack", needs=attack_mod.NEEDS, timeout=330)
async def attack(ctx):
    """Every attack of tests/faults/attack.py at once on one server, with 50 legitimate
    echo clients throughout (WSX_ATTACK_SCALE scales the attacker counts, WSX_ATTACK_PHASE
    sets each phase's seconds)."""
    srv = await ctx.server("attack", attack_mod.SERVER_FLAGS)
    args = argparse.Namespace(
        scale=float(os.environ.get("WSX_ATTACK_SCALE", "1")),
        phase_seconds=float(os.environ.get("WSX_ATTACK_PHASE", "20")),
        legit=50, soak=0, settle=45, only=None)
    ok, line = await attack_mod.attack(srv, args, log=lambda s: print(s, flush=True))
    check(ok, line)
    return line


# ============================================================ runner


def serve_help(binary):
    try:
        return subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                              timeout=10).stdout
    except Exception as e:
        return f"(wsx serve --help failed: {e})"


def has_flag(help_text, flag):
    return re.search(re.escape(flag) + r"(?![\w-])", help_text) is not None


async def run(selected, binary, out_dir):
    help_text = serve_help(binary)
    failed = 0
    for name, needs, timeout, fn in selected:
        ok = False
        missing = [f for f in needs if not has_flag(help_text, f)]
        if missing:
            print(f"FAIL {name} needs {' '.join(missing)} (not in this wsx serve)", flush=True)
            failed += 1
            continue
        ctx = Ctx(binary, out_dir)
        t0 = time.monotonic()
        try:
            figs = await asyncio.wait_for(fn(ctx), timeout)
            print(f"PASS {name} {figs} [{time.monotonic() - t0:.1f}s]", flush=True)
            ok = True
        except Fail as e:
            failed += 1
            print(f"FAIL {name} {e} [{time.monotonic() - t0:.1f}s]", flush=True)
        except (asyncio.TimeoutError, TimeoutError):
            failed += 1
            print(f"FAIL {name} timed out after {timeout}s", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {name} error {type(e).__name__}: {e}", flush=True)
            with open(os.path.join(out_dir, f"{name}.traceback"), "w") as f:
                traceback.print_exc(file=f)
        finally:
            logs = [s.log_path for s in ctx.servers]
            ctx.cleanup()
            if logs and not ok:
                print(f"  log: {' '.join(os.path.relpath(p) for p in logs)}", flush=True)
    return failed


def main(argv):
    if "--list" in argv:
        for name, needs, timeout, _ in SCENARIOS:
            print(f"{name:20} {timeout:4}s  {' '.join(needs)}")
        return 0
    pattern = next((a for a in argv if not a.startswith("-")), None)
    selected = [s for s in SCENARIOS if pattern is None or re.search(pattern, s[0])]
    skip = os.environ.get("WSX_FAULTS_SKIP")
    if skip:
        for s in selected:
            if re.search(skip, s[0]):
                print(f"SKIP {s[0]} (WSX_FAULTS_SKIP)", flush=True)
        selected = [s for s in selected if not re.search(skip, s[0])]
    if not selected:
        print(f"faults.py: no scenario matches {pattern!r}", file=sys.stderr)
        return 2
    binary = os.environ.get("WSX_BIN")
    if not binary or not os.access(binary, os.X_OK):
        print(f"faults.py: WSX_BIN={binary!r} is not an executable", file=sys.stderr)
        return 2
    out_dir = os.environ.get("WSX_FAULTS_OUT", "target/faults")
    os.makedirs(out_dir, exist_ok=True)
    from wsxfault import raise_nofile

    raise_nofile()

    def on_term(signum, frame_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        failed = asyncio.run(run(selected, binary, out_dir))
    finally:
        Server.stop_all()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
