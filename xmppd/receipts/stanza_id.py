"""XEP-0359 unique and stable stanza IDs, and de-duplication of retried messages.

Every chat or normal message a local client sends to a local user gets a
``<stanza-id xmlns='urn:xmpp:sid:0' by='recipient@host' id='...'/>`` (any
such element the sender put there with the same ``by`` is removed first). The
id is the message's key for the journal and offline storage.

A retry of a message (same ``origin-id``, or same ``id`` and body when there
is no origin-id, from the same bare JID to the same bare JID) routed within
``dedupe_window`` is dropped: the recipient gets it once. Every routed message
is remembered (also those the journal routes again after a restart), the
check happens only on what clients send.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import OrderedDict
from typing import Optional

from ..confval import v_int, v_timeout
from ..jid import JID
from ..moduleapi import Module, Option, hook
from ..stanza import BODY, StanzaEvent
from ..xml import CLIENT_NS, Element, serialize

log = logging.getLogger(__name__)

NS = "urn:xmpp:sid:0"
STANZA_ID = "{%s}stanza-id" % NS
ORIGIN_ID = "{%s}origin-id" % NS
SKIP_TYPES = ("groupchat", "error", "headline")


def stanza_id(el: Element, by: str) -> Optional[str]:
    """The stanza-id that ``by`` gave to ``el``, if any."""
    for c in el.children:
        if isinstance(c, Element) and c.tag == STANZA_ID and c.attrs.get("by") == by:
            return c.attrs.get("id")
    return None


def any_stanza_id(el: Element) -> Optional[tuple[str, str]]:
    """(by, id) of the first stanza-id of ``el``."""
    for c in el.children:
        if isinstance(c, Element) and c.tag == STANZA_ID:
            by, sid = c.attrs.get("by"), c.attrs.get("id")
            if by and sid:
                return by, sid
    return None


def retry_key(el: Element, frm: JID, to: JID) -> Optional[str]:
    """What identifies a retry: sender, recipient and origin-id (or id and body).

    origin-id is unique by definition (XEP-0359); a plain ``id`` is not (some
    clients count from 1 in every session), so with it the body must match too.
    """
    for c in el.children:
        if isinstance(c, Element) and c.tag == ORIGIN_ID:
            oid = c.attrs.get("id")
            if oid:
                return f"{frm.bare}\0{to.bare}\0o\0{oid}"
            break
    mid = el.attrs.get("id")
    if not mid:
        return None
    return f"{frm.bare}\0{to.bare}\0i\0{mid}\0{el.findtext(BODY) or ''}"


def with_child(el: Element, child: Element) -> Element:
    """A copy of ``el`` with ``child`` appended, keeping reusable raw bytes."""
    new = Element(el.tag, dict(el.attrs), el.children + [child])
    if el.raw is not None:
        new.raw = el.raw + serialize(child, CLIENT_NS)
    return new


class StanzaIds(Module):
    name = "mod_stanza_id"
    xeps = ("XEP-0359",)
    options = {
        "dedupe_window": Option(300.0, v_timeout("second"),
                                "how long a retried message is recognised"),
        "dedupe_max": Option(200000, v_int(0), "retry keys remembered at most"),
    }

    def setup(self) -> None:
        self.seen: OrderedDict[str, float] = OrderedDict()
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)
        # the retry key of the message being routed: drop_retry makes it, remember
        # (later hooks of the same event) uses it again instead of building it twice
        self._key: tuple[Optional[StanzaEvent], Optional[str]] = (None, None)
        self.api.hook("disco-account-features", lambda ev: (NS,), host_only=False)

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"

    # -- retries ----------------------------------------------------------
    def _expire(self, now: float) -> None:
        seen = self.seen
        limit = now - self.opts["dedupe_window"]
        while seen:
            key, ts = next(iter(seen.items()))
            if ts > limit and len(seen) <= self.opts["dedupe_max"]:
                break
            seen.popitem(last=False)

    @hook("pre-message/bare", 100)
    @hook("pre-message/full", 100)
    def drop_retry(self, ev: StanzaEvent) -> Optional[bool]:
        if ev.type in SKIP_TYPES:
            return None
        key = retry_key(ev.stanza, ev.from_jid, ev.to_jid)
        self._key = (ev, key)
        if key is None or key not in self.seen:
            return None
        now = time.monotonic()
        self._expire(now)
        if key in self.seen:
            log.debug("dropping a retried message from %s", ev.from_jid)
            return True
        return None

    @hook("message/bare", 1000)
    @hook("message/full", 1000)
    def remember(self, ev: StanzaEvent) -> None:
        if ev.type in SKIP_TYPES:
            return None
        made_for, key = self._key
        self._key = (None, None)
        if made_for is not ev:
            key = retry_key(ev.stanza, ev.from_jid, ev.to_jid)
        if key is not None:
            seen = self.seen
            seen[key] = time.monotonic()
            seen.move_to_end(key)
            if len(seen) > self.opts["dedupe_max"]:
                seen.popitem(last=False)
        return None

    # -- stamping ---------------------------------------------------------
    @hook("pre-message/bare", 90)
    @hook("pre-message/full", 90)
    def stamp(self, ev: StanzaEvent) -> None:
        if ev.type in SKIP_TYPES:
            return None
        el = ev.stanza
        by = str(ev.to_jid.bare)
        if stanza_id(el, by) is not None:  # forged by the sender: remove it
            el = el.copy()
            el.children = [c for c in el.children if not (
                isinstance(c, Element) and c.tag == STANZA_ID and c.attrs.get("by") == by)]
            el.raw = None
        ev.stanza = with_child(el, Element(STANZA_ID, {"by": by,
                                                       "id": self.new_id()}))
        return None
