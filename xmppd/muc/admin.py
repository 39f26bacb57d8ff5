"""muc#admin (XEP-0045 sections 8 and 9): kick, ban, voice, membership, moderators.

A request is checked as a whole before anything changes; then each item is
applied and its presence broadcast with the status codes of the XEP
(301 banned, 307 kicked, 321 removed as a non-member).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..jid import JID
from ..stanza import StanzaError
from ..xml import Element
from .ns import ADMIN, item, q
from .roles import AFF_RANK, AFFILIATIONS, ROLES, can_set_affiliation, can_set_role, default_role

if TYPE_CHECKING:
    from .room import Occupant, Room

NS = ADMIN


def handle(room: Room, frm: JID, type_: str, el: Element, query: Element) -> None:
    items = query.findall(q(ADMIN, "item"))
    if not items:
        raise StanzaError("bad-request", "modify", "an item is needed")
    if type_ == "get":
        room.result(el, get_list(room, frm, items[0]))
        return
    actor_aff = room.affiliation(frm)
    actor = room.by_jid.get(frm)
    actor_role = actor.role if actor is not None else "none"
    plan: list[tuple[str, str, str, str]] = []   # (kind, target, new value, reason)
    for it in items:
        reason = it.findtext(q(ADMIN, "reason")) or ""
        role = it.attrs.get("role")
        aff = it.attrs.get("affiliation")
        if role is not None:
            if role not in ROLES:
                raise StanzaError("bad-request", "modify", f"unknown role {role!r}")
            nick = it.attrs.get("nick")
            target = room.occupants.get(nick or "")
            if target is None:
                raise StanzaError("item-not-found", "cancel", f"no occupant {nick!r}")
            target_aff = room.affiliation(target.bare)
            if actor_role != "moderator" and actor_aff not in ("owner", "admin"):
                raise StanzaError("forbidden", "auth", "only moderators change roles")
            if not can_set_role(actor_aff, "moderator", target_aff, target.role, role):
                raise StanzaError("not-allowed", "cancel",
                                  f"you may not make {nick} a {role}")
            plan.append(("role", target.nick, role, reason))
        elif aff is not None:
            if aff not in AFFILIATIONS:
                raise StanzaError("bad-request", "modify", f"unknown affiliation {aff!r}")
            bare = _target_bare(room, it)
            now = room.affiliations.get(bare, ("none", ""))[0]
            if not can_set_affiliation(actor_aff, now, aff):
                raise StanzaError("forbidden", "auth", f"you may not make {bare} {aff}")
            if now == "owner" and aff != "owner" and room.jids_with("owner") == [bare]:
                raise StanzaError("conflict", "cancel", "a room needs at least one owner")
            plan.append(("affiliation", bare, aff, reason))
        else:
            raise StanzaError("bad-request", "modify", "an item needs a role or an affiliation")
    actor_nick = actor.nick if actor is not None else None
    changed = False
    for kind, who, value, why in plan:
        if kind == "role":
            set_role(room, room.occupants[who], value, actor_nick, why)
        else:
            set_affiliation(room, who, value, actor_nick, why)
            changed = True
    if changed and room.config.persistent:
        room.out.effect("save")
    room.result(el, None)


def _target_bare(room: Room, it: Element) -> str:
    from .room import parse_jid
    jid = it.attrs.get("jid")
    if jid:
        return str(parse_jid(jid).bare)
    nick = it.attrs.get("nick")
    occ = room.occupants.get(nick or "")
    if occ is None:
        raise StanzaError("item-not-found", "cancel", "an item needs a jid or an occupant's nick")
    return str(occ.bare)


def set_role(room: Room, occ: Occupant, role: str, actor: Optional[str], reason: str) -> None:
    if role == "none":
        room.remove(occ, (307,), actor=actor, reason=reason)
        return
    occ.role = role
    room.broadcast_presence(occ, actor=actor, reason=reason)


def set_affiliation(room: Room, bare: str, aff: str, actor: Optional[str], reason: str) -> None:
    room.set_affiliation(bare, aff, reason)
    for occ in room.occupants_of(bare):
        if aff == "outcast":
            room.remove(occ, (301,), actor=actor, reason=reason, affiliation="outcast")
        elif room.config.members_only and AFF_RANK[aff] < AFF_RANK["member"]:
            room.remove(occ, (321,), actor=actor, reason=reason, affiliation=aff)
        else:
            occ.role = default_role(room.affiliation(occ.bare), room.config.moderated,
                                    room.config.members_by_default)
            room.broadcast_presence(occ, actor=actor, reason=reason)


def get_list(room: Room, frm: JID, it: Element) -> Element:
    actor_aff = room.affiliation(frm)
    actor = room.by_jid.get(frm)
    out = Element(q(ADMIN, "query"))
    role = it.attrs.get("role")
    aff = it.attrs.get("affiliation")
    if role is not None:
        if role not in ROLES:
            raise StanzaError("bad-request", "modify", f"unknown role {role!r}")
        if (actor is None or actor.role != "moderator") and actor_aff not in ("owner", "admin"):
            raise StanzaError("forbidden", "auth", "only moderators see role lists")
        for occ in room.occupants.values():
            if occ.role == role:
                out.append(item(ADMIN, room.affiliation(occ.bare), occ.role,
                                str(next(iter(occ.sessions), occ.bare)), occ.nick))
        return out
    if aff is None or aff not in AFFILIATIONS or aff == "none":
        raise StanzaError("bad-request", "modify", "ask for a role or an affiliation list")
    allowed = AFF_RANK[actor_aff] >= AFF_RANK["admin"] or (
        aff == "member" and room.config.members_only and actor_aff == "member")
    if not allowed:
        raise StanzaError("forbidden", "auth", "only admins and owners see this list")
    for bare in room.jids_with(aff):
        el = item(ADMIN, aff, None, bare)
        occs = room.occupants_of(bare)
        if occs:
            el.attrs["nick"] = occs[0].nick
        reason = room.affiliations[bare][1]
        if reason:
            el.append(Element(q(ADMIN, "reason"), {}, [reason]))
        out.append(el)
    return out
