"""The ``ejabberd_stun`` listener: a STUN server (RFC 8489 Binding, so that call
clients learn their public address) and, with ``use_turn``, a TURN relay (RFC 8656,
:mod:`.turn`) for calls between clients that cannot reach each other. Clients reach
it over UDP (``transport: udp``), TCP (``transport: tcp``) or TLS (``tls: true``, TURN
over TLS for networks that let nothing else out); the relay to peers is UDP.

TURN requests need long-term credentials (``auth_type: user``, the default): those
mod_stun_disco hands out (:mod:`.credentials`), checked with the shared secret;
``auth_type: anonymous`` relays for anybody. Peers in ``turn_blacklist`` (loopback by
default, as in ejabberd) are refused. The relay ports come from ``turn_min_port`` ..
``turn_max_port``; ``turn_ipv4_address`` is the address announced to clients.

Malformed datagrams are dropped (RFC 8489 says so); requests that cannot be served
get the STUN error response the RFCs name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
import struct
import time
from typing import Any, Optional

from . import message as m
from .credentials import expired, password_for, shared_secret
from .turn import DEFAULT_LIFETIME, MAX_LIFETIME, Addr, Allocation, Allocations

log = logging.getLogger(__name__)

NONCE_LIFETIME = 3600
TURN_METHODS = (m.ALLOCATE, m.REFRESH, m.CREATE_PERMISSION, m.CHANNEL_BIND)


def default_ipv4() -> str:
    """This machine's address on its default route (no packet is sent), or loopback."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))   # TEST-NET-1: only picks the route
        return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def plain(host: str) -> str:
    """An address as a client knows it: IPv4 for an IPv4-mapped IPv6 address (a
    dual-stack socket's view of IPv4 clients), without an interface scope."""
    host = host.split("%")[0]
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class StunServer(asyncio.DatagramProtocol):
    def __init__(self, server: Any, opts: dict[str, Any], listen_ip: str) -> None:
        self.server = server
        self.opts = opts
        self.realm: str = opts["auth_realm"] or next(iter(server.hosts))
        self.software = (m.SOFTWARE, str(opts["server_name"]).encode())
        self.transport: Optional[asyncio.DatagramTransport] = None
        self._nonce_key = os.urandom(16)
        self._allocating: set[Addr] = set()
        self._tasks: set[asyncio.Task[None]] = set()   # TURN requests being served
        self.streams: dict[Addr, StunStream] = {}      # TCP/TLS clients, by address
        relay_ip = listen_ip if listen_ip not in ("::", "0.0.0.0") else "0.0.0.0"
        # where clients reach this server (mod_stun_disco offers it) and its relays
        self.announce_ip: str = opts["turn_ipv4_address"] or (
            relay_ip if relay_ip != "0.0.0.0" else default_ipv4())
        self.turn: Optional[Allocations] = Allocations(
            self.send, relay_ip=relay_ip, announce_ip=self.announce_ip,
            min_port=opts["turn_min_port"], max_port=opts["turn_max_port"],
            max_per_user=opts["turn_max_allocations"],
            max_permissions=opts["turn_max_permissions"],
            blacklist=opts["turn_blacklist"]) if opts["use_turn"] else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.turn is not None:
            self.turn.close()

    def error_received(self, exc: Exception) -> None:
        pass

    def send(self, data: bytes, addr: Addr) -> None:
        stream = self.streams.get(addr)
        if stream is not None:
            stream.write(data)
        elif self.transport is not None:
            self.transport.sendto(data, addr)

    # -- datagrams --------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.handle(data, (str(addr[0]), int(addr[1])))

    def stream_closed(self, client: Addr) -> None:
        """A TCP or TLS client went: its allocation goes with it (RFC 8656 5)."""
        self.streams.pop(client, None)
        alloc = self.turn.by_client.get(client) if self.turn is not None else None
        if alloc is not None and self.turn is not None:
            self.turn.remove(alloc)

    def handle(self, data: bytes, client: Addr) -> None:
        """One STUN message or ChannelData frame from ``client``."""
        if data and 0x40 <= data[0] < 0x80:          # ChannelData
            alloc = self._allocation(client)
            if alloc is not None and len(data) >= 4:
                number, length = struct.unpack_from("!HH", data)
                if 4 + length <= len(data):
                    alloc.channel_data(number, data[4:4 + length])
            return
        msg = m.decode(data)
        if msg is None:
            return
        if msg.cls == m.REQUEST:
            if msg.method in TURN_METHODS and self.turn is not None:
                task = asyncio.ensure_future(self._turn_request(msg, client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif msg.method == m.BINDING:
                self._answer(msg, client, [(m.XOR_MAPPED_ADDRESS, m.xor_address(
                    plain(client[0]), client[1], msg.tid))])
            else:
                self._error(msg, client, m.StunError(400, "unknown method"))
        elif msg.cls == m.INDICATION and msg.method == m.SEND:
            self._send_indication(msg, client)

    def _allocation(self, client: Addr) -> Optional[Allocation]:
        if self.turn is None:
            return None
        alloc = self.turn.by_client.get(client)
        return alloc if alloc is not None and alloc.expires > time.monotonic() else None

    def _answer(self, msg: m.Message, client: Addr, attrs: list[tuple[int, bytes]],
                key: Optional[bytes] = None) -> None:
        self.send(m.encode(msg.method, m.SUCCESS, msg.tid, attrs + [self.software], key),
                  client)

    def _error(self, msg: m.Message, client: Addr, e: m.StunError,
               key: Optional[bytes] = None) -> None:
        """An error response; signed (``key``) once the request was authenticated
        (RFC 8489 9.2.4)."""
        attrs = [m.error_attr(e.code, e.reason)] + e.attrs + [self.software]
        self.send(m.encode(msg.method, m.ERROR, msg.tid, attrs, key), client)

    # -- TURN -------------------------------------------------------------------------
    async def _turn_request(self, msg: m.Message, client: Addr) -> None:
        key: Optional[bytes] = None
        try:
            unknown = m.unknown_required(msg)
            if unknown:
                log.debug("STUN: %s from %s: unknown attributes %s", msg.method, client,
                          ", ".join("0x%04x" % a for a in unknown))
                raise m.StunError(420, attrs=[(m.UNKNOWN_ATTRIBUTES, b"".join(
                    struct.pack("!H", a) for a in unknown))])
            user, key = self._authenticate(msg)
            attrs = await self._turn(msg, client, user)
        except _Resend as again:
            if again.response:
                self.send(again.response, client)
            return
        except m.StunError as e:
            self._error(msg, client, e, key)
            return
        if msg.method == m.ALLOCATE:
            alloc = self._allocation(client)
            if alloc is not None:
                alloc.response = m.encode(msg.method, m.SUCCESS, msg.tid,
                                          attrs + [self.software], key)
                self.send(alloc.response, client)
                return
        self._answer(msg, client, attrs, key)

    def _nonce(self) -> bytes:
        until = "%x" % (int(time.time()) + NONCE_LIFETIME)
        mac = hmac.new(self._nonce_key, until.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{until}-{mac}".encode()

    def _nonce_ok(self, nonce: bytes) -> bool:
        until, _, mac = nonce.decode("ascii", "replace").partition("-")
        good = hmac.new(self._nonce_key, until.encode(), hashlib.sha256).hexdigest()[:24]
        try:
            fresh = int(until, 16) >= time.time()
        except ValueError:
            return False
        return hmac.compare_digest(mac, good) and fresh

    def _challenge(self, code: int, reason: str = "") -> m.StunError:
        return m.StunError(code, reason, [(m.REALM, self.realm.encode()),
                                          (m.NONCE, self._nonce())])

    def _authenticate(self, msg: m.Message) -> tuple[str, Optional[bytes]]:
        """(the user, the key for the answer's MESSAGE-INTEGRITY)."""
        if self.opts["auth_type"] == "anonymous":
            return "anonymous", None
        if msg.integrity_at < 0:
            raise self._challenge(401)
        username, realm, nonce = msg.get(m.USERNAME), msg.get(m.REALM), msg.get(m.NONCE)
        if username is None or realm is None or nonce is None:
            raise m.StunError(400, "USERNAME, REALM and NONCE with MESSAGE-INTEGRITY")
        if not self._nonce_ok(nonce):
            raise self._challenge(438)
        name = username.decode("utf-8", "replace")
        if realm.decode("utf-8", "replace") != self.realm or expired(name):
            raise self._challenge(401)
        key = m.long_term_key(name, self.realm, password_for(shared_secret(self.server), name))
        if not m.integrity_ok(msg, key):
            raise self._challenge(401)
        return name.split(":", 1)[1] if ":" in name else name, key

    async def _turn(self, msg: m.Message, client: Addr, user: str) -> list[tuple[int, bytes]]:
        assert self.turn is not None
        alloc = self._allocation(client)
        if msg.method == m.ALLOCATE:
            return await self._allocate(msg, client, user, alloc)
        if alloc is None:
            raise m.StunError(437, "no allocation")
        if alloc.user != user:
            raise m.StunError(441)
        if msg.method == m.REFRESH:
            lifetime = self._lifetime(msg)
            if lifetime == 0:
                self.turn.remove(alloc)
            else:
                alloc.expires = time.monotonic() + lifetime
            return [(m.LIFETIME, struct.pack("!I", lifetime))]
        if msg.method == m.CREATE_PERMISSION:
            peers = [m.read_xor_address(v, msg.tid) for v in msg.all(m.XOR_PEER_ADDRESS)]
            if not peers:
                raise m.StunError(400, "XOR-PEER-ADDRESS")
            self._check_peers(peers)
            alloc.permit([ip for ip, _ in peers])
            return []
        # ChannelBind
        number, peer = msg.get(m.CHANNEL_NUMBER), msg.get(m.XOR_PEER_ADDRESS)
        if number is None or peer is None or len(number) != 4:
            raise m.StunError(400, "CHANNEL-NUMBER and XOR-PEER-ADDRESS")
        addr = m.read_xor_address(peer, msg.tid)
        self._check_peers([addr])
        alloc.bind_channel(struct.unpack("!H", number[:2])[0], addr)
        return []

    async def _allocate(self, msg: m.Message, client: Addr, user: str,
                        alloc: Optional[Allocation]) -> list[tuple[int, bytes]]:
        assert self.turn is not None
        if alloc is not None:
            if alloc.tid == msg.tid and alloc.response:
                raise _Resend(alloc.response)
            raise m.StunError(437, "this address has an allocation")
        if client in self._allocating:
            raise _Resend(b"")     # a retransmission while the first is served
        transport = msg.get(m.REQUESTED_TRANSPORT)
        if transport is None:
            raise m.StunError(400, "REQUESTED-TRANSPORT")
        if transport[:1] != b"\x11":
            raise m.StunError(442)
        family = msg.get(m.REQUESTED_ADDRESS_FAMILY)
        if family is not None and family[:1] != b"\x01":
            raise m.StunError(440)
        even, token = msg.get(m.EVEN_PORT), msg.get(m.RESERVATION_TOKEN)
        if even is not None and token is not None:
            raise m.StunError(400, "EVEN-PORT and RESERVATION-TOKEN")
        lifetime = self._lifetime(msg) or DEFAULT_LIFETIME
        self._allocating.add(client)
        try:
            alloc, reserved = await self.turn.allocate(client, user, lifetime, msg.tid,
                                                       even, token)
        finally:
            self._allocating.discard(client)
        host, port = alloc.relayed
        attrs = [(m.XOR_RELAYED_ADDRESS, m.xor_address(host, port, msg.tid)),
                 (m.LIFETIME, struct.pack("!I", lifetime)),
                 (m.XOR_MAPPED_ADDRESS, m.xor_address(plain(client[0]), client[1], msg.tid))]
        if reserved is not None:
            attrs.append((m.RESERVATION_TOKEN, reserved))
        return attrs

    @staticmethod
    def _lifetime(msg: m.Message) -> int:
        raw = msg.get(m.LIFETIME)
        if raw is None or len(raw) != 4:
            return DEFAULT_LIFETIME
        asked = struct.unpack("!I", raw)[0]
        return 0 if asked == 0 else max(DEFAULT_LIFETIME, min(asked, MAX_LIFETIME))

    def _check_peers(self, peers: list[Addr]) -> None:
        assert self.turn is not None
        for ip, _ in peers:
            if ":" in ip:
                raise m.StunError(443, "Peer Address Family Mismatch")
            if self.turn.forbidden(ip):
                raise m.StunError(403, "the peer's address is not allowed")

    def _send_indication(self, msg: m.Message, client: Addr) -> None:
        alloc = self._allocation(client)
        peer, data = msg.get(m.XOR_PEER_ADDRESS), msg.get(m.DATA_ATTR)
        if alloc is None or peer is None or data is None or self.turn is None:
            return
        try:
            addr = m.read_xor_address(peer, msg.tid)
        except m.StunError:
            return
        if ":" not in addr[0] and not self.turn.forbidden(addr[0]):
            alloc.send_to_peer(addr, data)


class StunStream(asyncio.Protocol):
    """A client over TCP or TLS: STUN messages and ChannelData frames one after the
    other (ChannelData padded to 4 bytes, RFC 8656 12.5). The listener's
    ``max_sessions_per_ip`` and ``idle_timeout`` apply; a client that does not read
    what it asked for is not read from either."""

    MAX_FRAME = 65536 + 20

    def __init__(self, server: StunServer, listen: Any) -> None:
        self.server = server
        self.listen = listen
        self.transport: Optional[asyncio.Transport] = None
        self.client: Addr = ("", 0)
        self.buf = b""
        self.last = time.monotonic()
        self._idle: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1]))
        same_ip = sum(1 for c in self.server.streams if c[0] == self.client[0])
        if same_ip >= self.listen.max_sessions_per_ip:
            transport.close()
            return
        self.server.streams[self.client] = self
        if self.listen.idle_timeout != float("inf"):
            self._idle = asyncio.get_running_loop().call_later(self.listen.idle_timeout,
                                                               self._check_idle)

    def _check_idle(self) -> None:
        left = self.last + self.listen.idle_timeout - time.monotonic()
        if left <= 0:
            self.close()
        else:
            self._idle = asyncio.get_running_loop().call_later(left, self._check_idle)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            first = buf[pos]
            length = struct.unpack_from("!H", buf, pos + 2)[0]
            if first < 0x40:
                size = need = 20 + length
            elif first < 0x80:
                need = 4 + length
                size = need + (-length % 4)
            else:   # neither STUN nor ChannelData: not a STUN client
                self.close()
                return
            if size > self.MAX_FRAME:
                self.close()
                return
            if end - pos < size:
                break
            self.server.handle(buf[pos:pos + need], self.client)
            pos += size
        self.buf = buf[pos:]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if 0x40 <= data[0] < 0x80:
                data += b"\0" * (-len(data) % 4)
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.server.streams.get(self.client) is self:
            self.server.stream_closed(self.client)


class _Resend(m.StunError):
    """An Allocate sent again: the first answer goes again (or nothing yet)."""

    def __init__(self, response: bytes) -> None:
        super().__init__(0)
        self.response = response


class StunListener:
    """The listener as the server keeps it (``close``, ``wait_closed``)."""

    def __init__(self, proto: StunServer, port: int, transport: str, tls: bool,
                 closer: Any) -> None:
        self.proto = proto
        self.port = port
        self.transport = transport   # udp or tcp
        self.tls = tls
        self._closer = closer        # the datagram transport, or the TCP server

    def services(self) -> list[dict[str, Any]]:
        """What mod_stun_disco offers of this listener (``offer_local_services``)."""
        base = {"host": self.proto.announce_ip, "port": self.port,
                "transport": self.transport, "local": True}
        out = [{**base, "type": "stuns" if self.tls else "stun", "restricted": False}]
        if self.proto.turn is not None:
            out.append({**base, "type": "turns" if self.tls else "turn",
                        "restricted": self.proto.opts["auth_type"] != "anonymous"})
        return out

    def close(self) -> None:
        self._closer.close()
        for stream in list(self.proto.streams.values()):
            stream.close()
        if self.transport == "tcp":
            self.proto.connection_lost(None)

    async def wait_closed(self) -> None:
        if self.transport == "tcp":
            await self._closer.wait_closed()


async def start_listener(server: Any, lconf: Any) -> StunListener:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in lconf.ip else socket.AF_INET
    proto = StunServer(server, lconf.stun, lconf.ip)
    transport = lconf.stun["transport"]
    closer: Any
    if transport == "udp":
        closer, _ = await loop.create_datagram_endpoint(
            lambda: proto, local_addr=(lconf.ip, lconf.port), family=family,
            reuse_port=server.reuse_port or None)
    else:
        ctx = server.certs.sni_context(next(iter(server.hosts))) if lconf.tls else None
        closer = await loop.create_server(
            lambda: StunStream(proto, lconf), host=lconf.ip, port=lconf.port, ssl=ctx,
            backlog=lconf.backlog, reuse_address=True, reuse_port=server.reuse_port or None,
            ssl_handshake_timeout=30 if ctx else None)
    if proto.turn is not None:
        log.info("STUN/TURN on port %d (%s%s): relay ports %d-%d announced at %s",
                 lconf.port, transport, ", tls" if lconf.tls else "", proto.turn.min_port,
                 proto.turn.max_port, proto.turn.announce_ip)
    return StunListener(proto, lconf.port, transport, lconf.tls, closer)
