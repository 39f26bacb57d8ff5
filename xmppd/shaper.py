"""Traffic shaping: a token bucket per connection (ejabberd ``shaper``), and the
pause it asks for.

``consume(n)`` takes ``n`` bytes (or stanzas, for ``max_stanza_rate``) from the
bucket and returns how long the reader should pause so the average stays at
``rate`` per second. Nothing is dropped: reading just pauses. A TCP connection
pauses its socket; a transport that reads by awaiting (WebSocket messages, BOSH
requests) waits on a :class:`Pause` before it takes the next input.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any, Optional

log = logging.getLogger(__name__)


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def consume(self, n: float) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def idle(self, now: float) -> bool:
        """Refilled to its burst by ``now``: it limits nothing, as a new bucket would."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


def per_second(limit: float) -> Optional[TokenBucket]:
    """A bucket for ``limit`` events a second with a burst of one second's worth
    (``max_stanza_rate``, ``max_connection_rate``); None when there is no limit."""
    return TokenBucket(limit, max(limit, 1.0)) if limit != float("inf") else None


class RateTable:
    """Event rates per key (connections per address and listener), in at most ``size``
    buckets.

    When the table is full it first forgets the keys whose buckets have refilled (a
    new bucket would be the same), then, if it is still nine tenths full, the keys
    seen least recently. So a flood from many new addresses does not reset the count
    of an address that keeps connecting.
    """

    __slots__ = ("size", "buckets")

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.buckets: dict[Any, TokenBucket] = {}

    def over(self, key: Any, limit: float) -> bool:
        """One more event for ``key``: is it over ``limit`` a second?"""
        bucket = self.buckets.pop(key, None)  # put back last: most recently seen
        if bucket is None:
            bucket = per_second(limit)
            if bucket is None:
                return False
            if len(self.buckets) >= self.size:
                self._prune()
        self.buckets[key] = bucket
        return bucket.consume(1) > 0

    def __len__(self) -> int:
        return len(self.buckets)

    def _prune(self) -> None:
        now = time.monotonic()
        table = self.buckets
        for key in [k for k, b in table.items() if b.idle(now)]:
            del table[key]
        excess = len(table) - self.size * 9 // 10
        if excess > 0:
            for key in list(itertools.islice(table, excess)):
                del table[key]


def log_throttled(stream: object, ip: str) -> None:
    """The log line of a connection's first pause (once per connection)."""
    log.info("throttling %s (%s): over its rate limit", stream, ip)


class ShapedReading:
    """Reading of a TCP connection paused for a while: the listener's ``shaper`` and
    ``max_stanza_rate`` (mixed into the c2s and s2s protocols, which say in
    ``apply_reading`` what pausing means with their other reasons to pause)."""

    __slots__ = ("_shaped", "_throttled")
    _shaped: bool       # reading paused for now
    _throttled: bool    # paused at least once: logged
    stream: Any
    peer_ip: str

    def apply_reading(self) -> None:
        raise NotImplementedError

    def throttle(self, delay: float) -> None:
        """Stop reading for ``delay`` seconds: the peer is slowed down (TCP pushes back),
        nothing is dropped."""
        if self._shaped:
            return
        if not self._throttled:
            self._throttled = True
            log_throttled(self.stream, self.peer_ip)
        self._shaped = True
        self.apply_reading()
        asyncio.get_running_loop().call_later(delay, self._unshape)

    def _unshape(self) -> None:
        self._shaped = False
        self.apply_reading()


class Pause:
    """Until when a connection that reads by awaiting takes no more input."""

    __slots__ = ("until", "used")

    def __init__(self) -> None:
        self.until = 0.0
        self.used = False  # paused at least once: logged

    def add(self, delay: float, stream: object, ip: str) -> None:
        """Pause input for ``delay`` seconds from now (longer pauses win)."""
        if not self.used:
            self.used = True
            log_throttled(stream, ip)
        self.until = max(self.until, time.monotonic() + delay)

    async def wait(self) -> None:
        """Return when the pause is over (at once when there is none)."""
        if self.until:
            left = self.until - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
