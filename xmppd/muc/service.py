"""mod_muc: the multi-user chat service on its own domain (``conference.HOST``).

The service registers the component domain, answers for the service itself
(disco, unique room names), and hands every stanza for ``room@service[/nick]``
to that room, one at a time in arrival order: each room has its own inbox, so
a room is never entered twice at once and its outputs leave in the order they
were made, while other rooms go on. A persistent room that is not in memory is
loaded from the store on first use; stanzas that arrive meanwhile wait in that
room's inbox only. Store writes go through the room's ordered writer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Optional, TypeVar

from ..acl import v_access
from ..commands import CommandError, all_lines, total
from ..confval import join, v_bool, v_int, v_pos_int_or_infinity, v_str, v_timeout
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, hook, service_domain, v_hosts
from ..stanza import StanzaError, StanzaEvent, iq_result
from ..xml import Element
from ..xmlstream import parse_xml
from . import commands as muc_commands
from . import mam, moderation, occupant_id
from .config import RoomConfig, validate_room_options
from .fanout import addressed, shared
from .info import DISCO_INFO, DISCO_ITEMS
from .nicks import EVENT as NICKS_EVENT
from .nicks import NS as REGISTER
from .nicks import QUERY as REGISTER_QUERY
from .nicks import Nicks
from .ns import MAM, MUC, PING, PRESENCE, UNIQUE, VCARD, q
from .room import Occupant, Outbox, Room
from .store import ArchiveRow, ItemNotFound, MucStore
from .writer import RoomWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


def _v_room_options(value: Any, path: str) -> dict[str, Any]:
    return validate_room_options(value, path)


class MucService(Module):
    name = "mod_muc"
    xeps = ("XEP-0045", "XEP-0249", "XEP-0313", "XEP-0359", "XEP-0410", "XEP-0421", "XEP-0425",
            "XEP-0486")
    stores = ("xmppd.muc.store", "xmppd.muc.nicks")
    options = {
        "host": Option("conference.@HOST@", v_str, "the service's domain"),
        "hosts": Option([], v_hosts, "the service's domain (the first one is used)"),
        "name": Option("Chatrooms", v_str, "the service's name in discovery"),
        "access": Option("all", v_access, "who may use the service"),
        "access_create": Option("all", v_access, "who may create rooms"),
        "access_admin": Option("none", v_access, "service admins: owners of every room"),
        "access_persistent": Option("all", v_access, "who may make rooms persistent"),
        "access_mam": Option("all", v_access, "who may read room archives"),
        "max_users": Option(200, v_int(1), "occupants per room, at most"),
        "max_users_admin_threshold": Option(5, v_int(0), "extra places for admins and owners"),
        "max_user_conferences": Option(100, v_int(1), "rooms one user may be in at once"),
        "history_size": Option(20, v_int(0), "messages sent to who joins"),
        "max_room_name": Option(float("inf"), v_pos_int_or_infinity, "length of a room title"),
        "max_room_id": Option(float("inf"), v_pos_int_or_infinity, "length of a room's node"),
        "max_room_desc": Option(float("inf"), v_pos_int_or_infinity, "length of a description"),
        "min_message_interval": Option(0.0, v_timeout("second"), "between two messages of one occupant"),
        "min_presence_interval": Option(0.0, v_timeout("second"), "between two presence updates"),
        "default_room_options": Option({}, _v_room_options, "options of new rooms"),
        "archive_expiry": Option(3 * 86400.0, v_timeout("second", allow_infinity=True),
                                 "how long room archives keep messages"),
        "hibernation_timeout": Option(float("inf"), v_timeout("second", allow_infinity=True),
                                      "unload empty persistent rooms idle this long"),
        "max_rooms_discoitems": Option(100, v_int(0), "rooms listed in the service's disco#items"),
        "public": Option(True, v_bool, "list the service in the host's disco#items"),
        "occupant_id": Option(True, v_bool, "occupant ids in every room (XEP-0421)"),
    }

    @classmethod
    def validate(cls, raw: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
        opts = super().validate(raw, path, warnings)
        if "default_room_options" in raw:
            validate_room_options(raw["default_room_options"], join(path, "default_room_options"),
                                  warnings)
        return opts

    # -- setup -------------------------------------------------------------------
    def setup(self) -> None:
        o = self.opts
        self.domain = service_domain(self)
        self.domain_jid = JID.parse(self.domain)
        self.max_users: int = o["max_users"]
        self.max_users_admin_threshold: int = o["max_users_admin_threshold"]
        self.history_size: int = o["history_size"]
        self.archive_expiry: float = o["archive_expiry"]
        self.min_message_interval: float = o["min_message_interval"]
        self.min_presence_interval: float = o["min_presence_interval"]
        defaults = RoomConfig.from_dict(o["default_room_options"])
        if "max_users" not in o["default_room_options"]:
            defaults.max_users = self.max_users
        self.defaults = defaults
        self.store = MucStore(self.server.db, self.domain)  # type: ignore[arg-type]
        self.occupant_key: Optional[bytes] = None  # read at start (start_async)
        self.rooms: dict[JID, Room] = {}
        self.inbox: dict[JID, deque[StanzaEvent]] = {}
        self.running: set[JID] = set()
        self.loading: dict[JID, list[StanzaEvent]] = {}
        self.writers: dict[JID, RoomWriter] = {}
        self.joined: dict[JID, set[JID]] = {}           # occupant full JID -> rooms
        self.user_rooms: dict[JID, Counter[JID]] = {}   # bare JID -> rooms (sessions in each)
        self.idle_since: dict[JID, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.api.add_component(self.domain, self.route_in)
        self.nicks = Nicks(self)
        self.api.hook(f"cluster/event/{NICKS_EVENT}", self._nicks_changed)
        self.api.add_command("muc_register_nick", self._cmd_register_nick,
                             "muc_register_nick NICK JID SERVICE: register a nickname for "
                             "the account in the rooms of the service")
        self.api.add_command("muc_unregister_nick", self._cmd_unregister_nick,
                             "muc_unregister_nick JID SERVICE: give its nickname back")
        self.api.add_command("muc_online_rooms", self._cmd_online_rooms,
                             "muc_online_rooms SERVICE|global: rooms held in memory, on every "
                             "node of the cluster", merge=all_lines)
        self.api.add_command("muc_online_rooms_node", self._cmd_online_rooms,
                             "muc_online_rooms_node SERVICE|global: rooms held in memory on the "
                             "node asked")
        self.api.add_command("get_room_occupants", self._cmd_occupants,
                             "get_room_occupants NAME SERVICE: a line per occupant's session: "
                             "real JID, nick, role", merge=all_lines)
        self.api.add_command("get_room_occupants_number", self._cmd_occupants_number,
                             "get_room_occupants_number NAME SERVICE: how many occupants",
                             merge=total)
        muc_commands.install(self)
        if o["public"]:
            self.api.add_item(self.domain, o["name"])
        if self.archive_expiry != float("inf"):
            self.api.add_timer(max(1.0, min(3600.0, self.archive_expiry / 4)), self._expire)
        if o["hibernation_timeout"] != float("inf"):
            self.api.add_timer(max(1.0, min(60.0, o["hibernation_timeout"] / 2)), self._hibernate)

    async def start_async(self) -> None:
        await self.nicks.load()
        if self.opts["occupant_id"]:
            assert self.server.db is not None
            self.occupant_key = await self.server.db.run(self.store.occupant_id_key)

    # -- Policy (what rooms ask the service) ---------------------------------------
    def is_service_admin(self, jid: JID) -> bool:
        rule = self.opts["access_admin"]
        return rule != "none" and self.server.access.access(rule, jid.bare)

    def can_persist(self, jid: JID) -> bool:
        return self.server.access.access(self.opts["access_persistent"], jid.bare)

    def now(self) -> float:
        return time.time()

    def new_id(self) -> str:
        return secrets.token_urlsafe(12)

    def nick_owner(self, nick: str) -> Optional[str]:
        return self.nicks.owner(nick)

    def _nicks_changed(self, service: str) -> Any:
        return self.nicks.load() if service == self.domain else None

    def _nicks_of(self, service: str) -> Nicks:
        muc = self.service_for(service)
        if muc is None:
            raise CommandError(f"no MUC service {service}", "not_found")
        return muc.nicks

    async def _cmd_register_nick(self, nick: str, jid: str, service: str) -> str:
        if not nick.strip():
            raise CommandError("a nickname is needed")
        return await self._nicks_of(service).command_set(jid, nick.strip())

    async def _cmd_unregister_nick(self, jid: str, service: str) -> str:
        return await self._nicks_of(service).command_set(jid, "")

    # -- routing in ----------------------------------------------------------------
    def route_in(self, ev: StanzaEvent) -> bool:
        """The component handler: everything addressed to the service's domain."""
        to = ev.to_jid
        if to.local is None:
            self._service_stanza(ev)
            return True
        room_jid = to.bare
        if self.server.forward_to_owner(str(room_jid), ev.stanza):
            if room_jid in self.rooms:
                self._hand_over(room_jid)  # a copy left from an older view of the cluster
            return True  # another node of the cluster holds this room
        room = self.rooms.get(room_jid)
        if room is not None:
            self._enqueue(room, ev)
        elif room_jid in self.loading:
            self.loading[room_jid].append(ev)
        else:
            self.loading[room_jid] = [ev]
            self._spawn(self._load(room_jid))
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, room: Room, ev: StanzaEvent) -> None:
        jid = room.jid
        box = self.inbox.get(jid)
        if box is None:
            box = self.inbox[jid] = deque()
        box.append(ev)
        if jid in self.running:
            return  # the room is busy (an output came back to it): it gets there in order
        self.running.add(jid)
        try:
            while box:
                ev = box.popleft()
                if room.destroyed:
                    self.route_in(ev)
                    continue
                self._process(room, ev)
        finally:
            self.running.discard(jid)
            if not box:
                self.inbox.pop(jid, None)

    def _process(self, room: Room, ev: StanzaEvent) -> None:
        try:
            if not self._admitted(room, ev):
                return
            if ev.kind == "iq" and ev.to_jid.resource is None:
                child = ev.stanza.first_child()
                if child is not None and child.ns == MAM and ev.type in ("get", "set"):
                    self._spawn(self._mam(room, ev, child))
                    return
                if child is not None and ev.type == "set" and moderation.is_request(child):
                    self._spawn(self._moderate(room, ev, child))
                    return
            out = room.handle(ev.from_jid, ev.to_jid, ev.kind, ev.type, ev.stanza)
        except StanzaError as e:
            e.by = e.by or room.jid_str
            self.server.router.bounce(ev.stanza, e, ev.kind, ev.type, ev.origin)
            return
        except Exception:
            log.exception("room %s failed on %r", room.jid, ev)
            self.server.router.bounce(ev.stanza, StanzaError("internal-server-error"), ev.kind,
                                      ev.type, ev.origin)
            return
        self._emit(room, out)

    def _emit(self, room: Room, out: Outbox) -> None:
        route = self.server.router.route
        for el in out.stanzas:
            route(el)
        if out.effects:
            self._apply(room, out.effects)

    def run_in(self, room: Room, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the room (an admin command): what it sends and stores goes out
        as for a stanza. Rooms take one input at a time; commands run between them."""
        room.out = Outbox()
        result = fn()
        self._emit(room, room.out)
        return result

    async def room_for_command(self, room_jid: JID) -> Optional[Room]:
        """The room, loaded from the store if it is persistent and not in memory (on
        the node that holds it: see :meth:`holds`); None if it does not exist."""
        while room_jid in self.loading:  # a stanza is loading it: wait for that
            await asyncio.sleep(0.01)
        room = self.rooms.get(room_jid)
        if room is not None:
            return room
        w = self.writers.get(room_jid)
        if w is not None:
            await w.flush()
        assert self.server.db is not None
        name = room_jid.local or ""
        data = await self.server.db.run(lambda conn: self._load_sync(conn, name))
        if data is None:
            return None
        room = self.rooms.get(room_jid)  # (a stanza may have loaded it meanwhile)
        if room is None:
            room = self.rooms[room_jid] = self._room_from(room_jid, data)
            self.idle_since[room_jid] = time.monotonic()
        return room

    def holds(self, room_jid: JID) -> bool:
        """Is this node the one that holds the room (in a cluster, one node per room)?"""
        return self.server.owner_of(str(room_jid)) == self.server.node

    @hook("muc/is-occupant")
    def _is_occupant(self, full: JID, room_jid: JID) -> Optional[bool]:
        """Whether the session ``full`` is in the room (None: not a room held here)."""
        if room_jid.domain != self.domain or not self.holds(room_jid):
            return None
        return room_jid in self.joined.get(full, ())

    def _admitted(self, room: Room, ev: StanzaEvent) -> bool:
        """Service-wide checks before a join: access and max_user_conferences."""
        if ev.kind != "presence" or ev.type != "available" or ev.from_jid in room.by_jid:
            return True
        frm = ev.from_jid
        if not self.server.access.access(self.opts["access"], frm.bare):
            raise StanzaError("forbidden", "auth", "you may not use this service")
        rooms = self.user_rooms.get(frm.bare)
        if rooms is not None and room.jid not in rooms and \
                len(rooms) >= self.opts["max_user_conferences"]:
            raise StanzaError("resource-constraint", "wait", "you are in too many rooms")
        return True

    # -- effects ----------------------------------------------------------------------
    def _writer(self, room: Room) -> RoomWriter:
        w = self.writers.get(room.jid)
        if w is None:
            assert self.server.db is not None
            w = self.writers[room.jid] = RoomWriter(self.server.db, room.jid_str)
        return w

    def _apply(self, room: Room, effects: list[tuple[Any, ...]]) -> None:
        name = room.jid.local or ""
        store = self.store
        for eff in effects:
            kind = eff[0]
            if kind == "joined":
                full: JID = eff[1]
                self.joined.setdefault(full, set()).add(room.jid)
                self.user_rooms.setdefault(full.bare, Counter())[room.jid] += 1
                self.idle_since.pop(room.jid, None)
            elif kind == "left":
                full = eff[1]
                rooms = self.joined.get(full)
                if rooms is not None:
                    rooms.discard(room.jid)
                    if not rooms:
                        del self.joined[full]
                counter = self.user_rooms.get(full.bare)
                if counter is not None:
                    counter[room.jid] -= 1
                    if counter[room.jid] <= 0:
                        del counter[room.jid]
                    if not counter:
                        del self.user_rooms[full.bare]
                if room.is_empty():
                    self.idle_since[room.jid] = time.monotonic()
            elif kind == "archive":
                _, sid, ts, nick, sender, body, msg = eff
                row = ArchiveRow(sid, ts, nick, sender, body, msg.to_bytes().decode())

                def add(conn: Any, row: ArchiveRow = row) -> None:
                    store.archive(conn, name, [row])
                self._writer(room).submit(add)
            elif kind == "save":
                snap = room.snapshot()

                def save(conn: Any, snap: dict[str, Any] = snap) -> None:
                    store.save_room(conn, name, snap)
                self._writer(room).submit(save)
            elif kind in ("unsave", "delete"):
                with_archive = kind == "delete"

                def drop(conn: Any, with_archive: bool = with_archive) -> None:
                    store.delete_room(conn, name, with_archive)
                self._writer(room).submit(drop)
            elif kind == "retracted":  # XEP-0424: an author took a message back
                self._spawn(self._retracted_by_author(room, eff[1], eff[2]))
            elif kind == "destroyed":
                if self.rooms.get(room.jid) is room:
                    del self.rooms[room.jid]
                self.idle_since.pop(room.jid, None)

    # -- loading ------------------------------------------------------------------------
    async def _load(self, room_jid: JID) -> None:
        name = room_jid.local or ""
        data: Optional[dict[str, Any]] = None
        failed = False
        try:
            w = self.writers.get(room_jid)
            if w is not None:
                await w.flush()
            assert self.server.db is not None
            data = await self.server.db.run(lambda conn: self._load_sync(conn, name))
        except Exception:
            log.exception("loading room %s", room_jid)
            failed = True
        pending = self.loading.pop(room_jid, [])
        owner = self.server.owner_of(str(room_jid))
        if owner != self.server.node:
            # the cluster changed while the room loaded: its new owner serves it (one
            # more hop at most: if the views still disagree there, it is served there)
            for ev in pending:
                self.server.hand_to(owner, ev.stanza, last_hop=True)
            return
        if failed:
            for ev in pending:
                self.server.router.bounce(ev.stanza, StanzaError("internal-server-error"),
                                          ev.kind, ev.type, ev.origin)
            return
        if data is not None and room_jid not in self.rooms:
            self.rooms[room_jid] = self._room_from(room_jid, data)
            self.idle_since[room_jid] = time.monotonic()
        for ev in pending:
            loaded = self.rooms.get(room_jid)
            if loaded is not None:
                self._enqueue(loaded, ev)
            else:
                self._no_room(ev)

    def _room_from(self, room_jid: JID, data: dict[str, Any]) -> Room:
        room = Room(room_jid, self, RoomConfig.from_dict(data["config"]),
                    affiliations=data["affiliations"], subject=data["subject"],
                    subject_nick=data["subject_nick"], vcard=data["vcard"],
                    created=data["created"])
        for xml, ts in data["history"]:
            el = parse_xml(xml)
            if el is not None:
                room.history.add(el, ts)
        return room

    def _load_sync(self, conn: Any, name: str) -> Optional[dict[str, Any]]:
        data = self.store.load_room(conn, name)
        if data is not None and self.history_size:
            data["history"] = self.store.recent(conn, name, self.history_size,
                                                time.time() - min(self.archive_expiry, 1e10))
        elif data is not None:
            data["history"] = []
        return data

    def _no_room(self, ev: StanzaEvent) -> None:
        """A stanza for a room that exists nowhere: a join creates it."""
        to = ev.to_jid
        try:
            if ev.kind == "presence" and ev.type == "available" and to.resource is not None:
                self._create(ev)
                return
            if ev.type in ("error", "result", "unavailable"):
                return
            if ev.kind == "presence":
                return
            raise StanzaError("item-not-found", "cancel", "no such room")
        except StanzaError as e:
            e.by = e.by or str(to.bare)
            if ev.kind == "presence":
                reply = Element(ev.stanza.tag, dict(ev.stanza.attrs), [Element(q(MUC, "x"))])
                self.server.router.bounce(reply, e, ev.kind, ev.type, ev.origin)
            else:
                self.server.router.bounce(ev.stanza, e, ev.kind, ev.type, ev.origin)

    def _create(self, ev: StanzaEvent) -> None:
        frm = ev.from_jid
        room_jid = ev.to_jid.bare
        access = self.server.access
        if not access.access(self.opts["access"], frm.bare):
            raise StanzaError("forbidden", "auth", "you may not use this service")
        if not access.access(self.opts["access_create"], frm.bare):
            raise StanzaError("not-allowed", "cancel", "you may not create rooms here")
        if len(room_jid.local or "") > self.opts["max_room_id"]:
            raise StanzaError("not-acceptable", "modify", "the room name is too long")
        room = Room(room_jid, self, self.defaults.copy(), fresh=True)
        self.rooms[room_jid] = room
        self._enqueue(room, ev)

    # -- users going away ----------------------------------------------------------------
    @hook("c2s/ended")
    def _session_ended(self, session: Any, reason: str = "") -> None:
        self._leave_all(session.jid)

    @hook("presence/unavailable")
    def _went_unavailable(self, session: Any) -> None:
        self._leave_all(session.jid)

    def _leave_all(self, full: Optional[JID]) -> None:
        if full is None:
            return
        for room_jid in list(self.joined.get(full, ())):
            room = self.rooms.get(room_jid)
            occ = room.by_jid.get(full) if room is not None else None
            if room is None or occ is None:
                continue
            to = JID(room_jid.local, room_jid.domain, occ.nick, prepped=True)
            el = Element(PRESENCE, {"from": str(full), "to": str(to), "type": "unavailable"})
            self._enqueue(room, StanzaEvent(self.server, el, None, full, to, "presence",
                                            "unavailable", self.domain))

    @hook("server/stopping")
    def _stopping(self, server: Any) -> None:
        """Status 332: occupants are told the service is going down."""
        route = self.server.router.route
        for room in self.rooms.values():
            for occ, full in room.sessions():
                route(room._presence_el(occ, str(full), "unavailable", [], True, (110, 332),
                                        full=full, role="none"))

    @hook("cluster/nodes-changed")
    def _rebalance(self, server: Any) -> None:
        """Nodes joined or left: rooms this node no longer owns move to their new owner.

        Pending writes are flushed, occupants are told the room is going away here
        (status 332) so their clients rejoin, and the new owner loads the room from
        the database when the first stanza reaches it.
        """
        gone = [jid for jid in self.rooms if self.server.owner_of(str(jid)) != self.server.node]
        for jid in gone:
            self._hand_over(jid)

    def _hand_over(self, jid: JID) -> None:
        room = self.rooms.pop(jid, None)
        if room is None:
            return
        route = self.server.router.route
        for occ, full in list(room.sessions()):
            route(room._presence_el(occ, str(full), "unavailable", [], True, (110, 332),
                                    full=full, role="none"))
            rooms = self.joined.get(full)
            if rooms is not None:
                rooms.discard(jid)
                if not rooms:
                    del self.joined[full]
            counter = self.user_rooms.get(full.bare)
            if counter is not None:
                counter.pop(jid, None)
                if not counter:
                    del self.user_rooms[full.bare]
        self.idle_since.pop(jid, None)
        writer = self.writers.pop(jid, None)
        if writer is not None:
            self._spawn(writer.flush())
        log.info("%s: room %s handed over to %s", self.domain, jid, self.server.owner_of(str(jid)))

    def services(self) -> list[MucService]:
        """The MUC services of every host of this server (the admin commands name one)."""
        return [m for vhost in self.server.hosts.values()
                if isinstance(m := vhost.modules.get(self.name), MucService)]

    def service_for(self, domain: str) -> Optional[MucService]:
        return next((m for m in self.services() if m.domain == domain.lower()), None)

    def _held_room(self, name: str, service: str) -> Optional[Room]:
        """The room ``name@service`` if this node holds it (the admin commands ask
        every node; the one that holds it answers)."""
        muc = self.service_for(service)
        if muc is None:
            return None
        try:
            return muc.rooms.get(JID(name, muc.domain))
        except JIDError:
            return None

    def _cmd_occupants(self, name: str, service: str) -> str:
        room = self._held_room(name, service)
        if room is None:
            return ""
        return "\n".join(f"{full}\t{occ.nick}\t{occ.role}" for occ, full in room.sessions())

    def _cmd_occupants_number(self, name: str, service: str) -> str:
        room = self._held_room(name, service)
        return str(len(room.occupants)) if room is not None else "0"

    def _cmd_online_rooms(self, service: str) -> str:
        return "\n".join(sorted(str(j) for muc in self.services()
                                 if service in ("global", muc.domain) for j in muc.rooms))

    # -- the service's own JID -----------------------------------------------------------
    def _service_stanza(self, ev: StanzaEvent) -> None:
        if ev.kind != "iq" or ev.type not in ("get", "set"):
            if ev.kind == "message" and ev.type != "error":
                ev.error("service-unavailable", text="send messages to a room")
            return
        child = ev.stanza.first_child()
        router = self.server.router
        assert child is not None
        if child.tag == q(DISCO_INFO, "query") and ev.type == "get":
            router.answer_iq(ev, self._service_info)
        elif child.tag == q(DISCO_ITEMS, "query") and ev.type == "get":
            router.answer_iq(ev, self._service_items)
        elif child.tag == q(UNIQUE, "unique") and ev.type == "get":
            router.answer_iq(ev, self._unique)
        elif child.tag == q(PING, "ping") and ev.type == "get":
            router.answer_iq(ev, lambda ev: None)
        elif child.ns == VCARD and ev.type == "get":
            router.answer_iq(ev, self._service_vcard)
        elif child.tag == REGISTER_QUERY:
            router.answer_iq(ev, self.nicks.form if ev.type == "get" else self.nicks.submit)
        else:
            ev.error("service-unavailable")

    def _service_info(self, ev: StanzaEvent) -> Element:
        node = ev.stanza.first_child().attrs.get("node")  # type: ignore[union-attr]
        if node:
            raise StanzaError("item-not-found")
        out = Element(q(DISCO_INFO, "query"))
        out.add(q(DISCO_INFO, "identity"), {"category": "conference", "type": "text",
                                            "name": self.opts["name"]})
        feats = [MUC, DISCO_INFO, DISCO_ITEMS, UNIQUE, PING, VCARD, MAM, REGISTER]
        if self.occupant_key is not None:
            feats.append(occupant_id.NS)  # in every room of the service (XEP-0421 4)
        for f in sorted(feats):
            out.add(q(DISCO_INFO, "feature"), {"var": f})
        return out

    async def _service_items(self, ev: StanzaEvent) -> Element:
        out = Element(q(DISCO_ITEMS, "query"))
        assert self.server.db is not None
        stored = await self.server.db.run(self.store.public_rooms)
        listed: dict[str, str] = {}
        for name, title in stored:
            listed[name] = title or name
        for jid, room in self.rooms.items():
            name = jid.local or ""
            if room.config.public and not room.locked:
                listed[name] = f"{room.config.title or name} ({len(room.occupants)})"
            else:
                listed.pop(name, None)
        for name in sorted(listed)[:self.opts["max_rooms_discoitems"]]:
            out.add(q(DISCO_ITEMS, "item"), {"jid": f"{name}@{self.domain}", "name": listed[name]})
        return out

    def _unique(self, ev: StanzaEvent) -> Element:
        while True:
            name = secrets.token_hex(8)
            if JID(name, self.domain, prepped=True) not in self.rooms:
                return Element(q(UNIQUE, "unique"), {}, [name])

    def _service_vcard(self, ev: StanzaEvent) -> Element:
        v = Element(q(VCARD, "vCard"))
        v.add(q(VCARD, "FN"), None, self.opts["name"])
        return v

    # -- the archive (XEP-0313 at the room JID) ---------------------------------------------
    async def _mam(self, room: Room, ev: StanzaEvent, query: Element) -> None:
        router = self.server.router
        try:
            if ev.type == "get":
                self._reply(ev, mam.query_form())
                return
            if not room.config.mam:
                raise StanzaError("service-unavailable", "cancel", "this room keeps no archive")
            if not room.can_read_archive(ev.from_jid) or not self.server.access.access(
                    self.opts["access_mam"], ev.from_jid.bare):
                raise StanzaError("forbidden", "auth", "you may not read this room's archive")
            not_before = time.time() - min(self.archive_expiry, 1e10)
            qy = mam.parse_query(query, room.jid_str, room.config.anonymous, not_before)
            w = self.writers.get(room.jid)
            if w is not None:
                await w.flush()
            name = room.jid.local or ""
            assert self.server.db is not None
            try:
                rows, complete, count = await self.server.db.run(
                    lambda conn: self.store.query(conn, name, qy))
            except ItemNotFound:
                raise StanzaError("item-not-found", "cancel", "no such archive id") from None
        except StanzaError as e:
            e.by = e.by or room.jid_str
            router.bounce(ev.stanza, e, "iq", ev.type, ev.origin)
            return
        except Exception:
            log.exception("archive query on %s", room.jid)
            router.bounce(ev.stanza, StanzaError("internal-server-error"), "iq", ev.type,
                          ev.origin)
            return
        queryid = query.attrs.get("queryid")
        to = str(ev.from_jid)
        ids = []
        for xml, ts, sid in rows:
            el = parse_xml(xml)
            if el is None:
                continue
            ids.append(sid)
            router.route(mam.result_message(to, room.jid_str, queryid, sid, ts, el))
        self._reply(ev, mam.fin(ids, complete, count, queryid))

    async def _moderate(self, room: Room, ev: StanzaEvent, query: Element) -> None:
        """XEP-0425: a moderator retracts a message (:mod:`.moderation`)."""
        try:
            occ = moderation.moderator(room, ev.from_jid)
            sid, reason = moderation.request(query)
            found = await self._message_of(room, sid)
            if found is None or moderation.is_retracted(found[0]):
                raise StanzaError("item-not-found", "cancel", "no such message in this room")
        except StanzaError as e:
            e.by = e.by or room.jid_str
            self.server.router.bounce(ev.stanza, e, ev.kind, ev.type, ev.origin)
            return
        by = moderation.moderated(room, occ)
        self._keep_tombstone(room, sid, found[0], by, reason)

        def tell() -> None:
            note = shared(moderation.notice(room, sid, by, reason))
            for _, full in room.sessions():
                room.out.send(addressed(note, str(full)))
            room.result(ev.stanza, None)
        self.run_in(room, tell)

    async def _message_of(self, room: Room, sid: str) -> Optional[tuple[Element, Optional[str]]]:
        """The room's message with stanza-id ``sid`` from the join history (author's JID
        unknown: None) or the archive (with its author's real bare JID)."""
        for e in room.history.entries:
            if moderation.stanza_id_of(e.stanza, room.jid_str) == sid:
                return e.stanza, None
        if not room.config.mam:
            return None
        w = self.writers.get(room.jid)
        if w is not None:
            await w.flush()
        assert self.server.db is not None
        name = room.jid.local or ""
        row = await self.server.db.run(lambda conn: self.store.archived(conn, name, sid))
        el = parse_xml(row[0]) if row is not None else None
        return (el, row[1]) if el is not None and row is not None else None

    def _keep_tombstone(self, room: Room, sid: str, original: Element, by: Optional[Element],
                        reason: str) -> None:
        """The join history and the archive keep a tombstone for the message ``sid``."""
        stone = moderation.tombstone(original, by, reason, time.time())
        room.history.replace(original, stone)
        if room.config.mam:
            name, xml = room.jid.local or "", stone.to_bytes().decode()
            self._writer(room).submit(lambda conn: self.store.retract(conn, name, sid, xml))

    async def _retracted_by_author(self, room: Room, occ: Occupant, sid: str) -> None:
        """XEP-0424 in a room: the author took the message back; relayed already, the
        history and the archive now keep a tombstone (only for the author's own)."""
        found = await self._message_of(room, sid)
        if found is None or moderation.is_retracted(found[0]):
            return
        original, sender = found
        if sender is not None and sender != str(occ.bare):
            return
        if sender is None and not moderation.same_author(original, occ, room):
            return
        self._keep_tombstone(room, sid, original, None, "")

    def _reply(self, ev: StanzaEvent, payload: Optional[Element]) -> None:
        reply = iq_result(ev.stanza, payload)
        self.server.router.route(reply)

    # -- housekeeping ---------------------------------------------------------------------
    async def _expire(self) -> None:
        cutoff = time.time() - self.archive_expiry
        assert self.server.db is not None
        n = await self.server.db.run(lambda conn: self.store.expire(conn, cutoff))
        if n:
            log.info("%s: %d archived messages expired", self.domain, n)

    def _hibernate(self) -> None:
        limit = time.monotonic() - self.opts["hibernation_timeout"]
        for jid, since in list(self.idle_since.items()):
            room = self.rooms.get(jid)
            if room is None or not room.is_empty():
                self.idle_since.pop(jid, None)
                continue
            if since < limit and room.config.persistent and jid not in self.running:
                del self.rooms[jid]
                del self.idle_since[jid]

    async def stop_async(self) -> None:
        """Let every room's pending store writes reach the database."""
        for w in list(self.writers.values()):
            await w.flush()

    def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
