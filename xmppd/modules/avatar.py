"""mod_avatar: one avatar, whether a client keeps it in PEP or in the vCard (XEP-0398).

Modern clients (Conversations, Dino, Gajim) publish their avatar to PEP (XEP-0084:
the image in ``urn:xmpp:avatar:data``, its description in
``urn:xmpp:avatar:metadata``); older ones, and everybody in group chats, read it
from the vCard (XEP-0153). The server keeps the two the same:

- **PEP to vCard**: when a user publishes avatar metadata, the image of its first
  ``info`` without a ``url`` is read from the data node, checked against its SHA-1
  id, and stored as the vCard's PHOTO (TYPE and BINVAL; the rest of the vCard is
  kept). Metadata without ``info`` (the avatar taken away) removes the PHOTO.
- **vCard to PEP**: a vCard stored with a valid PHOTO is published as a data item
  and then a metadata item with the image's SHA-1 as their ids (contacts get the
  notification), unless the metadata node has that item already.

mod_vcard_xupdate then puts the new hash in the user's presence. The account's
disco#info shows ``urn:xmpp:pep-vcard-conversion:0``: the vCard is readable by
anybody, so clients may warn that an avatar published in PEP becomes public.
Images are stored as they are: ejabberd's ``convert`` (format conversion) is
accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from typing import Any, Optional

from ..confval import v_any
from ..jid import JID
from ..moduleapi import Module, Option, hook
from ..pep.module import PubsubModule
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element
from .vcard import NS as VCARD_NS
from .vcard import VCARD, VcardModule
from .vcard_xupdate import VcardXupdate, photo_hash, photo_of

log = logging.getLogger(__name__)

DATA = "urn:xmpp:avatar:data"
META = "urn:xmpp:avatar:metadata"
FEATURE = "urn:xmpp:pep-vcard-conversion:0"
PHOTO = "{%s}PHOTO" % VCARD_NS


def _v(tag: str) -> str:
    return "{%s}%s" % (VCARD_NS, tag)


class Avatar(Module):
    name = "mod_avatar"
    xeps = ("XEP-0398",)
    depends = (VcardModule, VcardXupdate, PubsubModule)
    options = {
        "convert": Option(None, v_any, "accepted, ignored: images are stored as published"),
        "rate_limit": Option(None, v_any, "accepted, ignored"),
    }

    def setup(self) -> None:
        vcards = VcardModule.of(self.server, self.host)
        pep = PubsubModule.of(self.server, self.host)
        assert vcards is not None and pep is not None  # (dependencies, loaded first)
        self.vcards, self.pep = vcards, pep
        self.api.hook("disco-account-features", self._features)

    def _features(self, ev: StanzaEvent) -> Optional[list[str]]:
        return [FEATURE] if ev.to_jid.domain == self.host else None

    # -- PEP to vCard ------------------------------------------------------------------
    @hook("pep/published")
    async def _published(self, owner: JID, node: str, item_id: str, payload: Element,
                         by: str) -> None:
        if node != META or by == self.name or owner.domain != self.host:
            return
        infos = payload.findall("{%s}info" % META)
        card = await self.vcards.card(owner) or Element(VCARD)
        if not infos:
            if card.find(PHOTO) is not None:
                card.remove_all(PHOTO)
                await self.vcards.put_card(owner, card, self.name)
            return
        info = next((i for i in infos if not i.get("url")), None)
        if info is None or not info.get("id"):
            return
        sha1 = str(info.get("id")).lower()
        if photo_hash(card) == sha1:
            return  # the vCard has this image already
        data = await self.pep.item(owner, DATA, str(info.get("id")))
        if data is None:
            log.info("avatar of %s: metadata %s without its data item", owner, sha1)
            return
        b64 = "".join(data.text.split())
        try:
            image = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            return
        if hashlib.sha1(image).hexdigest() != sha1:
            log.info("avatar of %s: data item %s does not match its SHA-1", owner, sha1)
            return
        card.remove_all(PHOTO)
        card.append(Element(PHOTO, None, [
            Element(_v("TYPE"), None, [info.get("type") or "image/png"]),
            Element(_v("BINVAL"), None, [b64])]))
        await self.vcards.put_card(owner, card, self.name)

    # -- vCard to PEP ------------------------------------------------------------------
    @hook("vcard/set")
    async def _vcard_set(self, owner: JID, card: Element, by: str) -> None:
        if by == self.name or owner.domain != self.host:
            return
        found = photo_of(card)
        if found is None:
            return
        image, mime = found
        sha1 = hashlib.sha1(image).hexdigest()
        if await self.pep.item(owner, META, sha1) is not None:
            return  # published in PEP already (by a client, or converted before)
        b64 = base64.b64encode(image).decode()
        info: dict[str, Any] = {"id": sha1, "bytes": str(len(image)), "type": mime}
        try:
            await self.pep.publish(owner, DATA, sha1, Element("{%s}data" % DATA, None, [b64]),
                                   by=self.name)
            await self.pep.publish(owner, META, sha1, Element("{%s}metadata" % META, None, [
                Element("{%s}info" % META, info)]), by=self.name)
        except StanzaError as e:
            log.info("avatar of %s not published in PEP: %s", owner, e.condition)
