"""Periodic clean-up: expired files, failed uploads and unused slots leave disk, S3 and the store."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .store import PENDING, FileRow, now_s

if TYPE_CHECKING:
    from .module import HttpUpload

log = logging.getLogger(__name__)

STALE_UPLOAD = 86400  # an upload still "in progress" a day after its slot expired died with a crash


async def clean(svc: HttpUpload) -> int:
    """Delete what is due on ``svc``'s host; return how many files went."""
    total = 0
    while True:
        now = now_s()
        rows = await svc.store.due(svc.host, now)
        if not rows:
            rows = await svc.store.stale_uploads(svc.host, now - STALE_UPLOAD)
        if not rows:
            return total
        arrived: list[str] = []
        gone: list[FileRow] = []
        for r in rows:
            if r.backend == "s3" and r.state == PENDING and svc.s3 is not None and \
                    (r.expires_at is None or r.expires_at > now) and \
                    await svc.s3.exists(svc.s3.key(r.id, r.name)):
                arrived.append(r.id)  # uploaded straight to S3: now a stored file
            else:
                gone.append(r)
        await svc.store.mark_stored(arrived)
        await remove(svc, gone)
        total += len(gone)
        if not gone:
            return total


async def remove(svc: HttpUpload, rows: list[FileRow]) -> None:
    """Delete the bytes first, then the rows (a crash in between only repeats the work)."""
    s3_keys = [svc.s3.key(r.id, r.name) for r in rows if r.backend == "s3" and svc.s3 is not None]
    for r in rows:
        if r.backend == "filesystem":
            await svc.files.delete(r.id)
    if s3_keys:
        assert svc.s3 is not None
        await svc.s3.delete(s3_keys)
    if any(r.backend == "s3" for r in rows) and svc.s3 is None:
        log.warning("upload: S3 is not configured any more; forgetting S3 files without "
                    "deleting them")
    await svc.store.delete([r.id for r in rows])
    if rows:
        log.info("upload: removed %d file(s) of %s", len(rows), svc.host)
