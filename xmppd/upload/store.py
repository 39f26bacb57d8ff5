"""Slot and file metadata of the upload service (SQLite and PostgreSQL).

A row is made when a slot is handed out (``pending``); the PUT claims it
once (``uploading``) and ends it as ``stored`` or ``failed``. With S3 the
upload bypasses xmppd: the clean-up asks the bucket whether a pending
slot's object arrived and marks it ``stored``. Rows reserve their size in
the owner's quota until they are deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from ..storage import Database, migration

PENDING, UPLOADING, STORED, FAILED = "pending", "uploading", "stored", "failed"

meta = MetaData()
upload_files = Table(
    "upload_files", meta,
    Column("id", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("owner", String(1023), nullable=False),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("backend", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("slot_expires", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),  # NULL: kept for ever
    Index("upload_files_owner", "host", "owner"),
    Index("upload_files_expiry", "expires_at"),
    Index("upload_files_state", "state", "slot_expires"),
)


@migration("upload", 1, "upload_files: slots and stored files of HTTP upload")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[upload_files])


@dataclass(frozen=True)
class FileRow:
    id: str
    host: str
    owner: str
    name: str
    size: int
    content_type: str
    backend: str
    state: str
    created_at: int
    slot_expires: int
    expires_at: Optional[int]


def _row(r: object) -> FileRow:
    return FileRow(*(getattr(r, c.name) for c in upload_files.columns))


class UploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, row: FileRow) -> None:
        vals = {c.name: getattr(row, c.name) for c in upload_files.columns}
        await self.db.run(lambda conn: conn.execute(insert(upload_files).values(**vals)))

    async def get(self, file_id: str) -> Optional[FileRow]:
        def run(conn: Connection) -> Optional[FileRow]:
            r = conn.execute(select(upload_files).where(upload_files.c.id == file_id)).first()
            return None if r is None else _row(r)
        return await self.db.run(run)

    async def claim(self, file_id: str) -> bool:
        """pending -> uploading, once: the single use of a slot."""
        return await self.db.run(lambda conn: conn.execute(
            update(upload_files).where(upload_files.c.id == file_id,
                                       upload_files.c.state == PENDING)
            .values(state=UPLOADING)).rowcount == 1)

    async def finish(self, file_id: str, ok: bool) -> None:
        await self.db.run(lambda conn: conn.execute(
            update(upload_files).where(upload_files.c.id == file_id,
                                       upload_files.c.state == UPLOADING)
            .values(state=STORED if ok else FAILED)))

    async def mark_stored(self, ids: list[str]) -> None:
        if ids:
            await self.db.run(lambda conn: conn.execute(
                update(upload_files).where(upload_files.c.id.in_(ids)).values(state=STORED)))

    async def usage(self, host: str, owner: str, now: int) -> list[tuple[Optional[int], int]]:
        """(expires_at, size) of what counts towards ``owner``'s quota, soonest first."""
        c = upload_files.c

        def run(conn: Connection) -> list[tuple[Optional[int], int]]:
            rows = conn.execute(
                select(c.expires_at, c.size).where(
                    c.host == host, c.owner == owner,
                    or_(c.state.in_((UPLOADING, STORED)),
                        and_(c.state == PENDING,
                             or_(c.slot_expires >= now, c.backend == "s3")))))
            return sorted(((r.expires_at, int(r.size)) for r in rows),
                          key=lambda t: (t[0] is None, t[0] or 0))
        return await self.db.run(run)

    async def due(self, host: str, now: int, grace: int = 600, limit: int = 500) -> list[FileRow]:
        """Rows to clean up: expired files, failed uploads, slots unused ``grace`` s after expiry."""
        c = upload_files.c

        def run(conn: Connection) -> list[FileRow]:
            rows = conn.execute(select(upload_files).where(
                c.host == host,
                or_(and_(c.expires_at.is_not(None), c.expires_at <= now),
                    c.state == FAILED,
                    and_(c.state == PENDING, c.slot_expires < now - grace))).limit(limit))
            return [_row(r) for r in rows]
        return await self.db.run(run)

    async def stale_uploads(self, host: str, before: int) -> list[FileRow]:
        """Uploads still marked in progress long after their slot expired (a crash)."""
        c = upload_files.c
        return await self.db.run(lambda conn: [_row(r) for r in conn.execute(
            select(upload_files).where(c.host == host, c.state == UPLOADING,
                                       c.slot_expires < before))])

    async def of_owner(self, host: str, owner: str) -> list[FileRow]:
        c = upload_files.c
        return await self.db.run(lambda conn: [_row(r) for r in conn.execute(
            select(upload_files).where(c.host == host, c.owner == owner))])

    async def delete(self, ids: list[str]) -> None:
        if ids:
            await self.db.run(lambda conn: conn.execute(
                delete(upload_files).where(upload_files.c.id.in_(ids))))

    async def count(self, host: str) -> int:
        return await self.db.run(lambda conn: conn.execute(
            select(func.count()).select_from(upload_files)
            .where(upload_files.c.host == host)).scalar_one())


def now_s() -> int:
    return int(time.time())
