"""A raw-socket XMPP client for tests: literal XML out, parsed elements in.

It parses what the server sends with the standard library's ElementTree (not
xmppd's parser) and does SCRAM on its own, so it checks the server from
outside.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import xml.etree.ElementTree as ET
from typing import Optional, Union

STREAM = "http://etherx.jabber.org/streams"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
C = "{jabber:client}"


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class StreamClosed(Exception):
    pass


def local(tag: str) -> str:
    return tag.split("}", 1)[-1]


class RawClient:
    def __init__(self, port: int, *, tls: bool = False, host: str = "localhost") -> None:
        self.port = port
        self.direct_tls = tls
        self.host = host
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.parser: Optional[ET.XMLPullParser] = None
        self.depth = 0
        self.pending: list[ET.Element] = []
        self.root: Optional[ET.Element] = None
        self.eof = False
        self.jid: Optional[str] = None

    async def connect(self) -> "RawClient":
        ctx = no_verify() if self.direct_tls else None
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=ctx, server_hostname=self.host if ctx else None)
        self._new_parser()
        return self

    def _new_parser(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.root = None

    async def send(self, data: Union[str, bytes]) -> None:
        assert self.writer is not None
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def _fill(self, timeout: float) -> None:
        assert self.reader is not None and self.parser is not None
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.eof = True
            raise StreamClosed("connection closed")
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == "start":
                self.depth += 1
                if self.depth == 1:
                    self.root = el
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(el)
                    if self.root is not None:
                        self.root.remove(el)
                elif self.depth == 0:
                    self.eof = True

    # waits for what must come are generous (shared, noisy CI machines); waits for
    # silence pass their own short timeout
    async def recv(self, timeout: float = 15.0) -> ET.Element:
        """The next top-level element (a stanza, features, an error...)."""
        while not self.pending:
            if self.eof:
                raise StreamClosed("stream closed")
            await self._fill(timeout)
        return self.pending.pop(0)

    async def recv_until(self, pred: "callable", timeout: float = 15.0) -> ET.Element:  # type: ignore[valid-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            el = await self.recv(max(0.01, deadline - loop.time()))
            if pred(el):
                return el

    async def closed(self, timeout: float = 5.0) -> bool:
        """Read until the server closes the connection; True if it did."""
        try:
            while True:
                await self.recv(timeout)
        except StreamClosed:
            return True
        except (ConnectionError, ssl.SSLError):
            return True
        except asyncio.TimeoutError:
            return False

    async def open(self, to: Optional[str] = None, extra: str = "") -> ET.Element:
        """Send a stream header; return the features."""
        await self.send(
            f"<?xml version='1.0'?><stream:stream to='{to or self.host}' version='1.0' "
            f"xmlns='jabber:client' xmlns:stream='{STREAM}'{extra}>")
        feats = await self.recv()
        assert feats.tag == f"{{{STREAM}}}features", ET.tostring(feats)
        return feats

    async def stream_error(self, timeout: float = 5.0) -> str:
        """Wait for a stream error; return its condition."""
        while True:
            el = await self.recv(timeout)
            if el.tag == f"{{{STREAM}}}error":
                for child in el:
                    if child.tag.startswith(f"{{{STREAMS_ERR}}}") and local(child.tag) != "text":
                        return local(child.tag)
                return "?"

    async def starttls(self) -> ET.Element:
        await self.send(f"<starttls xmlns='{TLS}'/>")
        el = await self.recv()
        assert local(el.tag) == "proceed", ET.tostring(el)
        assert self.writer is not None
        await self.writer.start_tls(no_verify(), server_hostname=self.host)
        self._new_parser()
        return await self.open()

    async def auth_plain(self, user: str, password: str) -> ET.Element:
        data = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{data}</auth>")
        return await self.recv()

    def server_end_point(self) -> bytes:
        """tls-server-end-point channel binding data (RFC 5929) of this connection."""
        assert self.writer is not None
        sslobj = self.writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        return hashlib.sha256(der).digest()  # our certificates are signed with SHA-256

    async def auth_scram(self, user: str, password: str, hashname: str = "sha1",
                         cb: Optional[tuple[str, bytes]] = None) -> ET.Element:
        """SCRAM (-PLUS when ``cb`` = (type, data)); returns <success/> or <failure/>."""
        mech = {"sha1": "SCRAM-SHA-1", "sha256": "SCRAM-SHA-256"}[hashname]
        gs2 = "n,,"
        if cb is not None:
            mech += "-PLUS"
            gs2 = f"p={cb[0]},,"
        cnonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={user},r={cnonce}"
        await self.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>"
                        f"{base64.b64encode((gs2 + first_bare).encode()).decode()}</auth>")
        ch = await self.recv()
        if local(ch.tag) != "challenge":
            return ch
        server_first = base64.b64decode(ch.text or "").decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac(hashname, password.encode(), salt, int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashname).digest()
        stored = hashlib.new(hashname, client_key).digest()
        cbind = gs2.encode() + (cb[1] if cb is not None else b"")
        final_wo = f"c={base64.b64encode(cbind).decode()},r={attrs['r']}"
        auth_msg = f"{first_bare},{server_first},{final_wo}".encode()
        sig = hmac.new(stored, auth_msg, hashname).digest()
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig))).decode()
        await self.send(f"<response xmlns='{SASL}'>"
                        f"{base64.b64encode(f'{final_wo},p={proof}'.encode()).decode()}</response>")
        res = await self.recv()
        if local(res.tag) == "success":
            server_key = hmac.new(salted, b"Server Key", hashname).digest()
            expect = base64.b64encode(hmac.new(server_key, auth_msg, hashname).digest()).decode()
            got = base64.b64decode(res.text or "").decode()
            assert got == f"v={expect}", "server signature mismatch"
        return res

    async def bind(self, resource: Optional[str] = None) -> str:
        inner = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='bind1'><bind xmlns='{BIND}'>{inner}</bind></iq>")
        res = await self.recv()
        assert res.get("type") == "result", ET.tostring(res)
        jid = res.find(f"{{{BIND}}}bind/{{{BIND}}}jid")
        assert jid is not None and jid.text
        self.jid = jid.text
        return jid.text

    async def restarted_after_auth(self, user: str, password: str) -> ET.Element:
        """SCRAM on an opened stream, then the restart: the features after it (nothing
        bound yet)."""
        res = await self.auth_scram(user, password)
        assert local(res.tag) == "success", ET.tostring(res)
        self._new_parser()
        return await self.open()

    async def login(self, user: str, password: str, resource: Optional[str] = "raw",
                    presence: bool = True) -> str:
        if self.reader is None:
            await self.connect()
        await self.open()
        if not self.direct_tls:
            await self.starttls()
        await self.restarted_after_auth(user, password)
        jid = await self.bind(resource)
        if presence:
            await self.send("<presence/>")
        return jid

    async def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except Exception:  # noqa: BLE001 - best effort in tests
                pass
