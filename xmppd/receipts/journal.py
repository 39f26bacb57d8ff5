"""The message journal: an acknowledged message survives a crash (kill -9).

A chat or normal message from a session with durable stream management acks
is appended to the ``message_journal`` table before the sender gets the ack
that covers it. The appends of one event-loop turn form one insert, and the
inserts of a few milliseconds one transaction (group commit); the session's
``<a h=.../>`` waits for that commit (``SMState.hold``), so there is no
database round trip per message on the way of the stanza itself.

The journal copy is deleted once the message is safe elsewhere: the
recipient's client acknowledged it (``sm/acked``), it went to offline
storage (whose write is queued before the delete), or it went to a session
without stream management or was bounced. While it waits in an SM queue of a
session (connected or waiting for resumption), the copy stays. At start-up,
before the listeners open, what is left is routed again: to offline storage,
de-duplicated there by stanza-id, with a delay stamp of the original time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection

from ..confval import v_int, v_timeout
from ..moduleapi import Module, Option, hook
from ..stanza import StanzaEvent
from ..storage.migrations import migration
from ..xml import Element
from .common import delay, from_text, has_delay_from
from .offline import Offline
from .stanza_id import SKIP_TYPES, StanzaIds, any_stanza_id, stanza_id, with_child

log = logging.getLogger(__name__)

meta = MetaData()
journal = Table(
    "message_journal", meta,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("server_host", String(255), nullable=False),
    Column("msg_key", String(191), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # microseconds since the epoch
    Column("xml", Text, nullable=False),
    Column("node", String(255), nullable=False, server_default=""),
    Index("journal_key", "msg_key"),
)


@migration("journal", 1, "message_journal table")
def _v1(conn: Connection) -> None:
    v1 = Table(
        "message_journal", MetaData(),
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("server_host", String(255), nullable=False),
        Column("msg_key", String(191), nullable=False),
        Column("created_at", BigInteger, nullable=False),
        Column("xml", Text, nullable=False),
        Index("journal_key", "msg_key"),
    )
    v1.create(conn)


@migration("journal", 2, "message_journal.node: which cluster node holds the copy")
def _v2(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE message_journal ADD COLUMN node VARCHAR(255) "
                      "NOT NULL DEFAULT ''"))


class Journal(Module):
    name = "mod_journal"
    depends = (Offline, StanzaIds)
    options = {
        "commit_interval": Option(0.002, v_timeout("second"),
                                  "how long a group commit gathers writes (server-wide)"),
        "commit_max_batch": Option(500, v_int(1), "writes per group commit at most"),
    }

    def setup(self) -> None:
        db = self.server.db
        assert db is not None
        self.db = db
        db.batch.interval = self.opts["commit_interval"]
        db.batch.max_ops = self.opts["commit_max_batch"]
        self.live: dict[str, int] = {}        # journaled key -> SM queues holding it
        self._rows: list[dict[str, Any]] = []
        self._rows_fut: Optional[asyncio.Future[Any]] = None
        self._deletes: list[str] = []
        self.api.hook("server/ready", self._ready, host_only=False)

    # -- appending ----------------------------------------------------------
    @hook("pre-message/bare", 80)
    @hook("pre-message/full", 80)
    def append(self, ev: StanzaEvent) -> None:
        origin = ev.origin
        sm = getattr(origin, "sm", None)
        if sm is None or not sm.durable or ev.type in SKIP_TYPES:
            return None
        el = ev.stanza
        key = stanza_id(el, str(ev.to_jid.bare))
        if key is None:
            return None
        sm.hold(self._keep(key, el), origin)
        return None

    def _keep(self, key: str, el: Element) -> asyncio.Future[Any]:
        """Append a copy (group commit); the future is done when it is durable."""
        loop = asyncio.get_running_loop()
        self.live[key] = 0
        self._rows.append({"server_host": self.host, "msg_key": key, "node": self.server.node,
                           "created_at": int(time.time() * 1e6), "xml": str(el)})
        fut = self._rows_fut
        if fut is None:
            fut = self._rows_fut = loop.create_future()
            loop.call_soon(self._write)
        loop.call_soon(self._settle, key)
        return fut

    # -- across cluster nodes ------------------------------------------------
    @hook("cluster/handing", 0)
    def handing(self, stanza: Element) -> Optional[Callable[[bool], None]]:
        """Our copy stays until the other node's Redis queue has the message: the
        backend calls what this returns once it has (or has given the stanza up)."""
        if not self.live:
            return None
        sid = any_stanza_id(stanza)
        if sid is None or sid[1] not in self.live:
            return None
        key = sid[1]
        self.live[key] += 1

        def done(_taken: bool) -> None:
            if key in self.live:
                self.live[key] -= 1
                self._settle(key)
        return done

    @hook("cluster/arrived", 0)
    def arrived(self, session: Any, stanza: Element) -> Optional[asyncio.Future[Any]]:
        """A message from another node for a local session: keep a copy here until
        the client acknowledges it, so that it survives this node dying."""
        if session.host != self.host or stanza.tag != "{jabber:client}message" \
                or stanza.attrs.get("type") in SKIP_TYPES:
            return None
        sm = getattr(session, "sm", None)
        if sm is None or not sm.durable:
            return None
        sid = any_stanza_id(stanza)
        if sid is None or sid[1] in self.live:
            return None
        return self._keep(sid[1], stanza)

    @hook("cluster/node-down", 0)
    def node_down(self, node: str) -> Any:
        """This node took over a dead node: route what its journal still holds (the
        takeover waits for it, then routes what is left in the node's Redis queue)."""
        return self.replay(node)

    def _write(self) -> None:
        rows, self._rows = self._rows, []
        fut, self._rows_fut = self._rows_fut, None
        assert fut is not None
        done = self.db.batch.submit(lambda conn: conn.execute(insert(journal), rows))

        def chain(f: asyncio.Future[Any]) -> None:
            if fut.done():
                return
            if f.cancelled():
                fut.cancel()
            elif f.exception() is not None:
                fut.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                fut.set_result(None)
        done.add_done_callback(chain)

    # -- following the copy -----------------------------------------------------
    def _settle(self, key: str) -> None:
        """Routing is over: unless an SM queue holds the message, it is done."""
        if self.live.get(key) == 0:
            self._delete(key)

    def _delete(self, key: str) -> None:
        if self.live.pop(key, None) is None:
            return
        if not self._deletes:
            asyncio.get_running_loop().call_soon(self._flush_deletes)
        self._deletes.append(key)

    def _flush_deletes(self) -> None:
        keys, self._deletes = self._deletes, []
        if keys:
            # only this node's copies: another node may hold the same message for
            # its own recipient (a cluster hand-over)
            mine = (self.server.node, "")
            self.db.batch.submit(lambda conn: conn.execute(
                delete(journal).where(journal.c.msg_key.in_(keys), journal.c.node.in_(mine))))

    @hook("sm/queued", 0)
    def queued(self, session: Any, stanza: Element) -> None:
        if self.live:
            sid = any_stanza_id(stanza)
            if sid is not None and sid[1] in self.live:
                self.live[sid[1]] += 1
        return None

    @hook("sm/acked", 0)
    def acked(self, session: Any, stanzas: list[Element]) -> None:
        if self.live:
            for el in stanzas:
                sid = any_stanza_id(el)
                if sid is not None and sid[1] in self.live:
                    self._delete(sid[1])  # delivered to one device: done
        return None

    @hook("sm/released", 0)
    def released(self, session: Any, stanzas: list[Element]) -> None:
        if self.live:
            loop = asyncio.get_running_loop()
            for el in stanzas:
                sid = any_stanza_id(el)
                if sid is not None and sid[1] in self.live:
                    self.live[sid[1]] -= 1
                    loop.call_soon(self._settle, sid[1])  # after it is routed again
        return None

    # -- after a crash --------------------------------------------------------
    async def _ready(self, server: Any) -> None:
        await self.replay(self.server.node)

    async def replay(self, node: str) -> int:
        """Route again what ``node``'s last run left in the journal (to offline storage)."""
        host = self.host
        nodes = (node, "") if node == self.server.node else (node,)
        rows = await self.db.run(lambda conn: [tuple(r) for r in conn.execute(
            select(journal.c.seq, journal.c.created_at, journal.c.xml)
            .where(journal.c.server_host == host, journal.c.node.in_(nodes))
            .order_by(journal.c.seq))])
        if not rows:
            return 0
        for _seq, created, xml in rows:
            try:
                el = from_text(xml)
            except Exception:
                log.exception("unreadable journal entry %s", _seq)
                continue
            if not has_delay_from(el, host):
                el = with_child(el, delay(host, created / 1e6))
            self.server.router.route(el)
        await self.db.batch.flush()
        last = rows[-1][0]
        await self.db.run(lambda conn: conn.execute(delete(journal).where(
            journal.c.server_host == host, journal.c.node.in_(nodes), journal.c.seq <= last)))
        log.info("journal: routed again %d messages accepted before a crash", len(rows))
        return len(rows)
