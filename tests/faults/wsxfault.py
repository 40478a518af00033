"""Helpers for the fault tests: the `wsx serve` process and a raw WebSocket client.

Standard library only. The client speaks just enough RFC 6455 to misbehave on
purpose: it builds frames and request heads byte by byte, so a test can send a
partial frame, an oversized length, a compressed bomb, or never answer a ping.
"""

import asyncio
import base64
import hashlib
import os
import re
import socket
import struct
import subprocess
import time
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
HOST = "127.0.0.1"


class Fail(Exception):
    """A scenario's assertion failed; the message carries the measured figures."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ------------------------------------------------------------------ frames


def xor_mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(opcode, payload=b"", fin=True, rsv1=False, length=None, zero_mask=False):
    """A masked client frame. `length` overrides the declared payload length (the bytes
    sent are still `payload`); `zero_mask` uses the key 00000000 so large payloads need no
    masking work (legal on the wire: the mask bit is set)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload) if length is None else length
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    if zero_mask:
        return head + b"\0\0\0\0" + payload
    key = os.urandom(4)
    return head + key + xor_mask(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv1", "opcode", "payload")

    def __init__(self, fin, rsv1, opcode, payload):
        self.fin, self.rsv1, self.opcode, self.payload = fin, rsv1, opcode, payload

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        return f"Frame(op={self.opcode}, fin={self.fin}, rsv1={self.rsv1}, len={len(self.payload)})"


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(n) if n else b""
    if key:
        payload = xor_mask(payload, key)
    return Frame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload)


def deflate_raw(data, chunk=1 << 20):
    """permessage-deflate payload of `data`: raw deflate, sync flush, tail 00 00 ff ff removed."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    out.append(c.flush(zlib.Z_SYNC_FLUSH))
    body = b"".join(out)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def inflate_raw(payload):
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


# ------------------------------------------------------------------ handshake


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def request(path="/", key=None, headers=(), deflate=False, method="GET", version="HTTP/1.1",
            omit=()):
    """A WebSocket upgrade request head. `headers`: extra (name, value) pairs; `omit`: names
    (lower case) of the standard headers to leave out."""
    key = key or new_key()
    std = [
        ("Host", f"{HOST}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if deflate:
        std.append(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"))
    lines = [f"{method} {path} {version}"]
    lines += [f"{k}: {v}" for k, v in std if k.lower() not in omit]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Response:
    def __init__(self, status, headers, head):
        self.status, self.headers, self.head = status, headers, head

    def __repr__(self):
        return f"Response({self.status})"


async def read_response(reader, timeout=5.0):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return Response(status, headers, head)


# ------------------------------------------------------------------ client


class Conn:
    """One client connection over asyncio streams. Frames are read on demand: a test that
    never calls a receiving method never reads (beyond asyncio's 128 KiB stream buffer)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.response = None
        self.opened_at = time.monotonic()
        self.pings = 0

    @classmethod
    async def connect(cls, port, src=None, rcvbuf=None, timeout=5.0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if src:
                sock.bind((src, 0))
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), timeout)
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    async def handshake(self, req, timeout=5.0):
        self.writer.write(req)
        self.response = await read_response(self.reader, timeout)
        return self.response

    @classmethod
    async def upgrade(cls, port, path="/", headers=(), deflate=False, src=None, rcvbuf=None,
                      timeout=5.0):
        """Connects and completes the handshake; raises Fail unless the answer is 101."""
        c = await cls.connect(port, src=src, rcvbuf=rcvbuf, timeout=timeout)
        try:
            key = new_key()
            r = await c.handshake(request(path, key, headers, deflate), timeout)
            if r.status != 101:
                raise Fail(f"handshake answered {r.status}, not 101")
            if r.headers.get("sec-websocket-accept") != accept_for(key):
                raise Fail("bad Sec-WebSocket-Accept")
        except BaseException:
            c.abort()
            raise
        c.opened_at = time.monotonic()
        return c

    def send(self, opcode, payload=b"", **kw):
        self.writer.write(frame(opcode, payload, **kw))

    async def recv(self, timeout=5.0, answer_pings=True):
        """The next data or close frame; pings are answered (unless told not to) and
        counted, pongs skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            f = await asyncio.wait_for(read_frame(self.reader), left)
            if f.opcode == OP_PING:
                self.pings += 1
                if answer_pings:
                    self.send(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            return f

    async def recv_message(self, timeout=5.0):
        """A whole data message (fragments joined): (opcode, payload, compressed)."""
        f = await self.recv(timeout)
        if f.opcode == OP_CLOSE:
            raise Fail(f"closed by the server with {f.close_code}")
        op, rsv1, parts = f.opcode, f.rsv1, [f.payload]
        while not f.fin:
            f = await self.recv(timeout)
            parts.append(f.payload)
        data = b"".join(parts)
        return op, (inflate_raw(data) if rsv1 else data), rsv1

    async def echo(self, payload, timeout=5.0, opcode=OP_BIN):
        """Sends one message and waits for the same bytes back; returns the round trip (s)."""
        t0 = time.perf_counter()
        self.send(opcode, payload)
        op, data, _ = await self.recv_message(timeout)
        rtt = time.perf_counter() - t0
        if op != opcode or data != payload:
            raise Fail(f"echo mismatch: sent {len(payload)} bytes op {opcode}, got {len(data)} op {op}")
        return rtt

    async def wait_close(self, timeout=5.0, answer_pings=True):
        """Reads until the server's close frame; returns its code (None for an empty close).
        Raises Fail on data, EOF or reset first."""
        data = 0
        try:
            while True:
                f = await self.recv(timeout, answer_pings)
                if f.opcode == OP_CLOSE:
                    return f.close_code
                data += 1
        except asyncio.IncompleteReadError:
            raise Fail(f"connection ended without a close frame ({data} data frames before)")
        except ConnectionResetError:
            raise Fail(f"connection reset without a close frame ({data} data frames before)")
        except (asyncio.TimeoutError, TimeoutError):
            raise Fail(f"no close frame within {timeout} s ({data} data frames before)")

    async def wait_eof(self, timeout=5.0):
        """True when the server closes TCP (EOF or reset) within `timeout`; data is discarded."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    async def close(self, code=1000, timeout=5.0):
        """Close handshake as a well-behaved client: send close, wait for the server's close
        frame and its TCP close. Returns the server's close code."""
        self.send(OP_CLOSE, close_payload(code))
        got = await self.wait_close(timeout)
        await self.wait_eof(timeout)
        self.abort()
        return got

    def reset(self):
        """Vanish: SO_LINGER 0 and close, so the kernel sends RST."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.transport.abort()

    def abort(self):
        self.writer.transport.abort()


async def raw_exchange(port, data, timeout=5.0, src=None):
    """Sends raw bytes on a new connection and reads until the server closes it (or, after
    a 101 response head, stops reading). Returns (bytes received, how it ended:
    'eof' | 'reset' | 'timeout' | 'open' (101))."""
    c = await Conn.connect(port, src=src, timeout=timeout)
    got = bytearray()
    how = "timeout"
    try:
        c.writer.write(data)
        async with asyncio.timeout(timeout):
            while True:
                chunk = await c.reader.read(65536)
                if not chunk:
                    how = "eof"
                    break
                got += chunk
                if b"\r\n\r\n" in got and http_status(got) == 101:
                    how = "open"
                    break
    except (ConnectionResetError, BrokenPipeError):
        how = "reset"
    except TimeoutError:
        pass
    finally:
        c.abort()
    return bytes(got), how


def http_status(data):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ server


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Server:
    """`wsx serve` in its own process, listening on an ephemeral port; its output goes to
    OUT/NAME.log."""

    live = set()

    def __init__(self, binary, name, args, out_dir):
        self.binary, self.name, self.args = binary, name, list(args)
        self.log_path = os.path.join(out_dir, f"{name}.log")
        self.proc = None
        self.port = None

    async def start(self, timeout=10.0):
        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("RUST_LOG", "info")
        self.log = open(self.log_path, "wb")
        cmd = [self.binary, "serve", "--listen", f"{HOST}:0", *self.args, *os.environ.get("WSX_FAULTS_SERVE_ARGS", "").split()]
        self.log.write(("$ " + " ".join(cmd) + "\n").encode())
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        Server.live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"listening on wss?://[\d.]+:(\d+)", self.log_text())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise Fail(f"wsx serve exited with {self.proc.returncode}: {self.log_tail()}")
            await asyncio.sleep(0.02)
        raise Fail(f"wsx serve did not report its address within {timeout} s")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return ANSI.sub("", f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def log_tail(self, n=5):
        return " | ".join(self.log_text().strip().splitlines()[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout):
        """The exit status, or None if still running after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return rc
            await asyncio.sleep(0.02)
        return self.proc.poll()

    async def wait_fds(self, target, timeout):
        """Polls until the fd count is <= target; returns the last count."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while n > target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            n = self.fds()
        return n

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        Server.live.discard(self)

    @classmethod
    def stop_all(cls):
        for s in list(cls.live):
            s.stop()


class RssSampler:
    """Samples a server's VmRSS every `period` seconds in the background; keeps the maximum."""

    def __init__(self, server, period=0.05):
        self.server, self.period, self.max = server, period, 0
        self.task = None

    async def _run(self):
        while True:
            try:
                self.max = max(self.max, self.server.rss_kib())
            except OSError:
                return
            await asyncio.sleep(self.period)

    def __enter__(self):
        self.max = self.server.rss_kib()
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc):
        self.task.cancel()
        try:
            self.max = max(self.max, self.server.rss_kib())
        except OSError:
            pass


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def mib(kib):
    return f"{kib / 1024:.1f}MiB"


def ms(sec):
    return f"{sec * 1000:.1f}ms"


def raise_nofile():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


