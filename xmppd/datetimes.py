"""XEP-0082 date-times, in UTC: what delay stamps (XEP-0203), idle times (XEP-0319),
entity time (XEP-0202), archive queries and upload retries carry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Optional


def stamp(ts: float, millis: bool = True) -> str:
    """``ts`` (seconds since the epoch) as a XEP-0082 DateTime, with milliseconds or
    to the second."""
    if not millis:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def parse_stamp(text: str) -> Optional[float]:
    """A XEP-0082 DateTime as seconds since the epoch (None when invalid; UTC when the
    zone is left out)."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
