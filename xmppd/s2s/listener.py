"""Incoming server-to-server connections.

Federation is not implemented yet: an incoming stream gets a stream header and
an ``<undefined-condition/>`` stream error saying so, instead of a silent close.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Optional

from ..xmlstream import StreamError, StreamOpen, TCPFraming

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server


class S2SInbound(asyncio.Protocol):
    def __init__(self, server: Server, listen: ListenConfig) -> None:
        self.server = server
        self.listen = listen
        self.framing = TCPFraming(65536, content_ns="jabber:server")
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            events = self.framing.feed(data)
        except StreamError as e:
            self._fail(e.condition, e.text)
            return
        for ev in events:
            if isinstance(ev, StreamOpen):
                self._fail("undefined-condition", "federation is not supported by this server yet")
                return

    def _fail(self, condition: str, text: Optional[str]) -> None:
        assert self.transport is not None
        self.transport.write(self.framing.header({"id": secrets.token_hex(8), "version": "1.0"}))
        self.transport.write(self.framing.error(condition, text))
        self.transport.write(self.framing.footer())
        self.transport.close()


async def start_listener(server: Server, listen: ListenConfig) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: S2SInbound(server, listen), host=listen.ip if listen.ip != "::" else None,
        port=listen.port, backlog=listen.backlog, reuse_address=True,
        reuse_port=server.reuse_port)
