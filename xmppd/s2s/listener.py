"""The ``ejabberd_s2s_in`` listener: accepts connections from other servers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .incoming import S2SIn
from .transport import S2SConnection

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server


def _accept(server: Server, listen: ListenConfig) -> S2SConnection:
    manager = server.s2s
    conn = S2SConnection(server, listen.max_stanza_size, server.shaper_bucket(listen.shaper))
    conn.secure = listen.tls   # Direct TLS (XEP-0368): the listener did the handshake
    stream = S2SIn(manager, conn, listen)
    conn.stream = stream
    manager.incoming.add(stream)
    return conn


async def start_listener(server: Server, listen: ListenConfig) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    ctx = server.s2s.tls.sni_context() if listen.tls else None
    if listen.tls and ctx is None:
        raise OSError(0, "no certificate for Direct TLS")
    return await loop.create_server(
        lambda: _accept(server, listen), host=listen.ip if listen.ip != "::" else None,
        port=listen.port, backlog=listen.backlog, reuse_address=True,
        reuse_port=server.reuse_port, ssl=ctx, ssl_handshake_timeout=30 if ctx else None)
