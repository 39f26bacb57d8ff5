"""Rosters in memory: loaded once while their owner has sessions, written through.

Presence broadcast reads the roster of an online user on every presence
change, so it must never wait on the database: a user's roster is loaded at
login (``acquire``) and stays in memory until the last session ends and every
change has reached the store. Operations on one roster run in order through
:meth:`RosterCache.run`: at once when the roster is loaded, after the load
otherwise. Changes are written through per user, in order, batched into one
transaction when they pile up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, Optional, TypeVar

from sqlalchemy.engine import Connection

from ..jid import JID, JIDError
from ..stanza import StanzaError
from ..storage.batched import BatchedReads
from ..xml import Element
from .roster_store import ItemRow, RosterStore
from .subscription import NONE, SubState

log = logging.getLogger(__name__)

NS = "jabber:iq:roster"
ITEM = "{%s}item" % NS
GROUP = "{%s}group" % NS
T = TypeVar("T")
SHARED = SubState("both")  # what a contact of a shared roster group has


class Item:
    """One contact in a user's roster.

    ``state``, ``groups`` and ``visible`` are the user's own item as stored. ``shared``
    holds the labels of the shared roster groups (mod_shared_roster) that put the
    contact in the roster: such a contact is shown with subscription ``both`` and
    those groups, whatever the stored item says, and is never stored for them."""

    __slots__ = ("jid", "name", "groups", "state", "visible", "ver", "request", "answer",
                 "shared")

    def __init__(self, jid: JID, name: Optional[str] = None, groups: tuple[str, ...] = (),
                 state: SubState = NONE, visible: bool = False, ver: int = 0,
                 request: Optional[str] = None, answer: Optional[str] = None) -> None:
        self.jid = jid
        self.name = name
        self.groups = groups
        self.state = state
        self.visible = visible
        self.ver = ver
        self.request = request
        self.answer = answer
        self.shared: tuple[str, ...] = ()

    @property
    def shown(self) -> bool:
        """In the roster the user sees (the user's own item, or a shared group's)."""
        return self.visible or bool(self.shared)

    @property
    def effective(self) -> SubState:
        """The subscription that presence follows (``both`` for a shared contact)."""
        return SHARED if self.shared else self.state

    def shown_groups(self) -> tuple[str, ...]:
        if not self.shared:
            return self.groups
        return self.groups + tuple(g for g in self.shared if g not in self.groups)

    def view(self) -> Optional[tuple[Any, ...]]:
        """What the user's client sees of this item (None: not in the roster)."""
        if not self.shown:
            return None
        st = self.effective
        return (st.sub, st.ask, st.approved, self.name, self.shown_groups())

    def row(self) -> ItemRow:
        return ItemRow(str(self.jid), self.name, self.groups, self.state, self.visible,
                       self.ver, self.request, self.answer)

    def element(self) -> Element:
        """The ``<item/>`` a client sees (RFC 6121 2.1.2)."""
        st = self.effective
        attrs = {"jid": str(self.jid), "subscription": st.sub}
        if self.name:
            attrs["name"] = self.name
        if st.ask:
            attrs["ask"] = "subscribe"
        if st.approved:
            attrs["approved"] = "true"
        el = Element(ITEM, attrs)
        for g in self.shown_groups():
            el.add(GROUP, None, g)
        return el

    def removed_element(self) -> Element:
        return Element(ITEM, {"jid": str(self.jid), "subscription": "remove"})

    def __repr__(self) -> str:
        return f"<Item {self.jid} {self.state.label()}{'' if self.visible else ' hidden'}" \
            f"{' shared' if self.shared else ''}>"


class Roster:
    """A user's roster: items by contact bare JID and the current version."""

    __slots__ = ("user", "items", "version", "shared_tag")

    def __init__(self, user: JID, version: int = 0) -> None:
        self.user = user
        self.items: dict[JID, Item] = {}
        self.version = version
        # a digest of the shared roster contacts (mod_shared_roster), part of the version
        # clients see: "" without any
        self.shared_tag = ""

    def get(self, jid: JID) -> Optional[Item]:
        return self.items.get(jid)

    def state(self, jid: JID) -> SubState:
        """The subscription presence follows (shared roster groups count as ``both``)."""
        it = self.items.get(jid)
        return NONE if it is None else it.effective

    def visible(self) -> Iterator[Item]:
        return (it for it in self.items.values() if it.shown)

    def size(self) -> int:
        """Items that count against the roster size limit."""
        return sum(1 for it in self.items.values() if it.visible or it.state.pending_in)

    def subscribers(self) -> list[JID]:
        """Contacts that receive the user's presence (from / both)."""
        return [j for j, it in self.items.items()
                if it.shared or it.state.sub in ("from", "both")]

    def publishers(self) -> list[JID]:
        """Contacts whose presence the user receives (to / both)."""
        return [j for j, it in self.items.items()
                if it.shared or it.state.sub in ("to", "both")]


class _Entry:
    __slots__ = ("roster", "refs", "pending")

    def __init__(self) -> None:
        self.roster: Optional[Roster] = None
        self.refs = 0
        self.pending: list[tuple[Callable[[Roster], Any], asyncio.Future[Any]]] = []


def _call(fn: Callable[[Roster], T], roster: Roster, fut: asyncio.Future[T]) -> None:
    try:
        fut.set_result(fn(roster))
    except Exception as e:
        if not isinstance(e, StanzaError):
            log.exception("roster operation on %s failed", roster.user)
        fut.set_exception(e)
        fut.exception()  # handled here; do not warn again if nobody awaits it


class RosterCache:
    def __init__(self, store: RosterStore, host: str,
                 on_committed: Optional[Callable[[JID], None]] = None) -> None:
        self.store = store
        self.host = host
        # after a write of a user's roster is committed (other nodes reload theirs)
        self.on_committed = on_committed or (lambda user: None)
        self._entries: dict[JID, _Entry] = {}
        # run on every roster as it is loaded (mod_shared_roster adds its contacts)
        self.decorators: list[Callable[[Roster], None]] = []
        self._writes: dict[JID, list[Callable[[Connection], None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # loads go together, one batch at a time: logins come in bursts, and one
        # hand-off to the database serves them all
        self._reads: BatchedReads[str, tuple[int, list[ItemRow]]] = BatchedReads(
            lambda users: store.load_many(host, users))

    # -- lifetime ------------------------------------------------------------
    def acquire(self, user: JID) -> None:
        """A session of ``user`` started: load the roster and keep it."""
        e = self._entries.get(user)
        if e is None:
            e = self._entries[user] = _Entry()
            self._load(user, e)
        e.refs += 1

    def release(self, user: JID) -> None:
        e = self._entries.get(user)
        if e is None:
            return
        e.refs -= 1
        self._maybe_evict(user)

    def _maybe_evict(self, user: JID) -> None:
        e = self._entries.get(user)
        if e is not None and e.refs <= 0 and not e.pending and e.roster is not None \
                and user not in self._writes:
            del self._entries[user]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _load(self, user: JID, e: _Entry) -> None:
        self._reads.get(user.local or "").add_done_callback(
            functools.partial(self._arrived, user, e))

    def _arrived(self, user: JID, e: _Entry,
                 fut: asyncio.Future[Optional[tuple[int, list[ItemRow]]]]) -> None:
        exc = fut.exception()  # BatchedReads sets a result or an exception, never cancels
        if exc is not None:
            log.warning("loading the roster of %s failed: %s", user, exc)
            self._failed(user, e, exc)
            return
        version, rows = fut.result() or (0, [])
        self._loaded(user, e, version, rows)

    def _failed(self, user: JID, e: _Entry, exc: BaseException) -> None:
        pending, e.pending = e.pending, []
        if self._entries.get(user) is e:
            del self._entries[user]
        for _, fut in pending:
            fut.set_exception(exc)
            fut.exception()

    def _loaded(self, user: JID, e: _Entry, version: int, rows: list[ItemRow]) -> None:
        roster = Roster(user, version)
        for r in rows:
            try:
                jid = JID.parse(r.contact)
            except JIDError:
                continue
            roster.items[jid] = Item(jid, r.name, r.groups, r.state, r.visible, r.ver,
                                     r.request, r.answer)
        for decorate in self.decorators:
            try:
                decorate(roster)
            except Exception:
                log.exception("decorating the roster of %s failed", user)
        e.roster = roster
        while e.pending:
            fn, fut = e.pending.pop(0)
            _call(fn, roster, fut)
            e.refs -= 1
        self._maybe_evict(user)

    # -- access ----------------------------------------------------------------
    def peek(self, user: JID) -> Optional[Roster]:
        """The roster if it is loaded and has no operations waiting."""
        e = self._entries.get(user)
        if e is None or e.pending:
            return None
        return e.roster

    def loaded_users(self) -> list[JID]:
        """The users whose rosters this node keeps (those with sessions here)."""
        return list(self._entries)

    def run(self, user: JID, fn: Callable[[Roster], T]) -> asyncio.Future[T]:
        """Run ``fn(roster)`` in order with the other operations on this roster."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        e = self._entries.get(user)
        if e is not None and e.roster is not None and not e.pending:
            _call(fn, e.roster, fut)
            return fut
        if e is None:
            e = self._entries[user] = _Entry()
            self._load(user, e)
        e.refs += 1
        e.pending.append((fn, fut))
        return fut

    # -- write-through -----------------------------------------------------------
    def save(self, roster: Roster, item: Item, bump: bool = True) -> None:
        """Persist ``item``; ``bump`` gives it a new roster version (clients see it)."""
        if bump:
            roster.version += 1
            item.ver = roster.version
        row = item.row()
        version = roster.version if bump else None
        host, user = self.host, roster.user.local
        assert user is not None
        self._write(roster.user,
                    lambda conn: RosterStore.put_sync(conn, host, user, row, version))

    def _write(self, user: JID, step: Callable[[Connection], None]) -> None:
        q = self._writes.get(user)
        if q is not None:
            q.append(step)
            return
        self._writes[user] = [step]
        self._spawn(self._drain(user))

    async def _drain(self, user: JID) -> None:
        try:
            q = self._writes[user]
            while q:
                batch = q[:]
                q.clear()

                def run(conn: Connection, batch: list[Callable[[Connection], None]] = batch) -> None:
                    for step in batch:
                        step(conn)
                try:
                    await self.store.db.run(run)
                except Exception:
                    log.exception("storing the roster of %s failed", user)
                else:
                    self.on_committed(user)
        finally:
            self._writes.pop(user, None)
            self._maybe_evict(user)

    def invalidate(self, user: JID) -> None:
        """Another node changed ``user``'s roster: reload our copy, if we keep one."""
        e = self._entries.get(user)
        if e is None or e.roster is None or user in self._writes:
            return
        e.roster = None
        e.refs += 1  # held while reloading, released by the load
        e.pending.append((lambda r: None, asyncio.get_running_loop().create_future()))
        self._load(user, e)

    async def drain(self) -> None:
        """Wait until every load and write under way is done (at shutdown)."""
        while self._tasks or self._reads.busy:
            await self._reads.drain()
            await asyncio.sleep(0)  # what the loads started (their callbacks run now)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def flush_sync(self) -> None:
        """Write what is still queued (at shutdown, from synchronous code)."""
        for user, q in list(self._writes.items()):
            batch = q[:]
            q.clear()
            if batch:
                def run(conn: Connection, batch: list[Callable[[Connection], None]] = batch) -> None:
                    for step in batch:
                        step(conn)
                try:
                    self.store.db.run_sync(run)
                except Exception:
                    log.exception("storing the roster of %s failed", user)
