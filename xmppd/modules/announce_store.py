"""The message of the day (mod_announce): per host the current one, and per account
which one it was last given (ejabberd's ``motd`` and ``motd_users``, by purpose)."""

from __future__ import annotations

from typing import NamedTuple, Optional

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
motd = Table(
    "motd", meta,
    Column("server_host", String(255), primary_key=True),
    Column("version", String(64), nullable=False),  # changes with every new message
    Column("xml", Text, nullable=False),            # the <message/>, without to
)
motd_seen = Table(
    "motd_seen", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("version", String(64), nullable=False),
    PrimaryKeyConstraint("server_host", "username"),
)


@migration("announce", 1, "the message of the day and who was given it")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[motd, motd_seen])


class Motd(NamedTuple):
    version: str
    xml: str


class MotdStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, host: str) -> Optional[Motd]:
        def run(conn: Connection) -> Optional[Motd]:
            r = conn.execute(select(motd.c.version, motd.c.xml).where(
                motd.c.server_host == host)).first()
            return Motd(str(r[0]), str(r[1])) if r is not None else None
        return await self.db.run(run)

    async def set(self, host: str, version: str, xml: str) -> None:
        await self.db.run(lambda conn: upsert(
            conn, motd, [{"server_host": host, "version": version, "xml": xml}],
            ("server_host",)))

    async def delete(self, host: str) -> None:
        def run(conn: Connection) -> None:
            conn.execute(delete(motd).where(motd.c.server_host == host))
            conn.execute(delete(motd_seen).where(motd_seen.c.server_host == host))
        await self.db.run(run)

    async def first_time(self, host: str, user: str, version: str) -> bool:
        """True the first time ``user`` is given ``version`` (and it is noted)."""
        def run(conn: Connection) -> bool:
            seen = conn.execute(select(motd_seen.c.version).where(
                motd_seen.c.server_host == host, motd_seen.c.username == user)).scalar()
            if seen == version:
                return False
            upsert(conn, motd_seen, [{"server_host": host, "username": user,
                                      "version": version}], ("server_host", "username"))
            return True
        return await self.db.run(run)

    async def forget_user(self, host: str, user: str) -> None:
        await self.db.run(lambda conn: conn.execute(delete(motd_seen).where(
            motd_seen.c.server_host == host, motd_seen.c.username == user)))
