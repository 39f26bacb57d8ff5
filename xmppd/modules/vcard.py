"""mod_vcard: vCards (XEP-0054 vcard-temp).

A user stores a vCard by sending it in an iq set to their own account (no ``to``,
or their bare JID); anybody may read it with an iq get to that bare JID. Clients
keep their avatar there (XEP-0153: the hash in presence, the image in the vCard's
PHOTO). A user without a vCard reads an empty one; an account that does not exist
gets ``service-unavailable`` (RFC 6121 8.5.1), and a set on somebody else's
account ``forbidden``. The vCard is kept as sent (its size is bounded by the
listener's ``max_stanza_size``); deleting the account deletes it.

Other modules read and write vCards with :meth:`VcardModule.card` and
:meth:`VcardModule.put_card`; every stored vCard fires ``vcard/set`` (owner's bare
JID, the vCard, who set it: ``client`` or the module's name), which mod_vcard_xupdate
and mod_avatar use.

With ``search: true`` the host has a user directory (XEP-0055) at ``vjud.HOST``:
:mod:`.vcard_search`, which also keeps its index of every stored vCard.
"""

from __future__ import annotations

from typing import Any, Optional

from ..jid import JID
from ..moduleapi import iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element
from ..xmlstream import parse_xml
from . import vcard_commands, vcard_search
from .xml_store import XmlStoreModule, vcard

NS = "vcard-temp"
VCARD = "{%s}vCard" % NS


class VcardModule(XmlStoreModule):
    name = "mod_vcard"
    features = (NS,)
    xeps = ("XEP-0054", "XEP-0055")
    table = vcard
    options = vcard_search.OPTIONS

    @classmethod
    def validate(cls, raw: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
        return vcard_search.check(super().validate(raw, path, warnings), raw)

    def setup(self) -> None:
        super().setup()
        vcard_commands.install(self)
        vcard_search.install(self)

    async def card(self, owner: JID) -> Optional[Element]:
        """The account's stored vCard, if it has one."""
        data = await self.store.get(self.host, owner.local or "", NS)
        return parse_xml(data) if data is not None else None

    async def put_card(self, owner: JID, card: Element, by: str = "client") -> None:
        """Store the account's vCard; ``vcard/set`` tells the other modules."""
        await self.store.put(self.host, owner.local or "", [(NS, card.to_bytes().decode())])
        await self.server.hooks.run_all("vcard/set", owner.bare, card, by)

    @iq_handler("get", NS, "vCard", dest=("self", "bare"))
    async def get(self, ev: StanzaEvent) -> Element:
        owner = ev.to_jid.bare
        found = await self.card(owner)
        if found is not None:
            return found
        if owner != ev.from_jid.bare and not await self._exists(owner):
            raise StanzaError("service-unavailable")
        return Element(VCARD)

    @iq_handler("set", NS, "vCard", dest="self")
    async def set(self, ev: StanzaEvent) -> None:
        card = ev.stanza.find(VCARD)
        assert card is not None  # (the handler's key)
        await self.put_card(ev.from_jid.bare, card)

    @iq_handler("set", NS, "vCard", dest="bare")
    def set_other(self, ev: StanzaEvent) -> None:
        raise StanzaError("forbidden", text="a vCard is set by its owner")

    async def _exists(self, user: JID) -> bool:
        return await self.server.accounts.get(self.host, user.local or "") is not None
