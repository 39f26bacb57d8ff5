"""A room as a pure state machine: one stanza in, stanzas and store effects out.

:meth:`Room.handle` takes a stanza addressed to the room (bare JID) or to an
occupant (``room/nick``) and returns an :class:`Outbox`: the stanzas to route,
in order, and the effects the service applies to the store (save, archive,
delete). No sockets, no database, no clock of its own (the service's
:class:`Policy` gives the time and fresh ids), so everything a room does can be
checked with stanzas alone, and the whole room state lives in this object and
its store row (a cluster can place rooms by room JID).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Optional, Protocol

from ..jid import JID, JIDError
from ..stanza import StanzaError, error_reply, iq_result
from ..xml import Child, Element
from . import admin, info, invite, occupant_id, owner
from .config import RoomConfig
from .fanout import addressed, shared
from .history import History, delayed
from .ns import (
    BODY,
    HINTS,
    IQ,
    MESSAGE,
    MUC,
    PING,
    PRESENCE,
    STANZA_ID,
    SUBJECT,
    USER,
    VCARD,
    X_MUC,
    X_USER,
    item,
    q,
    user_x,
)
from .roles import AFF_RANK, default_role

# errors from an occupant's side that mean it is gone (status 333)
GONE_CONDITIONS = {"service-unavailable", "recipient-unavailable", "remote-server-not-found",
                   "remote-server-timeout", "item-not-found", "gone", "redirect"}
# payloads worth archiving besides a body
ARCHIVED_PAYLOADS = {"{eu.siacs.conversations.axolotl}encrypted", "{urn:xmpp:reactions:0}reactions",
                     "{urn:xmpp:fasten:0}apply-to", "{urn:xmpp:message-retract:1}retract",
                     "{urn:xmpp:hints}store"}
RETRACT = "{urn:xmpp:message-retract:1}retract"
MAX_PENDING_IQS = 1000


class Policy(Protocol):
    """What the service decides for all its rooms."""

    max_users: int
    max_users_admin_threshold: int
    history_size: int
    archive_expiry: float
    min_message_interval: float
    min_presence_interval: float

    occupant_key: Optional[bytes]  # the key of occupant ids (XEP-0421), None: no ids

    def is_service_admin(self, jid: JID) -> bool: ...
    def can_persist(self, jid: JID) -> bool: ...
    def now(self) -> float: ...
    def new_id(self) -> str: ...
    def nick_owner(self, nick: str) -> Optional[str]: ...  # who registered it (nicks.py)


class Outbox:
    """What one input produced: stanzas to route in order, and store effects."""

    __slots__ = ("stanzas", "effects")

    def __init__(self) -> None:
        self.stanzas: list[Element] = []
        self.effects: list[tuple[Any, ...]] = []

    def send(self, el: Element) -> None:
        self.stanzas.append(el)

    def effect(self, *args: Any) -> None:
        self.effects.append(args)


class Occupant:
    __slots__ = ("nick", "jid", "bare", "sessions", "role", "last_message", "last_presence",
                 "last_voice_request", "oid")

    def __init__(self, room: JID, nick: str, bare: JID, role: str,
                 key: Optional[bytes] = None) -> None:
        self.nick = nick
        self.jid = f"{room}/{nick}"
        self.bare = bare
        # <occupant-id/> on what the room sends for this occupant (XEP-0421), or None
        self.oid: Optional[Element] = occupant_id.element(
            occupant_id.make_id(key, room, bare)) if key else None
        self.sessions: dict[JID, list[Child]] = {}   # full JID -> presence payload
        self.role = role
        self.last_message = 0.0
        self.last_presence = 0.0
        self.last_voice_request = 0.0

    def presence_payload(self) -> list[Child]:
        for payload in reversed(self.sessions.values()):
            return payload
        return []

    def __repr__(self) -> str:
        return f"<Occupant {self.jid} {self.role}>"


class Room:
    def __init__(self, jid: JID, policy: Policy, config: RoomConfig, *,
                 affiliations: Optional[dict[str, tuple[str, str]]] = None,
                 subject: str = "", subject_nick: str = "", vcard: Optional[str] = None,
                 created: Optional[float] = None, fresh: bool = False) -> None:
        self.jid = jid
        self.jid_str = str(jid)
        self.policy = policy
        self.config = config
        # bare JID -> (affiliation, reason); "none" is never stored
        self.affiliations: dict[str, tuple[str, str]] = dict(affiliations or {})
        self.subject = subject
        self.subject_nick = subject_nick
        self.vcard = vcard
        self.created = policy.now() if created is None else created
        self.fresh = fresh            # created by the next join, which makes its sender owner
        self.locked = False           # reserved room waiting for its configuration
        self.destroyed = False
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}
        self.history = History(policy.history_size)
        self.pending_iqs: dict[str, tuple[JID, str]] = {}
        self.out = Outbox()

    # -- queries ------------------------------------------------------------
    def affiliation(self, jid: JID) -> str:
        if self.policy.is_service_admin(jid):
            return "owner"
        entry = self.affiliations.get(str(jid.bare))
        return entry[0] if entry else "none"

    def jids_with(self, affiliation: str) -> list[str]:
        return sorted(j for j, (a, _) in self.affiliations.items() if a == affiliation)

    @property
    def max_users(self) -> int:
        return min(self.config.max_users, self.policy.max_users)

    def is_empty(self) -> bool:
        return not self.occupants

    def can_read_archive(self, jid: JID) -> bool:
        """XEP-0313 at the room: who may read what was said."""
        aff = self.affiliation(jid)
        if aff == "outcast":
            return False
        if jid in self.by_jid or AFF_RANK[aff] >= AFF_RANK["member"]:
            return True
        return not (self.config.members_only or self.config.password_protected)

    def sessions(self) -> Iterable[tuple[Occupant, JID]]:
        for occ in self.occupants.values():
            for full in occ.sessions:
                yield occ, full

    def sees_jids(self, viewer: Occupant) -> bool:
        return not self.config.anonymous or viewer.role == "moderator"

    # -- the one entry point -----------------------------------------------
    def handle(self, frm: JID, to: JID, kind: str, type_: str, el: Element) -> Outbox:
        """Process one stanza sent to the room or one of its occupants."""
        self.out = out = Outbox()
        try:
            if kind == "presence":
                self._presence(frm, to, type_, el)
            elif kind == "message":
                if to.resource is None:
                    self._message(frm, type_, el)
                else:
                    self._private(frm, to.resource, type_, el)
            elif to.resource is None:
                self._iq_room(frm, type_, el)
            else:
                self._iq_occupant(frm, to.resource, type_, el)
        except StanzaError as e:
            self.error(el, kind, type_, e)
        return out

    def error(self, el: Element, kind: str, type_: str, err: StanzaError) -> None:
        if type_ == "error" or (kind == "iq" and type_ == "result"):
            return
        err.by = err.by or self.jid_str
        if kind == "presence":
            bare = Element(el.tag, dict(el.attrs), [Element(X_MUC)])
            self.out.send(error_reply(bare, err))
        else:
            self.out.send(error_reply(el, err))

    # -- presence ------------------------------------------------------------
    def _presence(self, frm: JID, to: JID, type_: str, el: Element) -> None:
        nick = to.resource
        occ = self.by_jid.get(frm)
        if type_ == "error":
            if occ is not None:
                self.remove_session(frm, occ, codes=(333,))
            return
        if type_ == "unavailable":
            if occ is not None:
                self.leave(frm, occ, el)
            return
        if type_ != "available":
            return  # subscriptions and probes mean nothing to a room
        if nick is None:
            raise StanzaError("jid-malformed", "modify", "join with room@service/nickname")
        raw_nick = (el.attrs.get("to") or "").partition("/")[2]
        clean = nick.strip()
        if not clean:
            raise StanzaError("jid-malformed", "modify", "an empty nickname")
        changed = clean != raw_nick
        if occ is None:
            self.join(frm, clean, el, changed)
        elif occ.nick != clean:
            self.change_nick(frm, occ, clean, el)
        elif el.find(X_MUC) is not None:
            self.rejoin(frm, occ, el)
        else:
            self.update_presence(frm, occ, el)

    def _payload(self, el: Element, occ: Optional[Occupant] = None) -> list[Child]:
        keep: list[Child] = []
        for c in el.children:
            if not isinstance(c, Element) or c.tag in (X_MUC, X_USER, occupant_id.TAG):
                continue
            if c.tag == "{jabber:client}status" and occ is not None and occ.role == "visitor" \
                    and not self.config.allow_visitor_status:
                continue
            keep.append(c)
        return keep

    def join(self, frm: JID, nick: str, el: Element, nick_changed: bool) -> None:
        self._registered_elsewhere(frm, nick)  # (before a new room takes its first owner)
        x = el.find(X_MUC)
        codes: list[int] = []
        if self.fresh:
            self.fresh = False
            self.affiliations[str(frm.bare)] = ("owner", "")
            self.locked = x is not None   # clients without MUC support get an instant room
            codes.append(201)
        aff = self.affiliation(frm)
        if self.locked and aff != "owner":
            raise StanzaError("item-not-found", "cancel",
                              "this room is locked until its owner configures it")
        if aff == "outcast":
            raise StanzaError("forbidden", "auth", "you are banned from this room")
        existing = self.occupants.get(nick)
        if existing is not None and existing.bare != frm.bare:
            raise StanzaError("conflict", "cancel", "this nickname is taken")
        if self.config.members_only and AFF_RANK[aff] < AFF_RANK["member"]:
            raise StanzaError("registration-required", "auth", "this room is for members only")
        if self.config.password_protected and not self.policy.is_service_admin(frm):
            given = x.findtext(q(MUC, "password")) if x is not None else None
            if given != self.config.password:
                raise StanzaError("not-authorized", "auth", "a password is required")
        if existing is None:
            limit = self.max_users
            if AFF_RANK[aff] >= AFF_RANK["admin"]:
                limit += self.policy.max_users_admin_threshold
            if len(self.occupants) >= limit:
                raise StanzaError("service-unavailable", "wait",
                                  f"this room is full ({self.max_users} occupants)")
            occ = Occupant(self.jid, nick, frm.bare,
                           default_role(aff, self.config.moderated, self.config.members_by_default),
                           self.policy.occupant_key)
            self.occupants[nick] = occ
        else:
            occ = existing
        occ.sessions[frm] = self._payload(el, occ)
        self.by_jid[frm] = occ
        self.out.effect("joined", frm)
        if nick_changed:
            codes.append(210)
        self._send_room_state(frm, occ, x, codes)

    def _send_room_state(self, frm: JID, occ: Occupant, x: Optional[Element],
                         codes: list[int]) -> None:
        """Occupants, then the joiner's presence, history and subject (7.2.3-7.2.16)."""
        show_jids = self.sees_jids(occ)
        to = str(frm)
        for other in self.occupants.values():
            if other is occ or not self._broadcasts(other):
                continue
            self.out.send(self.presence_of(other, to, with_jid=show_jids))
        self_codes = [110]
        if not self.config.anonymous:
            self_codes.append(100)
        if self.config.mam:
            self_codes.append(170)
        self_codes.extend(codes)
        self.broadcast_presence(occ, self_codes=self_codes, only_self=frm)
        spec = x.find(q(MUC, "history")) if x is not None else None
        for entry in self.history.select(spec, self.policy.archive_expiry, self.policy.now()):
            self.out.send(delayed(entry, to, self.jid_str))
        self.out.send(self.subject_message(to))

    def rejoin(self, frm: JID, occ: Occupant, el: Element) -> None:
        """A join from a session already in the room: it lost track, send it all again."""
        occ.sessions[frm] = self._payload(el, occ)
        self._send_room_state(frm, occ, el.find(X_MUC), [])

    def update_presence(self, frm: JID, occ: Occupant, el: Element) -> None:
        now = self.policy.now()
        if now - occ.last_presence < self.policy.min_presence_interval:
            return  # too chatty: the update is dropped, as ejabberd does
        occ.last_presence = now
        occ.sessions[frm] = self._payload(el, occ)
        self.broadcast_presence(occ)

    def _registered_elsewhere(self, frm: JID, nick: str) -> None:
        owner = self.policy.nick_owner(nick)
        if owner is not None and owner != str(frm.bare):
            raise StanzaError("conflict", "cancel", "that nickname is registered by another person")

    def change_nick(self, frm: JID, occ: Occupant, nick: str, el: Element) -> None:
        if occ.role == "visitor" and not self.config.allow_visitor_nickchange:
            raise StanzaError("not-allowed", "cancel", "visitors may not change their nickname")
        if nick in self.occupants:
            raise StanzaError("conflict", "cancel", "this nickname is taken")
        self._registered_elsewhere(frm, nick)
        self.broadcast_presence(occ, "unavailable", codes=(303,), item_nick=nick, payload=[])
        del self.occupants[occ.nick]
        occ.nick = nick
        occ.jid = f"{self.jid}/{nick}"
        self.occupants[nick] = occ
        occ.sessions[frm] = self._payload(el, occ)
        self.broadcast_presence(occ)

    def leave(self, frm: JID, occ: Occupant, el: Optional[Element]) -> None:
        status = el.find("{jabber:client}status") if el is not None else None
        if len(occ.sessions) > 1:
            del occ.sessions[frm]
            del self.by_jid[frm]
            self.out.effect("left", frm)
            payload: list[Child] = [status] if status is not None else []
            self.out.send(self._presence_el(occ, str(frm), "unavailable", payload, True, [110]))
            self.broadcast_presence(occ)
            return
        self.broadcast_presence(occ, "unavailable", payload=[status] if status is not None else [])
        self._drop(occ)

    def remove_session(self, frm: JID, occ: Occupant, codes: tuple[int, ...]) -> None:
        """A session that bounced: it leaves as if kicked by the system (333)."""
        if len(occ.sessions) > 1:
            del occ.sessions[frm]
            del self.by_jid[frm]
            self.out.effect("left", frm)
            return
        self.broadcast_presence(occ, "unavailable", codes=codes, role="none", payload=[])
        self._drop(occ)

    def remove(self, occ: Occupant, codes: tuple[int, ...], *, actor: Optional[str] = None,
               reason: Optional[str] = None, affiliation: Optional[str] = None) -> None:
        """Kick, ban or other removal of every session of an occupant."""
        self.broadcast_presence(occ, "unavailable", codes=codes, role="none", actor=actor,
                                reason=reason, affiliation=affiliation, payload=[])
        self._drop(occ)

    def _drop(self, occ: Occupant) -> None:
        for full in occ.sessions:
            self.by_jid.pop(full, None)
            self.out.effect("left", full)
        occ.sessions.clear()
        self.occupants.pop(occ.nick, None)
        if not self.occupants and (not self.config.persistent or self.locked):
            self.destroy_now(delete=True)

    def destroy_now(self, delete: bool) -> None:
        self.destroyed = True
        if delete:
            self.out.effect("delete")
        self.out.effect("destroyed")

    # -- presence building -----------------------------------------------------
    def _broadcasts(self, occ: Occupant) -> bool:
        return occ.role in self.config.presence_broadcast or occ.role == "moderator"

    def _presence_el(self, occ: Occupant, to: Optional[str], type_: Optional[str],
                     payload: list[Child], with_jid: bool, codes: Iterable[int], *,
                     full: Optional[JID] = None, item_nick: Optional[str] = None,
                     role: Optional[str] = None, actor: Optional[str] = None,
                     reason: Optional[str] = None, affiliation: Optional[str] = None,
                     extra: Optional[Element] = None) -> Element:
        attrs = {"from": occ.jid}
        if to is not None:
            attrs["to"] = to
        if type_ is not None:
            attrs["type"] = type_
        jid = None
        if with_jid:
            jid = str(full) if full is not None else str(next(iter(occ.sessions), occ.bare))
        it = item(USER, affiliation or self.affiliation(occ.bare), role or occ.role, jid, item_nick)
        if actor is not None:
            it.append(Element(q(USER, "actor"), {"nick": actor}))
        if reason:
            it.append(Element(q(USER, "reason"), {}, [reason]))
        x = user_x(*codes, items=(it,))
        if extra is not None:
            x.append(extra)
        children = list(payload)
        children.append(x)
        if occ.oid is not None:
            children.append(occ.oid)
        return Element(PRESENCE, attrs, children)

    def presence_of(self, occ: Occupant, to: str, *, with_jid: bool) -> Element:
        return self._presence_el(occ, to, None, occ.presence_payload(), with_jid, ())

    def broadcast_presence(self, occ: Occupant, type_: Optional[str] = None, *,
                           codes: Iterable[int] = (), self_codes: Iterable[int] = (110,),
                           only_self: Optional[JID] = None, payload: Optional[list[Child]] = None,
                           **kw: Any) -> None:
        """``occ``'s presence to everyone: one shared stanza per visibility, self last."""
        codes = tuple(codes)
        body = occ.presence_payload() if payload is None else payload
        if self._broadcasts(occ) or type_ == "unavailable":
            variants: dict[bool, Element] = {}
            for other in self.occupants.values():
                if other is occ:
                    continue
                see = self.sees_jids(other)
                tmpl = variants.get(see)
                if tmpl is None:
                    tmpl = variants[see] = shared(
                        self._presence_el(occ, None, type_, body, see, codes, **kw))
                for full in other.sessions:
                    self.out.send(addressed(tmpl, str(full)))
        self_all = tuple(dict.fromkeys(tuple(self_codes) + codes))
        plain = tuple(dict.fromkeys((110,) + codes))
        for full in occ.sessions:
            mine = self_all if only_self is None or full == only_self else plain
            self.out.send(self._presence_el(occ, str(full), type_, body, True, mine,
                                            full=full, **kw))

    def subject_message(self, to: str) -> Element:
        frm = f"{self.jid}/{self.subject_nick}" if self.subject_nick else self.jid_str
        return Element(MESSAGE, {"from": frm, "to": to, "type": "groupchat"},
                       [Element(SUBJECT, {}, [self.subject] if self.subject else [])])

    def status_message(self, codes: Iterable[int]) -> None:
        """A room-wide notice (configuration changes, 10.2.1) to every occupant."""
        tmpl = shared(Element(MESSAGE, {"from": self.jid_str, "type": "groupchat"},
                              [user_x(*codes)]))
        for _, full in self.sessions():
            self.out.send(addressed(tmpl, str(full)))

    # -- messages to the room ---------------------------------------------------
    def _message(self, frm: JID, type_: str, el: Element) -> None:
        occ = self.by_jid.get(frm)
        if type_ == "error":
            if occ is not None and _error_condition(el) in GONE_CONDITIONS:
                self.remove_session(frm, occ, codes=(333,))
            return
        if type_ != "groupchat":
            x = el.find(X_USER)
            if x is not None and (x.find(q(USER, "invite")) is not None
                                  or x.find(q(USER, "decline")) is not None):
                invite.handle(self, frm, occ, x)
                return
            if invite.is_voice_form(el):
                invite.voice(self, frm, occ, el)
                return
            raise StanzaError("bad-request", "modify", "send groupchat messages to the room")
        if occ is None:
            raise StanzaError("not-acceptable", "cancel", "join the room before talking in it")
        if occ.role not in ("participant", "moderator"):
            raise StanzaError("forbidden", "auth", "you have no voice in this room")
        now = self.policy.now()
        interval = self.policy.min_message_interval
        if interval and now - occ.last_message < interval:
            raise StanzaError("resource-constraint", "wait", "you are sending too fast")
        occ.last_message = now
        subject = el.find(SUBJECT)
        body = el.find(BODY)
        if subject is not None and body is None:
            if not (self.config.allow_change_subj or occ.role == "moderator"):
                raise StanzaError("forbidden", "auth", "you may not change the subject")
            self.subject = subject.text
            self.subject_nick = occ.nick
            if self.config.persistent:
                self.out.effect("save")
        self.broadcast_message(occ, el, body is not None, now)

    def broadcast_message(self, occ: Occupant, el: Element, has_body: bool, now: float) -> None:
        sid = self.policy.new_id()
        children: list[Child] = []
        archive = has_body
        no_store = False
        retracted: Optional[str] = None
        for c in el.children:
            if isinstance(c, Element):
                tag = c.tag
                if tag == STANZA_ID or tag == X_USER or tag == occupant_id.TAG:
                    continue  # the room vouches for ids; nobody forges them
                if tag in ARCHIVED_PAYLOADS:
                    archive = True
                    if tag == RETRACT:
                        retracted = c.attrs.get("id")
                elif tag[:len(HINTS) + 2] == "{" + HINTS + "}" and c.name in ("no-store",
                                                                               "no-permanent-store"):
                    no_store = True
            children.append(c)
        children.append(Element(STANZA_ID, {"id": sid, "by": self.jid_str}))
        if occ.oid is not None:
            children.append(occ.oid)
        attrs = {"from": occ.jid, "type": "groupchat"}
        for key in ("id", "{http://www.w3.org/XML/1998/namespace}lang"):
            if key in el.attrs:
                attrs[key] = el.attrs[key]
        msg = shared(Element(MESSAGE, attrs, children))
        for other in self.occupants.values():
            for full in other.sessions:
                self.out.send(addressed(msg, str(full)))
        if retracted:
            self.out.effect("retracted", occ, retracted)  # the service keeps a tombstone
        if archive and not no_store:
            if has_body:
                self.history.add(msg, now)
            if self.config.mam:
                self.out.effect("archive", sid, now, occ.nick, str(occ.bare),
                                el.findtext(BODY) or "", msg)

    # -- private messages ----------------------------------------------------------
    def _private(self, frm: JID, nick: str, type_: str, el: Element) -> None:
        occ = self.by_jid.get(frm)
        if type_ == "error":
            if occ is not None and _error_condition(el) in GONE_CONDITIONS:
                self.remove_session(frm, occ, codes=(333,))
            return
        if type_ == "groupchat":
            raise StanzaError("bad-request", "modify", "groupchat messages go to the room")
        if occ is None:
            raise StanzaError("not-acceptable", "cancel", "join the room to send private messages")
        allow = self.config.allowpm
        if allow == "none" or (allow == "participants" and occ.role == "visitor") or \
                (allow == "moderators" and occ.role != "moderator"):
            raise StanzaError("forbidden", "auth", "private messages are not allowed here")
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "cancel", "no such occupant")
        children: list[Child] = [c for c in el.children if not (
            isinstance(c, Element) and (c.tag == X_USER or c.tag == occupant_id.TAG))]
        children.append(Element(X_USER))
        if occ.oid is not None:
            children.append(occ.oid)
        attrs = {k: v for k, v in el.attrs.items() if k not in ("to", "from")}
        attrs["from"] = occ.jid
        msg = shared(Element(MESSAGE, attrs, children))
        for full in target.sessions:
            self.out.send(addressed(msg, str(full)))

    # -- iq -------------------------------------------------------------------------
    def _iq_room(self, frm: JID, type_: str, el: Element) -> None:
        if type_ in ("result", "error"):
            return
        payload = el.first_child()
        assert payload is not None
        ns = payload.ns
        if ns == admin.NS:
            admin.handle(self, frm, type_, el, payload)
        elif ns == owner.NS:
            owner.handle(self, frm, type_, el, payload)
        elif ns in (info.DISCO_INFO, info.DISCO_ITEMS) and type_ == "get":
            self.result(el, info.disco(self, frm, payload))
        elif ns == VCARD and payload.name == "vCard":
            info.vcard(self, frm, type_, el, payload)
        elif payload.tag == "{%s}ping" % PING and type_ == "get":
            self.result(el, None)
        else:
            raise StanzaError("service-unavailable", "cancel")

    def _iq_occupant(self, frm: JID, nick: str, type_: str, el: Element) -> None:
        if type_ in ("result", "error"):
            back = self.pending_iqs.pop(el.attrs.get("id", ""), None)
            target = self.occupants.get(nick)  # the occupant the answer is for
            responder = self.by_jid.get(frm)
            if back is None or target is None or responder is None:
                return
            asker, orig_id = back
            attrs = dict(el.attrs)
            attrs.update({"from": responder.jid, "to": str(asker), "id": orig_id})
            self.out.send(Element(IQ, attrs, el.children, el.raw))
            return
        occ = self.by_jid.get(frm)
        payload = el.first_child()
        assert payload is not None
        if occ is None:
            raise StanzaError("not-acceptable", "cancel", "you are not in this room")
        if payload.tag == "{%s}ping" % PING and occ.nick == nick:
            self.result(el, None)   # XEP-0410 self-ping: answered by the room
            return
        target = self.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", "cancel", "no such occupant")
        if payload.ns == VCARD:
            to = str(target.bare)   # vCards live at the account
        else:
            if not self.config.allow_query_users:
                raise StanzaError("not-allowed", "cancel", "occupants may not be queried here")
            to = str(next(iter(target.sessions)))
        new_id = "muc-" + secrets.token_hex(6)
        if len(self.pending_iqs) >= MAX_PENDING_IQS:
            self.pending_iqs.pop(next(iter(self.pending_iqs)))
        self.pending_iqs[new_id] = (frm, el.attrs.get("id", ""))
        attrs = dict(el.attrs)
        attrs.update({"from": occ.jid, "to": to, "id": new_id})
        self.out.send(Element(IQ, attrs, el.children, el.raw))

    def result(self, el: Element, payload: Optional[Element]) -> None:
        self.out.send(iq_result(el, payload))

    # -- helpers for admin/owner -----------------------------------------------------
    def set_affiliation(self, bare: str, aff: str, reason: str = "") -> None:
        if aff == "none":
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = (aff, reason)

    def occupants_of(self, bare: str) -> list[Occupant]:
        return [o for o in self.occupants.values() if str(o.bare) == bare]

    def snapshot(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "subject": self.subject,
                "subject_nick": self.subject_nick, "vcard": self.vcard, "created": self.created,
                "affiliations": dict(self.affiliations)}


def _error_condition(el: Element) -> str:
    err = el.find("{jabber:client}error")
    if err is None:
        return ""
    for c in err.elements():
        if c.ns == "urn:ietf:params:xml:ns:xmpp-stanzas" and c.name != "text":
            return c.name
    return ""


def parse_jid(text: Optional[str]) -> JID:
    try:
        if not text:
            raise JIDError("empty")
        return JID.parse(text)
    except JIDError:
        raise StanzaError("jid-malformed", "modify", f"not a JID: {text!r}") from None
