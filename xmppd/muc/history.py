"""The join history (XEP-0045 7.2.15): the last messages, sent to who enters.

Entries are the reflected messages (``from`` the sender's occupant JID, with
the room's stanza-id), kept with their time; the joiner's ``<history/>``
element limits them by count, characters, age or date.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from ..datetimes import parse_stamp, stamp
from ..xml import Element
from .ns import DELAY, q


@dataclass(frozen=True)
class Entry:
    stanza: Element   # the reflected message, without ``to``
    ts: float         # seconds since the epoch
    size: int         # bytes of the serialized stanza (for maxchars)


class History:
    def __init__(self, size: int) -> None:
        self.entries: deque[Entry] = deque(maxlen=max(size, 0) or None)
        self.enabled = size > 0

    def add(self, stanza: Element, ts: float) -> None:
        if self.enabled:
            self.entries.append(Entry(stanza, ts, len(stanza.to_bytes())))

    def extend(self, entries: Iterable[tuple[Element, float]]) -> None:
        for stanza, ts in entries:
            self.add(stanza, ts)

    def replace(self, stanza: Element, new: Element) -> bool:
        """Keep ``new`` in place of the entry of ``stanza`` (a moderated message)."""
        for i, e in enumerate(self.entries):
            if e.stanza is stanza:
                self.entries[i] = Entry(new, e.ts, len(new.to_bytes()))
                return True
        return False

    def select(self, spec: Optional[Element], expiry: float, now: Optional[float] = None) -> list[Entry]:
        """Entries the joiner asked for with ``<history/>`` (None: the default)."""
        now = time.time() if now is None else now
        out = [e for e in self.entries if now - e.ts <= expiry]
        if spec is None:
            return out
        a = spec.attrs

        def num(name: str) -> Optional[int]:
            v = a.get(name)
            if v is None:
                return None
            try:
                return max(0, int(v))
            except ValueError:
                return None
        seconds = num("seconds")
        if seconds is not None:
            out = [e for e in out if now - e.ts <= seconds]
        since = a.get("since")
        if since is not None:
            t = parse_stamp(since)
            if t is not None:
                out = [e for e in out if e.ts > t]
        maxstanzas = num("maxstanzas")
        if maxstanzas is not None:
            out = out[len(out) - maxstanzas:] if maxstanzas else []
        maxchars = num("maxchars")
        if maxchars is not None:
            kept: list[Entry] = []
            total = 0
            for e in reversed(out):
                total += e.size
                if total > maxchars:
                    break
                kept.append(e)
            out = kept[::-1]
        return out


def delayed(entry: Entry, to: str, room: str) -> Element:
    """A history message for one joiner, with its XEP-0203 delay."""
    el = entry.stanza.copy()
    el.attrs["to"] = to
    el.append(Element(q(DELAY, "delay"), {"from": room, "stamp": stamp(entry.ts)}))
    return el
