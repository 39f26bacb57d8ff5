"""The web page of an invitation (mod_invites ``landing_page: auto``, XEP-0401 3.3):
``request_handlers: {/invites: mod_invites}`` on an ``ejabberd_http`` listener.

- ``GET /invites/TOKEN``: who invites, which app to install, a button that opens the
  ``xmpp:`` link in the app, and (where the invitation may create an account) a link to
  create the account here instead;
- ``GET /invites/TOKEN/register`` and ``POST``: the account, made in the browser with the
  same rules as XEP-0445 registration (mod_register's ``access`` and
  ``password_strength``, the name an account invitation is for); the invitation is used
  up and a contact invitation puts the two in each other's roster. Only over TLS or from
  the same machine (a reverse proxy): the password is in the form.

An unknown, used or expired token gets 404. The pages need no script nor anything from
another site; they ask browsers not to send the token on as a referrer, not to cache
them and not to frame them.
"""

from __future__ import annotations

import html
import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from ..datetimes import stamp
from ..http.server import HANDLERS
from ..jid import JID, JIDError
from ..stanza import StanzaError
from .invites import InvitesModule
from .invites_store import Invite
from .register import RegisterModule

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                      "form-action 'self'; frame-ancestors 'none'"}
APPS = (("Android", "Conversations", "https://conversations.im/"),
        ("iPhone and iPad", "Monal", "https://monal-im.org/"),
        ("Windows and Linux", "Gajim", "https://gajim.org/"),
        ("Linux", "Dino", "https://dino.im/"),
        ("macOS", "Monal", "https://monal-im.org/"))
STYLE = ("body{font-family:system-ui,sans-serif;max-width:34em;margin:2em auto;padding:0 1em;"
         "line-height:1.5;color:#222}a.button,button{display:inline-block;background:#1565c0;"
         "color:#fff;padding:.6em 1.2em;border:0;border-radius:.4em;text-decoration:none;"
         "font-size:1em}label{display:block;margin-top:.8em}input{font-size:1em;width:100%;"
         "padding:.4em;box-sizing:border-box}.error{color:#b00020}.small{font-size:.9em;"
         "color:#555}")

e = html.escape


def _page(title: str, body: str, status: int = 200, alternate: str = "") -> web.Response:
    link = f'<link rel="alternate" href="{e(alternate)}">' if alternate else ""
    text = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title>{link}<style>{STYLE}</style></head>"
            f"<body><h1>{e(title)}</h1>{body}</body></html>")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers=HEADERS)


def _gone() -> web.Response:
    return _page("Invitation not valid", "<p>This invitation does not exist, was used "
                 "already or has expired. Ask the person who sent it for a new one.</p>", 404)


def _private(request: web.Request) -> bool:
    """The password may travel: over TLS, or from this machine (a proxy in front)."""
    if request.secure:
        return True
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


class InvitePages:
    def __init__(self, server: Server, base: str) -> None:
        self.server = server
        self.base = base

    async def _find(self, token: str) -> tuple[Optional[InvitesModule], Optional[Invite]]:
        for host in self.server.hosts:
            mod = InvitesModule.of(self.server, host)
            if mod is not None:
                invite = await mod.store.find(token) if token else None
                if invite is None:
                    return None, None
                return InvitesModule.of(self.server, invite.host), invite
        return None, None

    def _registration(self, invite: Invite) -> Optional[RegisterModule]:
        return RegisterModule.of(self.server, invite.host)

    async def landing(self, request: web.Request) -> web.Response:
        mod, invite = await self._find(request.match_info["token"])
        if mod is None or invite is None:
            return _gone()
        uri = mod.uri(invite)
        if invite.inviter:
            title = f"{invite.inviter} invites you to chat"
            what = (f"<p>{e(invite.inviter)} uses {e(mod.site_name)} and would like to chat "
                    f"with you. Any XMPP app can do it: yours will ask to add them as a "
                    f"contact, and you see each other online from then on.</p>")
        else:
            who = f"{invite.username}@{invite.host}" if invite.username else invite.host
            title = f"You are invited to {mod.site_name}"
            what = (f"<p>This invitation makes you an account on {e(mod.site_name)}"
                    f"{' (' + e(who) + ')' if invite.username else ''}.</p>")
        apps = "".join(f'<li>{e(where)}: <a href="{e(url)}">{e(name)}</a></li>'
                       for where, name, url in APPS)
        body = (what + "<h2>1. Install an app</h2>"
                f"<p>If you have no XMPP app yet, install one:</p><ul>{apps}</ul>"
                "<h2>2. Open the invitation in it</h2>"
                f'<p><a class="button" href="{e(uri)}">Open the invitation</a></p>'
                f'<p class="small">Or copy this link into the app: <code>{e(uri)}</code></p>')
        if self._registration(invite) is not None:
            body += ("<h2>Or create the account here</h2><p>If your app cannot open the "
                     f'invitation, <a href="{e(self.base)}/{e(invite.token)}/register">'
                     f"create your account on this page</a>, then log in with the app.</p>")
        body += (f'<p class="small">Valid until '
                 f"{e(_when(invite.expires))}; it works once.</p>")
        return _page(title, body, alternate=uri)

    def _form(self, mod: InvitesModule, invite: Invite, error: str = "", name: str = "",
              status: int = 200) -> web.Response:
        fixed = invite.username
        value = fixed or name
        msg = f'<p class="error">{e(error)}</p>' if error else ""
        user = (f'<label>Account name<input name="username" value="{e(value)}" '
                f'{"readonly " if fixed else ""}required autocomplete="username"></label>'
                f'<p class="small">Your address will be NAME@{e(invite.host)}.</p>')
        body = (msg + f'<form method="post" action="{e(self.base)}/{e(invite.token)}/register">'
                + user +
                '<label>Password<input type="password" name="password" required '
                'autocomplete="new-password"></label>'
                '<label>Password again<input type="password" name="password2" required '
                'autocomplete="new-password"></label>'
                '<p><button type="submit">Create the account</button></p></form>')
        return _page(f"Create your account on {mod.site_name}", body, status)

    async def register_form(self, request: web.Request) -> web.Response:
        mod, invite = await self._find(request.match_info["token"])
        if mod is None or invite is None or self._registration(invite) is None:
            return _gone()
        if not _private(request):
            return _insecure()
        return self._form(mod, invite)

    async def register(self, request: web.Request) -> web.Response:
        mod, invite = await self._find(request.match_info["token"])
        reg = self._registration(invite) if invite is not None else None
        if mod is None or invite is None or reg is None:
            return _gone()
        if not _private(request):
            return _insecure()
        data = await request.post()
        name = str(data.get("username", "")).strip()
        password = str(data.get("password", ""))
        if not name or not password:
            return self._form(mod, invite, "Choose an account name and a password.", name, 400)
        if password != str(data.get("password2", "")):
            return self._form(mod, invite, "The two passwords differ.", name, 400)
        try:
            jid = JID(name, invite.host)
        except JIDError:
            return self._form(mod, invite, "That is not a valid account name.", name, 400)
        try:
            await reg.create_invited(jid, password, invite, request.remote or "")
        except StanzaError as err:
            if err.condition == "item-not-found":
                return _gone()
            return self._form(mod, invite, _reason(err), name,
                              409 if err.condition == "conflict" else 403)
        contact = (f"<p>{e(invite.inviter)} is in your contacts, and you in theirs.</p>"
                   if invite.inviter else "")
        return _page("Your account is ready",
                     f"<p>Your address is <strong>{e(str(jid.bare))}</strong>. Log in with "
                     f"it and your password in your XMPP app.</p>{contact}")


def _insecure() -> web.Response:
    return _page("Use https", "<p>The account's password must not travel in the clear: "
                 "open this page with https.</p>", 403)


def _reason(err: StanzaError) -> str:
    return {"conflict": "That name is taken; choose another.",
            "not-acceptable": "The password is too weak; choose a longer one.",
            "forbidden": "That name may not be registered here; choose another.",
            "not-allowed": "This invitation is for another account name.",
            }.get(err.condition, "The account could not be created.")


def _when(expires: int) -> str:
    return stamp(expires, millis=False).replace("T", " ").replace("Z", " UTC")


def add_pages(server: Server, listen: ListenConfig, path: str, app: Any) -> None:
    base = path.rstrip("/")
    pages = InvitePages(server, base)
    app.router.add_get(base + "/{token}", pages.landing)
    app.router.add_get(base + "/{token}/register", pages.register_form)
    app.router.add_post(base + "/{token}/register", pages.register)


HANDLERS["mod_invites"] = add_pages
