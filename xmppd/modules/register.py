"""mod_register: in-band registration and account management (XEP-0077).

- **Creating an account** before authentication, as Conversations, Gajim and Dino
  offer: the stream features announce ``<register/>`` inside TLS (the password is
  in the clear, as with PLAIN) to addresses ``ip_access`` allows; the client asks for the
  fields (username, password) and sends them. The new JID must pass ``access``,
  the address ``ip_access``, and one address registers at most one account per
  ``registration_timeout`` (ejabberd's defaults: ``all``, ``all``, 600 s; xmppd's
  default configuration allows loopback only), counted once for the whole cluster
  (Redis; every node and worker). A taken name is ``conflict``, and the address may
  try again at once.
- **Changing the password** of the account one is logged in to (``username`` and
  ``password`` in an iq set to the server, inside TLS): its SCRAM keys are replaced.
- **Invitations** (``mod_invites``, XEP-0445): a stream that showed a valid token
  registers whatever ``ip_access`` and the rate limit say (``access`` still decides
  which names may be taken); the token is
  used up, and an invitation for one account name allows that name only.
- **Weak passwords**: with ``password_strength`` above 0 (bits, as in ejabberd; 32 is
  its recommendation), a new account's or a changed password must have at least that
  entropy (:func:`entropy`), or the client gets ``not-acceptable``.
- **Deleting the account** one is logged in to (``<remove/>``, if ``access_remove``
  allows): the answer goes out, then the account and its data go, and its sessions
  end (``not-authorized``), as with ``xmppd ctl unregister``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Optional

from ..acl import v_access
from ..admin import account_deleted
from ..confval import v_int, v_timeout
from ..jid import JID, JIDError
from ..moduleapi import Module, Option, iq_handler
from ..stanza import StanzaError, StanzaEvent, error_reply, iq_result
from ..xml import Element

log = logging.getLogger(__name__)

NS = "jabber:iq:register"
QUERY = "{%s}query" % NS
FEATURE = "{http://jabber.org/features/iq-register}register"


def entropy(password: str) -> float:
    """Bits of entropy of a password as ejabberd's ``password_strength`` counts them:
    its length times log2 of the size of the character classes it uses (lower-case
    and upper-case letters 26 each, digits 10, other printable ASCII 33, anything
    else 128)."""
    classes: dict[str, int] = {}
    for ch in password:
        if "a" <= ch <= "z":
            classes["lower"] = 26
        elif "A" <= ch <= "Z":
            classes["upper"] = 26
        elif "0" <= ch <= "9":
            classes["digit"] = 10
        elif "!" <= ch <= "~":
            classes["punct"] = 33
        else:
            classes["other"] = 128
    return len(password) * math.log2(sum(classes.values())) if password else 0.0


def _text(q: Element, name: str) -> str:
    return (q.findtext("{%s}%s" % (NS, name)) or "").strip()


class RegisterModule(Module):
    name = "mod_register"
    features = (NS,)
    xeps = ("XEP-0077",)
    options = {
        "access": Option("all", v_access, "which new JIDs may be registered"),
        "ip_access": Option("all", v_access, "from which addresses accounts may be created"),
        "access_remove": Option("all", v_access, "who may delete their own account"),
        "registration_timeout": Option(600.0, v_timeout("second", allow_infinity=True),
                                       "one new account per address within this time"),
        "password_strength": Option(0, v_int(lo=0),
                                    "the least entropy of a new password, in bits (0: any)"),
    }

    def _check_strength(self, password: str) -> None:
        if entropy(password) < self.opts["password_strength"]:
            raise StanzaError("not-acceptable", text="The password is too weak")

    def setup(self) -> None:
        self.api.add_stream_feature("pre-auth", self._feature)
        self.api.hook("c2s/pre-auth-iq", self._pre_auth, host_only=False)

    def _ip_allowed(self, stream: Any) -> bool:
        return self.server.access.access(self.opts["ip_access"], None, stream.conn.peer_ip)

    def _feature(self, stream: Any) -> Optional[Element]:
        # passwords travel in the clear inside the stream: inside TLS only, as PLAIN
        return Element(FEATURE) if stream.conn.secure and self._ip_allowed(stream) else None

    # -- before authentication: creating an account -----------------------------------
    def _pre_auth(self, stream: Any, el: Element) -> Optional[Any]:
        q = el.find(QUERY)
        if stream.host != self.host or q is None:
            return None
        type_ = el.attrs.get("type")
        if type_ == "get":
            form = Element(QUERY, None, [
                Element("{%s}instructions" % NS, None,
                        ["Choose a user name and password for this server."]),
                Element("{%s}username" % NS), Element("{%s}password" % NS)])
            stream.send(iq_result(el, form))
            return True
        if type_ == "set":
            return self._create(stream, el, q)
        stream.send(error_reply(el, StanzaError("bad-request")))
        return True

    async def _create(self, stream: Any, el: Element, q: Element) -> None:
        try:
            await self._try_create(stream, q)
        except StanzaError as e:
            stream.send(error_reply(el, e))
            return
        stream.send(iq_result(el))

    def _invites(self) -> Any:
        from .invites import InvitesModule
        return InvitesModule.of(self.server, self.host)

    async def _try_create(self, stream: Any, q: Element) -> None:
        ip = stream.conn.peer_ip
        user, password = _text(q, "username"), _text(q, "password")
        invites = self._invites()
        invite = invites.invite_of(stream) if invites is not None else None
        if q.find("{%s}remove" % NS) is not None:
            raise StanzaError("bad-request", text="log in to delete an account")
        if not stream.conn.secure:
            raise StanzaError("not-allowed", text="start TLS first: the password is in the clear")
        if not user or not password:
            raise StanzaError("not-acceptable", text="a user name and a password")
        try:
            jid = JID(user, self.host)
        except JIDError:
            raise StanzaError("jid-malformed", text="not a valid user name") from None
        if invite is not None:
            try:
                await self.create_invited(jid, password, invite, ip)
            except StanzaError as e:
                if e.condition == "item-not-found":
                    stream.data.pop("invite", None)
                raise
            stream.data.pop("invite", None)
            return
        self._check_strength(password)
        access = self.server.access
        if not self._ip_allowed(stream) or not access.access(self.opts["access"], jid, ip):
            raise StanzaError("forbidden", text="registration is not allowed here")
        if invites is not None and await invites.reserved(jid.local or ""):
            raise StanzaError("conflict", text="that name is taken")
        # one new account per address and registration_timeout, counted once for the
        # whole cluster (all nodes and workers: the cluster backend's claim)
        backend = self.server.sessions.backend
        key = f"register:{self.host}:{ip}"
        if not await backend.claim(key, self.opts["registration_timeout"]):
            raise StanzaError("resource-constraint", "wait",
                              "one new account per address in %d s"
                              % self.opts["registration_timeout"])
        if not await self.server.accounts.create(self.host, jid.local or "", password):
            await backend.release(key)  # nothing was made: the address may try again
            raise StanzaError("conflict", text="that name is taken")
        log.info("registered %s from %s (XEP-0077)", jid, ip)

    async def create_invited(self, jid: JID, password: str, invite: Any, ip: str) -> None:
        """Make the account ``jid`` with an invitation (XEP-0445, or the invitation's web
        page); a :class:`StanzaError` says why not. Not ``ip_access`` nor the rate: the
        token vouches; ``access`` still decides which names may be taken."""
        invites = self._invites()
        assert invites is not None
        self._check_strength(password)
        if not self.server.access.access(self.opts["access"], jid, ip):
            raise StanzaError("forbidden", text="that name may not be registered")
        if invite.username and invite.username != jid.local:
            raise StanzaError("not-allowed", text=f"this invitation is for {invite.username}")
        if not invite.username and await invites.reserved(jid.local or ""):
            raise StanzaError("conflict", text="that name is taken")
        if not await invites.use(invite):
            raise StanzaError("item-not-found", text="the invitation was used already")
        if not await self.server.accounts.create(self.host, jid.local or "", password):
            await invites.give_back(invite)   # nothing was made: the token is good again
            raise StanzaError("conflict", text="that name is taken")
        log.info("registered %s with an invitation (XEP-0445) from %s", jid, ip)
        await invites.joined(invite, jid)

    # -- logged in: the password, or the account itself -------------------------------
    @iq_handler("get", NS, "query", dest=("host", "self"))
    def registered(self, ev: StanzaEvent) -> Element:
        return Element(QUERY, None, [Element("{%s}registered" % NS),
                                     Element("{%s}username" % NS, None, [ev.from_jid.local or ""])])

    @iq_handler("set", NS, "query", dest=("host", "self"))
    async def change(self, ev: StanzaEvent) -> None:
        q = ev.stanza.find(QUERY)
        assert q is not None
        user = ev.from_jid.bare
        if ev.from_jid.domain != self.host:
            raise StanzaError("forbidden")
        if q.find("{%s}remove" % NS) is not None:
            if not self.server.access.access(self.opts["access_remove"], user):
                raise StanzaError("forbidden", text="accounts are not deleted here")
            # the answer goes out with this turn's writes; then the account goes
            self.api.add_task(self._remove(user))
            return
        name, password = _text(q, "username"), _text(q, "password")
        if name and name.lower() != (user.local or ""):
            raise StanzaError("bad-request", text="only one's own password")
        if not password:
            raise StanzaError("not-acceptable", text="a new password")
        origin = ev.origin
        if origin is None or not origin.conn.secure:
            raise StanzaError("not-allowed", text="over TLS only: the password is in the clear")
        self._check_strength(password)
        await self.server.accounts.set_password(self.host, user.local or "", password)
        log.info("%s changed its password (XEP-0077)", user)

    async def _remove(self, user: JID) -> None:
        await asyncio.sleep(0.05)
        if await self.server.accounts.delete(self.host, user.local or ""):
            log.info("%s deleted its account (XEP-0077)", user)
            await account_deleted(self.server, user)


__all__ = ["RegisterModule", "entropy"]
