"""Push registrations (mod_push, XEP-0357): per account, the app servers (JID and
node) its clients enabled, with the publish options they gave and which resource
enabled them (ejabberd's ``push_session`` table, by name)."""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

from sqlalchemy import BigInteger, Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
push_session = Table(
    "push_session", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("service", String(1023), nullable=False),   # the app server's JID
    Column("node", String(1023), nullable=False),
    Column("resource", String(1023), nullable=False),  # the session that enabled it
    Column("options", Text, nullable=False),           # the publish-options form, or ""
    Column("created", BigInteger, nullable=False),     # microseconds since the epoch
    PrimaryKeyConstraint("server_host", "username", "service", "node"),
)


@migration("push", 1, "push registrations (XEP-0357)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[push_session])


class Registration(NamedTuple):
    service: str
    node: str
    resource: str
    options: str


class PushStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enable(self, host: str, user: str, reg: Registration, keep: int) -> None:
        """Add (or renew) a registration; an account keeps its newest ``keep``."""
        t = push_session

        def run(conn: Connection) -> None:
            upsert(conn, t, [{"server_host": host, "username": user, "service": reg.service,
                              "node": reg.node, "resource": reg.resource,
                              "options": reg.options, "created": time.time_ns() // 1000}],
                   ("server_host", "username", "service", "node"))
            old = conn.execute(select(t.c.service, t.c.node).where(
                t.c.server_host == host, t.c.username == user).order_by(
                t.c.created.desc()).offset(keep)).all()
            for service, node in old:
                conn.execute(delete(t).where(t.c.server_host == host, t.c.username == user,
                                             t.c.service == service, t.c.node == node))
        await self.db.run(run)

    async def disable(self, host: str, user: str, service: str, node: Optional[str]) -> int:
        t = push_session

        def run(conn: Connection) -> int:
            stmt = delete(t).where(t.c.server_host == host, t.c.username == user,
                                   t.c.service == service)
            if node is not None:
                stmt = stmt.where(t.c.node == node)
            return int(conn.execute(stmt).rowcount or 0)
        return await self.db.run(run)

    async def registrations(self, host: str, user: str) -> list[Registration]:
        t = push_session

        def run(conn: Connection) -> list[Registration]:
            return [Registration(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in conn.execute(
                select(t.c.service, t.c.node, t.c.resource, t.c.options).where(
                    t.c.server_host == host, t.c.username == user))]
        return await self.db.run(run)

    async def accounts(self, host: str) -> list[str]:
        """The accounts of ``host`` that have a registration."""
        t = push_session
        return await self.db.run(lambda conn: [str(r[0]) for r in conn.execute(
            select(t.c.username).where(t.c.server_host == host).distinct())])

    async def delete_user(self, host: str, user: str) -> None:
        t = push_session
        await self.db.run(lambda conn: conn.execute(delete(t).where(
            t.c.server_host == host, t.c.username == user)))

    async def delete_older(self, host: str, before: int) -> int:
        """Delete the registrations of ``host`` enabled before ``before`` (microseconds
        since the epoch); how many went."""
        t = push_session
        return await self.db.run(lambda conn: int(conn.execute(delete(t).where(
            t.c.server_host == host, t.c.created < before)).rowcount or 0))
