"""Graceful degradation: the server watches its own load and sheds
non-critical work first, in a fixed, documented order.

Load is measured as event-loop lag (how late a periodic timer fires), the
number of bytes waiting in client send buffers, and resident memory. Above
the high-water mark the level rises one step per interval; below the
low-water mark it falls back one step at a time. Level N sheds the first N
kinds of work in :data:`SHED_ORDER`:

1. ``presence-inactive``: presence fan-out to clients that said they are inactive (CSI):
   it stays held, newest of each contact, until the client says it is active, instead of
   going out ahead of every message with a body (``xmppd/presence/csi.py``);
2. ``chat-states``: typing notifications (XEP-0085) sent alone are dropped (here);
3. ``last-seen``: last-activity bookkeeping of messages and presence (``mod_last``);
4. ``markers``: read markers (XEP-0333 displayed/acknowledged) sent alone are dropped
   (here).

Messages, receipts and logins are never shed. The message hook that drops chat states and
markers is registered only while the level sheds them: at normal load it costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from .receipts.common import CHATSTATES_NS, HINTS_NS, MARKERS_NS, SID_NS, THREAD
from .stanza import BODY, StanzaEvent

if TYPE_CHECKING:
    from .server import Server
    from .xml import Element

log = logging.getLogger("xmppd.load")

SHED_ORDER = ("presence-inactive", "chat-states", "last-seen", "markers")
LEVEL_NAMES = ("normal",) + tuple(f"shedding {', '.join(SHED_ORDER[:i])}"
                                  for i in range(1, len(SHED_ORDER) + 1))

CHAT_STATES = "{%s}" % CHATSTATES_NS
READ_MARKERS = ("{%s}displayed" % MARKERS_NS, "{%s}acknowledged" % MARKERS_NS)
# what may come with a chat state or a marker without making the message more than that
_NEUTRAL = (THREAD, "{%s}" % HINTS_NS, "{%s}" % SID_NS)
_DESTINATIONS = ("bare", "full", "remote", "component")


def _droppable(el: Element, markers: bool) -> bool:
    """A message that carries nothing but what is shed now: a chat state (the hook is
    there only while chat states are shed) or, with ``markers``, a read marker."""
    if el.attrs.get("type") == "error":
        return False
    shed = False
    for c in el.elements():
        tag = c.tag
        if tag == BODY:
            return False
        if tag.startswith(CHAT_STATES) or markers and tag in READ_MARKERS:
            shed = True
        elif not tag.startswith(_NEUTRAL):
            return False
    return shed


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError, IndexError):
        return 0


class LoadMonitor:
    def __init__(self, server: Server, *, interval: float = 0.5, lag_high: float = 0.25,
                 lag_low: float = 0.05, max_memory: float = float("inf"),
                 max_send_queue: float = float("inf")) -> None:
        self.server = server
        self.interval = interval
        self.lag_high = lag_high
        self.lag_low = lag_low
        self.max_memory = max_memory
        self.max_send_queue = max_send_queue
        self.level = 0
        self.forced: Optional[int] = None
        self.lag = 0.0
        self.rss = 0
        self.send_queue = 0
        self._calm = 0
        self._unhook: list[Callable[[], None]] = []

    def shed(self, kind: str) -> bool:
        """True when work of ``kind`` (one of SHED_ORDER) should be skipped now."""
        return self.level > SHED_ORDER.index(kind)

    @property
    def description(self) -> str:
        state = LEVEL_NAMES[self.level]
        how = "forced" if self.forced is not None else "automatic"
        return (f"{state} ({how}; loop lag {self.lag * 1000:.0f} ms, rss {self.rss // 1048576} MiB, "
                f"send queues {self.queued_output() // 1024} KiB)")

    def queued_output(self) -> int:
        """Bytes waiting in the clients' send buffers (walks every connection)."""
        total = 0
        for conn in self.server.connections:
            t: Any = getattr(conn, "transport", None)
            if t is not None:
                try:
                    total += t.get_write_buffer_size()
                except (AttributeError, RuntimeError):
                    pass
        return total

    def force(self, level: Optional[int]) -> None:
        self.forced = level
        self._set(level if level is not None else 0)

    def _set(self, level: int) -> None:
        level = max(0, min(len(SHED_ORDER), level))
        if level == self.level:
            return
        old, self.level = self.level, level
        self.server.overload = level > 0
        (log.warning if level > old else log.info)(
            "load: %s -> %s", LEVEL_NAMES[old], LEVEL_NAMES[level])
        self._hook_messages()
        self.server.hooks.fire_all("server/load", self.server, level)

    def _hook_messages(self) -> None:
        for remove in self._unhook:
            remove()
        self._unhook = []
        if self.shed("chat-states"):
            for dest in _DESTINATIONS:
                self._unhook.append(self.server.hooks.add(f"pre-message/{dest}",
                                                          self._drop, priority=1000))

    def _drop(self, ev: StanzaEvent) -> Optional[bool]:
        """Before routing: True (the message goes no further) for what is shed now."""
        return _droppable(ev.stanza, self.shed("markers")) or None

    def _pressure(self) -> bool:
        return (self.lag > self.lag_high or self.rss > self.max_memory
                or self.send_queue > self.max_send_queue)

    def _relaxed(self) -> bool:
        return (self.lag < self.lag_low and self.rss < self.max_memory * 0.9
                and self.send_queue < self.max_send_queue * 0.5)

    def sample(self, lag: float) -> None:
        """Take one measurement and move the level (exposed for tests)."""
        self.lag = lag if self.lag == 0 else 0.5 * self.lag + 0.5 * lag
        self.rss = _rss()
        # the sum walks every connection (1.4% of the CPU of a burst of logins with 10,000
        # connected): taken only when a limit is set; status asks for it when shown
        if self.max_send_queue != float("inf"):
            self.send_queue = self.queued_output()
        if self.forced is not None:
            return
        if self._pressure():
            self._calm = 0
            self._set(self.level + 1)
        elif self._relaxed():
            self._calm += 1
            if self._calm >= 4:  # recover slowly: two seconds of calm per step
                self._calm = 0
                self._set(self.level - 1)
        else:
            self._calm = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.sample(max(0.0, loop.time() - start - self.interval))


def install(server: Server) -> LoadMonitor:
    cfg = server.config
    mon = LoadMonitor(server, lag_high=cfg["overload_lag_high"], lag_low=cfg["overload_lag_low"],
                      max_memory=cfg["overload_max_memory"] * 1048576,
                      max_send_queue=cfg["overload_max_send_queue"] * 1024)
    return mon
