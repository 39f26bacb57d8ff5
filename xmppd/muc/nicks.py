"""Registered nicknames (XEP-0045 7.10, as ejabberd's mod_muc does it: with the service).

A user registers a nickname with the MUC service (``jabber:iq:register`` to
``conference.HOST``: a form with the field ``nick``, ``muc#register_roomnick`` taken
too); from then on nobody else may use it in any room of the service (``conflict``,
"that nickname is registered by another person"). An empty nickname, or ``<remove/>``,
gives it back. The administrator does the same with ``muc_register_nick NICK JID
SERVICE`` and ``muc_unregister_nick JID SERVICE``.

Nicknames are kept in memory (read at start; a join looks one up) and stored in the
table ``muc_nicks``; a change on one cluster node reaches the others (cluster event
``muc_nicks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, delete, select
from sqlalchemy.engine import Connection

from ..commands import CommandError
from ..dataforms import DATA, X, add_field, form_values
from ..jid import JID, JIDError
from ..stanza import StanzaError, StanzaEvent
from ..storage import migration
from ..xml import Element

if TYPE_CHECKING:
    from .service import MucService

NS = "jabber:iq:register"
QUERY = "{%s}query" % NS
EVENT = "muc_nicks"

meta = MetaData()
muc_nicks = Table(
    "muc_nicks", meta,
    Column("service", String(255), nullable=False),
    Column("jid", String(3071), nullable=False),   # a bare JID
    Column("nick", String(1023), nullable=False),
    PrimaryKeyConstraint("service", "jid"),
)


@migration("muc_nicks", 1, "muc_nicks: nicknames registered with a MUC service")
def _v1(conn: Connection) -> None:
    meta.create_all(conn, tables=[muc_nicks])


class Nicks:
    """One service's registered nicknames."""

    def __init__(self, muc: MucService) -> None:
        self.muc = muc
        self.by_nick: dict[str, str] = {}  # nick -> bare JID
        self.by_jid: dict[str, str] = {}   # bare JID -> nick

    async def load(self) -> None:
        service = self.muc.domain
        db = self.muc.server.db
        assert db is not None
        rows = await db.run(lambda conn: list(conn.execute(
            select(muc_nicks.c.jid, muc_nicks.c.nick).where(muc_nicks.c.service == service))))
        self.by_jid = {str(r[0]): str(r[1]) for r in rows}
        self.by_nick = {n: j for j, n in self.by_jid.items()}

    def owner(self, nick: str) -> Optional[str]:
        """Who registered ``nick`` (a bare JID), if anybody did."""
        return self.by_nick.get(nick)

    async def set(self, user: str, nick: str) -> None:
        """Register ``nick`` for ``user`` (the bare JID); an empty one unregisters."""
        if nick:
            taken = self.by_nick.get(nick)
            if taken is not None and taken != user:
                raise StanzaError("conflict", "cancel",
                                  "that nickname is registered by another person")
        service = self.muc.domain

        def run(conn: Connection) -> None:
            conn.execute(delete(muc_nicks).where(muc_nicks.c.service == service,
                                                 muc_nicks.c.jid == user))
            if nick:
                conn.execute(muc_nicks.insert().values(service=service, jid=user, nick=nick))
        db = self.muc.server.db
        assert db is not None
        await db.run(run)
        old = self.by_jid.pop(user, None)
        if old is not None:
            self.by_nick.pop(old, None)
        if nick:
            self.by_jid[user] = nick
            self.by_nick[nick] = user
        self.muc.server.cluster_event(EVENT, service)  # (the others read them again)

    # -- the protocol ------------------------------------------------------------------
    def form(self, ev: StanzaEvent) -> Element:
        """The registration form (iq get), with the nickname the user has."""
        mine = self.by_jid.get(str(ev.from_jid.bare), "")
        q = Element(QUERY)
        if mine:
            q.add("{%s}registered" % NS)
        q.add("{%s}instructions" % NS, None,
              "Register a nickname: nobody else may use it in the rooms of this service")
        x = q.add(X, {"type": "form"})
        x.add("{%s}title" % DATA, None, f"Nickname registration at {self.muc.domain}")
        add_field(x, "FORM_TYPE", "hidden", "", ["http://jabber.org/protocol/muc#register"])
        add_field(x, "nick", "text-single", "Nickname", [mine])
        return q

    async def submit(self, ev: StanzaEvent) -> None:
        """A registration (iq set): a form, ``<nick/>``, or ``<remove/>``."""
        q = ev.stanza.first_child()
        assert q is not None
        user = str(ev.from_jid.bare)
        if q.find("{%s}remove" % NS) is not None:
            nick = ""
        else:
            x = q.find(X)
            if x is not None:
                values = form_values(x)
                got = values.get("nick") or values.get("muc#register_roomnick") or [""]
                nick = (got[0] if got else "") or ""
            else:
                nick = q.findtext("{%s}nick" % NS) or ""
            nick = nick.strip()
            if not nick:
                raise StanzaError("not-acceptable", "modify", "a nickname is needed")
        if len(nick) > 1023:
            raise StanzaError("not-acceptable", "modify", "that nickname is too long")
        await self.set(user, nick)

    # -- the commands ------------------------------------------------------------------
    @staticmethod
    def bare(jid: str) -> str:
        try:
            return str(JID.parse(jid).bare)
        except JIDError as e:
            raise CommandError(f"{jid!r}: {e}") from None

    async def command_set(self, user: str, nick: str) -> str:
        try:
            await self.set(self.bare(user), nick)
        except StanzaError as e:
            raise CommandError(e.text or e.condition, "conflict") from None
        return ""
