"""Traffic shaping: a token bucket per connection (ejabberd ``shaper``).

``consume(n)`` takes ``n`` bytes from the bucket and returns how long the
reader should pause so the average stays at ``rate`` bytes per second. Nothing
is dropped: reading just pauses.
"""

from __future__ import annotations

import time


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
