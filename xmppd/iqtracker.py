"""Requests the server itself sends (pings, disco): match replies by id."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from .stanza import StanzaError
from .xml import Element

if TYPE_CHECKING:
    from .server import Server


class IqTracker:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._pending: dict[str, asyncio.Future[Element]] = {}

    async def request(self, iq: Element, timeout: float = 30.0) -> Element:
        """Route ``iq`` (with from and to set) and wait for its result.

        An error reply raises :class:`StanzaError`; no reply raises TimeoutError.
        """
        iq_id = "xmppd-" + secrets.token_hex(8)
        iq.attrs["id"] = iq_id
        fut: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = fut
        try:
            self.server.router.route(iq)
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(iq_id, None)
        if reply.attrs.get("type") == "error":
            err = reply.find("{jabber:client}error")
            cond = "undefined-condition"
            if err is not None:
                first = err.first_child()
                if first is not None:
                    cond = first.name
            raise StanzaError(cond)
        return reply

    def resolve(self, stanza: Element) -> bool:
        fut = self._pending.get(stanza.attrs.get("id", ""))
        if fut is None or fut.done():
            return False
        fut.set_result(stanza)
        return True
