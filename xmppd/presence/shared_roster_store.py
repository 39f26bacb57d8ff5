"""Shared roster groups (mod_shared_roster): the groups of a host and their members
(ejabberd's ``sr_group`` and ``sr_user``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
sr_group = Table(
    "sr_group", meta,
    Column("server_host", String(255), nullable=False),
    Column("name", String(1023), nullable=False),
    Column("opts", Text, nullable=False),  # JSON: label, description, displayed groups
    PrimaryKeyConstraint("server_host", "name"),
)
sr_user = Table(
    "sr_user", meta,
    Column("server_host", String(255), nullable=False),
    Column("grp", String(1023), nullable=False),
    Column("jid", String(3071), nullable=False),  # a bare JID, or @all@ (every account)
    PrimaryKeyConstraint("server_host", "grp", "jid"),
)


@migration("shared_roster", 1, "shared roster groups and their members")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[sr_group, sr_user])


@dataclass
class Group:
    name: str
    label: str = ""
    description: str = ""
    displayed: tuple[str, ...] = ()  # the groups whose members this group's members see
    members: set[str] = field(default_factory=set)  # bare JIDs, or ALL

    def opts(self) -> str:
        return json.dumps({"label": self.label, "description": self.description,
                           "displayed_groups": list(self.displayed)})


def _group(name: str, opts: str) -> Group:
    try:
        o = json.loads(opts)
    except ValueError:
        o = {}
    return Group(name, str(o.get("label") or ""), str(o.get("description") or ""),
                 tuple(str(g) for g in o.get("displayed_groups") or ()))


class SharedRosterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, host: str) -> dict[str, Group]:
        """Every group of ``host`` with its members."""
        def run(conn: Connection) -> dict[str, Group]:
            groups = {str(r[0]): _group(str(r[0]), str(r[1])) for r in conn.execute(
                select(sr_group.c.name, sr_group.c.opts).where(sr_group.c.server_host == host))}
            for r in conn.execute(select(sr_user.c.grp, sr_user.c.jid).where(
                    sr_user.c.server_host == host)):
                g = groups.get(str(r[0]))
                if g is not None:
                    g.members.add(str(r[1]))
            return groups
        return await self.db.run(run)

    async def put_group(self, host: str, group: Group) -> None:
        await self.db.run(lambda conn: upsert(
            conn, sr_group, [{"server_host": host, "name": group.name, "opts": group.opts()}],
            ("server_host", "name")))

    async def delete_group(self, host: str, name: str) -> None:
        def run(conn: Connection) -> None:
            conn.execute(delete(sr_group).where(sr_group.c.server_host == host,
                                                sr_group.c.name == name))
            conn.execute(delete(sr_user).where(sr_user.c.server_host == host,
                                               sr_user.c.grp == name))
        await self.db.run(run)

    async def add_member(self, host: str, group: str, jid: str) -> None:
        await self.db.run(lambda conn: upsert(
            conn, sr_user, [{"server_host": host, "grp": group, "jid": jid}],
            ("server_host", "grp", "jid")))

    async def remove_member(self, host: str, group: str, jid: str) -> None:
        await self.db.run(lambda conn: conn.execute(delete(sr_user).where(
            sr_user.c.server_host == host, sr_user.c.grp == group, sr_user.c.jid == jid)))

    async def forget_user(self, host: str, jid: str) -> None:
        """The account is gone: it leaves every group of ``host``."""
        await self.db.run(lambda conn: conn.execute(delete(sr_user).where(
            sr_user.c.server_host == host, sr_user.c.jid == jid)))
