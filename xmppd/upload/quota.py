"""Per-user storage quota: does a new file fit, and if not, when will it?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class QuotaDecision:
    ok: bool
    used: int
    retry_at: Optional[int] = None  # when enough files have expired (None: never)
    never: bool = False  # the file alone is larger than the quota


def decide(usage: list[tuple[Optional[int], int]], quota: float, size: int) -> QuotaDecision:
    """``usage`` is (expires_at, size) soonest first, as the store returns it."""
    used = sum(s for _, s in usage)
    if used + size <= quota:
        return QuotaDecision(True, used)
    if size > quota:
        return QuotaDecision(False, used, never=True)
    freed = 0
    for expires_at, s in usage:
        if expires_at is None:
            break
        freed += s
        if used - freed + size <= quota:
            return QuotaDecision(False, used, retry_at=expires_at)
    return QuotaDecision(False, used)
