"""The MUC store: persistent rooms, their affiliations, and the room archive.

SQLite and PostgreSQL through SQLAlchemy; the schema is the ``muc`` migration
chain. Every method is synchronous and runs in a database thread
(``Database.run``/``call``); the service never calls them on the event loop.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from ..storage import migration
from ..storage.engine import Database
from ..storage.upsert import insert_missing

meta = MetaData()
rooms = Table(
    "muc_rooms", meta,
    Column("service", String(255), nullable=False),
    Column("name", String(1023), nullable=False),
    Column("config", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("subject_nick", String(1023), nullable=False),
    Column("vcard", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("service", "name"),
)
affiliations = Table(
    "muc_affiliations", meta,
    Column("service", String(255), nullable=False),
    Column("room", String(1023), nullable=False),
    Column("jid", String(3071), nullable=False),
    Column("affiliation", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("service", "room", "jid"),
)
archive = Table(
    "muc_archive", meta,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("service", String(255), nullable=False),
    Column("room", String(1023), nullable=False),
    Column("stanza_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),          # microseconds since the epoch
    Column("nick", String(1023), nullable=False),
    Column("sender", String(3071), nullable=False),    # real bare JID, never shown in anonymous rooms
    Column("body", Text, nullable=False),
    Column("xml", Text, nullable=False),
    Index("muc_archive_room_seq", "service", "room", "seq"),
    Index("muc_archive_room_id", "service", "room", "stanza_id"),
    Index("muc_archive_ts", "ts"),
)

service_keys = Table(
    "muc_service_keys", meta,
    Column("service", String(255), primary_key=True),
    Column("occupant_id_key", String(64), nullable=False),  # base64 (occupant_id.py)
)


@migration("muc", 1, "persistent rooms, affiliations and the room archive")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[rooms, affiliations, archive])


@migration("muc", 2, "muc_service_keys: the key of occupant ids (XEP-0421)")
def _v2(conn: Connection) -> None:
    meta.create_all(conn, tables=[service_keys])


@dataclass
class ArchiveRow:
    stanza_id: str
    ts: float
    nick: str
    sender: str
    body: str
    xml: str


@dataclass
class MamQuery:
    start: Optional[float] = None
    end: Optional[float] = None
    with_nick: Optional[str] = None
    with_jid: Optional[str] = None
    after_id: Optional[str] = None
    before_id: Optional[str] = None
    ids: Optional[list[str]] = None
    max: int = 50
    rsm_after: Optional[str] = None
    rsm_before: Optional[str] = None   # "" asks for the last page
    not_before: float = 0.0            # retention: nothing older is shown


class ItemNotFound(LookupError):
    pass


def _us(ts: float) -> int:
    return int(ts * 1_000_000)


class MucStore:
    def __init__(self, db: Database, service: str) -> None:
        self.db = db
        self.service = service

    def occupant_id_key(self, conn: Connection) -> bytes:
        """The service's key for occupant ids, made by the first node that asks; every
        node (and every later start) reads the same one."""
        fresh = base64.b64encode(secrets.token_bytes(32)).decode()
        insert_missing(conn, service_keys, {"service": self.service, "occupant_id_key": fresh},
                       ["service"])
        value = conn.execute(select(service_keys.c.occupant_id_key).where(
            service_keys.c.service == self.service)).scalar_one()
        return base64.b64decode(value)

    # -- rooms -------------------------------------------------------------------
    def load_room(self, conn: Connection, name: str) -> Optional[dict[str, Any]]:
        r = conn.execute(select(rooms).where(rooms.c.service == self.service,
                                             rooms.c.name == name)).first()
        if r is None:
            return None
        affs = {a.jid: (a.affiliation, a.reason) for a in conn.execute(
            select(affiliations).where(affiliations.c.service == self.service,
                                       affiliations.c.room == name))}
        return {"config": json.loads(r.config), "subject": r.subject,
                "subject_nick": r.subject_nick, "vcard": r.vcard,
                "created": r.created_at / 1_000_000, "affiliations": affs}

    def save_room(self, conn: Connection, name: str, snap: dict[str, Any]) -> None:
        svc = self.service
        conn.execute(delete(rooms).where(rooms.c.service == svc, rooms.c.name == name))
        conn.execute(insert(rooms).values(
            service=svc, name=name, config=json.dumps(snap["config"], sort_keys=True),
            subject=snap["subject"], subject_nick=snap["subject_nick"], vcard=snap["vcard"],
            created_at=_us(snap["created"])))
        conn.execute(delete(affiliations).where(affiliations.c.service == svc,
                                                affiliations.c.room == name))
        rows = [{"service": svc, "room": name, "jid": jid, "affiliation": aff, "reason": reason}
                for jid, (aff, reason) in snap["affiliations"].items()]
        if rows:
            conn.execute(insert(affiliations), rows)

    def delete_room(self, conn: Connection, name: str, with_archive: bool) -> None:
        svc = self.service
        conn.execute(delete(rooms).where(rooms.c.service == svc, rooms.c.name == name))
        conn.execute(delete(affiliations).where(affiliations.c.service == svc,
                                                affiliations.c.room == name))
        if with_archive:
            conn.execute(delete(archive).where(archive.c.service == svc, archive.c.room == name))

    def public_rooms(self, conn: Connection) -> list[tuple[str, str]]:
        out = []
        for r in conn.execute(select(rooms.c.name, rooms.c.config)
                              .where(rooms.c.service == self.service).order_by(rooms.c.name)):
            cfg = json.loads(r.config)
            if cfg.get("public", True):
                out.append((r.name, cfg.get("title", "")))
        return out

    # -- archive -------------------------------------------------------------------
    def archive(self, conn: Connection, name: str, items: list[ArchiveRow]) -> None:
        conn.execute(insert(archive), [
            {"service": self.service, "room": name, "stanza_id": i.stanza_id, "ts": _us(i.ts),
             "nick": i.nick, "sender": i.sender, "body": i.body, "xml": i.xml} for i in items])

    def recent(self, conn: Connection, name: str, limit: int, since: float) -> list[tuple[str, float]]:
        """The last ``limit`` archived messages with a body (the join history after a restart)."""
        rows = conn.execute(
            select(archive.c.xml, archive.c.ts)
            .where(archive.c.service == self.service, archive.c.room == name,
                   archive.c.ts >= _us(since), archive.c.body != "")
            .order_by(archive.c.seq.desc()).limit(limit)).all()
        return [(r.xml, r.ts / 1_000_000) for r in reversed(rows)]

    def archived(self, conn: Connection, name: str, stanza_id: str) -> Optional[tuple[str, str]]:
        """The archived message with that stanza-id and its sender's real bare JID, if
        the archive has it."""
        r = conn.execute(select(archive.c.xml, archive.c.sender).where(
            archive.c.service == self.service, archive.c.room == name,
            archive.c.stanza_id == stanza_id)).first()
        return None if r is None else (str(r.xml), str(r.sender))

    def retract(self, conn: Connection, name: str, stanza_id: str, tombstone: str) -> None:
        """A moderated message (XEP-0425): its tombstone instead, and no body to search."""
        conn.execute(update(archive).where(
            archive.c.service == self.service, archive.c.room == name,
            archive.c.stanza_id == stanza_id).values(xml=tombstone, body=""))

    def expire(self, conn: Connection, before: float) -> int:
        return int(conn.execute(delete(archive).where(archive.c.service == self.service,
                                                      archive.c.ts < _us(before))).rowcount or 0)

    def _seq_of(self, conn: Connection, name: str, stanza_id: str) -> int:
        r = conn.execute(select(archive.c.seq).where(
            archive.c.service == self.service, archive.c.room == name,
            archive.c.stanza_id == stanza_id)).first()
        if r is None:
            raise ItemNotFound(stanza_id)
        return int(r.seq)

    def query(self, conn: Connection, name: str, qy: MamQuery) -> tuple[list[tuple[str, float, str]],
                                                                         bool, int]:
        """Rows (xml, ts, id) of one page, whether it is the last one, and the total count."""
        c = archive.c
        cond = [c.service == self.service, c.room == name, c.ts >= _us(qy.not_before)]
        if qy.start is not None:
            cond.append(c.ts >= _us(qy.start))
        if qy.end is not None:
            cond.append(c.ts <= _us(qy.end))
        if qy.with_nick is not None:
            cond.append(c.nick == qy.with_nick)
        if qy.with_jid is not None:
            cond.append(c.sender == qy.with_jid)
        if qy.after_id:
            cond.append(c.seq > self._seq_of(conn, name, qy.after_id))
        if qy.before_id:
            cond.append(c.seq < self._seq_of(conn, name, qy.before_id))
        if qy.ids is not None:
            cond.append(c.stanza_id.in_(qy.ids))
        base = and_(*cond)
        count = int(conn.execute(select(func.count()).select_from(archive).where(base)).scalar_one())
        page = [base]
        backwards = qy.rsm_before is not None
        if qy.rsm_after:
            page.append(c.seq > self._seq_of(conn, name, qy.rsm_after))
        if qy.rsm_before:
            page.append(c.seq < self._seq_of(conn, name, qy.rsm_before))
        order = c.seq.desc() if backwards else c.seq.asc()
        rows = list(conn.execute(select(c.xml, c.ts, c.stanza_id).where(and_(*page))
                                 .order_by(order).limit(qy.max + 1)).all())
        complete = len(rows) <= qy.max
        rows = rows[:qy.max]
        if backwards:
            rows.reverse()
        return [(r.xml, r.ts / 1_000_000, r.stanza_id) for r in rows], complete, count
