"""Reading a request body so that a client that goes away or goes quiet ends the read.

aiohttp tells a body that its connection was lost (ConnectionResetError) only
once the request's handler has started. A client that sends its head and part
of a body and closes at once can be gone before that; reading on then fails
with a RuntimeError ("Connection closed."), which a handler takes for a bug of
its own (a 500 and a traceback in the log). Here that is a ConnectionResetError
too, like any broken-off body. aiohttp has no time limit for reading a request
body: here a body that stays silent for ``idle`` seconds fails with
TimeoutError, so a stalled client does not hold a handler, a slot or a
``.part`` file without end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Optional

from aiohttp import StreamReader

IDLE = 60.0  # seconds without a byte of the body before the read gives up


async def body_chunks(content: StreamReader, transport: Optional[asyncio.BaseTransport],
                      idle: float = IDLE) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive (``transport`` is the request's, None once closed)."""
    if transport is None and not content.is_eof():
        raise ConnectionResetError("the client closed the connection before its body was read")
    while True:
        async with asyncio.timeout(idle):
            chunk = await content.readany()
        if not chunk:
            return
        yield chunk
