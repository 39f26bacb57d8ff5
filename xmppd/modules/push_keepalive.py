"""mod_push_keepalive, as in ejabberd: a session that enabled push notifications
(XEP-0357) is kept for resumption much longer than others, and its client is woken
before the server gives it up.

- ``resume_timeout`` (72 hours): how long a detached session with push waits for
  its client, as long as no notification went out for it; once one did, the
  ``resume_timeout`` of mod_stream_mgmt applies from then on (the phone was told,
  and comes back soon or not at all);
- ``wake_on_timeout`` (true): when that time is up, a notification without a
  message goes first, and the session waits mod_stream_mgmt's ``resume_timeout``
  more;
- ``wake_on_start`` (false): at start, every account with a registration gets such
  a notification (their apps connect again after a restart lost their sessions).
"""

from __future__ import annotations

from typing import Any, Optional

from ..c2s.sm import StreamMgmt
from ..confval import v_bool, v_timeout
from ..jid import JID
from ..moduleapi import Module, Option, hook
from .push import PushModule


class PushKeepalive(Module):
    name = "mod_push_keepalive"
    depends = (PushModule, StreamMgmt)
    options = {
        "resume_timeout": Option(72 * 3600.0, v_timeout("second"),
                                 "how long a session with push waits for its client"),
        "wake_on_timeout": Option(True, v_bool, "wake the client before giving its session up"),
        "wake_on_start": Option(False, v_bool, "wake every client with push at start"),
    }

    def setup(self) -> None:
        push = PushModule.of(self.server, self.host)
        sm = StreamMgmt.of(self.server, self.host)
        assert push is not None and sm is not None
        self.push = push
        self.sm = sm

    def _ours(self, session: Any) -> bool:
        return bool(session.data.get("push")) and session.jid is not None and \
            session.jid.domain == self.host

    @hook("sm/pending-timeout")
    def _timeout(self, session: Any) -> Optional[float]:
        if not self._ours(session):
            return None
        session.data.pop("push_woken", None)
        return max(self.opts["resume_timeout"], session.sm.timeout)

    @hook("push/notified")
    def _notified(self, session: Any) -> None:
        """A notification went out: from now on the usual resumption time applies."""
        if self._ours(session) and not session.data.get("push_woken"):
            session.data["push_woken"] = True
            self.sm.keep_for(session, session.sm.timeout)

    @hook("sm/pending-timed-out")
    def _timed_out(self, session: Any) -> Optional[bool]:
        if not self.opts["wake_on_timeout"] or not self._ours(session) or \
                session.data.get("push_woken"):
            return None
        session.data["push_woken"] = True
        self.api.add_task(self.push.wake(session.jid.bare, session.jid.resource))
        self.sm.keep_for(session, session.sm.timeout)
        return True

    @hook("server/started")
    def _started(self, server: Any) -> None:
        if self.opts["wake_on_start"]:
            self.api.add_task(self._wake_all())

    async def _wake_all(self) -> None:
        for user in await self.push.store.accounts(self.host):
            await self.push.wake(JID(user, self.host), None)
