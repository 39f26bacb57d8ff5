"""STUN messages (RFC 8489, with the TURN methods and attributes of RFC 8656):
decoding, encoding, XOR-mapped addresses, MESSAGE-INTEGRITY (long-term credentials,
HMAC-SHA1) and FINGERPRINT.

A message is a 20-byte header (type, length, the magic cookie, a 96-bit transaction
id) and attributes, each type, length and a value padded to 4 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

COOKIE = 0x2112A442
_COOKIE_BYTES = struct.pack("!I", COOKIE)
FINGERPRINT_XOR = 0x5354554E

# classes
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3
# methods
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009

# attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
EVEN_PORT = 0x0018
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A
RESERVATION_TOKEN = 0x0022
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

# comprehension-required attributes this server understands (RFC 8489 14: others in
# 0x0000-0x7FFF make a request fail with 420)
UNDERSTOOD = frozenset({
    MAPPED_ADDRESS, USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, UNKNOWN_ATTRIBUTES,
    CHANNEL_NUMBER, LIFETIME, XOR_PEER_ADDRESS, DATA_ATTR, REALM, NONCE,
    XOR_RELAYED_ADDRESS, REQUESTED_ADDRESS_FAMILY, EVEN_PORT, REQUESTED_TRANSPORT,
    DONT_FRAGMENT, RESERVATION_TOKEN, XOR_MAPPED_ADDRESS})

REASONS = {
    300: "Try Alternate", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    420: "Unknown Attribute", 437: "Allocation Mismatch", 438: "Stale Nonce",
    440: "Address Family not Supported", 441: "Wrong Credentials",
    442: "Unsupported Transport Protocol", 486: "Allocation Quota Reached",
    500: "Server Error", 508: "Insufficient Capacity",
}


class StunError(Exception):
    """A request that gets an error response: ``code`` (and its reason phrase)."""

    def __init__(self, code: int, reason: str = "",
                 attrs: Optional[list[tuple[int, bytes]]] = None) -> None:
        super().__init__(code, reason or REASONS.get(code, ""))
        self.code = code
        self.reason = reason or REASONS.get(code, "")
        self.attrs = attrs or []


def message_type(method: int, cls: int) -> int:
    return ((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2)
            | ((cls & 1) << 4) | ((cls & 2) << 7))


def split_type(t: int) -> tuple[int, int]:
    """(method, class) of a message type."""
    method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80)
    cls = ((t >> 4) & 1) | ((t >> 7) & 2)
    return method, cls


@dataclass
class Message:
    method: int
    cls: int
    tid: bytes
    attrs: list[tuple[int, bytes]] = field(default_factory=list)
    raw: bytes = b""
    # where MESSAGE-INTEGRITY starts in ``raw`` (what it covers), if present
    integrity_at: int = -1

    def get(self, attr: int) -> Optional[bytes]:
        for a, v in self.attrs:
            if a == attr:
                return v
        return None

    def all(self, attr: int) -> list[bytes]:
        return [v for a, v in self.attrs if a == attr]


def is_stun(data: bytes) -> bool:
    """A STUN message (not ChannelData): the first two bits 0, the magic cookie."""
    return len(data) >= 20 and data[0] < 0x40 and data[4:8] == _COOKIE_BYTES


def decode(data: bytes) -> Optional[Message]:
    """The message in ``data``, or None when it is not a well-formed STUN message
    (RFC 8489 says to drop those silently)."""
    if not is_stun(data):
        return None
    t, length = struct.unpack_from("!HH", data)
    if length % 4 or 20 + length != len(data):
        return None
    method, cls = split_type(t)
    msg = Message(method, cls, data[8:20], raw=data)
    pos = 20
    while pos < len(data):
        if pos + 4 > len(data):
            return None
        a, alen = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + alen
        if end > len(data):
            return None
        if a == MESSAGE_INTEGRITY and msg.integrity_at < 0:
            msg.integrity_at = pos
        if msg.integrity_at < 0 or a in (MESSAGE_INTEGRITY, FINGERPRINT):
            msg.attrs.append((a, data[pos + 4:end]))  # (after MI only FINGERPRINT counts)
        pos = end + (-alen % 4)
    return msg


def encode(method: int, cls: int, tid: bytes, attrs: list[tuple[int, bytes]],
           key: Optional[bytes] = None, fingerprint: bool = True) -> bytes:
    """A message; with ``key``, MESSAGE-INTEGRITY; then FINGERPRINT."""
    body = b"".join(struct.pack("!HH", a, len(v)) + v + b"\0" * (-len(v) % 4)
                    for a, v in attrs)
    head = struct.pack("!HH", message_type(method, cls), len(body)) + _COOKIE_BYTES + tid
    out = head + body
    if key is not None:
        covered = _with_length(out, len(body) + 24)
        mac = hmac.new(key, covered, hashlib.sha1).digest()
        out = covered + struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
    if fingerprint:
        covered = _with_length(out, len(out) - 20 + 8)
        crc = (zlib.crc32(covered) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        out = covered + struct.pack("!HHI", FINGERPRINT, 4, crc)
    return out


def _with_length(msg: bytes, length: int) -> bytes:
    return msg[:2] + struct.pack("!H", length) + msg[4:]


def long_term_key(username: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def integrity_ok(msg: Message, key: bytes) -> bool:
    """Whether the message's MESSAGE-INTEGRITY was made with ``key``."""
    at = msg.integrity_at
    if at < 0 or at + 24 > len(msg.raw):
        return False
    covered = _with_length(msg.raw[:at], at - 20 + 24)
    mac = hmac.new(key, covered, hashlib.sha1).digest()
    return hmac.compare_digest(mac, msg.raw[at + 4:at + 24])


def error_attr(code: int, reason: str) -> tuple[int, bytes]:
    return ERROR_CODE, struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def error_code(value: bytes) -> int:
    return (value[2] & 7) * 100 + value[3] if len(value) >= 4 else 0


def xor_address(host: str, port: int, tid: bytes) -> bytes:
    ip = ipaddress.ip_address(host)
    xport = port ^ (COOKIE >> 16)
    if ip.version == 4:
        return struct.pack("!BBH", 0, 1, xport) + _xor(ip.packed, _COOKIE_BYTES)
    return struct.pack("!BBH", 0, 2, xport) + _xor(ip.packed, _COOKIE_BYTES + tid)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def read_xor_address(value: bytes, tid: bytes) -> tuple[str, int]:
    """(host, port) of an XOR-...-ADDRESS; raises StunError(400) when malformed."""
    if len(value) < 8:
        raise StunError(400, "malformed address")
    family, xport = value[1], struct.unpack_from("!H", value, 2)[0]
    port = xport ^ (COOKIE >> 16)
    if family == 1 and len(value) == 8:
        raw = _xor(value[4:8], _COOKIE_BYTES)
    elif family == 2 and len(value) == 20:
        raw = _xor(value[4:20], _COOKIE_BYTES + tid)
    else:
        raise StunError(400, "malformed address")
    return str(ipaddress.ip_address(raw)), port


def unknown_required(msg: Message) -> list[int]:
    return [a for a, _ in msg.attrs if a < 0x8000 and a not in UNDERSTOOD]
