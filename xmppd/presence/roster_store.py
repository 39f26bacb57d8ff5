"""Roster storage: items with their subscription state, and the roster version.

One row per (user, contact). Rows the user does not see (a contact's pending
request, the tombstone of a removed item) stay so that pending requests
survive restarts and roster versioning can tell a client what was removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    delete,
)
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.rawsql import RawQuery
from ..storage.upsert import upsert
from .subscription import SubState

meta = MetaData()
roster_items = Table(
    "roster_items", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("contact", String(3071), nullable=False),
    Column("name", Text, nullable=True),
    Column("groups", Text, nullable=False),           # JSON list of group names
    Column("subscription", String(8), nullable=False),
    Column("ask", Boolean, nullable=False),
    Column("pending_in", Boolean, nullable=False),
    Column("approved", Boolean, nullable=False),
    Column("visible", Boolean, nullable=False),       # in the roster the user sees
    Column("ver", BigInteger, nullable=False),        # roster version of the last change
    Column("request", Text, nullable=True),           # pending inbound subscribe stanza
    Column("answer", Text, nullable=True),            # subscription answer not yet delivered
    PrimaryKeyConstraint("server_host", "username", "contact"),
)
roster_versions = Table(
    "roster_versions", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("version", BigInteger, nullable=False),
    PrimaryKeyConstraint("server_host", "username"),
)


@migration("roster", 1, "roster items with subscription state, roster versions")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[roster_items, roster_versions])


@dataclass
class ItemRow:
    """A stored roster item (what :class:`~xmppd.presence.rosters.Item` persists)."""

    contact: str
    name: Optional[str]
    groups: tuple[str, ...]
    state: SubState
    visible: bool
    ver: int
    request: Optional[str]
    answer: Optional[str]


def _row(host: str, user: str, it: ItemRow) -> dict[str, Any]:
    st = it.state
    return {"server_host": host, "username": user, "contact": it.contact, "name": it.name,
            "groups": json.dumps(list(it.groups)), "subscription": st.sub, "ask": st.ask,
            "pending_in": st.pending_in, "approved": st.approved, "visible": it.visible,
            "ver": it.ver, "request": it.request, "answer": it.answer}


# read at every login: on the driver's cursor (see rawsql)
_VERSIONS = RawQuery("SELECT username, version FROM roster_versions"
                     " WHERE server_host = ? AND username IN ({in})")
_MANY_ITEMS = RawQuery(
    "SELECT username, contact, name, \"groups\", subscription, ask, pending_in, approved,"
    " visible, ver, request, answer FROM roster_items"
    " WHERE server_host = ? AND username IN ({in})")


def _item(r: tuple[Any, ...]) -> ItemRow:
    """An item from a row of ``_MANY_ITEMS`` (after its username)."""
    try:
        groups = tuple(str(g) for g in json.loads(r[3]))
    except (ValueError, TypeError):
        groups = ()
    return ItemRow(r[1], r[2], groups, SubState(r[4], bool(r[5]), bool(r[6]), bool(r[7])),
                   bool(r[8]), int(r[9]), r[10], r[11])


class RosterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads -------------------------------------------------------------
    @staticmethod
    def load_many_sync(conn: Connection, host: str,
                       users: list[str]) -> dict[str, tuple[int, list[ItemRow]]]:
        """The rosters of several users of ``host`` (absent users: empty rosters)."""
        out: dict[str, tuple[int, list[ItemRow]]] = {u: (0, []) for u in users}
        for i in range(0, len(users), 500):
            chunk = users[i:i + 500]
            for r in _VERSIONS.rows(conn, (host,), chunk):
                out[r[0]] = (int(r[1] or 0), out[r[0]][1])
            for r in _MANY_ITEMS.rows(conn, (host,), chunk):
                out[r[0]][1].append(_item(r))
        return out

    async def load_many(self, host: str,
                        users: list[str]) -> dict[str, tuple[int, list[ItemRow]]]:
        """:meth:`load_many_sync` in one database hand-off (logins come in bursts)."""
        return await self.db.run(lambda conn: self.load_many_sync(conn, host, users))

    async def delete_user(self, host: str, user: str) -> None:
        """The account is gone: its roster and roster version too."""
        def run(conn: Connection) -> None:
            for t in (roster_items, roster_versions):
                conn.execute(delete(t).where(t.c.server_host == host, t.c.username == user))
        await self.db.run(run)

    # -- writes (``conn`` steps, batched by the caller in one transaction) ---
    @staticmethod
    def put_sync(conn: Connection, host: str, user: str, item: ItemRow,
                 version: Optional[int]) -> None:
        upsert(conn, roster_items, [_row(host, user, item)],
               ("server_host", "username", "contact"))
        if version is not None:
            upsert(conn, roster_versions,
                   [{"server_host": host, "username": user, "version": version}],
                   ("server_host", "username"))

    def put_many_sync(self, host: str, user: str, items: Iterable[ItemRow],
                      version: int) -> None:
        """Write several items at once (administration, benchmarks)."""
        rows = [_row(host, user, it) for it in items]

        def run(conn: Connection) -> None:
            if rows:
                upsert(conn, roster_items, rows, ("server_host", "username", "contact"))
            upsert(conn, roster_versions,
                   [{"server_host": host, "username": user, "version": version}],
                   ("server_host", "username"))
        self.db.run_sync(run)
