#!/usr/bin/env python3
"""Interop peer: a `websockets` (PyPI) echo server, for `wsx connect`.

Listens on 127.0.0.1 (port 0 = a free one, written to --port-file), echoes
every text and binary message, and checks each connection: the
permessage-deflate offer of the client (--expect-offer), whether deflate was
negotiated (--expect-deflate), that the client compressed its compressible
messages on the wire when deflate is on, and that the client closed with 1000.
With --once it serves a single connection and exits 0 when every check passed,
1 otherwise (every failed check is printed on stderr). It always prints
  RESPONSE-EXTENSIONS: <the Sec-WebSocket-Extensions it answered, or nothing>
on stderr.

Example:
  py_server.py --port-file p --once --server-max-window-bits 12 --expect-deflate on
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "expectation syntax (--expect-offer, repeatable): NAME (present), NAME=V,\n"
            "NAME<=V, NAME?<=V (if present), !NAME (absent)"
        ),
    )
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port (default: 0, a free one)")
    ap.add_argument("--port-file", help="write the port to this file once listening")
    ap.add_argument("--no-deflate", action="store_true", help="decline permessage-deflate")
    ap.add_argument(
        "--server-no-context-takeover", action="store_true", help="always answer server_no_context_takeover"
    )
    ap.add_argument(
        "--client-no-context-takeover", action="store_true", help="always answer client_no_context_takeover"
    )
    ap.add_argument("--server-max-window-bits", type=int, metavar="N", help="limit our window to N bits (9-15)")
    ap.add_argument(
        "--client-max-window-bits",
        type=int,
        metavar="N",
        help="limit the client's window to N bits when it offers client_max_window_bits",
    )
    ap.add_argument("--expect-deflate", choices=["on", "off", "any"], default="any")
    ap.add_argument("--expect-offer", action="append", default=[], metavar="SPEC", help="check an offer parameter")
    ap.add_argument("--no-wire-check", action="store_true", help="do not check that the client compressed")
    ap.add_argument("--once", action="store_true", help="serve one connection, then exit with the verdict")
    ap.add_argument("--timeout", type=float, default=30.0, help="with --once: give up after this many seconds")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> int:
    counts: dict[int, int] = {}

    class CountingConnection(ServerConnection):
        def data_received(self, data: bytes) -> None:
            counts[id(self)] = counts.get(id(self), 0) + len(data)
            super().data_received(data)

    done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        errors: list[str] = []
        offer = ws.request.headers.get("Sec-WebSocket-Extensions")
        answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        log(f"connection from {ws.remote_address}")
        log(f"offer:    {offer!r}")
        log(f"RESPONSE-EXTENSIONS: {answer or ''}")
        offered = common.deflate_params(offer)
        if args.expect_offer:
            if offered is None:
                errors.append(f"no permessage-deflate offer (Sec-WebSocket-Extensions: {offer!r})")
            else:
                errors += common.check_params(offered, args.expect_offer, "offer")
        deflate_on = common.deflate_params(answer) is not None
        if args.expect_deflate == "on" and not deflate_on:
            errors.append(f"permessage-deflate not negotiated (offer {offer!r}, response {answer!r})")
        if args.expect_deflate == "off" and deflate_on:
            errors.append(f"permessage-deflate negotiated but must not be (offer {offer!r}, response {answer!r})")

        payloads: list[bytes] = []
        base = counts.get(id(ws), 0)
        start = time.monotonic()
        try:
            async for msg in ws:
                payloads.append(common.as_bytes(msg))
                await ws.send(msg)
        except ConnectionClosed as e:
            errors.append(f"connection closed abnormally: {e}")
        got = counts.get(id(ws), 0) - base
        log(f"{len(payloads)} messages echoed in {time.monotonic() - start:.2f} s, {got} bytes received")
        if deflate_on and not args.no_wire_check and payloads:
            budget, compressible = common.wire_budget(payloads)
            log(f"wire check: {got} bytes received, budget {budget} ({compressible} compressible)")
            if got > budget:
                errors.append(
                    f"client messages not compressed: {got} bytes on the wire for {compressible} bytes "
                    f"of compressible payload (budget {budget})"
                )
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            errors.append("no close frame received from the client")
        elif rcvd.code != 1000:
            errors.append(f"client close code {rcvd.code} {rcvd.reason!r}, expected 1000")
        else:
            log(f"closed: client sent {rcvd.code} {rcvd.reason!r}")
        for e in errors:
            log(f"FAIL: {e}")
        if not errors:
            log("connection ok")
        if not done.done():
            done.set_result(errors)

    if args.no_deflate:
        kwargs: dict = dict(compression=None)
    else:
        kwargs = dict(
            compression=None,
            extensions=[
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=args.server_no_context_takeover,
                    client_no_context_takeover=args.client_no_context_takeover,
                    server_max_window_bits=args.server_max_window_bits,
                    client_max_window_bits=args.client_max_window_bits,
                )
            ],
        )
    async with serve(
        handler,
        args.host,
        args.port,
        max_size=64 * common.MIB,
        ping_interval=None,
        close_timeout=5,
        create_connection=CountingConnection,
        **kwargs,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        log(f"listening on ws://{args.host}:{port}/")
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.replace(tmp, args.port_file)
        if not args.once:
            await server.serve_forever()
            return 0
        try:
            errors = await asyncio.wait_for(done, timeout=args.timeout)
        except asyncio.TimeoutError:
            log(f"FAIL: no complete connection within {args.timeout} s")
            return 1
    return 1 if errors else 0


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
