"""The other side of a server-to-server stream, scripted in tests.

``RawS2S`` connects to xmppd's s2s port as a remote server would;
``FakePeer`` listens as a remote domain's server and answers xmppd's
dialback requests with a chosen verdict. Both parse with ElementTree.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from typing import Optional

from .raw import STREAM, RawClient

DB = "jabber:server:dialback"
DB_RESULT = f"{{{DB}}}result"
DB_VERIFY = f"{{{DB}}}verify"
S = "{jabber:server}"


class RawS2S(RawClient):
    """A raw connection to xmppd's s2s listener."""

    async def open_s2s(self, frm: str, to: str, *, ns: str = "jabber:server",
                       version: bool = True) -> ET.Element:
        await self.send(
            f"<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:db='{DB}' "
            f"xmlns:stream='{STREAM}' from='{frm}' to='{to}'"
            f"{' version=' + chr(39) + '1.0' + chr(39) if version else ''}>")
        return await self.recv()

    @property
    def stream_id(self) -> str:
        assert self.root is not None
        return self.root.get("id") or ""


class FakePeer:
    """A remote domain's server: answers db:verify with ``verdict``, accepts our keys."""

    def __init__(self, domain: str, verdict: str = "valid") -> None:
        self.domain = domain
        self.verdict = verdict
        self.verifies: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.stanzas: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.server: Optional[asyncio.AbstractServer] = None
        self.port = 0

    async def start(self) -> "FakePeer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        depth = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                parser.feed(data)
                for ev, el in parser.read_events():
                    if ev == "start":
                        depth += 1
                        if depth == 1:
                            writer.write(
                                f"<stream:stream xmlns='jabber:server' xmlns:db='{DB}' "
                                f"xmlns:stream='{STREAM}' id='{secrets.token_hex(6)}' "
                                f"from='{self.domain}' version='1.0'><stream:features>"
                                "<dialback xmlns='urn:xmpp:features:dialback'><errors/>"
                                "</dialback></stream:features>".encode())
                        continue
                    depth -= 1
                    if depth != 1:
                        continue
                    if el.tag == DB_VERIFY:
                        await self.verifies.put(el)
                        writer.write(
                            f"<db:verify from='{el.get('to')}' to='{el.get('from')}' "
                            f"id='{el.get('id')}' type='{self.verdict}'/>".encode())
                    elif el.tag == DB_RESULT:
                        writer.write(f"<db:result from='{el.get('to')}' to='{el.get('from')}' "
                                     "type='valid'/>".encode())
                    else:
                        await self.stanzas.put(el)
        finally:
            writer.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
