"""PEP storage: each account's nodes (with their configuration) and their items."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

from sqlalchemy import BigInteger, Column, MetaData, PrimaryKeyConstraint, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..storage import Database, migration
from ..storage.upsert import upsert

meta = MetaData()
pep_node = Table(
    "pep_node", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("node", String(1023), nullable=False),
    Column("config", Text, nullable=False),       # JSON: the node's configuration
    PrimaryKeyConstraint("server_host", "username", "node"),
)
pep_item = Table(
    "pep_item", meta,
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("node", String(1023), nullable=False),
    Column("item_id", String(1023), nullable=False),
    Column("published", BigInteger, nullable=False),   # microseconds since the epoch
    Column("payload", Text, nullable=False),           # the item's children, serialized
    PrimaryKeyConstraint("server_host", "username", "node", "item_id"),
)


@migration("pep", 1, "personal eventing: nodes and items (XEP-0163)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[pep_node, pep_item])


class Item(NamedTuple):
    id: str
    published: int
    payload: str


class LastItem(NamedTuple):
    owner: str
    node: str
    config: dict[str, Any]
    item: Item


def _stamp() -> int:
    return time.time_ns() // 1000


class PepStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def node(self, host: str, user: str, node: str) -> Optional[dict[str, Any]]:
        """The node's configuration; None if there is no such node."""
        def run(conn: Connection) -> Optional[dict[str, Any]]:
            row = conn.execute(select(pep_node.c.config).where(
                pep_node.c.server_host == host, pep_node.c.username == user,
                pep_node.c.node == node)).first()
            return None if row is None else dict(json.loads(row[0]))
        return await self.db.run(run)

    async def nodes(self, host: str, user: str) -> list[str]:
        def run(conn: Connection) -> list[str]:
            return sorted(str(r[0]) for r in conn.execute(select(pep_node.c.node).where(
                pep_node.c.server_host == host, pep_node.c.username == user)))
        return await self.db.run(run)

    async def configure(self, host: str, user: str, node: str, config: dict[str, Any]) -> None:
        """Create the node, or set its configuration (and trim it to its ``max_items``)."""
        def run(conn: Connection) -> None:
            upsert(conn, pep_node, [{"server_host": host, "username": user, "node": node,
                                     "config": json.dumps(config, sort_keys=True)}],
                   ("server_host", "username", "node"))
            _trim(conn, host, user, node, config["max_items"] if config["persist_items"] else 0)
        await self.db.run(run)

    async def publish(self, host: str, user: str, node: str, config: dict[str, Any],
                      item_id: str, payload: str, create: bool) -> None:
        """Store an item (replacing one with its id), keep the newest ``max_items``; with
        ``create``, the node is made first."""
        def run(conn: Connection) -> None:
            if create:
                upsert(conn, pep_node, [{"server_host": host, "username": user, "node": node,
                                         "config": json.dumps(config, sort_keys=True)}],
                       ("server_host", "username", "node"))
            if not config["persist_items"]:
                return
            upsert(conn, pep_item, [{"server_host": host, "username": user, "node": node,
                                     "item_id": item_id, "published": _stamp(),
                                     "payload": payload}],
                   ("server_host", "username", "node", "item_id"))
            _trim(conn, host, user, node, config["max_items"])
        await self.db.run(run)

    async def items(self, host: str, user: str, node: str,
                    ids: Optional[Sequence[str]] = None, newest: Optional[int] = None) -> list[Item]:
        """Items of the node, the newest first: those of ``ids``, or the ``newest`` few."""
        def run(conn: Connection) -> list[Item]:
            stmt = select(pep_item.c.item_id, pep_item.c.published, pep_item.c.payload).where(
                pep_item.c.server_host == host, pep_item.c.username == user,
                pep_item.c.node == node)
            if ids is not None:
                stmt = stmt.where(pep_item.c.item_id.in_(list(ids)))
            stmt = stmt.order_by(pep_item.c.published.desc(), pep_item.c.item_id.desc())
            if newest is not None:
                stmt = stmt.limit(newest)
            return [Item(str(r[0]), int(r[1]), str(r[2])) for r in conn.execute(stmt)]
        return await self.db.run(run)

    async def retract(self, host: str, user: str, node: str, item_id: str) -> bool:
        def run(conn: Connection) -> bool:
            res = conn.execute(delete(pep_item).where(
                pep_item.c.server_host == host, pep_item.c.username == user,
                pep_item.c.node == node, pep_item.c.item_id == item_id))
            return bool(res.rowcount)
        return await self.db.run(run)

    async def delete_node(self, host: str, user: str, node: str, purge_only: bool = False) -> None:
        def run(conn: Connection) -> None:
            conn.execute(delete(pep_item).where(
                pep_item.c.server_host == host, pep_item.c.username == user,
                pep_item.c.node == node))
            if not purge_only:
                conn.execute(delete(pep_node).where(
                    pep_node.c.server_host == host, pep_node.c.username == user,
                    pep_node.c.node == node))
        await self.db.run(run)

    async def delete_user(self, host: str, user: str) -> None:
        def run(conn: Connection) -> None:
            for t in (pep_item, pep_node):
                conn.execute(delete(t).where(t.c.server_host == host, t.c.username == user))
        await self.db.run(run)

    async def last_items(self, host: str, owners: Sequence[str],
                         nodes: Sequence[str]) -> list[LastItem]:
        """The newest item of each of ``nodes`` of each of ``owners`` (that has one)."""
        def run(conn: Connection) -> list[LastItem]:
            out: list[LastItem] = []
            for i in range(0, len(owners), 200):
                chunk = list(owners[i:i + 200])
                configs = {(str(r[0]), str(r[1])): dict(json.loads(r[2])) for r in conn.execute(
                    select(pep_node.c.username, pep_node.c.node, pep_node.c.config).where(
                        pep_node.c.server_host == host, pep_node.c.username.in_(chunk),
                        pep_node.c.node.in_(list(nodes))))}
                if not configs:
                    continue
                seen: set[tuple[str, str]] = set()
                rows = conn.execute(
                    select(pep_item.c.username, pep_item.c.node, pep_item.c.item_id,
                           pep_item.c.published, pep_item.c.payload).where(
                        pep_item.c.server_host == host, pep_item.c.username.in_(chunk),
                        pep_item.c.node.in_(list(nodes))).order_by(
                        pep_item.c.published.desc(), pep_item.c.item_id.desc()))
                for r in rows:
                    key = (str(r[0]), str(r[1]))
                    if key in seen or key not in configs:
                        continue
                    seen.add(key)
                    out.append(LastItem(key[0], key[1], configs[key],
                                        Item(str(r[2]), int(r[3]), str(r[4]))))
            return out
        return await self.db.run(run)


def _trim(conn: Connection, host: str, user: str, node: str, keep: int) -> None:
    """Delete all but the newest ``keep`` items of the node."""
    where = (pep_item.c.server_host == host, pep_item.c.username == user,
             pep_item.c.node == node)
    old = [str(r[0]) for r in conn.execute(
        select(pep_item.c.item_id).where(*where).order_by(
            pep_item.c.published.desc(), pep_item.c.item_id.desc()).offset(keep))]
    if old:
        conn.execute(delete(pep_item).where(*where, pep_item.c.item_id.in_(old)))
