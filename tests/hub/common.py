"""Shared helpers of the wsx hub end-to-end tests (sdk_python.py).

Tokens, key files, a TCP proxy that can cut connections, an event recorder for
the SDK's callbacks, and the check/report conventions of the harness: every
check logs one line to stderr, a failed one starts with "FAIL:", and the
scenario exits 1 when any check failed (scripts/hub.sh shows the FAIL lines).

The command line has one use, run by scripts/hub.sh before it starts a hub
that checks RS256/ES256 tokens:

    python common.py keys DIR    # DIR/rsa.key.pem rsa.pub.pem ec.key.pem ec.pub.pem

The token helpers build HS256 and unsigned tokens with the standard library
only, because PyJWT refuses on purpose to make the forged ones the tests need
(an HMAC keyed with a PEM public key, "alg": "none").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

START = time.monotonic()


# ------------------------------------------------------------------ reporting
class Fatal(Exception):
    """A check whose failure makes the rest of the scenario meaningless."""


class Report:
    def __init__(self) -> None:
        self.failures: List[str] = []

    def log(self, msg: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - START:7.3f}] {msg}\n")
        sys.stderr.flush()

    def check(self, cond: Any, what: str) -> bool:
        if cond:
            self.log(f"ok: {what}")
            return True
        self.failures.append(what)
        self.log(f"FAIL: {what}")
        return False

    def equal(self, got: Any, want: Any, what: str) -> bool:
        """Compares as JSON values (1 == 1.0, dict order ignored)."""
        if canon(got) == canon(want):
            self.log(f"ok: {what}")
            return True
        return self.check(False, f"{what}: got {short(got)}, want {short(want)}")

    def must(self, cond: Any, what: str) -> None:
        if not self.check(cond, what):
            raise Fatal(what)


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else canon(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} chars)"
    return text


# --------------------------------------------------------------------- tokens
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segments(header: Dict[str, Any], claims: Dict[str, Any]) -> str:
    enc = lambda obj: b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))  # noqa: E731
    return enc(header) + "." + enc(claims)


def hs256(claims: Dict[str, Any], secret: bytes | str) -> str:
    """An HS256 JWT; `secret` may be anything, e.g. the text of a public key."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    signing_input = _segments({"alg": "HS256", "typ": "JWT"}, claims)
    sig = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def unsigned(claims: Dict[str, Any]) -> str:
    """A token with "alg": "none" and an empty signature (must be refused)."""
    return _segments({"alg": "none", "typ": "JWT"}, claims) + "."


def signed(claims: Dict[str, Any], private_pem: bytes, algorithm: str) -> str:
    """RS256 / ES256 with PyJWT (the venv's; imported here so that `keys`
    fails alone when it is missing)."""
    import jwt

    return jwt.encode(claims, private_pem, algorithm=algorithm)


def claims(user: str, ttl: Optional[float] = 3600, **extra: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"sub": user}
    if ttl is not None:
        out["exp"] = int(time.time() + ttl)
    out.update(extra)
    return out


def make_keys(directory: str) -> Dict[str, str]:
    """RSA 2048 and ECDSA P-256 key pairs as PEM files in `directory`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, key in (
        ("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ec", ec.generate_private_key(ec.SECP256R1())),
    ):
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        for kind, data in (("key", private), ("pub", public)):
            path = os.path.join(directory, f"{name}.{kind}.pem")
            with open(path, "wb") as f:
                f.write(data)
            paths[f"{name}.{kind}"] = path
    return paths


def other_private_pem(kind: str) -> bytes:
    """A fresh private key the hub does not know (for wrong-key tokens)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# ------------------------------------------------------------------ recorder
class Recorder:
    """Keeps every event of an SDK object: (name, ctx, time). Waits poll the list,
    which keeps the waits simple and independent of the SDK's task structure."""

    def __init__(self, report: Report, label: str) -> None:
        self.report = report
        self.label = label
        self.events: List[tuple] = []

    def push(self, name: str, ctx: Any) -> None:
        self.events.append((name, ctx, time.monotonic()))
        self.report.log(f"{self.label} {name} {short(describe(ctx), 200)}")

    def mark(self) -> int:
        return len(self.events)

    def all(self, name: str, since: int = 0) -> List[Any]:
        return [c for n, c, _ in self.events[since:] if n == name]

    def times(self, name: str, since: int = 0) -> List[float]:
        return [t for n, _, t in self.events[since:] if n == name]

    async def wait_for(
        self,
        name: str,
        pred: Callable[[Any], bool] = lambda _c: True,
        timeout: float = 5.0,
        since: int = 0,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for n, c, _ in self.events[since:]:
                if n == name and pred(c):
                    return c
            if time.monotonic() >= deadline:
                raise Fatal(f"{self.label}: no '{name}' event within {timeout} s")
            await asyncio.sleep(0.02)

    async def wait_count(self, name: str, count: int, timeout: float = 5.0, since: int = 0) -> List[Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.all(name, since)
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                raise Fatal(f"{self.label}: {len(got)} '{name}' events within {timeout} s, {count} expected")
            await asyncio.sleep(0.02)


def describe(ctx: Any) -> Any:
    """A loggable form of an SDK context (dataclasses, exceptions)."""
    if ctx is None or isinstance(ctx, (str, int, float, bool)):
        return ctx
    if isinstance(ctx, BaseException):
        return f"{type(ctx).__name__}: {ctx}"
    if hasattr(ctx, "__dataclass_fields__"):
        return {k: describe(getattr(ctx, k)) for k in ctx.__dataclass_fields__}
    if isinstance(ctx, dict):
        return {str(k): describe(v) for k, v in ctx.items()}
    if isinstance(ctx, (list, tuple)):
        return [describe(v) for v in ctx]
    return repr(ctx)


# --------------------------------------------------------------------- proxy
class Proxy:
    """A TCP forwarder in front of the hub. cut() aborts every connection going
    through it (a network failure as the client sees it: no close frame);
    block() makes it refuse new connections until unblock()."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blocked = False
        self.pairs: List[tuple] = []
        self.server: Optional[asyncio.base_events.Server] = None
        self.port = 0
        self.accepted = 0

    async def start(self) -> "Proxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, uwriter)
        self.pairs.append(pair)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, uwriter), pump(ureader, writer))
        if pair in self.pairs:
            self.pairs.remove(pair)

    def cut(self) -> int:
        n = len(self.pairs)
        for a, b in self.pairs:
            a.transport.abort()
            b.transport.abort()
        self.pairs.clear()
        return n

    def block(self) -> None:
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


def main(argv: List[str]) -> int:
    if len(argv) == 3 and argv[1] == "keys":
        for name, path in sorted(make_keys(argv[2]).items()):
            print(f"{name} {path}")
        return 0
    sys.stderr.write("usage: common.py keys DIR\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
