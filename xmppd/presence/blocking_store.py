"""Block lists (XEP-0191): one row per (user, blocked JID)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
blocklist = Table(
    "blocklist", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("jid", String(3071), nullable=False),
    PrimaryKeyConstraint("server_host", "username", "jid"),
)


@migration("blocking", 1, "block lists")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[blocklist])


class BlockingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load_all(self, host: str) -> dict[str, set[str]]:
        """Every block list of ``host`` (they are small, and kept in memory)."""
        def run(conn: Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for r in conn.execute(select(blocklist.c.username, blocklist.c.jid).where(
                    blocklist.c.server_host == host)):
                out.setdefault(r.username, set()).add(r.jid)
            return out
        return await self.db.run(run)

    async def load_user(self, host: str, user: str) -> set[str]:
        """One user's block list (another cluster node changed it)."""
        def run(conn: Connection) -> set[str]:
            return {r.jid for r in conn.execute(select(blocklist.c.jid).where(
                blocklist.c.server_host == host, blocklist.c.username == user))}
        return await self.db.run(run)

    async def add(self, host: str, user: str, jids: Sequence[str]) -> None:
        rows = [{"server_host": host, "username": user, "jid": j} for j in jids]
        await self.db.run(lambda conn: upsert(conn, blocklist, rows,
                                              ("server_host", "username", "jid")))

    async def remove(self, host: str, user: str, jids: Sequence[str]) -> None:
        await self.db.run(lambda conn: conn.execute(delete(blocklist).where(
            blocklist.c.server_host == host, blocklist.c.username == user,
            blocklist.c.jid.in_(list(jids)))))

    async def clear(self, host: str, user: str) -> None:
        await self.db.run(lambda conn: conn.execute(delete(blocklist).where(
            blocklist.c.server_host == host, blocklist.c.username == user)))
