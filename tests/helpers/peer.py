"""A raw-socket test peer for multi-client scenarios ("Romeo sends ..., Juliet receives ...").

Wraps :class:`RawClient`: stanzas that arrive while waiting for something else
are kept in an inbox, so a scenario can wait for exactly what it expects, in
any order, and can assert that something does *not* arrive.
"""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Optional

from .raw import C, RawClient, StreamClosed

_ids = itertools.count(1)
Pred = Callable[[ET.Element], bool]
ROSTER = "{jabber:iq:roster}"


def is_presence(frm: Optional[str] = None, type: Optional[str] = None) -> Pred:
    """Presence from ``frm`` (full or bare JID; bare matches any resource) of ``type``."""
    def pred(el: ET.Element) -> bool:
        if el.tag != C + "presence" or el.get("type") != type:
            return False
        f = el.get("from", "")
        return frm is None or f == frm or ("/" not in frm and f.split("/")[0] == frm)
    return pred


def is_push(jid: Optional[str] = None) -> Pred:
    def pred(el: ET.Element) -> bool:
        if el.tag != C + "iq" or el.get("type") != "set":
            return False
        item = el.find(f"{ROSTER}query/{ROSTER}item")
        return item is not None and (jid is None or item.get("jid") == jid)
    return pred


def is_message(frm: Optional[str] = None) -> Pred:
    def pred(el: ET.Element) -> bool:
        return el.tag == C + "message" and (frm is None or el.get("from", "").startswith(frm))
    return pred


def error_condition(el: ET.Element) -> Optional[str]:
    err = el.find(C + "error")
    if err is None:
        return None
    for c in err:
        if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("}text"):
            return c.tag.split("}", 1)[1]
    return None


class Peer:
    def __init__(self, port: int, user: str, password: str = "secret", resource: str = "r",
                 host: str = "localhost") -> None:
        self.client = RawClient(port, host=host)
        self.user = user
        self.password = password
        self.resource = resource
        self.bare = f"{user}@{host}"
        self.jid = f"{self.bare}/{resource}"
        self.inbox: list[ET.Element] = []
        self.features: Optional[ET.Element] = None

    async def login(self, presence: bool = True, roster: bool = True,
                    presence_xml: str = "<presence/>") -> Peer:
        c = self.client
        await c.connect()
        await c.open()
        await c.starttls()
        res = await c.auth_scram(self.user, self.password)
        assert res.tag.endswith("}success"), ET.tostring(res)
        c._new_parser()
        self.features = await c.open()
        self.jid = await c.bind(self.resource)
        if roster:
            await self.iq("<query xmlns='jabber:iq:roster'/>")
        if presence:
            await self.send(presence_xml)
            await self.expect(is_presence(self.jid))   # the server reflects it
        return self

    async def send(self, xml: str) -> None:
        await self.client.send(xml)

    async def expect(self, pred: Pred, timeout: float = 5.0) -> ET.Element:
        """The first stanza (already received or arriving) that matches."""
        for i, el in enumerate(self.inbox):
            if pred(el):
                return self.inbox.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{self.jid}: expected stanza did not arrive; got "
                                     f"{[ET.tostring(e)[:200] for e in self.inbox]}")
            try:
                el = await self.client.recv(left)
            except TimeoutError:
                continue
            if pred(el):
                return el
            self.inbox.append(el)

    async def nothing(self, pred: Pred, timeout: float = 1.0) -> None:
        """Assert no matching stanza arrives within ``timeout`` seconds."""
        try:
            el = await self.expect(pred, timeout)
        except AssertionError:
            return
        raise AssertionError(f"{self.jid}: unexpected {ET.tostring(el)!r}")

    async def iq(self, payload: str, type: str = "get", to: Optional[str] = None,
                 ok: bool = True) -> ET.Element:
        """Send an iq and return the answer (a result unless ``ok`` is False)."""
        iid = f"q{next(_ids)}"
        to_attr = f" to='{to}'" if to else ""
        await self.send(f"<iq type='{type}' id='{iid}'{to_attr}>{payload}</iq>")
        res = await self.expect(lambda el: el.tag == C + "iq" and el.get("id") == iid and
                                el.get("type") in ("result", "error"))
        if ok:
            assert res.get("type") == "result", ET.tostring(res)
        return res

    async def roster(self) -> dict[str, ET.Element]:
        res = await self.iq("<query xmlns='jabber:iq:roster'/>")
        return {it.get("jid", ""): it for it in res.iter(f"{ROSTER}item")}

    async def close(self, graceful: bool = True) -> None:
        c = self.client
        if graceful and c.writer is not None:
            try:
                await c.send("</stream:stream>")
            except (ConnectionError, StreamClosed):
                pass
        await c.close()

    def abort(self) -> None:
        """Drop the TCP connection without a goodbye."""
        assert self.client.writer is not None
        self.client.writer.transport.abort()


def push_state(el: ET.Element) -> tuple[str, Optional[str]]:
    item = el.find(f"{ROSTER}query/{ROSTER}item")
    assert item is not None
    return item.get("subscription", ""), item.get("ask")


async def befriend(a: Peer, b: Peer) -> None:
    """Mutual subscription ('both' on each side); both must be online and available."""
    await a.send(f"<presence type='subscribe' to='{b.bare}'/>")
    await b.expect(is_presence(a.bare, "subscribe"))
    await b.send(f"<presence type='subscribed' to='{a.bare}'/>")
    await b.send(f"<presence type='subscribe' to='{a.bare}'/>")
    await a.expect(is_presence(b.bare, "subscribed"))
    await a.expect(is_presence(b.bare, "subscribe"))
    await a.send(f"<presence type='subscribed' to='{b.bare}'/>")
    await b.expect(is_presence(a.bare, "subscribed"))
    # each now sees the other's presence, and both rosters say 'both'
    await a.expect(is_presence(b.jid))
    await b.expect(is_presence(a.jid))
    for p, other in ((a, b), (b, a)):
        while push_state(await p.expect(is_push(other.bare))) != ("both", None):
            pass
    a.inbox.clear()
    b.inbox.clear()
