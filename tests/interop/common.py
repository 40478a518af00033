"""Shared helpers of the Python interop peers (py_client.py, py_server.py).

Standard library only, so that scripts/interop.sh can also run
`python3 tests/interop/common.py lines FILE` (the input of `wsx connect`)
without the venv.

The same payloads and checks exist in JavaScript in common.js; keep them alike.
"""

from __future__ import annotations

import re
import sys
import zlib

KIB = 1024
MIB = 1024 * 1024

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua websocket deflate "
    "frame mask opcode fin rsv1 payload window context takeover "
).split()


def words_text(size: int, seed: int) -> str:
    """Exactly `size` ASCII bytes of repeated words: very compressible."""
    out = []
    n = 0
    i = seed
    while n < size:
        w = WORDS[(i * 7 + i // len(WORDS)) % len(WORDS)]
        if i % 50 == 0:
            w = f"{w}{i % 1000}"
        out.append(w)
        n += len(w) + 1
        i += 1
    return " ".join(out)[:size]


def patterned_bytes(size: int) -> bytes:
    """`size` bytes of a 100-byte repeating pattern: very compressible, even
    with a 9-bit window (zlib then finds matches up to 250 bytes back)."""
    pattern = bytes((i * 31 + 7) % 256 for i in range(89)) + b"wsx-pattern"
    return (pattern * (size // len(pattern) + 1))[:size]


def random_bytes(size: int, seed: int) -> bytes:
    """`size` pseudo-random bytes (xorshift32): incompressible, deterministic."""
    x = seed or 1
    out = bytearray(size)
    for i in range(0, size, 4):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i : i + 4] = x.to_bytes(4, "little")[: size - i]
    return bytes(out)


def random_text(size: int, seed: int) -> str:
    """`size` printable ASCII bytes drawn from 64 symbols: compresses poorly."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return "".join(alphabet[b & 63] for b in random_bytes(size, seed))


UNICODE = "héllo wörld ✓ 日本語 🚀 ünïcødé"


def client_messages() -> list[tuple[str, str | bytes]]:
    """(label, payload) sent by the Python/Node clients, in order."""
    return [
        ("text hello", "hello"),
        ("text unicode", UNICODE),
        ("text empty", ""),
        ("binary 256 B", bytes(range(256))),
        ("text 1 KiB words", words_text(1 * KIB, 1)),
        ("text 20 KiB words", words_text(20 * KIB, 2)),
        ("text 20 KiB words (again)", words_text(20 * KIB, 2)),
        ("binary 64 KiB pattern", patterned_bytes(64 * KIB)),
        ("text 256 KiB words", words_text(256 * KIB, 3)),
        ("text 1 MiB words", words_text(1 * MIB, 4)),
        ("binary 1 MiB random", random_bytes(1 * MIB, 5)),
        ("binary empty", b""),
        ("text 17 KiB words", words_text(17 * KIB, 6)),
    ]


def connect_lines() -> list[str]:
    """Lines fed to `wsx connect` (one text message each): no newline inside."""
    return [
        "hello",
        UNICODE,
        "",
        words_text(1 * KIB, 1),
        words_text(20 * KIB, 2),
        words_text(20 * KIB, 2),
        words_text(64 * KIB, 7),
        words_text(256 * KIB, 3),
        words_text(1 * MIB, 4),
        random_text(256 * KIB, 5),
        words_text(17 * KIB, 6),
    ]


# ---- wire-size check -------------------------------------------------------


def as_bytes(payload: str | bytes) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def wire_budget(payloads: list[bytes]) -> tuple[int, int]:
    """(budget, compressible_total) for the bytes a compressing peer may send.

    A payload counts as compressible when zlib shrinks it below half; such a
    payload may take at most three quarters of its size on the wire (room for
    weak compression with a 9-bit window), any other payload its full size,
    plus 14 bytes of frame header each and 16 KiB of slack (handshake, close,
    messages under the peer's compression threshold). Sent uncompressed, the
    payloads of this harness exceed the budget by more than 300 KB.
    """
    budget = 16 * KIB
    compressible = 0
    for p in payloads:
        if len(p) >= 64 and len(zlib.compress(p, 6)) < len(p) // 2:
            budget += len(p) * 3 // 4 + 14
            compressible += len(p)
        else:
            budget += len(p) + 14 + len(p) // 100
    return budget, compressible


# ---- Sec-WebSocket-Extensions ----------------------------------------------


def parse_extensions(header: str | None) -> list[tuple[str, dict[str, str | None]]]:
    """'permessage-deflate; a; b=9, x' -> [('permessage-deflate', {'a': None, 'b': '9'}), ('x', {})]."""
    result: list[tuple[str, dict[str, str | None]]] = []
    if not header:
        return result
    for ext in header.split(","):
        parts = [p.strip() for p in ext.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str | None] = {}
        for p in parts[1:]:
            if not p:
                continue
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
            else:
                params[p.lower()] = None
        result.append((parts[0].lower(), params))
    return result


def deflate_params(header: str | None) -> dict[str, str | None] | None:
    """Parameters of the first permessage-deflate in `header`, or None."""
    for name, params in parse_extensions(header):
        if name == "permessage-deflate":
            return params
    return None


EXPECT_RE = re.compile(r"^(!)?([a-z_]+)(\?)?(?:(=|<=)(\d+))?$")


def check_params(params: dict[str, str | None], specs: list[str], what: str) -> list[str]:
    """Check deflate parameters against specs; return error strings.

    NAME      present          NAME=V    present with value V
    !NAME     absent           NAME<=V   present with value <= V
    NAME?<=V  if present, value <= V (also NAME?=V)
    """
    errors = []
    for spec in specs:
        m = EXPECT_RE.match(spec)
        if not m:
            errors.append(f"bad expectation {spec!r}")
            continue
        neg, name, optional, op, value = m.groups()
        present = name in params
        if neg:
            if present:
                errors.append(f"{what}: {name} must be absent, got {fmt_params(params)}")
            continue
        if not present:
            if not optional:
                errors.append(f"{what}: {name} missing, got {fmt_params(params)}")
            continue
        if op is None:
            continue
        got = params[name]
        if got is None or not got.isdigit():
            errors.append(f"{what}: {name} needs a value {op}{value}, got {got!r}")
        elif op == "=" and int(got) != int(value):
            errors.append(f"{what}: {name}={got}, expected {value}")
        elif op == "<=" and int(got) > int(value):
            errors.append(f"{what}: {name}={got}, expected <= {value}")
    return errors


def fmt_params(params: dict[str, str | None] | None) -> str:
    if params is None:
        return "(no permessage-deflate)"
    return "; ".join(["permessage-deflate"] + [k if v is None else f"{k}={v}" for k, v in params.items()])


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "lines":
        with open(argv[2], "w", encoding="utf-8", newline="\n") as f:
            for line in connect_lines():
                f.write(line + "\n")
        return 0
    print("usage: common.py lines FILE   (write the input of `wsx connect`)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
