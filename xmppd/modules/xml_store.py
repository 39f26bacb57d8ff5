"""Per-user XML kept for clients: vCards (mod_vcard, XEP-0054) and private XML
(mod_private, XEP-0049). Each row is one serialized element of one user, under a
namespace: ``vcard-temp`` for the vCard, the element's namespace for private XML.
The tables are named as ejabberd's (``vcard``, ``private_storage``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Optional

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..jid import JID
from ..moduleapi import Module, hook
from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()


def _table(name: str) -> Table:
    return Table(
        name, meta,
        Column("server_host", String(255), nullable=False),
        Column("username", String(1023), nullable=False),
        Column("namespace", String(255), nullable=False),
        Column("data", Text, nullable=False),   # the element, serialized
        PrimaryKeyConstraint("server_host", "username", "namespace"),
    )


vcard = _table("vcard")
private_storage = _table("private_storage")


@migration("vcard", 1, "vCards (XEP-0054)")
def _vcard_v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[vcard])


@migration("private", 1, "private XML storage (XEP-0049)")
def _private_v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[private_storage])


class XmlStore:
    """The elements of one table, by host, user and namespace."""

    def __init__(self, db: Database, table: Table) -> None:
        self.db = db
        self.table = table

    async def get(self, host: str, user: str, namespace: str) -> Optional[str]:
        t = self.table

        def run(conn: Connection) -> Optional[str]:
            row = conn.execute(select(t.c.data).where(
                t.c.server_host == host, t.c.username == user,
                t.c.namespace == namespace)).first()
            return None if row is None else str(row[0])
        return await self.db.run(run)

    async def put(self, host: str, user: str, items: Sequence[tuple[str, str]]) -> None:
        """Store ``(namespace, data)`` pairs, replacing what each namespace held."""
        rows = [{"server_host": host, "username": user, "namespace": ns, "data": data}
                for ns, data in items]
        await self.db.run(lambda conn: upsert(conn, self.table, rows,
                                               ("server_host", "username", "namespace")))

    async def delete_user(self, host: str, user: str) -> None:
        t = self.table
        await self.db.run(lambda conn: conn.execute(delete(t).where(
            t.c.server_host == host, t.c.username == user)))


class XmlStoreModule(Module):
    """A module that keeps per-user XML in one of these tables (``table``): its store,
    and the account's rows deleted with the account."""

    table: ClassVar[Table]
    stores = ("xmppd.modules.xml_store",)

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = XmlStore(self.server.db, self.table)

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain == self.host and user.local is not None:
            await self.store.delete_user(self.host, user.local)
