"""What a room says about itself: disco#info/items (XEP-0045 6.4, 6.5) and its
avatar through vcard-temp (XEP-0486: clients fetch the room's vCard, and the
disco#info form carries ``muc#roominfo_avatarhash``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Optional

from ..jid import JID
from ..stanza import StanzaError
from ..xml import Element
from ..xmlstream import parse_xml
from . import moderation, occupant_id
from .ns import (
    DATA,
    DISCO_INFO,
    DISCO_ITEMS,
    MAM,
    MAM_EXT,
    MUC,
    PRESENCE,
    REQUEST,
    ROOMINFO,
    SELF_PING_OPT,
    SID,
    STABLE_ID,
    VCARD,
    VCARD_UPDATE,
    q,
)

if TYPE_CHECKING:
    from .room import Room


def features(room: Room) -> list[str]:
    c = room.config
    feats = [MUC, STABLE_ID, SELF_PING_OPT, SID, REQUEST, VCARD, DISCO_INFO, DISCO_ITEMS,
             "muc_persistent" if c.persistent else "muc_temporary",
             "muc_public" if c.public else "muc_hidden",
             "muc_membersonly" if c.members_only else "muc_open",
             "muc_moderated" if c.moderated else "muc_unmoderated",
             "muc_semianonymous" if c.anonymous else "muc_nonanonymous",
             "muc_passwordprotected" if c.password_protected else "muc_unsecured"]
    if c.mam:
        feats += [MAM, MAM_EXT]
    if room.policy.occupant_key is not None:
        feats.append(occupant_id.NS)
    feats += [moderation.NS, moderation.NS0]
    return feats


def disco(room: Room, frm: JID, query: Element) -> Element:
    node = query.attrs.get("node")
    if query.ns == DISCO_ITEMS:
        out = Element(q(DISCO_ITEMS, "query"), {"node": node} if node else {})
        if room.config.public_list or frm in room.by_jid:
            for nick in room.occupants:
                out.add(q(DISCO_ITEMS, "item"), {"jid": f"{room.jid}/{nick}", "name": nick})
        return out
    out = Element(q(DISCO_INFO, "query"), {"node": node} if node else {})
    out.add(q(DISCO_INFO, "identity"), {"category": "conference", "type": "text",
                                        "name": room.config.title or room.jid.local or ""})
    for f in sorted(features(room)):
        out.add(q(DISCO_INFO, "feature"), {"var": f})
    out.append(roominfo(room))
    return out


def roominfo(room: Room) -> Element:
    form = Element(q(DATA, "x"), {"type": "result"})

    def field(var: str, value: str, label: str = "") -> None:
        f = form.add(q(DATA, "field"), {"var": var, "label": label} if label else {"var": var})
        f.append(Element(q(DATA, "value"), {}, [value] if value else []))
    field("FORM_TYPE", ROOMINFO)
    field("muc#roomconfig_roomname", room.config.title, "Title")
    field("muc#roominfo_description", room.config.description, "Description")
    field("muc#roominfo_subject", room.subject, "Subject")
    field("muc#roominfo_occupants", str(len(room.occupants)), "Number of occupants")
    field("muc#roominfo_lang", room.config.lang, "Language")
    field("muc#roomconfig_changesubject", "1" if room.config.allow_change_subj else "0")
    field("muc#maxhistoryfetch", str(room.policy.history_size))
    h = avatar_hash(room.vcard)
    if h:
        field("muc#roominfo_avatarhash", h, "Avatar hash")
    return form


def avatar_hash(vcard: Optional[str]) -> Optional[str]:
    """SHA-1 of the PHOTO's bytes, as XEP-0153 and XEP-0486 expect."""
    if not vcard:
        return None
    el = parse_xml(vcard)
    photo = el.find(q(VCARD, "PHOTO")) if el is not None else None
    binval = photo.findtext(q(VCARD, "BINVAL")) if photo is not None else None
    if not binval:
        return None
    try:
        data = base64.b64decode("".join(binval.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha1(data).hexdigest()


def vcard(room: Room, frm: JID, type_: str, el: Element, payload: Element) -> None:
    if type_ == "get":
        stored = parse_xml(room.vcard) if room.vcard else None
        room.result(el, stored if stored is not None else Element(q(VCARD, "vCard")))
        return
    if room.affiliation(frm) != "owner":
        raise StanzaError("forbidden", "auth", "only owners set the room's avatar")
    room.vcard = payload.to_bytes().decode() if payload.children else None
    if room.config.persistent:
        room.out.effect("save")
    room.result(el, None)
    # XEP-0486: tell occupants the avatar changed
    h = avatar_hash(room.vcard) or ""
    for _, full in room.sessions():
        x = Element(q(VCARD_UPDATE, "x"), {}, [Element(q(VCARD_UPDATE, "photo"), {},
                                                       [h] if h else [])])
        room.out.send(Element(PRESENCE, {"from": room.jid_str, "to": str(full)}, [x]))
    room.status_message([104])
