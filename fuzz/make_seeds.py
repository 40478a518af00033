#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into fuzz/seeds/<target>/.

The input format of each target is documented at the top of fuzz_targets/<target>.rs.
Run from anywhere: `python3 fuzz/make_seeds.py` (it rewrites the seed directories; the
output is committed, so this only needs to run when a format or a seed changes).
"""

import os
import shutil
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

# RFC 6455 §5.7 examples.
RFC_TEXT = bytes.fromhex("810548656c6c6f")
RFC_MASKED_TEXT = bytes.fromhex("818537fa213d7f9f4d5158")
RFC_FRAG_1 = bytes.fromhex("010348656c")
RFC_FRAG_2 = bytes.fromhex("80026c6f")
RFC_PING = bytes.fromhex("890548656c6c6f")
RFC_MASKED_PONG = bytes.fromhex("8a8537fa213d7f9f4d5158")
RFC_256_HEADER = bytes.fromhex("827e0100")
RFC_64K_HEADER = bytes.fromhex("827f0000000000010000")

# RFC 7692 §7.2.3 examples (permessage-deflate payloads).
DEFLATE_HELLO = bytes.fromhex("f248cdc9c90700")
DEFLATE_HELLO_AGAIN = bytes.fromhex("f200110000")  # with context takeover
DEFLATE_HELLO_STORED = bytes.fromhex("000500faff48656c6c6f00")
DEFLATE_HELLO_BFINAL = bytes.fromhex("f348cdc9c9070000")
DEFLATE_HELLO_TWO_BLOCKS = bytes.fromhex("f24805000000ffffcac9c90700")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(b0, payload=b"", mask=None, length_form=None):
    """Encodes a frame; `length_form` 126/127 forces a (possibly non-minimal) long form."""
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if length_form == 127 or (length_form is None and n > 0xFFFF):
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    elif length_form == 126 or (length_form is None and n > 125):
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | n])
    if mask is None:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + bytes(mask) + body


def raw_deflate(data, wbits=15, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# ---------------------------------------------------------------- frame_header


def frame_header():
    t = "frame_header"
    for name, data in [
        ("rfc_text", RFC_TEXT),
        ("rfc_masked_text", RFC_MASKED_TEXT),
        ("rfc_fragment_1", RFC_FRAG_1),
        ("rfc_fragment_2", RFC_FRAG_2),
        ("rfc_ping", RFC_PING),
        ("rfc_masked_pong", RFC_MASKED_PONG),
        ("rfc_256_binary", RFC_256_HEADER + b"\x00" * 8),
        ("rfc_64k_binary", RFC_64K_HEADER + b"\x00" * 4),
        ("len_125", frame(0x82, b"a" * 125)[:20]),
        ("len_126_minimal", frame(0x82, b"a" * 126)[:20]),
        ("len_65535_masked", frame(0x82, b"a" * 65535, mask=b"\x01\x02\x03\x04")[:24]),
        ("len_65536", frame(0x82, b"a" * 65536)[:20]),
        ("len_5_in_16_bit_form", frame(0x82, b"hello", length_form=126)),
        ("len_5_in_64_bit_form", frame(0x82, b"hello", length_form=127)),
        ("len_300_in_64_bit_form_masked", frame(0x02, b"x" * 300, mask=b"\xaa\xbb\xcc\xdd", length_form=127)[:30]),
        ("len_max", bytes.fromhex("827f7fffffffffffffff")),
        ("len_overflow", bytes.fromhex("827f8000000000000000")),
        ("reserved_opcode_3", bytes.fromhex("8300")),
        ("reserved_opcode_b_masked", bytes.fromhex("8b80a1b2c3d4")),
        ("rsv_bits", bytes.fromhex("f100")),
        ("close_1000", frame(0x88, b"\x03\xe8bye", mask=b"\x11\x22\x33\x44")),
        ("incomplete_mask", bytes.fromhex("82fe0100a1b2")),
        ("one_byte", b"\x81"),
    ]:
        write(t, name, data)


# ---------------------------------------------------------------- handshake_request

RFC_REQUEST = (
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)

CHROMIUM_REQUEST = (
    "GET /socket?room=1&user=x HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://app.example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n"
)

FIREFOX_REQUEST = (
    "GET / HTTP/1.1\r\n"
    "Host: [::1]:9001\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    "Accept: */*\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: https://chat.example.org\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Sec-Fetch-Mode: websocket\r\n"
    "Upgrade: websocket\r\n"
    "\r\n"
)

AUTOBAHN_REQUEST = (
    "GET /runCase?case=1&agent=wsx HTTP/1.1\r\n"
    "User-Agent: AutobahnTestSuite/25.10.1\r\n"
    "Host: 127.0.0.1:9001\r\n"
    "Upgrade: WebSocket\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Sec-WebSocket-Key: 2Swd7TQcoUx0fWmwSxNIJA==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits=9, "
    "permessage-deflate; client_max_window_bits, permessage-deflate\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)


def handshake_request():
    t = "handshake_request"
    write(t, "rfc_1_3", RFC_REQUEST)
    write(t, "chromium_deflate", CHROMIUM_REQUEST)
    write(t, "firefox_ipv6_host", FIREFOX_REQUEST)
    write(t, "autobahn_13_offers", AUTOBAHN_REQUEST)
    write(t, "with_following_frame", RFC_REQUEST.encode() + RFC_MASKED_TEXT)
    write(t, "partial", RFC_REQUEST[:70])
    write(t, "lowercase_lf_only", RFC_REQUEST.lower().replace("\r\n", "\n").replace("get /chat http/1.1", "GET /chat HTTP/1.1").replace("dghlihnhbxbszsbub25jzq==", "dGhlIHNhbXBsZSBub25jZQ=="))
    write(t, "post", RFC_REQUEST.replace("GET", "POST", 1))
    write(t, "http_1_0", RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0", 1))
    write(t, "absolute_target", RFC_REQUEST.replace("/chat", "http://server.example.com/chat", 1))
    write(t, "no_host", RFC_REQUEST.replace("Host: server.example.com\r\n", ""))
    write(t, "two_hosts", RFC_REQUEST.replace("Host: server.example.com\r\n", "Host: a\r\nHost: b\r\n"))
    write(t, "no_upgrade", RFC_REQUEST.replace("Upgrade: websocket\r\n", ""))
    write(t, "version_8", RFC_REQUEST.replace("Version: 13", "Version: 8"))
    write(t, "short_key", RFC_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="))
    write(t, "bad_protocol_list", RFC_REQUEST.replace("chat, superchat", "chat, super chat"))
    write(t, "origin_denied", CHROMIUM_REQUEST.replace("https://app.example.com", "https://evil.example.net"))
    write(t, "origin_wildcard_utf8", FIREFOX_REQUEST.replace("https://chat.example.org", "https://\u00fc.example.org"))
    write(t, "origin_case", FIREFOX_REQUEST.replace("https://chat.example.org", "HTTPS://App.Example.COM"))
    write(t, "header_obs_text", RFC_REQUEST.replace("Origin: http://example.com", "X-Name: caf\xe9\x01"))
    many = "".join(f"X-{i}: {i}\r\n" for i in range(100))
    write(t, "too_many_headers", RFC_REQUEST.replace("Origin:", many + "Origin:"))
    write(t, "too_large", RFC_REQUEST.replace("Origin:", "X-Pad: " + "a" * 5000 + "\r\nOrigin:"))


# ---------------------------------------------------------------- handshake_response

OK_PREFIX = 0x01  # flag: valid head start with the right accept key


def handshake_response():
    t = "handshake_response"
    write(t, "plain_valid", bytes([OK_PREFIX]) + b"\r\n")
    write(t, "deflate_default", bytes([OK_PREFIX | 0x02]) + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n")
    write(t, "deflate_bare", bytes([OK_PREFIX | 0x02]) + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    write(
        t,
        "deflate_custom",
        bytes([OK_PREFIX | 0x04])
        + b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12\r\n\r\n",
    )
    write(
        t,
        "deflate_two_offers",
        bytes([OK_PREFIX | 0x06]) + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9; client_max_window_bits=8\r\n\r\n",
    )
    write(t, "deflate_not_offered", bytes([OK_PREFIX]) + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    write(t, "protocol_chat", bytes([OK_PREFIX | 0x08]) + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
    write(t, "protocol_unoffered", bytes([OK_PREFIX | 0x08]) + b"Sec-WebSocket-Protocol: other\r\n\r\n")
    write(t, "protocol_and_deflate_and_frame",
          bytes([OK_PREFIX | 0x0A]) + b"Sec-WebSocket-Protocol: superchat\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15\r\n\r\n" + RFC_TEXT)
    write(
        t,
        "placeholder_accept",
        b"\x00HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept: @ACCEPT@\r\n\r\n",
    )
    write(t, "wrong_accept", b"\x00HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    write(t, "duplicate_accept", b"\x01Sec-WebSocket-Accept: @ACCEPT@\r\n\r\n")
    write(t, "forbidden", b"\x00HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope")
    write(t, "http_1_0", b"\x00HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: @ACCEPT@\r\n\r\n")
    write(t, "partial", b"\x00HTTP/1.1 101 Swi")
    write(t, "garbage", b"\x00garbage\r\n\r\n")


# ---------------------------------------------------------------- deflate_negotiation


def neg(name, server_cfg, client_cfg, *values):
    write("deflate_negotiation", name, bytes([server_cfg, client_cfg]) + "\n".join(values).encode())


def deflate_negotiation():
    neg("chromium", 0, 0, "permessage-deflate; client_max_window_bits")
    neg("firefox", 0, 0, "permessage-deflate")
    neg("safari_multi", 0, 0, "permessage-deflate, x-webkit-deflate-frame")
    neg(
        "autobahn_13_7",
        0,
        0,
        "permessage-deflate; client_no_context_takeover; client_max_window_bits=9, "
        "permessage-deflate; client_max_window_bits, permessage-deflate",
    )
    neg("autobahn_13_3_server_bits_9", 0, 0, "permessage-deflate; server_max_window_bits=9; client_max_window_bits")
    neg("autobahn_13_5_server_bits_8", 0, 0, "permessage-deflate; server_no_context_takeover; server_max_window_bits=8")
    neg("server_limits_client_window", 0x18, 0, "permessage-deflate; client_max_window_bits=15")
    neg("server_limits_client_no_param", 0x18, 0, "permessage-deflate")
    neg("server_small_windows_nct", 0x40 | 0x80 | 0x02 | 0x10, 0x03, "permessage-deflate; client_max_window_bits")
    neg("client_small_windows", 0, 0x40 | 0x80 | 0x01 | 0x08, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8")
    neg("quoted_values", 0, 0, 'permessage-deflate; client_max_window_bits="10"; server_max_window_bits="12"')
    neg("several_lines", 0, 0, "foo; bar=1", "", "permessage-deflate; server_max_window_bits=10", "permessage-deflate")
    neg("declined_then_ok", 0, 0, "permessage-deflate; server_max_window_bits=08, permessage-deflate; mux, permessage-deflate; client_max_window_bits=11")
    neg("duplicate_param", 0, 0, "permessage-deflate; server_no_context_takeover; server_no_context_takeover")
    neg("bad_values", 0, 0, "permessage-deflate; server_max_window_bits=16", "permessage-deflate; client_max_window_bits=7", "permessage-deflate; server_max_window_bits")
    neg("whitespace_case", 0, 0, "  PerMessage-Deflate ;\tClient_Max_Window_Bits = 9 ,  ")
    neg("quoted_comma", 0, 0, 'permessage-deflate; x="a,b", permessage-deflate')
    neg("unterminated_quote", 0, 0, 'permessage-deflate; client_max_window_bits="10', "permessage-deflate")
    neg("response_like", 0x00, 0x00, "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10")


# ---------------------------------------------------------------- inflate


def rec(fin, data):
    """An inflate-mode record with a 16-bit length."""
    return bytes([(1 if fin else 0) | 2]) + struct.pack(">H", len(data)) + data


def inflate():
    t = "inflate"
    # Mode byte: bit 0 = 0 (inflate), bits 1-3 window - 8, bit 4 nct, bits 5-7 limit.
    w15 = 7 << 1
    write(t, "rfc_hello", bytes([w15]) + rec(True, DEFLATE_HELLO))
    write(t, "rfc_hello_two_frames", bytes([w15]) + rec(False, DEFLATE_HELLO[:3]) + rec(True, DEFLATE_HELLO[3:]))
    write(t, "rfc_hello_takeover", bytes([w15]) + rec(True, DEFLATE_HELLO) + rec(True, DEFLATE_HELLO_AGAIN))
    write(t, "rfc_hello_stored", bytes([w15]) + rec(True, DEFLATE_HELLO_STORED))
    write(t, "rfc_hello_bfinal", bytes([w15]) + rec(True, DEFLATE_HELLO_BFINAL) + rec(True, DEFLATE_HELLO))
    write(t, "rfc_hello_two_blocks", bytes([w15]) + rec(True, DEFLATE_HELLO_TWO_BLOCKS))
    write(t, "empty_message", bytes([w15]) + rec(True, b"\x00") + rec(True, b""))
    write(t, "short_records", bytes([w15 | 0x10]) + bytes([(7 << 2) | 1]) + DEFLATE_HELLO + bytes([(3 << 2)]) + b"\xf2\x48\xcd" + bytes([1]))
    write(t, "corrupt", bytes([w15]) + rec(True, b"\xff\xff\xff\xff"))
    write(t, "window_8", bytes([0]) + rec(True, raw_deflate(b"abcdefgh" * 40, wbits=9)))
    write(t, "window_9_data_for_15", bytes([1 << 1]) + rec(True, raw_deflate(bytes(range(256)) * 20, wbits=15)))
    bomb = raw_deflate(b"\x00" * (2 << 20), level=9)
    write(t, "bomb_2mib", bytes([w15]) + rec(True, bomb))
    write(t, "bomb_limit_100", bytes([w15 | (6 << 5)]) + rec(True, raw_deflate(b"a" * 101)) + rec(True, raw_deflate(b"b" * 100)))
    write(t, "limit_0", bytes([w15 | (4 << 5)]) + rec(True, DEFLATE_HELLO) + rec(True, b"\x00"))
    write(t, "limit_1", bytes([w15 | (5 << 5)]) + rec(True, raw_deflate(b"x")) + rec(True, DEFLATE_HELLO))
    # Round-trip mode: mode bit 0 = 1; then a level byte; records ctl len:u16 data.
    text = b'{"id": 1, "name": "websocket frame", "deflate": true} ' * 8
    for name, mode, level, records in [
        ("rt_default", 1 | w15, 1, [(0, text), (3, b"Hello"), (0, b"")]),
        ("rt_window_8_nct", 1 | 0x10, 9, [(7, text), (0x40 | 1, text)]),
        ("rt_window_9_level_0", 1 | (1 << 1), 0, [(2 | (3 << 3), text)]),
        ("rt_binary_level_6", 1 | (4 << 1), 6, [(5, bytes(range(256)) * 3)]),
    ]:
        body = bytes([mode, level])
        for ctl, data in records:
            body += bytes([ctl]) + struct.pack(">H", len(data)) + data
        write(t, name, body)


# ---------------------------------------------------------------- connection

MASK = b"\x37\xfa\x21\x3d"


def op_raw(data):
    return bytes([1]) + struct.pack(">H", len(data)) + data


def op_frame(b0, payload, wrong_mask=False, split=0):
    return bytes([2, b0, (split << 1) | (1 if wrong_mask else 0), len(payload)]) + payload


FRAME_COUNTS = [1, 2, 3, 4, 6, 8, 64, 65]


def op_msg(compress, text, nframes, data, ping=False, make_valid=False, repeat=1):
    ctl = (
        (1 if text else 0)
        | (FRAME_COUNTS.index(nframes) << 1)
        | (0x10 if ping else 0)
        | (0x20 if make_valid else 0)
        | ([1, 2, 4, 8].index(repeat) << 6)
    )
    return bytes([3 if compress else 4, ctl]) + struct.pack(">H", len(data)) + data


def op_send(kind, data, code=0):
    head = bytes([5, kind])
    if kind == 4:
        head += struct.pack(">H", code)
    return head + bytes([len(data)]) + data


def op_fragment(text, fin, data):
    return bytes([6, (1 if text else 0) | (2 if fin else 0), len(data)]) + data


TAKE = bytes([7])
EOF = bytes([13])


def op_close(code, reason=b""):
    return bytes([9]) + struct.pack(">H", code) + bytes([len(reason)]) + reason


def op_abort(code, reason=b""):
    return bytes([10]) + struct.pack(">H", code) + bytes([len(reason)]) + reason


def conn(name, setup, bits, *ops):
    write("connection", name, bytes([setup, bits]) + b"".join(ops))


def connection():
    SERVER, CLIENT, DEFLATE, STREAM = 0, 1, 2, 4
    W15 = 0x3F
    hello_masked = RFC_MASKED_TEXT
    close_masked = frame(0x88, b"\x03\xe8bye", mask=MASK)
    conn("server_rfc_masked_text", SERVER, W15, op_raw(hello_masked), op_send(0, b"Hello"), TAKE)
    conn("server_rfc_fragments", SERVER, W15,
         op_raw(frame(0x01, b"Hel", mask=MASK) + frame(0x89, b"Hello", mask=MASK) + frame(0x80, b"lo", mask=MASK)), TAKE)
    conn("server_close_handshake", SERVER, W15, op_raw(hello_masked + close_masked), TAKE)
    conn("server_unmasked_is_error", SERVER, W15, op_raw(RFC_TEXT), TAKE)
    conn("client_rfc_frames", CLIENT, W15, op_raw(RFC_TEXT + RFC_FRAG_1 + RFC_PING + RFC_FRAG_2), op_send(1, b"\x00\x01\x02"), TAKE,
         op_raw(frame(0x88, b"\x03\xe8")), TAKE)
    conn("client_masked_is_error", CLIENT, W15, op_raw(RFC_MASKED_PONG), TAKE)
    conn("server_deflate_rfc_hello", SERVER | DEFLATE, W15,
         op_raw(frame(0xC1, DEFLATE_HELLO, mask=MASK) + frame(0xC1, DEFLATE_HELLO_AGAIN, mask=MASK)), op_send(0, b"Hello" * 50), TAKE)
    conn("client_deflate_rfc_hello_fragments", CLIENT | DEFLATE, W15,
         op_raw(frame(0x41, DEFLATE_HELLO[:3]) + frame(0x80, DEFLATE_HELLO[3:]) + frame(0xC1, DEFLATE_HELLO_STORED)), TAKE)
    conn("server_deflate_structured", SERVER | DEFLATE | 0x20, 0x09,
         op_msg(True, True, 3, b"compressed text, compressed text, compressed text", ping=True),
         op_msg(True, False, 1, bytes(range(200))), op_send(0, b"reply" * 10), op_send(1, b"\xff" * 30), TAKE)
    conn("client_deflate_nct_level9", CLIENT | DEFLATE | 0x08 | 0x10 | 0x20 | 0xC0, 0x00,
         op_msg(True, True, 2, "κόσμε".encode() * 20), op_send(0, "κόσμε".encode() * 5), TAKE, op_close(1000, b"done"), TAKE,
         op_frame(0x88, b"\x03\xe8"))
    conn("server_streaming", SERVER | STREAM, W15,
         op_msg(False, True, 4, "€𝄞 streaming".encode(), ping=True), op_msg(False, False, 2, b"\x00" * 100), TAKE)
    conn("server_streaming_deflate", SERVER | STREAM | DEFLATE, W15,
         op_msg(True, True, 6, b"stream me " * 30), op_msg(True, True, 2, b"again " * 30), TAKE)
    conn("server_invalid_utf8", SERVER, W15, op_msg(False, True, 2, b"ok\xc3(\xa9"), TAKE)
    conn("server_frame_too_large", SERVER, W15, op_msg(False, False, 1, b"z" * 32769), TAKE)
    conn("server_message_too_large", SERVER, W15, op_msg(False, False, 8, bytes([32, 64, 96, 128, 160, 192, 224]) + b"z" * 16393, repeat=4), TAKE)
    conn("server_deflate_bomb", SERVER | DEFLATE, W15, op_msg(True, True, 2, b"a" * 20000, repeat=4), TAKE)
    conn("client_deflate_64k_ok", CLIENT | DEFLATE | STREAM, W15, op_msg(True, False, 3, b"\x00" * 16384, repeat=4), TAKE)
    conn("server_too_many_fragments", SERVER, W15, op_msg(False, False, 64, b"x" * 64), op_msg(False, True, 65, b"y" * 64), TAKE)
    conn("server_send_fragments", SERVER, W15,
         op_fragment(True, False, "κό".encode()[:3]), op_send(2, b"ping"), op_fragment(True, False, "κόσμε".encode()[3:]),
         op_send(0, b"refused"), op_fragment(True, True, b"!"), op_fragment(False, True, b"bin"), TAKE)
    conn("client_send_all_kinds", CLIENT | DEFLATE | 0x20, W15,
         op_send(0, b"text"), op_send(1, b"binary"), op_send(2, b"ping"), op_send(3, b"pong"), op_send(5, b"raw text"),
         op_send(2, b"x" * 126), op_send(4, b"bye", code=1001), op_send(0, b"after close"), TAKE)
    conn("server_close_codes", SERVER, W15, op_close(1005), op_close(1006), op_close(4000, b"custom"), TAKE, op_frame(0x88, b""))
    conn("server_peer_close_no_status", SERVER, W15, op_frame(0x88, b""), TAKE)
    conn("server_peer_close_bad_code", SERVER, W15, op_frame(0x88, b"\x03\xed"), TAKE)
    conn("client_abort", CLIENT, W15, op_send(0, b"x"), op_abort(1011, b"keepalive timeout"), TAKE)
    conn("client_abort_1006", CLIENT, W15, op_abort(1006), TAKE, op_send(0, b"x"))
    conn("server_split_join", SERVER, W15,
         bytes([11, len(RFC_MASKED_PONG)]) + RFC_MASKED_PONG + b"\x01", bytes([11, len(RFC_PING)]) + frame(0x89, b"Hello", mask=MASK) + b"\x01",
         TAKE, bytes([8, 0, 3]), bytes([8, 0xff, 0xff]))
    conn("server_pings", SERVER, W15, *[op_frame(0x89, bytes([i]) * 125) for i in range(8)], TAKE)
    conn("server_eof_mid_frame", SERVER, W15, op_raw(hello_masked[:6]), EOF, op_send(0, b"late"))
    conn("server_read_buf_and_shrink", SERVER, W15, bytes([14, len(hello_masked)]) + hello_masked, bytes([12]), bytes([15]), TAKE)
    conn("server_reserved_opcode", SERVER, W15, op_frame(0x83, b"abc"), TAKE)
    conn("server_rsv1_without_deflate", SERVER, W15, op_msg(True, True, 1, b"Hello"), TAKE)


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    frame_header()
    handshake_request()
    handshake_response()
    deflate_negotiation()
    inflate()
    connection()
    # utf8: k, chunk lengths, text.
    for name, data in [
        ("ascii_whole", b"\x00Hello, world"),
        ("kosme_split", b"\x03\x01\x02\x03" + "κόσμε".encode()),
        ("four_byte_split", b"\x04\x01\x01\x01\x01" + "𝄞€".encode()),
        ("surrogate", b"\x01\x01\xed\xa0\x80"),
        ("overlong", b"\x02\x01\x01\xc0\x80\xe0\x80\x80"),
        ("above_max", b"\x01\x01\xf4\x90\x80\x80"),
        ("truncated_end", b"\x00ab\xe2\x82"),
        ("invalid_after_partial", b"\x01\x01\xc3\xa9\xff"),
        ("all_widths", b"\x05\x03\x05\x07\x02\x09" + "aé€𝄞z¡ࠀ𐀀\U0010ffff".encode()),
    ]:
        write("utf8", name, data)
    for t in sorted(os.listdir(ROOT)):
        print(f"{t}: {len(os.listdir(os.path.join(ROOT, t)))} seeds")


if __name__ == "__main__":
    main()
