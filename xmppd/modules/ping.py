"""XEP-0199 XMPP ping: answer pings, and ping quiet clients to detect dead ones."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..confval import v_bool, v_enum, v_timeout
from ..moduleapi import Module, Option, iq_handler
from ..stanza import StanzaError, StanzaEvent, make_iq
from ..xml import Element

NS = "urn:xmpp:ping"


class Ping(Module):
    name = "mod_ping"
    features = (NS,)
    xeps = ("XEP-0199",)
    options = {
        "send_pings": Option(False, v_bool, "ping clients that have been quiet"),
        "ping_interval": Option(60.0, v_timeout("second"), "quiet time before a ping"),
        "ping_ack_timeout": Option(32.0, v_timeout("second"), "how long to wait for the answer"),
        "timeout_action": Option("none", v_enum("none", "kill"), "what to do without answer"),
    }

    @iq_handler("get", NS, "ping", dest=("host", "self"))
    def pong(self, ev: StanzaEvent) -> Optional[Element]:
        return None

    def setup(self) -> None:
        if self.opts["send_pings"]:
            self.api.add_timer(min(10.0, self.opts["ping_interval"] / 2), self._check)
        self._inflight: set[Any] = set()

    def _check(self) -> None:
        now = time.monotonic()
        interval = self.opts["ping_interval"]
        for s in self.server.sessions.all_local():
            if s.jid.domain != self.host or s in self._inflight:
                continue
            if now - s.last_recv >= interval:
                self._inflight.add(s)
                self.api.add_task(self._ping(s))

    async def _ping(self, session: Any) -> None:
        iq = make_iq("get", Element("{%s}ping" % NS), to=session.jid_str, frm=self.host)
        try:
            await self.server.iq_tracker.request(iq, self.opts["ping_ack_timeout"])
        except TimeoutError:
            if self.opts["timeout_action"] == "kill":
                session.stream_error("connection-timeout", "no answer to ping")
                session.ended("ping timeout")
        except StanzaError:
            pass  # an error answer still proves the client is alive
        finally:
            self._inflight.discard(session)
