"""Files on disk under ``docroot``, named by their random id (never by the user's name).

An upload streams into ``<id>.part`` in batches written by a worker thread,
is flushed to disk (fsync) and renamed into place only when every byte
arrived, so a reader never sees half a file and a crash leaves only a
``.part`` file the clean-up removes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Optional

BATCH = 1 << 20  # bytes gathered before one write in a worker thread


class SizeMismatch(Exception):
    """The body was longer or shorter than the slot's size."""


class FileStore:
    def __init__(self, docroot: Path, file_mode: Optional[int] = None,
                 dir_mode: Optional[int] = None) -> None:
        self.docroot = docroot
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def path(self, file_id: str) -> Path:
        if not file_id.isalnum():
            raise ValueError("file ids are letters and digits")
        return self.docroot / file_id[:2] / file_id

    def _open_part(self, file_id: str) -> tuple[Path, BinaryIO]:
        final = self.path(file_id)
        d = final.parent
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            if self.dir_mode is not None:
                os.chmod(d, self.dir_mode)
                os.chmod(self.docroot, self.dir_mode)
        part = final.with_name(file_id + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     self.file_mode if self.file_mode is not None else 0o640)
        return part, os.fdopen(fd, "wb")

    def _commit(self, f: BinaryIO, part: Path, file_id: str) -> None:
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if self.file_mode is not None:
            os.chmod(part, self.file_mode)
        os.replace(part, self.path(file_id))

    async def write(self, file_id: str, chunks: AsyncIterator[bytes], size: int) -> None:
        """Store exactly ``size`` bytes from ``chunks``; raise SizeMismatch otherwise."""
        loop = asyncio.get_running_loop()
        part, f = await loop.run_in_executor(None, self._open_part, file_id)
        done = False
        try:
            got = 0
            batch: list[bytes] = []
            batched = 0
            async for chunk in chunks:
                got += len(chunk)
                if got > size:
                    raise SizeMismatch(f"more than the {size} bytes of the slot")
                batch.append(chunk)
                batched += len(chunk)
                if batched >= BATCH:
                    await loop.run_in_executor(None, f.writelines, batch)
                    batch, batched = [], 0
            if got != size:
                raise SizeMismatch(f"{got} bytes received, the slot is for {size}")
            if batch:
                await loop.run_in_executor(None, f.writelines, batch)
            await loop.run_in_executor(None, self._commit, f, part, file_id)
            done = True
        finally:
            if not done:
                f.close()
                await loop.run_in_executor(None, _unlink, part)

    async def delete(self, file_id: str) -> None:
        p = self.path(file_id)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _unlink, p)
        await loop.run_in_executor(None, _unlink, p.with_name(file_id + ".part"))


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
