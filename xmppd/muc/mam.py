"""XEP-0313 message archive at the room's JID: the query form, queries, results.

Archive ids are the ``<stanza-id/>`` ids the room stamped on the live
messages (XEP-0359), so a client that saw a message can page from it.
Retention is enforced at query time too, so nothing older than
``archive_expiry`` is ever shown even between two clean-ups.
"""

from __future__ import annotations

from typing import Optional

from ..dataforms import form_values
from ..datetimes import parse_stamp, stamp
from ..stanza import StanzaError
from ..xml import Element
from .ns import DATA, DELAY, FORWARD, MAM, MESSAGE, RSM, X_DATA, q
from .store import MamQuery

DEFAULT_PAGE = 50
MAX_PAGE = 250


def query_form() -> Element:
    """What ``iq get`` on the query returns (XEP-0313 5.1)."""
    out = Element(q(MAM, "query"))
    form = out.add(q(DATA, "x"), {"type": "form"})
    for var, type_ in (("FORM_TYPE", "hidden"), ("with", "jid-single"), ("start", "text-single"),
                       ("end", "text-single"), ("before-id", "text-single"),
                       ("after-id", "text-single"), ("ids", "list-multi")):
        f = form.add(q(DATA, "field"), {"var": var, "type": type_})
        if var == "FORM_TYPE":
            f.add(q(DATA, "value"), None, MAM)
    return out


def _time(values: dict[str, list[str]], var: str) -> Optional[float]:
    raw = (values.get(var) or [""])[0].strip()
    if not raw:
        return None
    t = parse_stamp(raw)
    if t is None:
        raise StanzaError("bad-request", "modify", f"{var}: not an XEP-0082 date-time")
    return t


def parse_query(query: Element, room: str, anonymous: bool, not_before: float) -> MamQuery:
    """A query element to a :class:`MamQuery` (bad input: ``bad-request``)."""
    qy = MamQuery(not_before=not_before)
    form = query.find(X_DATA)
    if form is not None:
        values = form_values(form)
        ftype = (values.get("FORM_TYPE") or [MAM])[0]
        if ftype != MAM:
            raise StanzaError("bad-request", "modify", f"FORM_TYPE must be {MAM}")
        qy.start = _time(values, "start")
        qy.end = _time(values, "end")
        with_ = (values.get("with") or [""])[0].strip()
        if with_:
            if with_.startswith(room + "/"):
                qy.with_nick = with_[len(room) + 1:]
            elif anonymous:
                raise StanzaError("not-allowed", "cancel",
                                  "real JIDs are not searchable in this room; use room/nick")
            else:
                qy.with_jid = with_.split("/")[0].lower()
        qy.after_id = (values.get("after-id") or [""])[0] or None
        qy.before_id = (values.get("before-id") or [""])[0] or None
        if "ids" in values:
            qy.ids = [v for v in values["ids"] if v]
    rsm = query.find(q(RSM, "set"))
    if rsm is not None:
        mx = rsm.findtext(q(RSM, "max"))
        if mx is not None:
            try:
                qy.max = max(0, min(MAX_PAGE, int(mx)))
            except ValueError:
                raise StanzaError("bad-request", "modify", "rsm max: not a number") from None
        else:
            qy.max = DEFAULT_PAGE
        after = rsm.find(q(RSM, "after"))
        before = rsm.find(q(RSM, "before"))
        if after is not None:
            qy.rsm_after = after.text
        if before is not None:
            qy.rsm_before = before.text
    else:
        qy.max = DEFAULT_PAGE
    return qy


def result_message(to: str, room: str, queryid: Optional[str], archive_id: str, ts: float,
                   forwarded: Element) -> Element:
    res = Element(q(MAM, "result"), {"id": archive_id})
    if queryid is not None:
        res.attrs["queryid"] = queryid
    fwd = res.add(q(FORWARD, "forwarded"))
    fwd.add(q(DELAY, "delay"), {"stamp": stamp(ts)})
    fwd.append(forwarded)
    return Element(MESSAGE, {"from": room, "to": to}, [res])


def fin(ids: list[str], complete: bool, count: int, queryid: Optional[str]) -> Element:
    out = Element(q(MAM, "fin"), {"complete": "true"} if complete else {})
    if queryid is not None:
        out.attrs["queryid"] = queryid
    rsm = out.add(q(RSM, "set"))
    if ids:
        rsm.add(q(RSM, "first"), None, ids[0])
        rsm.add(q(RSM, "last"), None, ids[-1])
    rsm.add(q(RSM, "count"), None, str(count))
    return out
