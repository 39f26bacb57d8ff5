"""Last activity storage: per user, the time of the last user activity and the
status text of the last logout (ejabberd's ``last`` table, in epoch seconds)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
last_activity = Table(
    "last_activity", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("seconds", BigInteger, nullable=False),   # epoch seconds of the last activity
    Column("state", Text, nullable=False),           # status text of the last logout
    PrimaryKeyConstraint("server_host", "username"),
)


@migration("last", 1, "last user activity and logout status")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[last_activity])


class LastStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_many(self, host: str, users: Sequence[str]) -> dict[str, tuple[int, str]]:
        def run(conn: Connection) -> dict[str, tuple[int, str]]:
            out: dict[str, tuple[int, str]] = {}
            for i in range(0, len(users), 500):
                chunk = list(users[i:i + 500])
                for r in conn.execute(select(last_activity).where(
                        last_activity.c.server_host == host,
                        last_activity.c.username.in_(chunk))):
                    out[r.username] = (int(r.seconds), r.state or "")
            return out
        return await self.db.run(run)

    async def delete(self, host: str, user: str) -> None:
        await self.db.run(lambda conn: conn.execute(delete(last_activity).where(
            last_activity.c.server_host == host, last_activity.c.username == user)))

    @staticmethod
    def put_many_sync(conn: Connection, host: str,
                      rows: Sequence[tuple[str, int, str]]) -> None:
        upsert(conn, last_activity,
               [{"server_host": host, "username": u, "seconds": s, "state": st}
                for u, s, st in rows], ("server_host", "username"))
