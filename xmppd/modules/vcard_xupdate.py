"""mod_vcard_xupdate: the vCard avatar's hash in the user's presence (XEP-0153, as
XEP-0398 section 4 asks of servers).

Every available presence a user's client sends, broadcast or directed (a group chat
join), carries ``<x xmlns='vcard-temp:x:update'><photo>SHA-1</photo></x>`` with
the hash of the PHOTO in the account's vCard (an empty ``<photo/>`` when it has
none), so that clients need not fetch their own vCard at every login to compute
it. A presence whose ``x`` already has a ``photo`` is left as the client sent it
(XEP-0153: an empty one means "not ready to advertise"); an ``x`` without one is
filled in.

The hash is read from the database when a session binds, kept per account while
one of its sessions is on this node, and follows every vCard stored (``vcard/set``,
on every cluster node). Presence that went out before it was read goes again with it:
the broadcast presence, and each directed presence (a group chat join sent with the
resource binding) as a presence update, except to a room of this server whose join
failed (``muc/is-occupant``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Optional

from ..jid import JID
from ..moduleapi import Module, hook
from ..stanza import StanzaEvent
from ..xml import Element
from .vcard import NS as VCARD_NS
from .vcard import VcardModule

UPDATE = "vcard-temp:x:update"
X = "{%s}x" % UPDATE
PHOTO = "{%s}photo" % UPDATE
MISSED = "xupdate:missed"  # session.data: a presence went out before the hash was read
# session.data: directed presences that went out before the hash was read, by target
LATE = "xupdate:late"
MUC_X = "{http://jabber.org/protocol/muc}x"  # a group chat join (not sent again)


def photo_of(card: Optional[Element]) -> Optional[tuple[bytes, str]]:
    """The image in a vCard's PHOTO (bytes, TYPE), if there is a valid one."""
    photo = card.find("{%s}PHOTO" % VCARD_NS) if card is not None else None
    binval = photo.findtext("{%s}BINVAL" % VCARD_NS) if photo is not None else None
    if photo is None or not binval or not binval.strip():
        return None
    try:
        data = base64.b64decode("".join(binval.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not data:
        return None
    return data, (photo.findtext("{%s}TYPE" % VCARD_NS) or "image/png").strip()


def photo_hash(card: Optional[Element]) -> str:
    """XEP-0153's hash: the SHA-1 of the image, hex; empty without one."""
    found = photo_of(card)
    return hashlib.sha1(found[0]).hexdigest() if found else ""


class VcardXupdate(Module):
    name = "mod_vcard_xupdate"
    xeps = ("XEP-0153",)
    depends = (VcardModule,)

    def setup(self) -> None:
        self.hashes: dict[JID, str] = {}   # accounts with a session here -> hash
        self.vcards = VcardModule.of(self.server, self.host)
        for dest in ("bare", "full", "remote", "component"):
            self.api.hook(f"pre-presence/{dest}", self._directed)

    def _stamp(self, session: Any, out: Element) -> bool:
        """Put the hash in ``out``; True if it was needed but not read yet."""
        if out.attrs.get("type") not in (None, "available"):
            return False
        x = out.find(X)
        if x is not None and x.find(PHOTO) is not None:
            return False
        h = self.hashes.get(session.jid.bare)
        if h is None:
            session.data[MISSED] = True
            return True
        if x is None:
            x = out.add(X)
        else:  # (a copy: the client's element may be shared, and its parent serialized)
            out.remove(x)
            x = x.copy()
            out.append(x)
        x.add(PHOTO, None, h)
        return False

    @hook("presence/decorate")
    def _decorate(self, session: Any, out: Element) -> None:
        if session.jid.domain == self.host:
            self._stamp(session, out)

    def _directed(self, ev: StanzaEvent) -> None:
        session = ev.origin
        if ev.from_jid.domain == self.host and session is not None and \
                hasattr(session, "data") and ev.to_jid.bare != ev.from_jid.bare:
            late = session.data.get(LATE)
            if late is not None:
                late.pop(ev.to_jid, None)  # (a newer presence to that target)
            if self._stamp(session, ev.stanza):
                # sent again with the hash once it is read (a group chat join right
                # after login: the room would show no avatar until the next change)
                session.data.setdefault(LATE, {})[ev.to_jid] = ev.stanza.copy()

    def _send_late(self, session: Any) -> None:
        """The hash is read: the directed presences that went out without it go again,
        as presence updates (a join's MUC element left out: no second join; not to a room
        of this server that the session is not in: its join failed)."""
        for target, el in session.data.pop(LATE, {}).items():
            if self.server.hooks.fire("muc/is-occupant", session.jid, target.bare) is False:
                continue
            out = el.copy()
            out.remove_all(MUC_X)
            self._stamp(session, out)
            self.server.router.route(out)

    @hook("c2s/bound")
    def _bound(self, session: Any) -> None:
        user = session.jid.bare
        if user.domain == self.host and user not in self.hashes:
            self.api.add_task(self._load(user))

    async def _load(self, user: JID) -> None:
        assert self.vcards is not None
        h = photo_hash(await self.vcards.card(user))
        self._set(user, h)

    def _set(self, user: JID, h: str) -> None:
        """The account's hash is ``h`` now: presences that went out without it (read
        too late) or with an old one go out again."""
        local = self.server.sessions.local_resources(user)
        if not local:
            self.hashes.pop(user, None)
            return
        old = self.hashes.get(user)
        self.hashes[user] = h
        for s in local:
            if (s.data.pop(MISSED, None) or (old is not None and old != h)) and s.available:
                self.server.hooks.fire_all("presence/rebroadcast", s)
            if LATE in s.data:
                if h:
                    self._send_late(s)
                else:  # no avatar: the empty photo is not worth a presence of its own
                    del s.data[LATE]

    @hook("vcard/set")
    def _vcard_set(self, user: JID, card: Element, by: str) -> None:
        if user.domain == self.host:
            h = photo_hash(card)
            self._set(user, h)
            self.server.cluster_event("xupdate", f"{user} {h}")

    @hook("cluster/event/xupdate")
    def _changed(self, arg: str) -> None:
        user_s, _, h = arg.partition(" ")
        user = JID.parse(user_s)
        if user.domain == self.host and user in self.hashes:
            self._set(user, h)

    @hook("c2s/ended")
    def _ended(self, session: Any, reason: str) -> None:
        user = session.jid.bare
        if user in self.hashes and not self.server.sessions.local_resources(user):
            del self.hashes[user]
