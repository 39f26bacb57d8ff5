"""Occupant identifiers (XEP-0421): a stable, opaque id per user and room.

Every presence and groupchat message a room sends on behalf of an occupant
carries ``<occupant-id xmlns='urn:xmpp:occupant-id:0' id='...'/>``, the same
for one real bare JID in one room across nicknames, sessions, restarts and
cluster nodes, so clients can tell who wrote what (corrections, reactions,
moderation) without learning the real JID. The id is an HMAC-SHA-256 under a
secret key of the service, kept in the database (:mod:`.store`), of the room's
bare JID and the user's bare JID: the same user gets unrelated ids in two
rooms, and nobody without the key can compute or reverse one (XEP-0421 4.1).
An ``<occupant-id/>`` a client put in its own stanza is removed first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from ..jid import JID
from ..xml import Element

NS = "urn:xmpp:occupant-id:0"
TAG = "{%s}occupant-id" % NS


def make_id(key: bytes, room: JID, user: JID) -> str:
    """The id of ``user`` (a real bare JID) in ``room``: 43 characters, base64url."""
    mac = hmac.new(key, f"{room.bare}\0{user.bare}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def element(oid: str) -> Element:
    return Element(TAG, {"id": oid})
