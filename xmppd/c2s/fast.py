"""FAST (XEP-0484): tokens that let a client log in again without its password.

With SASL2 (XEP-0388), a client asks for a token with ``<request-token
xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`` in its ``<authenticate/>``; the
``<success/>`` carries ``<token expiry=... token=.../>``. The next time it logs in with
the mechanism ``HT-SHA-256-NONE`` and ``<fast xmlns='urn:xmpp:fast:0'/>``: its initial
response is its user name, a NUL and HMAC-SHA-256(token, "Initiator"); the server's
additional data is HMAC-SHA-256(token, "Responder") (the HT mechanisms of
draft-schmaus-kitten-sasl-ht, without channel binding). No PBKDF2 on the phone, one
round trip.

A token belongs to one account and one client (the SASL2 user-agent id) and lives
``TOKEN_LIFETIME``; a login with a token older than half of that gets a new one, and
the previous stays good until it expires. A token is bound to the account's password:
changing it (or deleting the account) makes every token useless. ``<fast
invalidate='true'/>`` logs in a last time and deletes the token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from ..datetimes import stamp
from ..storage import migration
from ..tokens import token_urlsafe

if TYPE_CHECKING:
    from ..storage import Database

FAST_NS = "urn:xmpp:fast:0"
MECHANISM = "HT-SHA-256-NONE"
TOKEN_LIFETIME = 14 * 86400
KEEP = 2   # tokens per account and client: the newest and the one before

meta = MetaData()
fast_token = Table(
    "fast_token", meta,
    Column("token", String(191), primary_key=True),
    Column("server_host", String(255), nullable=False),
    Column("username", String(1023), nullable=False),
    Column("client_id", Text, nullable=False),   # the SASL2 user-agent id
    Column("password_salt", Text, nullable=False),  # the account's salt when it was made
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)


@migration("fast", 1, "fast_token: FAST login tokens (XEP-0484)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[fast_token])


def proof(token: str, label: bytes) -> bytes:
    """HT-SHA-256-NONE: HMAC-SHA-256 of ``label`` ("Initiator" or "Responder")."""
    return hmac.new(token.encode(), label, hashlib.sha256).digest()


def feature() -> str:
    """What goes inline in SASL2's ``<authentication/>``."""
    return "<fast xmlns='%s'><mechanism>%s</mechanism></fast>" % (FAST_NS, MECHANISM)


class FastTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def issue(self, host: str, user: str, client_id: str, salt: str) -> tuple[str, int]:
        """A new token for the account and client: (token, expiry)."""
        token, now = token_urlsafe(32), int(time.time())
        expires = now + TOKEN_LIFETIME
        t = fast_token

        def run(conn: Connection) -> None:
            conn.execute(t.insert().values(token=token, server_host=host, username=user,
                                           client_id=client_id, password_salt=salt,
                                           created=now, expires=expires))
            old = conn.execute(select(t.c.token).where(
                t.c.server_host == host, t.c.username == user, t.c.client_id == client_id
            ).order_by(t.c.created.desc()).offset(KEEP)).all()
            stale = [r[0] for r in old]
            conn.execute(delete(t).where(t.c.expires < now))
            if stale:
                conn.execute(delete(t).where(t.c.token.in_(stale)))
        await self.db.run(run)
        return token, expires

    async def check(self, host: str, user: str, client_id: str, given: bytes,
                    salt: str) -> Optional[tuple[str, int]]:
        """The token (and when it was made) whose Initiator proof is ``given``, among
        the valid ones of the account and client made with its current password."""
        t, now = fast_token, int(time.time())
        rows = await self.db.run(lambda conn: conn.execute(select(
            t.c.token, t.c.created, t.c.password_salt).where(
            t.c.server_host == host, t.c.username == user, t.c.client_id == client_id,
            t.c.expires >= now)).all())
        found = None
        for token, created, made_with in rows:
            ok = hmac.compare_digest(proof(str(token), b"Initiator"), given)
            if ok and hmac.compare_digest(str(made_with), salt):
                found = (str(token), int(created))
        return found

    async def forget_user(self, host: str, user: str) -> None:
        """An account was deleted: its tokens go (they were void already)."""
        t = fast_token
        await self.db.run(lambda conn: conn.execute(delete(t).where(
            t.c.server_host == host, t.c.username == user)))

    async def revoke(self, token: str) -> None:
        t = fast_token
        await self.db.run(lambda conn: conn.execute(delete(t).where(t.c.token == token)))


def tokens_of(server: Any) -> FastTokens:
    """The server's token store (made at the first use)."""
    tokens: Optional[FastTokens] = server.fast_tokens
    if tokens is None:
        assert server.db is not None
        tokens = server.fast_tokens = FastTokens(server.db)
    return tokens


def install(server: Any) -> None:
    """A deleted account's tokens are deleted with it (they were void already: a new
    account of the name has a new salt)."""
    async def removed(user: Any) -> None:
        if user.local is not None and server.db is not None:
            await tokens_of(server).forget_user(user.domain, user.local)
    server.hooks.add("account/removed", removed)


def token_element(token: str, expires: int) -> bytes:
    return ("<token xmlns='%s' expiry='%s' token='%s'/>" % (
        FAST_NS, stamp(expires, millis=False), token)).encode()
