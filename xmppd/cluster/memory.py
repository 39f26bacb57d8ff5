"""The in-process cluster backend: one node, nothing to share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

from ..jid import JID
from .base import SessionEntry

CLAIMS_MAX = 100_000  # keys held at once, at most (their names come from the network)


class MemoryBackend:
    def __init__(self, node: str = "local") -> None:
        self.node = node
        self.remote_by_bare: dict[JID, dict[JID, SessionEntry]] = {}  # always empty
        self._claims: dict[str, float] = {}  # key -> until (monotonic), oldest first

    async def start(self, deliver: Callable[[list[bytes]], Any]) -> None:
        return None

    async def stop(self) -> None:
        return None

    def publish(self, entry: SessionEntry) -> None:
        return None

    def unpublish(self, jid: JID) -> None:
        return None

    def remote_sessions(self, bare: JID) -> list[SessionEntry]:
        return []

    def remote_session(self, full: JID) -> Optional[SessionEntry]:
        return None

    def send(self, node: str, payload: bytes) -> None:
        raise LookupError(f"no node {node!r} in a single-process server")

    def nodes(self) -> list[str]:
        return [self.node]

    async def claim(self, key: str, seconds: float) -> bool:
        now = time.monotonic()
        until = self._claims.get(key)
        if until is not None and until > now:
            return False
        if len(self._claims) >= CLAIMS_MAX:  # the expired first, then the oldest
            for k in [k for k, u in self._claims.items() if u <= now]:
                del self._claims[k]
            while len(self._claims) >= CLAIMS_MAX:
                del self._claims[next(iter(self._claims))]
        self._claims.pop(key, None)
        self._claims[key] = now + seconds
        return True

    async def release(self, key: str) -> None:
        self._claims.pop(key, None)
