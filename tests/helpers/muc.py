"""Group chat test helpers: a slixmpp client with the MUC plugins, and raw joins."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any, Optional

from helpers.clients import Slix
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath
from helpers.raw import RawClient

MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
SERVICE = "conference.localhost"
MUC_PLUGINS = ("xep_0030", "xep_0004", "xep_0045", "xep_0059", "xep_0199", "xep_0249",
               "xep_0313", "xep_0092", "xep_0421", "xep_0424", "xep_0425")
MUC_MODULES: dict[str, Any] = {"mod_disco": {}, "mod_ping": {}, "mod_muc": {}}


class MucSlix(Slix):
    """slixmpp with XEP-0045 and friends; collects groupchat traffic per kind."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password, plugins=MUC_PLUGINS)
        self.groupchat: asyncio.Queue[Any] = asyncio.Queue()
        self.muc_presences: asyncio.Queue[Any] = asyncio.Queue()
        self.invites: asyncio.Queue[Any] = asyncio.Queue()
        self.declines: asyncio.Queue[Any] = asyncio.Queue()
        self.direct_invites: asyncio.Queue[Any] = asyncio.Queue()
        self.errors: asyncio.Queue[Any] = asyncio.Queue()
        self.forms: asyncio.Queue[Any] = asyncio.Queue()
        self.add_event_handler("message_xform", lambda m: self.forms.put_nowait(m))
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler("message_error", lambda m: self.errors.put_nowait(m))
        self.add_event_handler("groupchat_presence", lambda p: self.muc_presences.put_nowait(p))
        self.add_event_handler("groupchat_invite", lambda m: self.invites.put_nowait(m))
        # slixmpp's own groupchat_decline event never fires for clients: match the stanza
        self.register_handler(Callback("muc-decline", StanzaPath("message/muc/decline"),
                                       lambda m: self.declines.put_nowait(m)))
        self.moderated: asyncio.Queue[Any] = asyncio.Queue()
        self.add_event_handler("moderated_message", lambda m: self.moderated.put_nowait(m))
        self.add_event_handler("groupchat_direct_invite",
                               lambda m: self.direct_invites.put_nowait(m))

    @property
    def muc(self) -> Any:
        return self.plugin["xep_0045"]

    async def join(self, room: str, nick: str, **kw: Any) -> Any:
        """Join and return (self-presence, subject, occupants, history)."""
        return await self.muc.join_muc_wait(room, nick, timeout=10, **kw)

    async def instant(self, room: str) -> None:
        """Accept the default configuration (XEP-0045 10.1.2)."""
        form = self.plugin["xep_0004"].make_form(ftype="submit")
        await self.muc.set_room_config(room, form, timeout=10)

    async def configure(self, room: str, **fields: Any) -> None:
        form = await self.muc.get_room_config(room, timeout=10)
        for var, value in fields.items():
            form.get_fields()[var]["value"] = value
        await self.muc.set_room_config(room, form, timeout=10)

    async def next_body(self, timeout: float = 10) -> Any:
        """The next groupchat message that has a body."""
        while True:
            msg = await asyncio.wait_for(self.groupchat.get(), timeout)
            if msg["body"]:
                return msg

    async def presence_from(self, jid: str, type_: Optional[str] = None,
                            role: Optional[str] = None, timeout: float = 10) -> Any:
        """The next presence from ``jid`` (of that type, with that role)."""
        while True:
            p = await asyncio.wait_for(self.muc_presences.get(), timeout)
            if str(p["from"]) == jid and (type_ is None or p["type"] == type_) and \
                    (role is None or p["muc"]["role"] == role):
                return p


def codes(el: ET.Element) -> set[int]:
    return {int(s.get("code", "0")) for s in el.iter(f"{{{USER}}}status")}


def error_condition(el: ET.Element) -> str:
    err = el.find("{jabber:client}error")
    assert err is not None, ET.tostring(el)
    for c in err:
        if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith("}text"):
            return c.tag.split("}")[1]
    return ""


async def raw_join(client: RawClient, room: str, nick: str, extra: str = "",
                   timeout: float = 10) -> ET.Element:
    """Join with a raw client; return the self-presence (or the error)."""
    await client.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>")

    def done(el: ET.Element) -> bool:
        return el.tag == "{jabber:client}presence" and (
            el.get("type") == "error" or 110 in codes(el))
    return await client.recv_until(done, timeout)


async def raw_until_subject(client: RawClient, timeout: float = 10) -> list[ET.Element]:
    """Everything up to and including the room subject after a join."""
    got: list[ET.Element] = []
    while True:
        el = await client.recv(timeout)
        got.append(el)
        if el.tag == "{jabber:client}message" and el.find("{jabber:client}subject") is not None \
                and el.find("{jabber:client}body") is None:
            return got
