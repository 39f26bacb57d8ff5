"""The in-process cluster backend: one node, nothing to share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from ..jid import JID
from .base import SessionEntry


class MemoryBackend:
    def __init__(self, node: str = "local") -> None:
        self.node = node
        self.remote_by_bare: dict[JID, dict[JID, SessionEntry]] = {}  # always empty

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
