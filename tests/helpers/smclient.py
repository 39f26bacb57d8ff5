"""A raw-socket XMPP client with XEP-0198 stream management, for delivery tests.

It counts what it receives and acknowledges it (at once, or when asked),
keeps what it sent until the server acknowledges it, can drop its TCP
connection without a word (``drop``) and resume the session (``resume``).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import deque
from typing import Optional

from helpers.raw import SASL, STREAM, RawClient, StreamClosed, local

SM = "urn:xmpp:sm:3"
C = "{jabber:client}"
STANZAS = {C + "message", C + "presence", C + "iq"}


class SMClient:
    def __init__(self, port: int, user: str, password: str, resource: str = "sm",
                 *, ack_each: bool = True) -> None:
        self.port = port
        self.user = user
        self.password = password
        self.resource = resource
        self.ack_each = ack_each          # acknowledge every stanza right away
        self.mute = False                 # send no acks at all (not even when asked)
        self.raw: Optional[RawClient] = None
        self.jid = ""
        self.sm_id: Optional[str] = None
        self.h = 0                        # stanzas received
        self.out = 0                      # stanzas sent
        self.server_h = 0                 # what the server acknowledged
        self.unacked: deque[tuple[int, str]] = deque()
        self.acked_log: list[str] = []    # stanzas the server acknowledged, in order
        self.inbox: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.nonzas: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.acked_event = asyncio.Event()
        self.reader: Optional[asyncio.Task[None]] = None
        self.closed = asyncio.Event()

    # -- connecting ----------------------------------------------------------
    async def _authenticate(self) -> RawClient:
        raw = RawClient(self.port)
        await raw.connect()
        await raw.open()
        await raw.starttls()
        res = await raw.auth_scram(self.user, self.password)
        assert local(res.tag) == "success", ET.tostring(res)
        raw._new_parser()
        feats = await raw.open()
        assert feats.find(f"{{{SM}}}sm") is not None, "no stream management feature"
        return raw

    async def connect(self, *, presence: bool = True, enable: bool = True,
                      resume: bool = True) -> "SMClient":
        raw = self.raw = await self._authenticate()
        self.jid = await raw.bind(self.resource)
        if enable:
            extra = " resume='true'" if resume else ""
            await raw.send(f"<enable xmlns='{SM}'{extra}/>")
            el = await raw.recv()
            assert local(el.tag) == "enabled", ET.tostring(el)
            self.sm_id = el.get("id")
        self._start_reader()
        if presence:
            await self.send("<presence/>")
        return self

    def _start_reader(self) -> None:
        self.closed.clear()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        raw = self.raw
        assert raw is not None
        try:
            while True:
                el = await raw.recv(3600)
                if el.tag in STANZAS:
                    self.h += 1
                    await self.inbox.put(el)
                    if self.ack_each and not self.mute:
                        await raw.send(f"<a xmlns='{SM}' h='{self.h}'/>")
                elif el.tag == f"{{{SM}}}a":
                    self._acked(int(el.get("h", "0")))
                elif el.tag == f"{{{SM}}}r":
                    if not self.mute:
                        await raw.send(f"<a xmlns='{SM}' h='{self.h}'/>")
                else:
                    await self.nonzas.put(el)
        except (StreamClosed, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()

    def _acked(self, h: int) -> None:
        while self.unacked and self.unacked[0][0] <= h:
            self.acked_log.append(self.unacked.popleft()[1])
        self.server_h = h
        self.acked_event.set()

    # -- sending ------------------------------------------------------------
    async def send(self, stanza: str) -> None:
        assert self.raw is not None
        self.out += 1
        self.unacked.append((self.out, stanza))
        await self.raw.send(stanza)

    async def request_ack(self) -> None:
        assert self.raw is not None
        await self.raw.send(f"<r xmlns='{SM}'/>")

    async def wait_acked(self, n: Optional[int] = None, timeout: float = 10) -> None:
        """Until the server acknowledged ``n`` (default: all) stanzas."""
        target = self.out if n is None else n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.server_h < target:
            self.acked_event.clear()
            await self.request_ack()
            await asyncio.wait_for(self.acked_event.wait(), max(0.01, deadline - loop.time()))

    async def receive(self, timeout: float = 10) -> ET.Element:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def messages(self, n: int, timeout: float = 10) -> list[ET.Element]:
        """The next ``n`` messages (other stanzas are skipped)."""
        out = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < n:
            el = await asyncio.wait_for(self.inbox.get(), max(0.01, deadline - loop.time()))
            if el.tag == C + "message":
                out.append(el)
        return out

    async def quiet(self, seconds: float = 0.5) -> list[ET.Element]:
        """Whatever stanzas arrive within ``seconds``."""
        out = []
        try:
            while True:
                out.append(await asyncio.wait_for(self.inbox.get(), seconds))
        except asyncio.TimeoutError:
            return out

    # -- breaking and resuming ------------------------------------------------
    def drop(self) -> None:
        """Lose the TCP connection without closing the stream."""
        if self.reader is not None:
            self.reader.cancel()
        if self.raw is not None and self.raw.writer is not None:
            self.raw.writer.transport.abort()

    async def resume(self) -> ET.Element:
        """Resume the session; returns <resumed/> or <failed/>."""
        raw = self.raw = await self._authenticate()
        await raw.send(f"<resume xmlns='{SM}' previd='{self.sm_id}' h='{self.h}'/>")
        el = await raw.recv()
        if local(el.tag) == "resumed":
            self._acked(int(el.get("h", "0")))
            pending = list(self.unacked)
            self._start_reader()
            for _, stanza in pending:
                await raw.send(stanza)
        return el

    async def close(self) -> None:
        if self.raw is not None:
            if self.reader is not None:
                # no more acks once the stream is closed; cancel until it ends (on
                # Python 3.11 wait_for inside recv can swallow one cancellation)
                while not self.reader.done():
                    self.reader.cancel()
                    await asyncio.wait([self.reader], timeout=0.5)
            try:
                await self.raw.send("</stream:stream>")
            except (ConnectionError, OSError):
                pass
            await self.raw.closed(3)
            await self.raw.close()


def body(el: ET.Element) -> Optional[str]:
    return el.findtext(C + "body")


def stanza_id(el: ET.Element) -> Optional[str]:
    sid = el.find("{urn:xmpp:sid:0}stanza-id")
    return sid.get("id") if sid is not None else None


__all__ = ["SASL", "SMClient", "body", "stanza_id"]


async def ack_too_much(c: RawClient, h: int) -> ET.Element:
    """Enable stream management on ``c`` (any transport), acknowledge ``h`` stanzas
    that were never sent; the stream error must be <undefined-condition/>: return
    its <handled-count-too-high/> (XEP-0198 5)."""
    await c.send(f"<enable xmlns='{SM}'/>")
    await c.recv_until(lambda e: e.tag == f"{{{SM}}}enabled")
    await c.send(f"<a xmlns='{SM}' h='{h}'/>")
    err = await c.recv_until(lambda e: e.tag == f"{{{STREAM}}}error")
    assert err.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition") is not None
    too_high = err.find(f"{{{SM}}}handled-count-too-high")
    assert too_high is not None
    return too_high
