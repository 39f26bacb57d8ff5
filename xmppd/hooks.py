"""The hook bus: named events, handlers by priority, first answer wins.

Handlers run from the highest priority down; the first one that returns
something other than ``None`` ends the event and its value is returned.
Event names get finer as they go (``iq-get/host/urn:xmpp:ping:ping``), so a
handler subscribes to exactly what it handles.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[int, int, Handler]]] = {}
        self._cache: dict[str, tuple[Handler, ...]] = {}
        self._seq = 0

    def add(self, event: str, handler: Handler, priority: int = 0) -> Callable[[], None]:
        """Register ``handler``; return a function that removes it again."""
        self._seq += 1
        entry = (priority, -self._seq, handler)
        lst = self._handlers.setdefault(event, [])
        lst.append(entry)
        lst.sort(key=lambda e: (e[0], e[1]), reverse=True)
        self._cache[event] = tuple(h for _, _, h in lst)

        def remove() -> None:
            cur = self._handlers.get(event)
            if cur and entry in cur:
                cur.remove(entry)
                if cur:
                    self._cache[event] = tuple(h for _, _, h in cur)
                else:
                    del self._handlers[event]
                    self._cache.pop(event, None)
        return remove

    def has(self, event: str) -> bool:
        return event in self._cache

    def handlers(self, event: str) -> tuple[Handler, ...]:
        return self._cache.get(event, ())

    def fire(self, event: str, *args: Any) -> Any:
        """Call handlers in priority order; stop at the first non-None result."""
        for h in self._cache.get(event, ()):
            result = h(*args)
            if result is not None:
                return result
        return None

    async def run_all(self, event: str, *args: Any) -> None:
        """:meth:`fire_all`, then wait for what the handlers started (coroutines,
        futures); their exceptions are logged."""
        pending = [r for r in self.fire_all(event, *args) if inspect.isawaitable(r)]
        for res in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(res, Exception):
                log.error("hook %s failed: %r", event, res)

    def fire_all(self, event: str, *args: Any) -> list[Any]:
        """Call every handler (exceptions are logged) and collect non-None results."""
        out = []
        for h in self._cache.get(event, ()):
            try:
                r = h(*args)
            except Exception:
                log.exception("hook %s failed in %r", event, h)
                continue
            if r is not None:
                out.append(r)
        return out
