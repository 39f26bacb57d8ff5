"""Mediated invitations and declines (XEP-0045 7.8.2, 7.8.3) and voice requests (7.13, 8.6).

XEP-0249 direct invitations go from client to client and need nothing from the
room; a mediated invitation also carries a ``jabber:x:conference`` element so
clients that only know XEP-0249 understand it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..dataforms import form_values
from ..jid import JID
from ..stanza import StanzaError
from ..xml import Element
from .ns import BODY, CONFERENCE, DATA, MESSAGE, REQUEST, USER, X_DATA, q
from .roles import AFF_RANK

if TYPE_CHECKING:
    from .room import Occupant, Room


def handle(room: Room, frm: JID, occ: Optional[Occupant], x: Element) -> None:
    from .room import parse_jid
    for inv in x.findall(q(USER, "invite")):
        if occ is None:
            raise StanzaError("not-acceptable", "cancel", "join the room before inviting")
        aff = room.affiliation(frm)
        privileged = AFF_RANK[aff] >= AFF_RANK["admin"] or occ.role == "moderator"
        if not (room.config.allow_user_invites or privileged):
            raise StanzaError("forbidden", "auth", "you may not invite people to this room")
        to = parse_jid(inv.attrs.get("to")).bare
        if room.config.members_only:
            now = room.affiliations.get(str(to), ("none", ""))[0]
            if now == "outcast":
                raise StanzaError("forbidden", "auth", f"{to} is banned from this room")
            if now == "none":
                room.set_affiliation(str(to), "member")   # 7.8.2: invitees become members
                if room.config.persistent:
                    room.out.effect("save")
        reason = inv.findtext(q(USER, "reason")) or ""
        out_x = Element(q(USER, "x"))
        i = out_x.add(q(USER, "invite"), {"from": str(frm.bare)})
        if reason:
            i.add(q(USER, "reason"), None, reason)
        if room.config.password_protected:
            out_x.add(q(USER, "password"), None, room.config.password)
        conf = {"jid": room.jid_str}
        if reason:
            conf["reason"] = reason
        if room.config.password_protected:
            conf["password"] = room.config.password
        text = f"{frm.bare} invites you to the room {room.jid_str}" + (f": {reason}" if reason else "")
        room.out.send(Element(MESSAGE, {"from": room.jid_str, "to": str(to)}, [
            out_x, Element(q(CONFERENCE, "x"), conf), Element(BODY, {}, [text])]))
    for dec in x.findall(q(USER, "decline")):
        to = parse_jid(dec.attrs.get("to"))
        out_x = Element(q(USER, "x"))
        d = out_x.add(q(USER, "decline"), {"from": str(frm.bare)})
        why = dec.findtext(q(USER, "reason"))
        if why:
            d.add(q(USER, "reason"), None, why)
        room.out.send(Element(MESSAGE, {"from": room.jid_str, "to": str(to)}, [out_x]))


def is_voice_form(el: Element) -> bool:
    form = el.find(X_DATA)
    return form is not None and form_values(form).get("FORM_TYPE", [""])[0] == REQUEST


def voice(room: Room, frm: JID, occ: Optional[Occupant], el: Element) -> None:
    form = el.find(X_DATA)
    assert form is not None
    values = form_values(form)
    if occ is None:
        raise StanzaError("not-acceptable", "cancel", "join the room first")
    if occ.role == "moderator" and "muc#request_allow" in values:
        allow = (values["muc#request_allow"] or ["0"])[0] in ("1", "true")
        nick = (values.get("muc#roomnick") or [""])[0]
        target = room.occupants.get(nick)
        if allow and target is not None and target.role == "visitor":
            from .admin import set_role
            set_role(room, target, "participant", occ.nick, "")
        return
    if occ.role != "visitor":
        return  # already has voice
    if not room.config.allow_voice_requests:
        raise StanzaError("forbidden", "auth", "voice requests are not allowed in this room")
    now = room.policy.now()
    if occ.last_voice_request and now - occ.last_voice_request < room.config.voice_request_min_interval:
        raise StanzaError("resource-constraint", "wait", "you asked for voice recently")
    occ.last_voice_request = now
    for mod in room.occupants.values():
        if mod.role != "moderator":
            continue
        for full in mod.sessions:
            room.out.send(Element(MESSAGE, {"from": room.jid_str, "to": str(full)}, [
                _approval_form(occ, frm)]))


def _approval_form(occ: Occupant, frm: JID) -> Element:
    form = Element(q(DATA, "x"), {"type": "form"})
    form.add(q(DATA, "title"), None, "Voice request")
    form.add(q(DATA, "instructions"), None,
             f"{occ.nick} asks for voice. Allow it?")
    fields = [("FORM_TYPE", "hidden", "", REQUEST), ("muc#role", "list-single", "Requested role",
                                                      "participant"),
              ("muc#jid", "jid-single", "User ID", str(frm)),
              ("muc#roomnick", "text-single", "Room nickname", occ.nick),
              ("muc#request_allow", "boolean", "Grant voice to this person?", "false")]
    for var, type_, label, value in fields:
        f = form.add(q(DATA, "field"), {"var": var, "type": type_, "label": label} if label
                     else {"var": var, "type": type_})
        f.add(q(DATA, "value"), None, value)
    return form
