#!/usr/bin/env python3
"""Interop peer: a `websockets` (PyPI) client against an echo server (`wsx serve`).

Sends text and binary messages of several sizes (up to 1 MiB, compressible
and not), checks that every echo comes back byte-exact and with the same type,
checks the negotiated Sec-WebSocket-Extensions, checks that a compressible
echo was really compressed on the wire when permessage-deflate is on, closes
with 1000 and checks the server's close code. Exit 0 when every check passed,
1 otherwise (every failed check is printed on stderr).

Example:
  py_client.py ws://127.0.0.1:9001/ --server-max-window-bits 9 \
      --expect-deflate on --expect-response 'server_max_window_bits<=9'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "expectation syntax (--expect-response, repeatable): NAME (present), NAME=V,\n"
            "NAME<=V, NAME?<=V (if present), !NAME (absent)"
        ),
    )
    ap.add_argument("url", help="ws:// URL of an echo server")
    ap.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    ap.add_argument("--server-no-context-takeover", action="store_true", help="offer server_no_context_takeover")
    ap.add_argument("--client-no-context-takeover", action="store_true", help="offer client_no_context_takeover")
    ap.add_argument("--server-max-window-bits", type=int, metavar="N", help="offer server_max_window_bits=N")
    ap.add_argument(
        "--client-max-window-bits",
        type=int,
        metavar="N",
        help="offer client_max_window_bits=N (default: the bare parameter)",
    )
    ap.add_argument(
        "--expect-deflate",
        choices=["on", "off", "any"],
        default="any",
        help="whether permessage-deflate must be negotiated (default: any)",
    )
    ap.add_argument("--expect-response", action="append", default=[], metavar="SPEC", help="check a response parameter")
    ap.add_argument("--no-wire-check", action="store_true", help="do not check that the server compressed its echoes")
    ap.add_argument("--timeout", type=float, default=25.0, help="overall time limit in seconds (default: 25)")
    return ap.parse_args(argv)


async def run(args: argparse.Namespace) -> list[str]:
    received_bytes = 0

    class CountingConnection(ClientConnection):
        def data_received(self, data: bytes) -> None:
            nonlocal received_bytes
            received_bytes += len(data)
            super().data_received(data)

    kwargs: dict = dict(
        max_size=64 * common.MIB,
        open_timeout=10,
        close_timeout=5,
        ping_interval=None,
        create_connection=CountingConnection,
    )
    if args.no_deflate:
        kwargs["compression"] = None
    else:
        kwargs["extensions"] = [
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=args.server_no_context_takeover,
                client_no_context_takeover=args.client_no_context_takeover,
                server_max_window_bits=args.server_max_window_bits,
                client_max_window_bits=args.client_max_window_bits or True,
            )
        ]
        kwargs["compression"] = None  # extensions given explicitly

    errors: list[str] = []
    try:
        ws = await connect(args.url, **kwargs)
    except Exception as e:  # handshake failure of any kind
        return [f"handshake failed: {type(e).__name__}: {e}"]

    offer = ws.request.headers.get("Sec-WebSocket-Extensions") if ws.request else None
    answer = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
    print(f"offer:    {offer!r}", file=sys.stderr)
    print(f"response: {answer!r}", file=sys.stderr)
    print(f"active extensions: {[type(e).__name__ for e in ws.protocol.extensions]}", file=sys.stderr)
    params = common.deflate_params(answer)
    deflate_on = params is not None
    if args.expect_deflate == "on" and not deflate_on:
        errors.append(f"permessage-deflate not negotiated (response Sec-WebSocket-Extensions: {answer!r})")
    if args.expect_deflate == "off" and deflate_on:
        errors.append(f"permessage-deflate negotiated but must not be: {answer!r}")
    if deflate_on:
        errors += common.check_params(params, args.expect_response, "response")
    elif args.expect_response and args.expect_deflate == "on":
        errors.append(f"cannot check response parameters {args.expect_response}: no permessage-deflate")

    messages = common.client_messages()
    base = received_bytes
    start = time.monotonic()
    for label, payload in messages:
        await ws.send(payload)
        try:
            echo = await asyncio.wait_for(ws.recv(), timeout=10)
        except Exception as e:
            errors.append(f"{label}: no echo: {type(e).__name__}: {e}")
            break
        if type(echo) is not type(payload):
            errors.append(f"{label}: echo is {type(echo).__name__}, sent {type(payload).__name__}")
        elif echo != payload:
            first = next((i for i, (a, b) in enumerate(zip(echo, payload)) if a != b), min(len(echo), len(payload)))
            errors.append(f"{label}: echo differs (sent {len(payload)}, got {len(echo)}, first difference at {first})")
    else:
        print(
            f"{len(messages)} echoes checked in {time.monotonic() - start:.2f} s, "
            f"{received_bytes - base} bytes received",
            file=sys.stderr,
        )
        if deflate_on and not args.no_wire_check:
            budget, compressible = common.wire_budget([common.as_bytes(p) for _, p in messages])
            got = received_bytes - base
            print(f"wire check: {got} bytes received, budget {budget} ({compressible} compressible)", file=sys.stderr)
            if got > budget:
                errors.append(
                    f"server echoes not compressed: {got} bytes on the wire for {compressible} bytes of "
                    f"compressible payload (budget {budget})"
                )

    try:
        await ws.close(1000, "interop done")
        await asyncio.wait_for(ws.wait_closed(), timeout=5)
    except Exception as e:
        errors.append(f"close failed: {type(e).__name__}: {e}")
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        errors.append("no close frame received from the server")
    elif rcvd.code != 1000:
        errors.append(f"server close code {rcvd.code} {rcvd.reason!r}, expected 1000")
    else:
        print(f"closed: server sent {rcvd.code}", file=sys.stderr)
    return errors


def main() -> int:
    args = parse_args()
    try:
        errors = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout))
    except asyncio.TimeoutError:
        errors = [f"timed out after {args.timeout} s"]
    for e in errors:
        print(f"FAIL: {e}", file=sys.stderr)
    if not errors:
        print("ok", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
