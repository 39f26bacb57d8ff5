"""Brute-force protection (ejabberd's mod_fail2ban) and per-account login rates.

Failed authentications are counted per IP address. Each failure makes the next
attempt from that address wait longer (exponential back-off, capped); after
``c2s_max_auth_failures`` failures the address is banned for
``c2s_auth_ban_lifetime``: new connections get ``policy-violation``. Addresses
the ``access`` rule allows are never banned.

Failures are also counted per account, from whatever address: the next attempt
on that account waits as long (a guesser who spreads over many addresses is
slowed down too). An account is never locked; its count ends with a successful
login or ``c2s_auth_ban_lifetime`` after its last failure.
``max_logins_per_minute`` caps successful logins per account
(``temporary-auth-failure`` beyond it).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Optional

from ..confval import v_int, v_pos_int_or_infinity, v_timeout
from ..jid import JID
from ..moduleapi import Module, Option, hook

log = logging.getLogger(__name__)

MAX_DELAY = 5.0
MAX_ACCOUNTS = 100_000  # accounts with failures remembered at once (names are chosen by clients)


def backoff(failures: int) -> Optional[float]:
    """Seconds the next attempt waits after ``failures`` failures (None: none)."""
    return min(MAX_DELAY, 0.05 * 2 ** min(failures, 10)) if failures else None


class Fail2Ban(Module):
    name = "mod_fail2ban"
    options = {
        "c2s_auth_ban_lifetime": Option(3600.0, v_timeout("second"), "how long a ban lasts"),
        "c2s_max_auth_failures": Option(20, v_int(1), "failures before an address is banned"),
        "access": Option("none", lambda v, p: v, "addresses this rule allows are never banned"),
        "max_logins_per_minute": Option(float("inf"), v_pos_int_or_infinity,
                                        "successful logins per account and minute"),
    }

    def setup(self) -> None:
        self.failures: dict[str, tuple[int, float]] = {}   # ip -> (count, last failure)
        self.banned: dict[str, float] = {}                 # ip -> until
        self.account_failures: dict[str, tuple[int, float]] = {}  # user -> (count, last)
        self.logins: dict[JID, deque[float]] = {}
        self.api.add_timer(60.0, self._expire)

    def _exempt(self, ip: str) -> bool:
        return self.server.access.access(self.opts["access"], None, ip)

    def _expire(self) -> None:
        now = time.monotonic()
        self.banned = {ip: until for ip, until in self.banned.items() if until > now}
        lifetime = self.opts["c2s_auth_ban_lifetime"]
        self.failures = {ip: f for ip, f in self.failures.items() if now - f[1] < lifetime}
        self.account_failures = {u: f for u, f in self.account_failures.items()
                                 if now - f[1] < lifetime}
        self.logins = {j: d for j, d in self.logins.items() if d and now - d[-1] < 60}

    @hook("c2s/connect")
    def on_connect(self, conn: Any) -> Optional[str]:
        return self.banned_reason(conn.peer_ip) if conn.listen is not None else None

    @hook("auth/banned")
    def banned_reason(self, ip: str) -> Optional[str]:
        """Why ``ip`` may not log in now (banned), or None (logins over HTTP ask too)."""
        until = self.banned.get(ip)
        if until is not None and until > time.monotonic():
            return "too many failed authentications from your address; try again later"
        return None

    @hook("c2s/auth-failed")
    def on_failure(self, host: str, ip: str, condition: str, user: Optional[str]) -> None:
        """A failed login to ``host`` from ``ip`` (a client's SASL, or the HTTP API's)."""
        if host != self.host or condition not in ("not-authorized", "invalid-authzid"):
            return
        now = time.monotonic()
        if user is not None:
            accounts = self.account_failures
            count = accounts.pop(user, (0, 0.0))[0] + 1
            if len(accounts) >= MAX_ACCOUNTS:
                del accounts[next(iter(accounts))]  # the one whose last failure is oldest
            accounts[user] = (count, now)  # last: the table is in order of last failure
        if self._exempt(ip):
            return
        count = self.failures.get(ip, (0, 0.0))[0] + 1
        self.failures[ip] = (count, now)
        if count >= self.opts["c2s_max_auth_failures"]:
            self.banned[ip] = now + self.opts["c2s_auth_ban_lifetime"]

    @hook("c2s/auth-delay")
    def delay(self, host: str, ip: str, user: Optional[str]) -> Optional[float]:
        """How long this attempt waits: the back-offs of its address and its account."""
        if host != self.host:
            return None
        seconds = backoff(self.failures.get(ip, (0, 0.0))[0]) or 0.0
        count = self.account_failures.get(user, (0, 0.0))[0] if user is not None else 0
        if count:
            on_account = backoff(count) or 0.0
            log.info("login to %s@%s from %s waits %.2f s: %d failed attempts on the account",
                     user, self.host, ip, on_account, count)
            seconds += on_account
        return seconds or None

    @hook("c2s/auth-check")
    def login_rate(self, stream: Any, jid: JID) -> Optional[str]:
        if stream.host != self.host:
            return None
        if jid.local is not None:
            self.account_failures.pop(jid.local, None)  # the right password: the count ends
        limit = self.opts["max_logins_per_minute"]
        if limit == float("inf"):
            return None
        now = time.monotonic()
        d = self.logins.setdefault(jid, deque())
        while d and now - d[0] > 60:
            d.popleft()
        if len(d) >= limit:
            return "temporary-auth-failure"
        d.append(now)
        return None
