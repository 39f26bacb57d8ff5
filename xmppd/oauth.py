"""OAuth tokens for the REST API, as ejabberd's ``oauth_issue_token`` makes them.

An administrator issues a token for an account, with scopes and a lifetime::

    xmppd ctl oauth_issue_token admin@example.org 3600 "ejabberd:admin"

A script then calls the REST API with ``Authorization: Bearer TOKEN``. What the token
may call comes from ``api_permissions``: a group whose ``who`` has an ``oauth`` entry
(``scope`` and the rules for the token's account, as ``who`` has) allows it when the
token carries that scope and its account passes the rules. A token matches only
``oauth`` entries: its scopes limit it, whatever its account may do otherwise.

Tokens are kept in the table ``oauth_token`` (as in ejabberd), with their expiry;
``oauth_list_tokens`` lists them, ``oauth_revoke_token`` deletes one. The default
lifetime of ``oauth_issue_token`` without a TTL is the top-level ``oauth_expire``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, delete, select
from sqlalchemy.engine import Connection

from .commands import CommandError
from .jid import JID, JIDError
from .storage import migration
from .tokens import token_urlsafe

if TYPE_CHECKING:
    from .server import Server

meta = MetaData()
oauth_token = Table(
    "oauth_token", meta,
    Column("token", String(191), primary_key=True),
    Column("jid", Text, nullable=False),
    Column("scope", Text, nullable=False),       # space-separated
    Column("expire", BigInteger, nullable=False),  # seconds since the epoch
)


@migration("oauth", 1, "oauth_token: REST API tokens (oauth_issue_token)")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[oauth_token])


HELP = {
    "oauth_issue_token": "oauth_issue_token JID TTL SCOPES: a token for the REST API "
                         "(Authorization: Bearer), valid TTL seconds, with SCOPES separated "
                         "by ; or spaces (e.g. ejabberd:admin): token, scopes, lifetime",
    "oauth_list_tokens": "oauth_list_tokens: the valid tokens: token, JID, scopes, seconds left",
    "oauth_revoke_token": "oauth_revoke_token TOKEN: delete a token",
}


def _scopes(text: str) -> list[str]:
    return [s for s in text.replace(";", " ").replace(",", " ").split() if s]


class OAuth:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def issue(self, jid: JID, ttl: int, scopes: list[str]) -> str:
        token = token_urlsafe(30)
        row = {"token": token, "jid": str(jid), "scope": " ".join(scopes),
               "expire": int(time.time()) + ttl}
        db = self.server.db
        assert db is not None
        await db.run(lambda conn: conn.execute(oauth_token.insert().values(**row)))
        return token

    async def lookup(self, token: str) -> Optional[tuple[JID, frozenset[str]]]:
        """The account and scopes of a valid token; None when unknown or expired."""
        db = self.server.db
        if db is None or not token or len(token) > 191:
            return None
        t = oauth_token
        row = await db.run(lambda conn: conn.execute(
            select(t.c.jid, t.c.scope, t.c.expire).where(t.c.token == token)).first())
        if row is None or int(row[2]) < time.time():
            return None
        try:
            return JID.parse(str(row[0])), frozenset(_scopes(str(row[1])))
        except JIDError:
            return None

    async def tokens(self) -> list[tuple[str, str, str, int]]:
        db = self.server.db
        assert db is not None
        t, now = oauth_token, int(time.time())

        def run(conn: Connection) -> list[tuple[str, str, str, int]]:
            conn.execute(delete(t).where(t.c.expire < now))   # expired ones go
            return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]) - now) for r in conn.execute(
                select(t.c.token, t.c.jid, t.c.scope, t.c.expire).order_by(t.c.expire))]
        return await db.run(run)

    async def revoke(self, token: str) -> bool:
        db = self.server.db
        assert db is not None
        t = oauth_token
        return bool(await db.run(lambda conn: conn.execute(
            delete(t).where(t.c.token == token)).rowcount))


def install(server: Server) -> None:
    oauth = server.oauth = OAuth(server)

    async def issue(jid: str, ttl: str, scopes: str) -> str:
        try:
            who = JID.parse(jid).bare
        except JIDError as e:
            raise CommandError(f"not a JID: {e}") from None
        if who.local is None or who.domain not in server.hosts:
            raise CommandError(f"not an account of this server: {jid}", "not_found")
        try:
            seconds = int(ttl) if ttl else int(server.config["oauth_expire"])
        except ValueError:
            seconds = 0
        if seconds <= 0:
            raise CommandError("TTL is a number of seconds, more than 0")
        wanted = _scopes(scopes)
        if not wanted:
            raise CommandError("name at least one scope (e.g. ejabberd:admin)")
        token = await oauth.issue(who, seconds, wanted)
        return f"{token}\t{' '.join(wanted)}\t{seconds}"

    async def list_tokens() -> str:
        return "\n".join(f"{tok}\t{jid}\t{scope}\t{left}"
                         for tok, jid, scope, left in await oauth.tokens())

    async def revoke(token: str) -> str:
        if not await oauth.revoke(token):
            raise CommandError("no such token", "not_found")
        return ""

    for name, fn in (("oauth_issue_token", issue), ("oauth_list_tokens", list_tokens),
                     ("oauth_revoke_token", revoke)):
        server.commands.register(name, fn, HELP[name])


def bearer(header: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer TOKEN`` header."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


__all__ = ["OAuth", "bearer", "install", "oauth_token"]
