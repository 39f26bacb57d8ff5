"""One ordered writer per room: its store writes happen in order, off the hot path.

Delivery never waits for the database: the room hands its writes (archive rows,
configuration, affiliations) to its writer, which runs them in batches, one
transaction per batch, in a database thread. Rooms have writers of their own,
so a room with slow writes delays nobody else's messages; readers of the
archive first :meth:`flush` so they see every message already delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Optional

from sqlalchemy.engine import Connection

from ..storage.engine import Database

log = logging.getLogger(__name__)

Op = Callable[[Connection], Any]
RETRIES = 5


class RoomWriter:
    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.ops: list[Op] = []
        self.task: Optional[asyncio.Task[None]] = None

    def submit(self, op: Op) -> None:
        self.ops.append(op)
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    @property
    def busy(self) -> bool:
        return self.task is not None

    async def flush(self) -> None:
        while self.task is not None:
            await asyncio.shield(self.task)

    async def _run(self) -> None:
        try:
            while self.ops:
                batch, self.ops = self.ops, []

                def apply(conn: Connection, batch: list[Op] = batch) -> None:
                    for op in batch:
                        op(conn)
                for attempt in range(RETRIES):
                    try:
                        await self.db.run(apply)
                        break
                    except Exception:
                        log.exception("room %s: store write failed (attempt %d)", self.name,
                                      attempt + 1)
                        await asyncio.sleep(0.1 * 2 ** attempt)
                else:
                    log.error("room %s: gave up %d store writes", self.name, len(batch))
        finally:
            self.task = None
