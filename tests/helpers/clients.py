"""Off-the-shelf XMPP client libraries (slixmpp, aioxmpp) set up for loopback tests."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import slixmpp


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Slix(slixmpp.ClientXMPP):  # type: ignore[misc]
    """A slixmpp client that collects what it receives."""

    def __init__(self, jid: str, password: str, *, direct_tls: bool = False,
                 plugins: tuple[str, ...] = ("xep_0030", "xep_0199", "xep_0092")) -> None:
        super().__init__(jid, password)
        self.ssl_context = no_verify()
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        for p in plugins:
            self.register_plugin(p)
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.started = asyncio.Event()
        self.failed: asyncio.Queue[Any] = asyncio.Queue()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("failed_auth", lambda e: self.failed.put_nowait(e))

    def _on_start(self, _event: Any) -> None:
        self.send_presence()
        self.started.set()

    async def login(self, port: int, timeout: float = 15) -> "Slix":
        self.connect("127.0.0.1", port)
        await asyncio.wait_for(self.started.wait(), timeout)
        return self

    async def logout(self) -> None:
        self.disconnect()
        try:
            await asyncio.wait_for(self.disconnected, 5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort in tests
            pass


def aioxmpp_client(jid: str, password: str, port: int, *, direct_tls: bool = False) -> Any:
    import aioxmpp
    import aioxmpp.connector

    connector = (aioxmpp.connector.XMPPOverTLSConnector() if direct_tls
                 else aioxmpp.connector.STARTTLSConnector())
    return aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid),
        aioxmpp.make_security_layer(password, no_verify=True),
        override_peer=[("127.0.0.1", port, connector)],
    )
