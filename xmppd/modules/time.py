"""XEP-0202 entity time."""

from __future__ import annotations

import time

from ..datetimes import stamp
from ..moduleapi import Module, iq_handler
from ..stanza import StanzaEvent
from ..xml import Element

NS = "urn:xmpp:time"


class Time(Module):
    name = "mod_time"
    features = (NS,)
    xeps = ("XEP-0202",)

    @iq_handler("get", NS, "time", dest="host")
    def time(self, ev: StanzaEvent) -> Element:
        t = Element("{%s}time" % NS)
        t.add("{%s}tzo" % NS, None, "+00:00")
        t.add("{%s}utc" % NS, None, stamp(time.time()))
        return t
