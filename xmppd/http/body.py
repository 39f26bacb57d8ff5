"""Reading a request body so that a client that goes away or goes quiet ends the read.

aiohttp hands a lost connection to the body only once the request's handler
has started. A client that sends its head and part of a body and closes at
once can be gone before that; the body then never ends and the handler would
wait for ever (an upload would keep its ``.part`` file). Such a read fails
with ConnectionResetError here, and a body that stays silent for ``idle``
seconds fails with TimeoutError (a slow or stalled client does not hold a
handler, a slot or a file without end).
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
