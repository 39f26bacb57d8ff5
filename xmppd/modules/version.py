"""XEP-0092 software version."""

from __future__ import annotations

import platform

from .. import __version__
from ..confval import v_bool
from ..moduleapi import Module, Option, iq_handler
from ..stanza import StanzaEvent
from ..xml import Element

NS = "jabber:iq:version"


class Version(Module):
    name = "mod_version"
    features = (NS,)
    xeps = ("XEP-0092",)
    options = {"show_os": Option(True, v_bool, "include the operating system")}

    @iq_handler("get", NS, "query", dest="host")
    def version(self, ev: StanzaEvent) -> Element:
        q = Element("{%s}query" % NS)
        q.add("{%s}name" % NS, None, "xmppd")
        q.add("{%s}version" % NS, None, __version__)
        if self.opts["show_os"]:
            q.add("{%s}os" % NS, None, f"{platform.system()} {platform.release()}")
        return q
