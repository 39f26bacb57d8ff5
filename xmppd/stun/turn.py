"""TURN allocations (RFC 8656, UDP): a relayed transport address for a client, the
peers it gave permission to, and its channels.

A client allocates a relay port (``Allocate``), lets peers' addresses in
(``CreatePermission``, or ``ChannelBind`` which also numbers the peer), and sends
through the relay with ``Send`` indications or ChannelData. What a permitted peer
sends to the relay port reaches the client as a ``Data`` indication, or as
ChannelData once the peer has a channel. Everything expires unless refreshed:
allocations after their lifetime (``Refresh``), permissions after 300 s and channels
after 600 s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

from . import message as m

log = logging.getLogger(__name__)

Addr = tuple[str, int]
# peers never relayed to, whatever turn_blacklist says: "this host" (0.0.0.0 reaches the
# relay's own machine on Linux), multicast, reserved and broadcast (coturn's CVE-2020-26262)
ALWAYS_FORBIDDEN = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8")]
PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 3600
RESERVATION_LIFETIME = 30.0


def _ip(addr: Any) -> str:
    return str(addr[0]).split("%")[0]


class Relay(asyncio.DatagramProtocol):
    """The relay port of one allocation: what peers send there."""

    def __init__(self, alloc: Allocation) -> None:
        self.alloc = alloc
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.alloc.from_peer(data, (_ip(addr), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        pass


class Allocation:
    def __init__(self, table: Allocations, client: Addr, user: str, relayed: Addr,
                 lifetime: int, tid: bytes) -> None:
        self.table = table
        self.client = client
        self.user = user                      # the credentials' user (without expiry)
        self.relayed = relayed                # the address announced to the client
        self.relay: Optional[Relay] = None   # once its port is bound
        self.expires = time.monotonic() + lifetime
        self.tid = tid                        # the Allocate request's, for retransmissions
        self.response = b""
        self.permissions: dict[str, float] = {}    # peer IP -> expiry
        self.channels: dict[int, tuple[Addr, float]] = {}
        self.channel_of: dict[Addr, int] = {}
        self.sent = 0
        self.received = 0

    # -- client -> peer --------------------------------------------------------------
    def permitted(self, ip: str) -> bool:
        exp = self.permissions.get(ip)
        return exp is not None and exp > time.monotonic()

    def send_to_peer(self, peer: Addr, data: bytes) -> None:
        relay = self.relay
        if relay is not None and relay.transport is not None and self.permitted(peer[0]):
            relay.transport.sendto(data, peer)
            self.sent += len(data)

    def channel_data(self, number: int, data: bytes) -> None:
        bound = self.channels.get(number)
        if bound is not None and bound[1] > time.monotonic():
            self.send_to_peer(bound[0], data)

    # -- peer -> client --------------------------------------------------------------
    def from_peer(self, data: bytes, peer: Addr) -> None:
        if not self.permitted(peer[0]):
            return
        self.received += len(data)
        number = self.channel_of.get(peer)
        if number is not None and self.channels[number][1] > time.monotonic():
            self.table.send(struct.pack("!HH", number, len(data)) + data, self.client)
            return
        self.table.send(m.encode(m.DATA, m.INDICATION, os.urandom(12), [
            (m.XOR_PEER_ADDRESS, m.xor_address(peer[0], peer[1], b"")),
            (m.DATA_ATTR, data)], fingerprint=False), self.client)

    # -- requests ---------------------------------------------------------------------
    def permit(self, ips: Sequence[str]) -> None:
        new = [ip for ip in ips if ip not in self.permissions]
        if len(self.permissions) + len(new) > self.table.max_permissions:
            self.expire(time.monotonic())
            if len(self.permissions) + len(new) > self.table.max_permissions:
                raise m.StunError(508, "too many permissions")
        until = time.monotonic() + PERMISSION_LIFETIME
        for ip in ips:
            self.permissions[ip] = until

    def bind_channel(self, number: int, peer: Addr) -> None:
        if not 0x4000 <= number <= 0x7FFE:   # (RFC 8656 uses up to 0x4FFF, 5766 0x7FFE)
            raise m.StunError(400, "channel numbers are 0x4000 to 0x7FFE")
        bound = self.channels.get(number)
        if bound is not None and bound[0] != peer:
            raise m.StunError(400, "the channel is bound to another peer")
        if self.channel_of.get(peer, number) != number:
            raise m.StunError(400, "the peer has another channel")
        self.permit([peer[0]])
        self.channels[number] = (peer, time.monotonic() + CHANNEL_LIFETIME)
        self.channel_of[peer] = number

    def expire(self, now: float) -> None:
        for ip in [ip for ip, exp in self.permissions.items() if exp <= now]:
            del self.permissions[ip]
        for number in [n for n, (_, exp) in self.channels.items() if exp <= now]:
            peer, _ = self.channels.pop(number)
            self.channel_of.pop(peer, None)

    def close(self) -> None:
        if self.relay is not None and self.relay.transport is not None:
            self.relay.transport.close()


class Allocations:
    """The allocations of one listener, by the client's address (its 5-tuple: the
    listener's address and the protocol are the same for all)."""

    def __init__(self, send: Callable[[bytes, Addr], None], *, relay_ip: str,
                 announce_ip: str, min_port: int, max_port: int, max_per_user: int,
                 max_permissions: int, blacklist: Sequence[str]) -> None:
        self.send = send
        self.relay_ip = relay_ip
        self.announce_ip = announce_ip
        self.min_port, self.max_port = min_port, max_port
        self.max_per_user = max_per_user
        self.max_permissions = max_permissions
        self.blacklist = [ipaddress.ip_network(n, strict=False) for n in blacklist]
        self.by_client: dict[Addr, Allocation] = {}
        # EVEN-PORT with R: the port above an even relay port, held for a later
        # Allocate with the RESERVATION-TOKEN (RTP and RTCP on neighbouring ports)
        self.reserved: dict[bytes, tuple[socket.socket, float]] = {}
        self._sweeper: Optional[asyncio.TimerHandle] = None

    def forbidden(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in (*ALWAYS_FORBIDDEN, *self.blacklist)
                   if net.version == addr.version)

    async def allocate(self, client: Addr, user: str, lifetime: int, tid: bytes,
                       even: Optional[bytes] = None, token: Optional[bytes] = None
                       ) -> tuple[Allocation, Optional[bytes]]:
        """A new allocation, and the token of the port it reserved (EVEN-PORT with its
        R bit); ``token``: use the port an earlier allocation reserved."""
        old = self.by_client.get(client)
        if old is not None:   # expired, not swept yet: its relay port goes now
            self.remove(old)
        now = time.monotonic()
        if sum(1 for a in self.by_client.values()
               if a.user == user and a.expires > now) >= self.max_per_user:
            raise m.StunError(486)
        if token is not None:
            held = self.reserved.pop(token, None)
            if held is None:
                raise m.StunError(508, "no such reservation")
            port = held[0].getsockname()[1]
            held[0].close()
            alloc = await self._bind(client, user, lifetime, tid, port)
            if alloc is None:
                raise m.StunError(508, "the reserved port was taken")
            return alloc, None
        reserve = even is not None and len(even) >= 1 and bool(even[0] & 0x80)
        for _ in range(40):
            port = random.randint(self.min_port, self.max_port)
            if even is not None:
                port &= ~1
                if port < self.min_port or (reserve and port + 1 > self.max_port):
                    continue
            held_sock = self._hold(port + 1) if reserve else None
            if reserve and held_sock is None:
                continue
            alloc = await self._bind(client, user, lifetime, tid, port)
            if alloc is None:
                if held_sock is not None:
                    held_sock.close()
                continue   # taken
            new_token = None
            if held_sock is not None:
                new_token = os.urandom(8)
                self.reserved[new_token] = (held_sock,
                                            time.monotonic() + RESERVATION_LIFETIME)
            return alloc, new_token
        raise m.StunError(508, "no free relay port")

    def _hold(self, port: int) -> Optional[socket.socket]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.relay_ip, port))
        except OSError:
            sock.close()
            return None
        return sock

    async def _bind(self, client: Addr, user: str, lifetime: int, tid: bytes,
                    port: int) -> Optional[Allocation]:
        alloc = Allocation(self, client, user, (self.announce_ip, port), lifetime, tid)
        relay = Relay(alloc)
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: relay, local_addr=(self.relay_ip, port))
        except OSError:
            return None
        alloc.relay = relay
        self.by_client[client] = alloc
        self._sweep_later()
        log.info("TURN: %s allocated relay port %d for %s", user, port, client)
        return alloc

    def remove(self, alloc: Allocation) -> None:
        if self.by_client.get(alloc.client) is alloc:
            del self.by_client[alloc.client]
        alloc.close()
        log.info("TURN: relay port %d of %s closed (%d bytes out, %d in)",
                 alloc.relayed[1], alloc.user, alloc.sent, alloc.received)

    def _sweep_later(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(5.0, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for alloc in list(self.by_client.values()):
            if alloc.expires <= now:
                self.remove(alloc)
            else:
                alloc.expire(now)
        for token in [t for t, (_, exp) in self.reserved.items() if exp <= now]:
            self.reserved.pop(token)[0].close()
        if self.by_client or self.reserved:
            self._sweep_later()

    def close(self) -> None:
        for alloc in list(self.by_client.values()):
            self.remove(alloc)
        for sock, _ in self.reserved.values():
            sock.close()
        self.reserved.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
