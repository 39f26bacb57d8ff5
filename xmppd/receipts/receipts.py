"""XEP-0184 delivery receipts and XEP-0333 chat markers: the "delivered" and "read" ticks.

Receipts and markers are messages between clients; the server's part is to
carry them like any message, including through offline storage: a
``<received/>`` or ``<displayed/>`` for a sender who went offline is stored
(it has content, see :func:`~xmppd.receipts.common.worth_storing`), carried
in carbons to the user's other devices, and delivered in order when the
sender is back. This module advertises both features and names the payloads.
"""

from __future__ import annotations

from typing import Optional

from ..moduleapi import Module
from ..xml import Element
from .common import MARKERS_NS, RECEIPTS_NS


def receipt_for(el: Element) -> Optional[str]:
    """The id a ``<received/>`` receipt confirms, if ``el`` is one."""
    r = el.find("{%s}received" % RECEIPTS_NS)
    return r.attrs.get("id") if r is not None else None


def marker(el: Element) -> Optional[tuple[str, str]]:
    """(marker, id) for a chat marker (received, displayed, acknowledged)."""
    for c in el.elements():
        if c.ns == MARKERS_NS and c.name != "markable":
            return c.name, c.attrs.get("id", "")
    return None


class Receipts(Module):
    name = "mod_receipts"
    xeps = ("XEP-0184", "XEP-0333")
    features = (RECEIPTS_NS, MARKERS_NS)
