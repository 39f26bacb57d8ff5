"""Offline storage in SQL: one row per stored message, in arrival order.

The functions build operations ``op(connection) -> result`` that the caller
runs in a group commit (:mod:`xmppd.storage.batch`) or on their own.
A message is stored once: its key (the stanza-id) and its retry key (sender,
recipient and origin-id) are checked inside the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
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
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection

from ..storage.migrations import migration

meta = MetaData()
offline = Table(
    "offline_messages", meta,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("msg_key", String(191), nullable=False),
    Column("retry_key", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),  # microseconds since the epoch
    Column("xml", Text, nullable=False),
    Index("offline_user_seq", "server_host", "username", "seq"),
    Index("offline_user_key", "server_host", "username", "msg_key"),
)


@migration("offline", 1, "offline_messages table")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[offline])


Op = Callable[[Connection], Any]


ORIGIN_ID = "{urn:xmpp:sid:0}origin-id"


def hash_retry_key(key: Optional[str]) -> Optional[str]:
    return hashlib.sha1(key.encode()).hexdigest() if key else None


def store_op(host: str, user: str, key: str, retry: Optional[str], created_us: int,
             xml: str, limit: float) -> Op:
    """Store unless a copy is there or the user's storage is full: 'ok', 'dup' or 'full'."""
    def op(conn: Connection) -> str:
        mine = (offline.c.server_host == host) & (offline.c.username == user)
        same = offline.c.msg_key == key
        if retry is not None:
            same = same | (offline.c.retry_key == retry)
        if conn.execute(select(offline.c.seq).where(mine & same).limit(1)).first():
            return "dup"
        if limit != float("inf"):
            n = conn.execute(select(func.count()).select_from(offline).where(mine)).scalar_one()
            if n >= limit:
                return "full"
        conn.execute(insert(offline).values(server_host=host, username=user, msg_key=key,
                                            retry_key=retry, created_at=created_us, xml=xml))
        return "ok"
    return op


def load_op(host: str, user: str) -> Callable[[Connection], list[tuple[str, str]]]:
    """(key, xml) of a user's messages in arrival order."""
    def op(conn: Connection) -> list[tuple[str, str]]:
        rows = conn.execute(select(offline.c.msg_key, offline.c.xml)
                            .where(offline.c.server_host == host, offline.c.username == user)
                            .order_by(offline.c.seq))
        return [(r[0], r[1]) for r in rows]
    return op


def delete_op(host: str, user: str, keys: Iterable[str]) -> Op:
    keys = list(keys)

    def op(conn: Connection) -> int:
        n = 0
        for i in range(0, len(keys), 500):
            n += conn.execute(delete(offline).where(
                offline.c.server_host == host, offline.c.username == user,
                offline.c.msg_key.in_(keys[i:i + 500]))).rowcount
        return n
    return op


def retract_op(host: str, user: str, sender: str, mid: str) -> Op:
    """Delete the stored message of ``sender`` (a bare JID) whose ``id`` or origin-id is
    ``mid`` (XEP-0424: its author took it back before it was delivered); 1 if there was one."""
    from ..jid import JID, JIDError
    from ..xmlstream import parse_xml

    def op(conn: Connection) -> int:
        rows = conn.execute(select(offline.c.seq, offline.c.xml).where(
            offline.c.server_host == host, offline.c.username == user,
            offline.c.xml.contains(mid, autoescape=True)).order_by(offline.c.seq))
        for seq, xml in rows:
            el = parse_xml(xml)
            try:
                frm = JID.parse(el.attrs.get("from", "")).bare if el is not None else None
            except JIDError:
                continue
            if el is None or str(frm) != sender:
                continue
            origin = el.find(ORIGIN_ID)
            if el.attrs.get("id") == mid or (origin is not None and origin.attrs.get("id") == mid):
                conn.execute(delete(offline).where(offline.c.seq == seq))
                return 1
        return 0
    return op


def delete_all_op(host: str, user: str) -> Op:
    def op(conn: Connection) -> int:
        return int(conn.execute(delete(offline).where(
            offline.c.server_host == host, offline.c.username == user)).rowcount)
    return op


def count_op(host: str, user: str) -> Callable[[Connection], int]:
    def op(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(offline).where(
            offline.c.server_host == host, offline.c.username == user)).scalar_one())
    return op


def delete_older_op(host: str, before_us: int) -> Callable[[Connection], int]:
    """Delete the messages of ``host`` stored before ``before_us`` (microseconds since
    the epoch); the number deleted."""
    def op(conn: Connection) -> int:
        return int(conn.execute(delete(offline).where(
            offline.c.server_host == host, offline.c.created_at < before_us)).rowcount)
    return op
