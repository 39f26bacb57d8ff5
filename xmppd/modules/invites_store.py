"""Invitation tokens (mod_invites, XEP-0401/0445/0379): table ``invite_token``.

A row per token: its host, who made it (an account's bare JID for a contact invitation,
empty for one an administrator made), the account name it is for (empty: the invitee
chooses), and when it expires. A token is used once: the account it creates deletes it.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration

meta = MetaData()
invite_token = Table(
    "invite_token", meta,
    Column("token", String(191), primary_key=True),
    Column("server_host", String(255), nullable=False),
    Column("inviter", Text, nullable=False),     # bare JID, or "" (an administrator's)
    Column("username", Text, nullable=False),    # the account it is for, or "" (any)
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),  # seconds since the epoch
)


@migration("invites", 1, "invite_token: invitations to register (XEP-0401/0445)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[invite_token])


class Invite(NamedTuple):
    token: str
    host: str
    inviter: str
    username: str
    expires: int


class InviteStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, invite: Invite) -> None:
        row = {**invite._asdict(), "server_host": invite.host, "created": int(time.time())}
        del row["host"]
        await self.db.run(lambda conn: conn.execute(invite_token.insert().values(**row)))

    async def get(self, host: str, token: str) -> Optional[Invite]:
        """A valid (not expired) token of ``host``."""
        t = invite_token
        row = await self.db.run(lambda conn: conn.execute(
            select(t.c.token, t.c.server_host, t.c.inviter, t.c.username, t.c.expires).where(
                t.c.token == token, t.c.server_host == host)).first())
        if row is None or int(row[4]) < time.time():
            return None
        return Invite(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))

    async def use(self, token: str) -> bool:
        """Delete the token; False if it was gone already (used by another stream) or
        has expired since it was shown."""
        t, now = invite_token, int(time.time())
        return bool(await self.db.run(lambda conn: conn.execute(
            delete(t).where(t.c.token == token, t.c.expires >= now)).rowcount))

    async def valid(self, host: str) -> list[Invite]:
        """The host's tokens that have not expired (the others are deleted)."""
        t, now = invite_token, int(time.time())

        def run(conn: Connection) -> list[Invite]:
            conn.execute(delete(t).where(t.c.expires < now))
            return [Invite(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]))
                    for r in conn.execute(select(
                        t.c.token, t.c.server_host, t.c.inviter, t.c.username, t.c.expires
                    ).where(t.c.server_host == host).order_by(t.c.expires))]
        return await self.db.run(run)

    async def find(self, token: str) -> Optional[Invite]:
        """A valid token of any host (the landing page knows only the token)."""
        t = invite_token
        row = await self.db.run(lambda conn: conn.execute(
            select(t.c.server_host).where(t.c.token == token)).first())
        return await self.get(str(row[0]), token) if row is not None else None

    async def reserved(self, host: str, username: str) -> bool:
        """A valid invitation keeps ``username`` for its invitee (XEP-0401 5.1)."""
        t, now = invite_token, int(time.time())
        return await self.db.run(lambda conn: conn.execute(select(t.c.token).where(
            t.c.server_host == host, t.c.username == username,
            t.c.expires >= now)).first()) is not None

    async def expire_by(self, host: str, inviter: str) -> int:
        """Delete the valid invitations ``inviter`` made; how many."""
        t, now = invite_token, int(time.time())
        return int(await self.db.run(lambda conn: conn.execute(delete(t).where(
            t.c.server_host == host, t.c.inviter == inviter,
            t.c.expires >= now)).rowcount))

    async def cleanup(self) -> int:
        """Delete the expired invitations of every host; how many."""
        t, now = invite_token, int(time.time())
        return int(await self.db.run(lambda conn: conn.execute(
            delete(t).where(t.c.expires < now)).rowcount))

    async def count_by(self, host: str, inviter: str) -> int:
        t, now = invite_token, int(time.time())
        return len(await self.db.run(lambda conn: conn.execute(select(t.c.token).where(
            t.c.server_host == host, t.c.inviter == inviter, t.c.expires >= now)).all()))
