"""muc#owner (XEP-0045 section 10): the configuration form, instant rooms, destruction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..dataforms import form_values
from ..jid import JID
from ..stanza import StanzaError
from ..xml import Element
from . import admin
from .config import RoomConfig, apply_form, config_form
from .ns import DATA, OWNER, ROOMCONFIG, USER, q

if TYPE_CHECKING:
    from .room import Room

NS = OWNER


def handle(room: Room, frm: JID, type_: str, el: Element, query: Element) -> None:
    if room.affiliation(frm) != "owner":
        raise StanzaError("forbidden", "auth", "only owners configure a room")
    if type_ == "get":
        out = Element(q(OWNER, "query"))
        out.append(config_form(room.config, room.jid_str, room.policy.max_users,
                               room.jids_with("owner"), room.jids_with("admin")))
        room.result(el, out)
        return
    destroy = query.find(q(OWNER, "destroy"))
    if destroy is not None:
        destroy_room(room, destroy.attrs.get("jid"), destroy.findtext(q(OWNER, "reason")),
                     destroy.findtext(q(OWNER, "password")))
        room.result(el, None)
        return
    form = query.find(q(DATA, "x"))
    if form is None:
        raise StanzaError("bad-request", "modify", "a data form or destroy is needed")
    ftype = form.attrs.get("type")
    if ftype == "cancel":
        if room.locked:
            # 10.1.3: cancelling the initial configuration destroys the room
            room.result(el, None)
            destroy_room(room, None, None, None)
        else:
            room.result(el, None)
        return
    if ftype != "submit":
        raise StanzaError("bad-request", "modify", "submit or cancel the form")
    values = form_values(form)
    ftype_field = values.get("FORM_TYPE")
    if ftype_field and ftype_field[0] != ROOMCONFIG:
        raise StanzaError("bad-request", "modify", f"FORM_TYPE must be {ROOMCONFIG}")
    configure(room, frm, values)
    room.result(el, None)


def configure(room: Room, frm: JID, values: dict[str, list[str]]) -> None:
    old = room.config
    new = apply_form(old, values, room.policy.max_users)
    if new.persistent and not old.persistent and not room.policy.can_persist(frm):
        raise StanzaError("forbidden", "auth", "you may not make rooms persistent")
    owners = _jids(values.get("muc#roomconfig_roomowners"))
    admins = _jids(values.get("muc#roomconfig_roomadmins"))
    room.config = new
    was_locked = room.locked
    room.locked = False
    if owners:
        for bare in room.jids_with("owner"):
            if bare not in owners:
                admin.set_affiliation(room, bare, "none", None, "")
        for bare in owners:
            admin.set_affiliation(room, bare, "owner", None, "")
    if admins is not None and "muc#roomconfig_roomadmins" in values:
        for bare in room.jids_with("admin"):
            if bare not in admins:
                admin.set_affiliation(room, bare, "none", None, "")
        for bare in admins:
            if room.affiliations.get(bare, ("none",))[0] != "owner":
                admin.set_affiliation(room, bare, "admin", None, "")
    settle(room, old, new, was_locked)


def settle(room: Room, old: RoomConfig, new: RoomConfig, was_locked: bool) -> None:
    """The room has its new configuration ``new`` (and its affiliations): occupants who
    are no longer members leave, the store follows, occupants are told (status 104...),
    and a room that is neither persistent nor occupied goes away."""
    if new.members_only and not old.members_only:
        for occ in list(room.occupants.values()):
            if room.affiliation(occ.bare) in ("none",):
                room.remove(occ, (322,))
    if new.persistent:
        room.out.effect("save")
    elif old.persistent:
        room.out.effect("unsave")
    if was_locked:
        return   # nobody else is there to tell
    codes = [104]
    if new.mam != old.mam:
        codes.append(170 if new.mam else 171)
    if new.anonymous != old.anonymous:
        codes.append(173 if new.anonymous else 172)
    room.status_message(codes)
    if room.is_empty() and not new.persistent:
        room.destroy_now(delete=True)


def _jids(values: Optional[list[str]]) -> Optional[list[str]]:
    from .room import parse_jid
    if values is None:
        return None
    return [str(parse_jid(v.strip()).bare) for v in values if v.strip()]


def destroy_room(room: Room, alternate: Optional[str], reason: Optional[str],
                 password: Optional[str]) -> None:
    """10.9: every occupant leaves with a <destroy/> naming the alternate venue."""
    d = Element(q(USER, "destroy"), {"jid": alternate} if alternate else {})
    if reason:
        d.append(Element(q(USER, "reason"), {}, [reason]))
    if password:
        d.append(Element(q(USER, "password"), {}, [password]))
    for occ in list(room.occupants.values()):
        for full in occ.sessions:
            room.out.send(room._presence_el(occ, str(full), "unavailable", [], False, (),
                                            role="none", affiliation="none", extra=d))
            room.by_jid.pop(full, None)
            room.out.effect("left", full)
    room.occupants.clear()
    room.destroy_now(delete=True)
