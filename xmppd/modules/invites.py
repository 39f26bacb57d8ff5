"""mod_invites: invitations (XEP-0401 easy onboarding, XEP-0445 pre-authenticated
in-band registration, XEP-0379 mutual subscription), as Prosody's mod_invites and
ejabberd's mod_invites offer them.

- A user makes a **contact invitation** (ad-hoc command ``urn:xmpp:invite#invite``): a
  link ``xmpp:alice@example.org?roster;preauth=TOKEN;ibr=y``. A friend without an
  account opens it in a client such as Conversations, which creates an account on this
  server with the token, whatever the registration rules (``mod_register``'s
  ``access``, ``ip_access`` and rate limit); the two then find each other in their
  rosters, subscribed both ways.
- An administrator makes an **account invitation** (ad-hoc command
  ``urn:xmpp:invite#create-account`` for ``access_create_account``, or ``xmppd ctl
  generate_invite HOST``): ``xmpp:example.org?register;preauth=TOKEN`` (with a user
  name: ``xmpp:bob@example.org?register;preauth=TOKEN``, for that name only).

Somebody who has an account already (here or on another server) opens the contact
link too: the client sends the subscription request with the token (``<presence
type='subscribe'><preauth xmlns='urn:xmpp:pars:0' token='TOKEN'/></presence>``). A
valid token of the user it is addressed to approves it at once, and the user subscribes
back (XEP-0379); the token is used up. Without a valid token the request waits for the
user as any other.

The client sees the stream feature ``<register xmlns='urn:xmpp:invite'/>`` (inside
TLS), sends ``<preauth xmlns='urn:xmpp:pars:0' token='TOKEN'/>`` in an iq before
logging in, then registers as XEP-0077 says. A token is good for one account and
expires after ``token_expire_seconds``; ``max_invites`` bounds an account's valid
contact invitations. ``list_invites HOST`` shows the valid tokens. An account name an
invitation is for stays reserved for it until it expires.

With ``landing_page`` (``auto``: this server's own page, ``request_handlers: {/invites:
mod_invites}`` on an ``ejabberd_http`` listener; or a URL template for another site),
every invitation also has an https link for people without an XMPP app yet: the page
(:mod:`invites_page`) says who invites them, which apps to install and opens the
``xmpp:`` link, or creates the account in the browser.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Optional

from ..acl import v_access
from ..commands import CommandError
from ..confval import INFINITY, ConfigError, v_int, v_pos_int_or_infinity, v_str
from ..dataforms import add_field
from ..datetimes import stamp
from ..jid import JID, JIDError, nodeprep
from ..moduleapi import Module, Option
from ..stanza import StanzaError, StanzaEvent, error_reply, iq_result
from ..tokens import token_urlsafe
from ..xml import Element
from .adhoc import AdHoc, Ask, Command, Done, Step, Values, form
from .invites_store import Invite, InviteStore
from .register import RegisterModule

log = logging.getLogger(__name__)

INVITE_NS = "urn:xmpp:invite"
PRESENCE = "{jabber:client}presence"
PARS_NS = "urn:xmpp:pars:0"
PREAUTH = "{%s}preauth" % PARS_NS
INVITATION_FORM = INVITE_NS + "#invitation"
# ejabberd's landing_page template: {{ host }}, {{ invite.token }}, {{ invite.uri }},
# each with the filter |strip_protocol (the URI without "xmpp:")
TEMPLATE_VAR = re.compile(r"\{\{\s*([\w.]+)\s*(?:\|\s*(\w+)\s*)?\}\}")
TEMPLATE_NAMES = ("host", "invite.token", "invite.uri")


def v_landing_page(value: Any, path: str) -> str:
    """``none``, ``auto`` or a URL template of ejabberd's form."""
    text = v_str(value, path)
    if text in ("none", "auto"):
        return text
    if not text.startswith(("https://", "http://")):
        raise ConfigError(path, "none, auto or an http(s) URL template", value)
    for m in TEMPLATE_VAR.finditer(text):
        if m.group(1) not in TEMPLATE_NAMES or m.group(2) not in (None, "strip_protocol"):
            raise ConfigError(path, "a template of {{ host }}, {{ invite.token }} and "
                              "{{ invite.uri }} (filter: |strip_protocol)", m.group(0))
    return text


def fill_template(template: str, host: str, token: str, uri: str) -> str:
    values = {"host": host, "invite.token": token, "invite.uri": uri}

    def one(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        return value.split(":", 1)[1] if m.group(2) and ":" in value else value
    return TEMPLATE_VAR.sub(one, template)


class InvitesModule(Module):
    name = "mod_invites"
    xeps = ("XEP-0401", "XEP-0445", "XEP-0379")
    depends = (AdHoc,)
    stores = ("xmppd.modules.invites_store",)
    options = {
        "token_expire_seconds": Option(5 * 86400, v_int(1), "how long an invitation is good"),
        "access_create_account": Option("none", v_access,
                                        "who may make invitations to create an account"),
        "max_invites": Option(INFINITY, v_pos_int_or_infinity,
                              "valid contact invitations an account may have at once"),
        "landing_page": Option("none", v_landing_page,
                               "an https page for each invitation: none, auto (this "
                               "server's /invites handler) or a URL template"),
        "site_name": Option("", v_str, "the name the landing page shows (the host's)"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = InviteStore(self.server.db)
        self.api.add_stream_feature("pre-auth", self._feature)
        self.api.hook("c2s/pre-auth-iq", self._preauth, host_only=False)
        # before mod_roster's subscription handling (priority 0)
        self.api.hook("presence/bare", self._subscribe_with_token, priority=10)
        adhoc = AdHoc.of(self.server, self.host)
        assert adhoc is not None
        self._adhoc = adhoc
        adhoc.add(Command(INVITE_NS + "#invite", "Invite someone", self._local, self._invite))
        adhoc.add(Command(INVITE_NS + "#create-account", "Create an account invitation",
                          self._may_create, self._create_account))
        self.api.add_command("generate_invite", self._cmd_generate,
                             "generate_invite HOST: a link to create one account on HOST "
                             "(and, with landing_page, its web page)")
        self.api.add_command("generate_invite_with_username", self._cmd_generate_named,
                             "generate_invite_with_username USERNAME HOST: a link to create "
                             "the account USERNAME@HOST")
        self.api.add_command("list_invites", self._cmd_list,
                             "list_invites HOST: the valid invitations: token, inviter, "
                             "account name, expiry, link, web page")
        self.api.add_command("expire_invite_tokens", self._cmd_expire,
                             "expire_invite_tokens USERNAME HOST: end the account's valid "
                             "invitations; how many")
        self.api.add_command("cleanup_expired_invite_tokens", self._cmd_cleanup,
                             "cleanup_expired_invite_tokens: delete the expired invitations "
                             "of every host; how many")
        if self.opts["landing_page"] == "auto" and self._page_base() is None:
            self.server.config_warning(
                "modules.mod_invites.landing_page: auto, but no ejabberd_http listener "
                "has a request handler mod_invites; invitations have no web page")

    def stop(self) -> None:
        for node in (INVITE_NS + "#invite", INVITE_NS + "#create-account"):
            self._adhoc.remove(node)

    # -- before login: the token ---------------------------------------------------------
    def _feature(self, stream: Any) -> Optional[Element]:
        return Element("{%s}register" % INVITE_NS) if stream.conn.secure else None

    def _preauth(self, stream: Any, el: Element) -> Optional[Any]:
        pre = el.find(PREAUTH)
        if stream.host != self.host or pre is None:
            return None
        return self._check(stream, el, pre.attrs.get("token", ""))

    async def _check(self, stream: Any, el: Element, token: str) -> None:
        invite = await self.store.get(self.host, token) if token else None
        if invite is None or el.attrs.get("type") != "set":
            stream.send(error_reply(el, StanzaError(
                "item-not-found", text="no such invitation, or it expired")))
            return
        stream.data["invite"] = invite
        stream.send(iq_result(el))

    def invite_of(self, stream: Any) -> Optional[Invite]:
        """The invitation a stream showed (mod_register lets it register)."""
        invite = stream.data.get("invite")
        return invite if isinstance(invite, Invite) and invite.host == self.host else None

    async def reserved(self, username: str) -> bool:
        """A valid invitation keeps the account name for its invitee (XEP-0401 5.1)."""
        return await self.store.reserved(self.host, username)

    async def use(self, invite: Invite) -> bool:
        """Use ``invite`` up for an account about to be made; False if it is gone."""
        return await self.store.use(invite.token)

    async def give_back(self, invite: Invite) -> None:
        """The account was not made after all: the invitation is good again."""
        await self.store.add(invite)

    async def joined(self, invite: Invite, jid: JID) -> None:
        """An account was made with ``invite``: the inviter and the new account find
        each other in their rosters (XEP-0379: subscribed both ways)."""
        if not invite.inviter:
            return
        log.info("%s joined with an invitation of %s", jid, invite.inviter)
        inviter = JID.parse(invite.inviter)
        if "add_rosteritem" not in self.server.commands.names():
            return
        for a, b in ((jid, inviter), (inviter, jid)):
            try:
                await self.server.commands.call("add_rosteritem", [
                    a.local or "", a.domain, b.local or "", b.domain, "", "", "both"])
            except CommandError as e:
                log.info("invitation of %s: roster of %s: %s", inviter, a, e)

    # -- XEP-0379: a subscription request with the token ------------------------------
    def _subscribe_with_token(self, ev: StanzaEvent) -> Optional[bool]:
        pre = ev.stanza.find(PREAUTH) if ev.type == "subscribe" else None
        if pre is None:
            return None
        self.api.add_task(self._approve(ev, pre.attrs.get("token", "")))
        return True

    async def _approve(self, ev: StanzaEvent, token: str) -> None:
        owner, contact = ev.to_jid.bare, ev.from_jid.bare
        invite = await self.store.get(self.host, token) if token else None
        plain = ev.stanza.copy()
        plain.remove_all(PREAUTH)   # (the token is for this server, not for the user)
        subs = getattr(self._roster(), "subscriptions", None)
        if invite is not None and invite.inviter == str(owner) and subs is not None and \
                await self.store.use(invite.token):
            log.info("%s subscribed to %s with an invitation (XEP-0379)", contact, owner)
            # the owner approves in advance (RFC 6121 3.4), then the request arrives and
            # is answered at once; and the owner asks back
            for kind in ("subscribed", "subscribe"):
                out = Element(PRESENCE, {"type": kind, "to": str(contact), "from": str(owner)})
                subs.outgoing(StanzaEvent(self.server, out, None, owner, contact, "presence",
                                          kind, self.host))
                if kind == "subscribed":
                    await self._deliver(ev, plain, subs)
            return
        await self._deliver(ev, plain, subs)   # an ordinary request

    async def _deliver(self, ev: StanzaEvent, plain: Element, subs: Any) -> None:
        if subs is None:
            return
        subs.incoming(StanzaEvent(self.server, plain, ev.origin, ev.from_jid, ev.to_jid,
                                  ev.kind, ev.type, ev.host))
        roster = self._roster()
        if roster is not None:
            await roster.cache.run(ev.to_jid.bare, lambda r: None)  # (the change is done)

    def _roster(self) -> Any:
        from ..presence.roster import RosterModule
        return RosterModule.of(self.server, self.host)

    # -- making invitations ---------------------------------------------------------------
    async def make(self, inviter: str = "", username: str = "") -> Invite:
        invite = Invite(token_urlsafe(18), self.host, inviter, username,
                        int(time.time()) + int(self.opts["token_expire_seconds"]))
        await self.store.add(invite)
        return invite

    def uri(self, invite: Invite) -> str:
        if invite.inviter:
            # ibr=y: the invitee may create an account here (XEP-0401 3.1: not without
            # in-band registration)
            ibr = ";ibr=y" if self._registration() else ""
            return f"xmpp:{invite.inviter}?roster;preauth={invite.token}{ibr}"
        who = f"{invite.username}@{invite.host}" if invite.username else invite.host
        return f"xmpp:{who}?register;preauth={invite.token}"

    def _registration(self) -> bool:
        return RegisterModule.of(self.server, self.host) is not None

    def _page_base(self) -> Optional[str]:
        """The URL of this server's landing pages (``landing_page: auto``): the first
        ``ejabberd_http`` listener with a ``mod_invites`` handler, TLS ones first."""
        found = sorted(((not lc.tls, lc.port, path.rstrip("/"))
                        for lc in self.server.config.listen
                        for path, handler in lc.request_handlers.items()
                        if handler == "mod_invites"))
        if not found:
            return None
        plain, port, path = found[0]
        scheme = "http" if plain else "https"
        default = 80 if plain else 443
        return f"{scheme}://{self.host}{'' if port == default else f':{port}'}{path}"

    def landing_url(self, invite: Invite) -> str:
        """The invitation's web page ("" without ``landing_page``)."""
        page = self.opts["landing_page"]
        if page == "none":
            return ""
        if page == "auto":
            base = self._page_base()
            return f"{base}/{invite.token}" if base else ""
        return fill_template(page, self.host, invite.token, self.uri(invite))

    @property
    def site_name(self) -> str:
        return str(self.opts["site_name"] or self.host)

    def _local(self, jid: JID) -> bool:
        return jid.domain == self.host and jid.local is not None

    def _may_create(self, jid: JID) -> bool:
        return self._local(jid) and self.server.access.access(
            self.opts["access_create_account"], jid.bare)

    def _result(self, invite: Invite) -> Done:
        x = form("Invitation", "", INVITATION_FORM, "result")
        add_field(x, "uri", "text-single", "Invitation link", [self.uri(invite)])
        landing = self.landing_url(invite)
        if landing:
            add_field(x, "landing-url", "text-single", "Invitation web page", [landing])
        add_field(x, "expire", "text-single", "Valid until", [stamp(invite.expires,
                                                                     millis=False)])
        return Done("Send this link to the person you invite", form=x)

    async def _invite(self, requester: JID, values: Values) -> Step:
        mine = await self.store.count_by(self.host, str(requester.bare))
        if mine >= self.opts["max_invites"]:
            raise ValueError("you have as many open invitations as you may")
        return self._result(await self.make(inviter=str(requester.bare)))

    async def _create_account(self, requester: JID, values: Values) -> Step:
        if values is None:
            x = form("Create an account invitation",
                     "Leave the name empty to let the invitee choose it.", INVITE_NS)
            add_field(x, "username", "text-single", "Account name (optional)", [])
            return Ask(x)
        name = (values.get("username") or [""])[0].strip()
        return self._result(await self.make(username=self._name(name)))

    @staticmethod
    def _name(name: str) -> str:
        if not name:
            return ""
        try:
            return nodeprep(name)
        except JIDError:
            raise ValueError(f"not a valid account name: {name!r}") from None

    # -- commands -------------------------------------------------------------------------
    def _mine(self, host: str) -> InvitesModule:
        found = InvitesModule.of(self.server, host.lower())
        if found is None:
            raise CommandError(f"no mod_invites on host {host!r}", "not_found")
        return found

    async def _cmd_generate(self, host: str) -> str:
        m = self._mine(host)
        return m._links(await m.make())

    async def _cmd_generate_named(self, username: str, host: str) -> str:
        m = self._mine(host)
        try:
            name = self._name(username.strip())
        except ValueError as e:
            raise CommandError(str(e)) from None
        if not name:
            raise CommandError("an account name")
        if await self.server.accounts.get(m.host, name) is not None or \
                await m.reserved(name):
            raise CommandError(f"{name}@{m.host} is taken", "conflict")
        return m._links(await m.make(username=name))

    def _links(self, invite: Invite) -> str:
        """A command's answer: the link, and its web page if there is one."""
        return "\t".join(filter(None, (self.uri(invite), self.landing_url(invite))))

    async def _cmd_list(self, host: str) -> str:
        m = self._mine(host)
        return "\n".join("\t".join((i.token, i.inviter, i.username,
                                     stamp(i.expires, millis=False), m.uri(i),
                                     m.landing_url(i)))
                         for i in await m.store.valid(m.host))

    async def _cmd_expire(self, username: str, host: str) -> str:
        m = self._mine(host)
        return str(await m.store.expire_by(m.host, f"{username.lower()}@{m.host}"))

    async def _cmd_cleanup(self) -> str:
        return str(await self.store.cleanup())


__all__ = ["InvitesModule", "Invite"]
