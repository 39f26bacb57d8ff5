"""What incoming and outgoing s2s streams share: ordered event processing
(a step that must wait, such as a TLS handshake, holds further input back),
stream errors and closing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Optional

from ..shaper import TokenBucket
from ..xml import Element
from ..xmlstream import Event, StreamError

if TYPE_CHECKING:
    from .manager import S2SManager
    from .transport import S2SConnection

log = logging.getLogger(__name__)


class S2SStream:
    closed = False
    header_sent = False

    def __init__(self, manager: S2SManager, conn: Optional[S2SConnection]) -> None:
        self.manager = manager
        self.server = manager.server
        self.conn = conn
        self.stream_id = ""
        self.created = time.monotonic()
        self.last_recv = self.created
        self.busy = False
        self.queue: list[Event] = []
        self.rate: Optional[TokenBucket] = None  # stanzas per second (listener's limit)

    # -- input ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.last_recv = time.monotonic()
        if self.closed or self.conn is None:
            return
        try:
            events = self.conn.framing.feed(data)
        except StreamError as e:
            self.stream_error(e.condition, e.text)
            return
        rate = self.rate
        if rate is not None and events:
            delay = rate.consume(sum(1 for e in events if isinstance(e, Element)))
            if delay > 0:
                self.conn.throttle(delay)  # too many stanzas: read more slowly
        if self.busy:
            self.queue.extend(events)
            return
        self._process(events)

    def _process(self, events: list[Event]) -> None:
        assert self.conn is not None
        for i, ev in enumerate(events):
            if self.closed:
                return
            try:
                pending = self._handle(ev)
            except StreamError as e:
                self.stream_error(e.condition, e.text)
                return
            if pending is not None:
                self.busy = True
                self.queue[:0] = events[i + 1:]
                self.conn.pause_reading()
                asyncio.ensure_future(self._wait(pending))
                return

    async def _wait(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except StreamError as e:
            self.stream_error(e.condition, e.text)
        except Exception:
            log.exception("s2s stream %r failed", self)
            self.stream_error("internal-server-error")
        self.busy = False
        if self.closed or self.conn is None:
            return
        queued, self.queue = self.queue, []
        self.conn.resume_reading()
        if queued:
            self._process(queued)

    def _handle(self, ev: Event) -> Optional[Awaitable[None]]:
        raise NotImplementedError

    # -- closing ------------------------------------------------------------
    def stream_error(self, condition: str, text: Optional[str] = None) -> None:
        if self.closed or self.conn is None:
            self.close()
            return
        log.info("s2s stream error %s on %r: %s", condition, self, text or "")
        if not self.header_sent:
            self.conn.write(self.conn.framing.header(
                {"id": secrets.token_urlsafe(8), "from": self.manager.default_domain(),
                 "version": "1.0"}))
        self.conn.write(self.conn.framing.error(condition, text))
        self.close()

    def close(self) -> None:
        """Close the stream (a footer, then the transport)."""
        if self.closed:
            return
        self.closed = True
        conn = self.conn
        try:
            if conn is not None:
                conn.write(conn.framing.footer())
        finally:
            if conn is not None:
                conn.close()
            self.ended()

    def connection_lost(self) -> None:
        self.closed = True
        self.ended()

    def ended(self) -> None:
        """The stream is over (called once or more; must be idempotent)."""
