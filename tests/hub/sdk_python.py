#!/usr/bin/env python3
"""Scenarios of wsx hub with the official Centrifugo Python SDKs.

    sdk_python.py SCENARIO --hub http://127.0.0.1:PORT --api-key KEY --secret SECRET [--dir DIR]
    sdk_python.py --list

centrifuge-python (client protocol v2, JSON over WebSocket) for the client
scenarios, cent (the server HTTP API client) for the api-* ones, and both
together where a server API call must show on a connected client. The hub is
started by scripts/hub.sh with the flags its case lists; a scenario relies on
them (e.g. history on, recovery forced on, presence, join/leave).

Every check logs a line to stderr ("ok: ..." or "FAIL: ..."); exit status 0
when all passed, 1 when one failed, 2 on a usage error. A scenario stops at the
first failed check that later ones depend on.

Only the SDKs' public APIs are used. A lost connection is simulated with a TCP
proxy between the client and the hub (common.Proxy), not by reaching into the
SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Fatal, Proxy, Recorder, Report, claims, hs256, short, unsigned  # noqa: E402

import cent  # noqa: E402
import centrifuge  # noqa: E402
import requests  # noqa: E402
from centrifuge import (  # noqa: E402
    Client,
    ClientEventHandler,
    ClientState,
    ReplyError,
    StreamPosition,
    SubscriptionEventHandler,
    SubscriptionState,
)

R = Report()
ARGS: argparse.Namespace
CHANNEL = "news"

# Publication payloads: JSON values of every kind, non-ASCII text in several
# scripts, escapes, large numbers, deep nesting and 64 KiB of text. They must
# come back equal as JSON values.
PAYLOADS: List[Any] = [
    {"text": "héllo wörld ✓ 日本語 Ελληνικά עברית 🎉", "n": 1, "neg": -7, "f": 1.5},
    {"max_safe": 9007199254740991, "t": True, "f": False, "nothing": None, "empty": {}, "arr": []},
    {"esc": 'quote " backslash \\ slash / nl \n tab \t ctl \u0001 ls \u2028 ps \u2029'},
    {"nested": {"a": [1, "two", {"three": [3, {"four": 4}]}]}},
    ["a", "top", "level", "array", 1, 2.25],
    "a plain string 🚀",
    42,
    {"big": "z" * 65536},
]


# --------------------------------------------------------------- SDK glue
class ClientEvents(ClientEventHandler):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def on_connecting(self, ctx):
        self.rec.push("connecting", ctx)

    async def on_connected(self, ctx):
        self.rec.push("connected", ctx)

    async def on_disconnected(self, ctx):
        self.rec.push("disconnected", ctx)

    async def on_error(self, ctx):
        self.rec.push("error", ctx)

    async def on_subscribed(self, ctx):
        self.rec.push("subscribed", ctx)

    async def on_subscribing(self, ctx):
        self.rec.push("subscribing", ctx)

    async def on_unsubscribed(self, ctx):
        self.rec.push("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self.rec.push("publication", ctx)

    async def on_join(self, ctx):
        self.rec.push("join", ctx)

    async def on_leave(self, ctx):
        self.rec.push("leave", ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def on_subscribing(self, ctx):
        self.rec.push("subscribing", ctx)

    async def on_subscribed(self, ctx):
        self.rec.push("subscribed", ctx)

    async def on_unsubscribed(self, ctx):
        self.rec.push("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self.rec.push("publication", ctx)

    async def on_join(self, ctx):
        self.rec.push("join", ctx)

    async def on_leave(self, ctx):
        self.rec.push("leave", ctx)

    async def on_error(self, ctx):
        self.rec.push("error", ctx)


CLIENTS: List[Client] = []


def ws_url(port: Optional[int] = None) -> str:
    base = ARGS.hub if port is None else f"http://127.0.0.1:{port}"
    return base.replace("http://", "ws://", 1).rstrip("/") + "/connection/websocket"


def token(user: str, ttl: Optional[float] = 3600, **extra: Any) -> str:
    return hs256(claims(user, ttl, **extra), ARGS.secret)


def new_client(label: str, port: Optional[int] = None, **opts: Any) -> tuple:
    rec = Recorder(R, label)
    opts.setdefault("timeout", 4.0)
    opts.setdefault("min_reconnect_delay", 0.1)
    opts.setdefault("max_reconnect_delay", 0.5)
    # Never a proxy from the environment: the hub is on 127.0.0.1.
    client = Client(ws_url(port), events=ClientEvents(rec), proxy=None, **opts)
    CLIENTS.append(client)
    return client, rec


async def connected(label: str, user: str, port: Optional[int] = None, **opts: Any) -> tuple:
    if "token" not in opts and "get_token" not in opts:
        opts["token"] = token(user)
    client, rec = new_client(label, port, **opts)
    await client.connect()
    ctx = await rec.wait_for("connected", timeout=5)
    R.must(client.state == ClientState.CONNECTED and ctx.client, f"{label} connected as {user!r}")
    return client, rec


def new_sub(client: Client, label: str, channel: str = CHANNEL, **opts: Any) -> tuple:
    rec = Recorder(R, f"{label}/{channel}")
    sub = client.new_subscription(channel, events=SubEvents(rec), **opts)
    return sub, rec


async def subscribed(client: Client, label: str, channel: str = CHANNEL, **opts: Any) -> tuple:
    sub, rec = new_sub(client, label, channel, **opts)
    await sub.subscribe()
    ctx = await rec.wait_for("subscribed", timeout=5)
    R.must(sub.state == SubscriptionState.SUBSCRIBED, f"{label} subscribed to {channel!r}")
    return sub, rec, ctx


def api(key: Optional[str] = None) -> cent.Client:
    return cent.Client(ARGS.hub.rstrip("/") + "/api", ARGS.api_key if key is None else key, timeout=5)


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking call (cent's sync client) off the event loop, so that the SDK
    clients of the same loop keep working meanwhile."""
    return await asyncio.to_thread(fn, *args)


async def api_publish(data: Any, channel: str = CHANNEL) -> Any:
    res = await call(api().publish, cent.PublishRequest(channel=channel, data=data))
    R.must(res is not None, f"api publish to {channel!r} has a result")
    return res


async def expect_reply_error(what: str, code: int, coro: Awaitable[Any]) -> None:
    try:
        res = await coro
    except ReplyError as e:
        R.equal(e.code, code, f"{what}: error code")
        return
    except Exception as e:  # noqa: BLE001
        R.check(False, f"{what}: ReplyError {code} expected, got {type(e).__name__}: {e}")
        return
    R.check(False, f"{what}: ReplyError {code} expected, got a result {short(common.describe(res))}")


async def expect_api_error(what: str, code: int, fn: Callable[..., Any], *args: Any) -> None:
    try:
        res = await call(fn, *args)
    except cent.CentApiResponseError as e:
        R.equal(e.code, code, f"{what}: error code")
        return
    except Exception as e:  # noqa: BLE001
        R.check(False, f"{what}: CentApiResponseError {code} expected, got {type(e).__name__}: {e}")
        return
    R.check(False, f"{what}: CentApiResponseError {code} expected, got {short(common.describe(res))}")


def datas(pubs: List[Any]) -> List[Any]:
    """Data of publication contexts, or of Publication objects."""
    return [getattr(p, "pub", p).data for p in pubs]


def offsets(pubs: List[Any]) -> List[int]:
    return [getattr(p, "pub", p).offset for p in pubs]


def consecutive(values: List[int]) -> bool:
    return all(b == a + 1 for a, b in zip(values, values[1:]))


async def settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)


# ------------------------------------------------------------- scenarios
async def s_pubsub() -> None:
    """Connect with a JWT (with an info claim), subscribe, publish from the
    client, receive on another client; payloads round-trip exactly."""
    info = {"name": "Alice ✓", "tags": ["a", "b"]}
    a, ra = await connected("A", "alice", token=token("alice", info=info))
    b, rb = await connected("B", "bob")
    cid_a = ra.all("connected")[0].client
    cid_b = rb.all("connected")[0].client
    R.check(cid_a != cid_b, "client ids differ")
    sa, rsa, ctx = await subscribed(a, "A")
    R.check(ctx.recoverable, "subscribed context: recoverable (history on, recovery forced)")
    # Centrifugo: "recoverable subscriptions are automatically positioned".
    R.check(ctx.positioned, "subscribed context: positioned (as every recoverable subscription)")
    R.check(ctx.stream_position is not None and isinstance(ctx.stream_position.epoch, str),
            "subscribed context carries a stream position")
    sb, rsb, _ = await subscribed(b, "B")
    for p in PAYLOADS:
        await sa.publish(p)
    R.check(True, f"A published {len(PAYLOADS)} payloads")
    got_b = await rsb.wait_count("publication", len(PAYLOADS), timeout=5)
    R.equal(datas(got_b), PAYLOADS, "B received every payload, in order, equal")
    infos = [c.pub.info for c in got_b]
    R.check(all(i is not None and i.user == "alice" and i.client == cid_a for i in infos),
            "each publication carries the publisher's client info (user alice, A's client id)")
    if infos and infos[0] is not None:
        R.equal(infos[0].conn_info, info, "publication info: conn_info is the token's info claim")
    offs = offsets(got_b)
    R.check(offs[0] >= 1 and consecutive(offs), f"offsets are consecutive from >= 1: {offs}")
    got_a = await rsa.wait_count("publication", len(PAYLOADS), timeout=5)
    R.equal(datas(got_a), PAYLOADS, "A (the publisher, subscribed) received its own publications")
    await settle()
    R.equal(len(rsb.all("publication")), len(PAYLOADS), "no extra publication on B")
    # A client-level publish to the channel (not through the subscription).
    await b.publish(CHANNEL, {"from": "bob"})
    c = await rsa.wait_for("publication", lambda c: c.pub.data == {"from": "bob"}, timeout=5)
    R.check(c.pub.info is not None and c.pub.info.user == "bob", "Client.publish: received with bob's info")


async def s_presence() -> None:
    """Presence and presence stats from the SDK, join/leave events."""
    a, ra = await connected("A", "alice", token=token("alice", info={"role": "admin"}))
    b, rb = await connected("B", "bob")
    c, rc = await connected("C", "alice")  # a second connection of alice
    cid = {n: r.all("connected")[0].client for n, r in (("A", ra), ("B", rb), ("C", rc))}
    sa, rsa, _ = await subscribed(a, "A", join_leave=True)
    m = rsa.mark()
    sb, rsb, _ = await subscribed(b, "B", join_leave=True)
    sc, rsc, _ = await subscribed(c, "C", join_leave=True)
    j = await rsa.wait_for("join", lambda x: x.info.client == cid["B"], since=m)
    R.equal(j.info.user, "bob", "A sees B's join (user bob)")
    j = await rsa.wait_for("join", lambda x: x.info.client == cid["C"], since=m)
    R.equal(j.info.user, "alice", "A sees C's join (user alice)")
    pres = await sa.presence()
    R.equal(sorted(pres.clients), sorted(cid.values()), "presence: the 3 client ids")
    R.equal({k: v.user for k, v in pres.clients.items()},
            {cid["A"]: "alice", cid["B"]: "bob", cid["C"]: "alice"}, "presence: users")
    if cid["A"] in pres.clients:
        R.equal(pres.clients[cid["A"]].conn_info, {"role": "admin"}, "presence: A's conn_info")
        R.equal(pres.clients[cid["A"]].client, cid["A"], "presence: ClientInfo.client")
    st = await sa.presence_stats()
    R.equal((st.num_clients, st.num_users), (3, 2), "presence_stats: 3 clients, 2 users")
    m = rsa.mark()
    await sb.unsubscribe()
    lv = await rsa.wait_for("leave", lambda x: x.info.client == cid["B"], since=m)
    R.equal(lv.info.user, "bob", "A sees B's leave after B unsubscribes")
    await c.disconnect()
    lv = await rsa.wait_for("leave", lambda x: x.info.client == cid["C"], since=m)
    R.equal(lv.info.user, "alice", "A sees C's leave after C disconnects")
    st = await sa.presence_stats()
    R.equal((st.num_clients, st.num_users), (1, 1), "presence_stats after the leaves: 1 client, 1 user")
    pres = await sa.presence()
    R.equal(sorted(pres.clients), [cid["A"]], "presence after the leaves: only A")


async def s_history() -> None:
    """History from the SDK: limit, since, reverse, position only, bad epoch."""
    a, ra = await connected("A", "alice")
    sa, rsa, _ = await subscribed(a, "A")
    items = [{"i": i, "s": f"message {i} ✓"} for i in range(1, 6)]
    for it in items:
        await sa.publish(it)
    await rsa.wait_count("publication", 5)
    h = await sa.history(limit=10)
    R.equal(datas(h.publications), items, "history(limit=10): the 5 publications in order")
    R.equal(offsets(h.publications), [1, 2, 3, 4, 5], "history: offsets 1..5")
    R.equal(h.offset, 5, "history: top offset 5")
    R.check(isinstance(h.epoch, str) and h.epoch != "", f"history: non-empty epoch ({h.epoch!r})")
    epoch = h.epoch
    R.check(all(p.info is not None and p.info.user == "alice" for p in h.publications),
            "history: publications keep the publisher's info")
    h = await sa.history(limit=2)
    R.equal(offsets(h.publications), [1, 2], "history(limit=2): the oldest two")
    h = await sa.history(limit=2, reverse=True)
    R.equal(offsets(h.publications), [5, 4], "history(limit=2, reverse): the newest two, newest first")
    h = await sa.history(limit=10, since=StreamPosition(offset=2, epoch=epoch))
    R.equal(offsets(h.publications), [3, 4, 5], "history(since=2): offsets 3..5")
    h = await sa.history(limit=10, since=StreamPosition(offset=4, epoch=epoch), reverse=True)
    R.equal(offsets(h.publications), [3, 2, 1], "history(since=4, reverse): offsets 3, 2, 1")
    h = await sa.history()
    R.equal((len(h.publications), h.offset, h.epoch), (0, 5, epoch),
            "history() without limit: no publications, only the position")
    await expect_reply_error("history(since with a wrong epoch)", 112,
                             sa.history(limit=10, since=StreamPosition(offset=1, epoch="not-the-epoch")))


async def s_recovery() -> None:
    """Recovery after a lost connection: every missed publication exactly once,
    in order; the subscribed context says recovered."""
    proxy = await Proxy(ARGS.port).start()
    a, ra = await connected("A", "alice", port=proxy.port, max_reconnect_delay=0.3)
    sa, rsa, first = await subscribed(a, "A")
    R.must(first.recoverable, "subscription is recoverable")
    sent: List[Any] = []
    for i in range(3):
        sent.append({"n": i, "phase": "before"})
        await api_publish(sent[-1])
    await rsa.wait_count("publication", 3)
    m_client, m_sub = ra.mark(), rsa.mark()
    proxy.block()
    R.check(proxy.cut() == 1, "one connection through the proxy, cut")
    await ra.wait_for("connecting", since=m_client, timeout=5)
    for i in range(3, 13):
        sent.append({"n": i, "phase": "missed", "text": "ünïcödé ✓"})
        await api_publish(sent[-1])
    R.must(a.state == ClientState.CONNECTING, "A was still disconnected after 10 publications")
    proxy.unblock()
    ctx = await rsa.wait_for("subscribed", since=m_sub, timeout=8)
    R.check(ctx.was_recovering, "resubscribe: was_recovering")
    R.check(ctx.recovered, "resubscribe: recovered")
    R.check(ctx.stream_position is not None and first.stream_position is not None
            and ctx.stream_position.epoch == first.stream_position.epoch, "same epoch after recovery")
    for i in range(13, 15):
        sent.append({"n": i, "phase": "after"})
        await api_publish(sent[-1])
    await rsa.wait_count("publication", len(sent), timeout=5)
    await settle()
    got = rsa.all("publication")
    R.equal(datas(got), sent, "A received every publication exactly once, in order")
    R.check(consecutive(offsets(got)), f"offsets consecutive: {offsets(got)}")
    await proxy.close()


async def s_refresh() -> None:
    """Connection token refresh: an expired token first (109, get_token), then
    3-second tokens; the connection stays up across several expiries."""
    calls: List[float] = []

    async def get_token() -> str:
        calls.append(time.monotonic())
        return token("alice", ttl=3)

    a, ra = new_client("A", token=token("alice", ttl=-30), get_token=get_token)
    await a.connect()
    await ra.wait_for("connected", timeout=8)
    errs = ra.all("error")
    R.check(any(isinstance(e.error, ReplyError) and e.error.code == 109 for e in errs),
            "connect with an expired token: the hub answered 109 (token expired)")
    R.check(len(calls) == 1, f"get_token called once for the new token ({len(calls)})")
    sa, rsa, _ = await subscribed(a, "A")
    m = ra.mark()
    await asyncio.sleep(8)
    R.equal([n for n, _c, _t in ra.events[m:] if n in ("connecting", "disconnected", "connected")], [],
            "no reconnect for 8 s with 3-second tokens")
    R.check(len(calls) >= 3, f"get_token called for refreshes ({len(calls) - 1} refreshes in 8 s)")
    R.check(a.state == ClientState.CONNECTED, "still connected")
    await api_publish({"still": "here"})
    await rsa.wait_for("publication", lambda c: c.pub.data == {"still": "here"})
    R.check(True, "the subscription still receives publications")


async def s_expire() -> None:
    """No get_token, the token expires: the hub disconnects with 3005
    (expired), refuses the reconnect with 109, and the SDK stops with
    'unauthorized' (1). The hub runs with --client-expired-grace 1."""
    a, ra = new_client("A", token=token("alice", ttl=2))
    t0 = time.monotonic()
    await a.connect()
    await ra.wait_for("connected")
    ctx = await ra.wait_for("connecting", lambda c: c.code != 0, timeout=8)
    dt = time.monotonic() - t0
    R.equal((ctx.code, ctx.reason), (3005, "expired"), "the hub closed the connection: 3005 expired")
    R.check(1.0 <= dt <= 5.0, f"... about 1 s (the grace) after the token's exp ({dt:.1f} s after connect)")
    d = await ra.wait_for("disconnected", timeout=5)
    R.check(any(isinstance(e.error, ReplyError) and e.error.code == 109 for e in ra.all("error")),
            "the reconnect with the expired token got error 109")
    R.equal(d.code, 1, "the SDK stops: disconnected with 'unauthorized' (no get_token)")


async def s_bad_token() -> None:
    """Invalid tokens: the hub closes with 3500 (invalid token), the SDK does
    not reconnect."""
    cases = [
        ("wrong secret", hs256(claims("alice"), "not-" + ARGS.secret)),
        ("alg none", unsigned(claims("alice"))),
        ("garbage", "not.a.jwt"),
        ("claims tampered", _tampered()),
    ]
    for label, tok in cases:
        a, ra = new_client(label, token=tok)
        await a.connect()
        try:
            d = await ra.wait_for("disconnected", timeout=5)
        except Fatal as e:
            R.check(False, f"{label}: {e}")
            await a.disconnect()
            continue
        R.check(not ra.all("connected"), f"{label}: never connected")
        R.equal((d.code, d.reason), (3500, "invalid token"), f"{label}: disconnected 3500 invalid token")
        m = ra.mark()
        await asyncio.sleep(0.5)
        R.check(not ra.all("connecting", since=m) and a.state == ClientState.DISCONNECTED,
                f"{label}: no reconnect")
    # Expired, without get_token: 109, then the SDK gives up as unauthorized.
    a, ra = new_client("expired", token=token("alice", ttl=-30))
    await a.connect()
    d = await ra.wait_for("disconnected", timeout=5)
    R.check(any(isinstance(e.error, ReplyError) and e.error.code == 109 for e in ra.all("error")),
            "expired token: error 109")
    R.equal(d.code, 1, "expired token without get_token: disconnected 'unauthorized'")


def _tampered() -> str:
    """A valid token for bob whose payload is swapped for alice's."""
    good = token("bob").split(".")
    other = token("alice").split(".")
    return ".".join([good[0], other[1], good[2]])


async def s_forbidden() -> None:
    """Forbidden channels and calls: 102 unknown channel, 103 permission denied."""
    a, ra = await connected("A", "alice")
    s, rs = new_sub(a, "A", "secret:x")
    await s.subscribe()
    u = await rs.wait_for("unsubscribed", timeout=5)
    R.equal(u.code, 102, "subscribe to secret:x (unknown namespace): unsubscribed with 102")
    R.check(s.state == SubscriptionState.UNSUBSCRIBED, "... and stays unsubscribed")
    await expect_reply_error("publish to secret:x", 102, a.publish("secret:x", {"x": 1}))
    await expect_reply_error("presence of secret:x", 102, a.presence("secret:x"))
    await expect_reply_error("publish to news without being subscribed", 103, a.publish(CHANNEL, {"x": 1}))
    await expect_reply_error("presence of news without being subscribed", 103, a.presence(CHANNEL))
    await expect_reply_error("history of news without being subscribed", 103, a.history(CHANNEL, limit=10))
    R.check(a.state == ClientState.CONNECTED, "errors leave the connection up")
    # The connection still works.
    await subscribed(a, "A")


# ---------------------------------------------------------- server API
async def s_api_publish() -> None:
    """publish and broadcast through the server API, seen by SDK clients."""
    a, ra = await connected("A", "alice")
    sa, rsa, _ = await subscribed(a, "A")
    s2, rs2, _ = await subscribed(a, "A", "sport")
    res = await api_publish(PAYLOADS[0])
    R.equal(res.offset, 1, "publish result: offset 1")
    R.check(isinstance(res.epoch, str) and res.epoch != "", f"publish result: epoch ({res.epoch!r})")
    c = await rsa.wait_for("publication")
    R.equal(c.pub.data, PAYLOADS[0], "publication data equal")
    R.check(c.pub.info is None, "no client info on a server API publication")
    R.equal(c.pub.offset, 1, "publication offset 1")
    for p in PAYLOADS[1:]:
        await api_publish(p)
    got = await rsa.wait_count("publication", len(PAYLOADS))
    R.equal(datas(got), PAYLOADS, "every payload arrives equal, in order")
    res = await call(api().publish, cent.PublishRequest(channel=CHANNEL, data={"tagged": 1}, tags={"k": "v", "ü": "✓"}))
    c = await rsa.wait_for("publication", lambda c: c.pub.data == {"tagged": 1})
    R.equal(c.pub.tags, {"k": "v", "ü": "✓"}, "publish with tags: the tags arrive")
    m = rsa.mark()
    before = (await call(api().history, cent.HistoryRequest(channel=CHANNEL))).offset
    await call(api().publish, cent.PublishRequest(channel=CHANNEL, data={"skip": 1}, skip_history=True))
    await rsa.wait_for("publication", lambda c: c.pub.data == {"skip": 1}, since=m)
    after = (await call(api().history, cent.HistoryRequest(channel=CHANNEL))).offset
    R.equal(after, before, "publish with skip_history: delivered, history position unchanged")
    m, m2 = rsa.mark(), rs2.mark()
    res = await call(api().broadcast, cent.BroadcastRequest(channels=[CHANNEL, "sport"], data={"b": "✓"}))
    R.check(res is not None and len(res.responses) == 2, "broadcast: one response per channel")
    if res is not None:
        R.check(all(r.error is None and r.result is not None for r in res.responses),
                f"broadcast: every response a result ({short(common.describe(res.model_dump()))})")
    await rsa.wait_for("publication", lambda c: c.pub.data == {"b": "✓"}, since=m)
    await rs2.wait_for("publication", lambda c: c.pub.data == {"b": "✓"}, since=m2)
    R.check(True, "broadcast arrives on both channels")
    await expect_api_error("publish to secret:x", 102, api().publish, cent.PublishRequest(channel="secret:x", data={}))
    await expect_api_error("publish to an empty channel name", 107, api().publish, cent.PublishRequest(channel="", data={}))
    res = await call(api().broadcast, cent.BroadcastRequest(channels=[CHANNEL, "secret:x"], data={"c": 1}))
    if R.check(res is not None and len(res.responses) == 2, "broadcast with one bad channel: two responses"):
        R.check(res.responses[0].error is None, "... the good channel succeeded")
        R.check(res.responses[1].error is not None and res.responses[1].error.code == 102,
                "... the bad one has error 102")


async def s_api_history() -> None:
    """history (limit, reverse, since) and history_remove through the server API."""
    cl = api()
    items = [{"i": i} for i in range(1, 8)]
    for it in items:
        await api_publish(it)
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=100))
    R.equal([p.data for p in h.publications], items, "history(limit=100): all 7 in order")
    R.equal([p.offset for p in h.publications], list(range(1, 8)), "history: offsets 1..7")
    R.equal(h.offset, 7, "history: top offset 7")
    epoch = h.epoch
    R.check(epoch != "", "history: epoch set")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=3))
    R.equal([p.offset for p in h.publications], [1, 2, 3], "history(limit=3): oldest 3")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=3, reverse=True))
    R.equal([p.offset for p in h.publications], [7, 6, 5], "history(limit=3, reverse): newest 3")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=100,
                                                   since=cent.StreamPosition(offset=5, epoch=epoch)))
    R.equal([p.offset for p in h.publications], [6, 7], "history(since=5): 6, 7")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=100, reverse=True,
                                                   since=cent.StreamPosition(offset=5, epoch=epoch)))
    R.equal([p.offset for p in h.publications], [4, 3, 2, 1], "history(since=5, reverse): 4, 3, 2, 1")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL))
    R.equal((len(h.publications), h.offset, h.epoch), (0, 7, epoch), "history without limit: position only")
    await expect_api_error("history since a wrong epoch", 112, cl.history,
                           cent.HistoryRequest(channel=CHANNEL, limit=10,
                                               since=cent.StreamPosition(offset=1, epoch="bad-epoch")))
    h = await call(cl.history, cent.HistoryRequest(channel="empty-channel", limit=10))
    R.equal(len(h.publications), 0, "history of a channel never published to: empty")
    res = await call(cl.history_remove, cent.HistoryRemoveRequest(channel=CHANNEL))
    R.check(res is not None, "history_remove: a result")
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=100))
    R.equal(len(h.publications), 0, "history after history_remove: no publications")
    await expect_api_error("history of secret:x", 102, cl.history, cent.HistoryRequest(channel="secret:x", limit=1))


async def s_api_history_ttl() -> None:
    """--history-ttl 2: publications leave the history after their ttl, the
    stream position stays."""
    cl = api()
    for i in range(2):
        await api_publish({"i": i})
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=10))
    R.equal(len(h.publications), 2, "history right after publishing: 2")
    epoch = h.epoch
    await asyncio.sleep(3.5)
    h = await call(cl.history, cent.HistoryRequest(channel=CHANNEL, limit=10))
    R.equal(len(h.publications), 0, "history 3.5 s later (ttl 2 s): empty")
    R.equal((h.offset, h.epoch), (2, epoch), "the stream position is kept (offset 2, same epoch)")
    res = await api_publish({"i": 2})
    R.equal(res.offset, 3, "the next publication continues at offset 3")


async def s_api_presence() -> None:
    """presence, presence_stats, channels, info through the server API."""
    a, ra = await connected("A", "alice", token=token("alice", info={"k": "ä"}))
    b, rb = await connected("B", "bob")
    ca, cb = ra.all("connected")[0].client, rb.all("connected")[0].client
    await subscribed(a, "A")
    await subscribed(b, "B")
    await subscribed(a, "A", "sport")
    cl = api()
    p = await call(cl.presence, cent.PresenceRequest(channel=CHANNEL))
    R.equal(sorted(p.presence), sorted([ca, cb]), "presence: both client ids")
    R.equal({k: v.user for k, v in p.presence.items()}, {ca: "alice", cb: "bob"}, "presence: users")
    if ca in p.presence:
        R.equal(p.presence[ca].conn_info, {"k": "ä"}, "presence: conn_info from the token")
    s = await call(cl.presence_stats, cent.PresenceStatsRequest(channel=CHANNEL))
    R.equal((s.num_clients, s.num_users), (2, 2), "presence_stats: 2 clients, 2 users")
    s = await call(cl.presence_stats, cent.PresenceStatsRequest(channel="nobody-here"))
    R.equal((s.num_clients, s.num_users), (0, 0), "presence_stats of an empty channel: 0, 0")
    ch = await call(cl.channels, cent.ChannelsRequest())
    R.equal({k: v.num_clients for k, v in ch.channels.items()}, {CHANNEL: 2, "sport": 1},
            "channels: news (2 clients), sport (1)")
    ch = await call(cl.channels, cent.ChannelsRequest(pattern="sp*"))
    R.equal(sorted(ch.channels), ["sport"], "channels with pattern sp*: sport")
    info = await call(cl.info, cent.InfoRequest())
    R.check(len(info.nodes) == 1, f"info: one node ({len(info.nodes)})")
    if info.nodes:
        n = info.nodes[0]
        R.check(n.uid != "" and n.name != "", f"info: node uid and name set ({n.uid!r}, {n.name!r})")
        R.equal((n.num_clients, n.num_users, n.num_subs, n.num_channels), (2, 2, 3, 2),
                "info: num_clients 2, num_users 2, num_subs 3, num_channels 2")
    await expect_api_error("presence of secret:x", 102, cl.presence, cent.PresenceRequest(channel="secret:x"))


async def s_api_disconnect() -> None:
    """disconnect through the server API: by user, by client, with a custom code."""
    a1, r1 = await connected("A1", "alice")
    a2, r2 = await connected("A2", "alice")
    b, rb = await connected("B", "bob")
    c2 = r2.all("connected")[0].client
    m0 = r1.mark()
    cl = api()
    res = await call(cl.disconnect, cent.DisconnectRequest(user="alice", client=c2))
    R.check(res is not None, "disconnect(user, client): a result")
    d = await r2.wait_for("disconnected", timeout=5)
    R.equal(d.code, 3503, "the targeted client is disconnected with 3503 (force no reconnect)")
    await settle(0.5)
    R.check(a1.state == ClientState.CONNECTED and not r1.all("connecting", since=m0),
            "the user's other connection stays")
    R.check(a2.state == ClientState.DISCONNECTED, "3503: the SDK does not reconnect")
    m1 = r1.mark()
    await call(cl.disconnect, cent.DisconnectRequest(user="alice", disconnect=cent.Disconnect(code=4000, reason="go away")))
    try:
        c = await r1.wait_for("connecting", since=m1, timeout=5)
        R.equal((c.code, c.reason), (4000, "go away"), "custom disconnect 4000 'go away' reaches the SDK")
        await r1.wait_for("connected", since=m1, timeout=5)
        R.check(True, "code 4000 (< 4500): the SDK reconnects")
    except Fatal as e:
        got = [(n, common.describe(x)) for n, x, _ in r1.events[m1:]]
        R.check(False, f"custom disconnect 4000 'go away': {e}; events instead: {short(got)}")
        # Go on with the last step on a connected client.
        if a1.state != ClientState.CONNECTED:
            await a1.connect()
            await r1.wait_for("connected", since=m1, timeout=5)
    m1 = r1.mark()
    await call(cl.disconnect, cent.DisconnectRequest(user="alice"))
    d = await r1.wait_for("disconnected", since=m1, timeout=5)
    R.equal(d.code, 3503, "disconnect(user) without a custom code: 3503")
    await settle(0.3)
    R.check(b.state == ClientState.CONNECTED, "other users stay connected")


async def s_api_unsubscribe() -> None:
    """unsubscribe through the server API: the SDK subscription is unsubscribed."""
    a, ra = await connected("A", "alice")
    b, rb = await connected("B", "bob")
    sa, rsa, _ = await subscribed(a, "A")
    sb, rsb, _ = await subscribed(b, "B")
    res = await call(api().unsubscribe, cent.UnsubscribeRequest(user="alice", channel=CHANNEL))
    R.check(res is not None, "unsubscribe: a result")
    u = await rsa.wait_for("unsubscribed", timeout=5)
    R.check(u.code < 2500, f"unsubscribed with a code < 2500 (no resubscribe): {u.code} {u.reason!r}")
    await settle(0.3)
    R.check(sa.state == SubscriptionState.UNSUBSCRIBED, "A's subscription stays unsubscribed")
    R.check(sb.state == SubscriptionState.SUBSCRIBED, "B's subscription is untouched")
    await api_publish({"after": "unsubscribe"})
    await rsb.wait_for("publication")
    await settle(0.3)
    R.check(not rsa.all("publication"), "A gets no publication after the server unsubscribe")
    R.check(a.state == ClientState.CONNECTED, "A stays connected")


async def s_api_subscribe() -> None:
    """subscribe through the server API: a server-side subscription appears on
    the connected client, and its publications arrive."""
    a, ra = await connected("A", "alice")
    ca = ra.all("connected")[0].client
    res = await call(api().subscribe, cent.SubscribeRequest(user="alice", channel=CHANNEL, client=ca))
    R.check(res is not None, "subscribe: a result")
    s = await ra.wait_for("subscribed", timeout=5)
    R.equal(s.channel, CHANNEL, "the client sees a server-side subscription to news")
    await api_publish({"server": "side"})
    p = await ra.wait_for("publication", timeout=5)
    R.equal((p.channel, p.pub.data), (CHANNEL, {"server": "side"}), "its publication arrives (client-level event)")
    await call(api().unsubscribe, cent.UnsubscribeRequest(user="alice", channel=CHANNEL))
    u = await ra.wait_for("unsubscribed", timeout=5)
    R.equal(u.channel, CHANNEL, "server unsubscribe of a server-side subscription: unsubscribed event")


async def s_api_auth() -> None:
    """Server API authentication: wrong or missing key -> 401."""
    req = cent.PublishRequest(channel=CHANNEL, data={"x": 1})
    for label, key in (("a wrong key", "wrong-" + ARGS.api_key), ("no key", "")):
        try:
            await call(api(key).publish, req)
            R.check(False, f"{label}: CentUnauthorizedError expected, the call succeeded")
        except cent.CentUnauthorizedError:
            R.check(True, f"{label}: CentUnauthorizedError (HTTP 401)")
        except Exception as e:  # noqa: BLE001
            R.check(False, f"{label}: CentUnauthorizedError expected, got {type(e).__name__}: {e}")
    url = ARGS.hub.rstrip("/") + "/api/publish"
    body = {"channel": CHANNEL, "data": {"x": 2}}

    def post(headers: Dict[str, str]) -> requests.Response:
        return requests.post(url, json=body, headers=headers, timeout=5)

    r = await call(post, {"Authorization": "apikey " + ARGS.api_key})
    R.equal(r.status_code, 200, "Authorization: apikey KEY accepted")
    R.check("result" in (r.json() if r.status_code == 200 else {}), f"... with a result ({r.text[:200]})")
    r = await call(post, {"Authorization": "apikey wrong"})
    R.equal(r.status_code, 401, "Authorization: apikey WRONG refused with 401")
    r = await call(post, {"X-API-Key": ARGS.api_key})
    R.equal(r.status_code, 200, "X-API-Key accepted")
    res = await call(api().info, cent.InfoRequest())
    R.check(res is not None and len(res.nodes) == 1, "info with the right key works")


# ---------------------------------------------------------------- tokens
def _key(name: str) -> bytes:
    with open(os.path.join(ARGS.dir, name), "rb") as f:
        return f.read()


async def _expect_refused(label: str, tok: str) -> None:
    a, ra = new_client(label, token=tok)
    await a.connect()
    try:
        d = await ra.wait_for("disconnected", timeout=5)
    except Fatal as e:
        R.check(False, f"{label}: refused expected: {e}")
        await a.disconnect()
        return
    R.check(not ra.all("connected"), f"{label}: never connected")
    R.equal(d.code, 3500, f"{label}: disconnected with 3500 (invalid token)")


async def _expect_expired(label: str, tok: str) -> None:
    """A correctly signed token past its exp: error 109 to the connect; without
    get_token the SDK then stops as unauthorized (1)."""
    a, ra = new_client(label, token=tok)
    await a.connect()
    try:
        d = await ra.wait_for("disconnected", timeout=5)
    except Fatal as e:
        R.check(False, f"{label}: {e}")
        await a.disconnect()
        return
    R.check(any(isinstance(e.error, ReplyError) and e.error.code == 109 for e in ra.all("error")),
            f"{label}: error 109 (token expired)")
    R.equal(d.code, 1, f"{label}: the SDK stops as unauthorized (1)")


async def _expect_accepted(label: str, tok: str, user: str) -> None:
    a, ra = new_client(label, token=tok)
    await a.connect()
    try:
        await ra.wait_for("connected", timeout=5)
    except Fatal as e:
        R.check(False, f"{label}: connect expected: {e}; events {short(common.describe([(n, c) for n, c, _ in ra.events]))}")
        await a.disconnect()
        return
    sub, rs, _ = await subscribed(a, label)
    pres = await sub.presence()
    R.check([v.user for v in pres.clients.values()] == [user], f"{label}: connected as user {user!r}")
    await a.disconnect()


async def s_tokens_rs256() -> None:
    """RS256 connection tokens; forged ones refused."""
    priv, pub = _key("rsa.key.pem"), _key("rsa.pub.pem")
    await _expect_accepted("RS256", common.signed(claims("ralph"), priv, "RS256"), "ralph")
    await _expect_refused("RS256 signed with another key", common.signed(claims("ralph"), common.other_private_pem("rsa"), "RS256"))
    await _expect_refused("HS256 keyed with the RSA public key (algorithm confusion)", hs256(claims("ralph"), pub))
    await _expect_refused("alg none", unsigned(claims("ralph")))
    await _expect_refused("HS256 while no HMAC secret is configured", hs256(claims("ralph"), ARGS.secret))
    await _expect_expired("RS256 expired", common.signed(claims("ralph", ttl=-30), priv, "RS256"))


async def s_tokens_es256() -> None:
    """ES256 connection tokens; forged ones refused."""
    priv, pub = _key("ec.key.pem"), _key("ec.pub.pem")
    await _expect_accepted("ES256", common.signed(claims("eve"), priv, "ES256"), "eve")
    await _expect_refused("ES256 signed with another key", common.signed(claims("eve"), common.other_private_pem("ec"), "ES256"))
    await _expect_refused("HS256 keyed with the EC public key (algorithm confusion)", hs256(claims("eve"), pub))
    await _expect_refused("alg none", unsigned(claims("eve")))
    await _expect_expired("ES256 expired", common.signed(claims("eve", ttl=-30), priv, "ES256"))


async def s_tokens_mixed() -> None:
    """HMAC, RSA and ECDSA configured together: each valid token accepted, the
    public keys never accepted as HMAC secrets."""
    await _expect_accepted("HS256", token("hank"), "hank")
    await _expect_accepted("RS256", common.signed(claims("ralph"), _key("rsa.key.pem"), "RS256"), "ralph")
    await _expect_accepted("ES256", common.signed(claims("eve"), _key("ec.key.pem"), "ES256"), "eve")
    await _expect_refused("HS256 keyed with the RSA public key", hs256(claims("mallory"), _key("rsa.pub.pem")))
    await _expect_refused("HS256 keyed with the EC public key", hs256(claims("mallory"), _key("ec.pub.pem")))
    await _expect_refused("alg none", unsigned(claims("mallory")))


SCENARIOS: Dict[str, Callable[[], Awaitable[None]]] = {
    "pubsub": s_pubsub,
    "presence": s_presence,
    "history": s_history,
    "recovery": s_recovery,
    "refresh": s_refresh,
    "expire": s_expire,
    "bad-token": s_bad_token,
    "forbidden": s_forbidden,
    "api-publish": s_api_publish,
    "api-history": s_api_history,
    "api-history-ttl": s_api_history_ttl,
    "api-presence": s_api_presence,
    "api-disconnect": s_api_disconnect,
    "api-unsubscribe": s_api_unsubscribe,
    "api-subscribe": s_api_subscribe,
    "api-auth": s_api_auth,
    "tokens-rs256": s_tokens_rs256,
    "tokens-es256": s_tokens_es256,
    "tokens-mixed": s_tokens_mixed,
}


async def run(name: str) -> int:
    try:
        await SCENARIOS[name]()
    except Fatal as e:
        if str(e) not in R.failures:
            R.failures.append(str(e))
            R.log(f"FAIL: {e}")
    except Exception as e:  # noqa: BLE001
        R.failures.append(f"exception: {type(e).__name__}: {e}")
        R.log(f"FAIL: exception: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    finally:
        for c in CLIENTS:
            try:
                await asyncio.wait_for(c.disconnect(), 2)
            except Exception:  # noqa: BLE001
                pass
    if R.failures:
        R.log(f"{len(R.failures)} check(s) failed")
        return 1
    R.log("all checks passed")
    return 0


def main() -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    p.add_argument("--list", action="store_true", help="print the scenarios and exit (also checks the imports)")
    p.add_argument("--hub", help="http://127.0.0.1:PORT of the hub")
    p.add_argument("--api-key", default="")
    p.add_argument("--secret", default="")
    p.add_argument("--dir", default=".", help="the case's folder (key files)")
    ARGS = p.parse_args()
    if ARGS.list:
        for name, fn in SCENARIOS.items():
            print(f"{name:16} {' '.join((fn.__doc__ or '').split(chr(10) * 2)[0].split())}")
        from importlib.metadata import version

        print(" ".join(f"{d} {version(d)}" for d in ("centrifuge-python", "cent", "PyJWT", "cryptography")))
        return 0
    if not ARGS.scenario or not ARGS.hub:
        p.print_usage(sys.stderr)
        return 2
    ARGS.port = int(ARGS.hub.rstrip("/").rsplit(":", 1)[1])
    R.log(f"scenario {ARGS.scenario} against {ARGS.hub}")
    return asyncio.run(run(ARGS.scenario))


if __name__ == "__main__":
    sys.exit(main())
