"""mod_http_api: the admin commands of ``xmppd ctl`` over HTTP, as ejabberd's REST API.

A request handler of an ``ejabberd_http`` listener (``/api: mod_http_api``).
``POST /api/COMMAND`` with a JSON object of named arguments (or ``GET`` with them
in the query) runs the command and answers JSON::

    curl -u admin@example.org:secret -d '{"user": "bob", "host": "example.org",
         "password": "s3cret"}' https://example.org:5443/api/register

The argument names are those of ``xmppd ctl help COMMAND`` in lower case, and
ejabberd's where they differ (``from``, ``newpass``, ``loglevel``, ``localserver``,
``server``). Answers are ejabberd's: a text, a number, a list, an object, or for
commands that only succeed or fail ``0`` (and ``1`` when ``check_account`` or
``check_password`` say no). Errors are ``{"status": "error", "code": N,
"message": TEXT}`` with HTTP status 400 (bad arguments, the command failed), 401
(wrong credentials), 403 (``api_permissions`` do not allow the call), 404 (no such
command or account), 409 (the account exists already).

The caller is whoever logs in with HTTP Basic (``user@host:password``; only over
TLS or from loopback, as PLAIN), or nobody; ``api_permissions``
(:mod:`xmppd.api_permissions`) decide from that and the address. Wrong passwords
count for mod_fail2ban as failed client logins do: back-off, then a ban of the
address. Requests a browser sends for a web page (an ``Origin`` header, or
``Sec-Fetch-Site`` other than ``none``) are refused: a page must not act with the
address of the browser's machine. Commands that act on every cluster node do so as
from ``xmppd ctl``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
from typing import TYPE_CHECKING, Any, Optional

from aiohttp import web

from ..api_permissions import allowed
from ..c2s.scram import check_password
from ..commands import CommandError
from ..jid import JID, JIDError
from ..moduleapi import Module
from ..oauth import bearer
from .policy import Peer
from .server import HANDLERS

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

FRONT = "mod_http_api"

# ejabberd's argument names, where xmppd's differ
ALIASES = {"frm": ("from",), "password": ("newpass",), "level": ("loglevel",),
           "localhost": ("localserver",), "host": ("server",)}

# how a command's text answer becomes JSON (others: the text itself)
LISTS = frozenset({"registered_users", "connected_users", "user_resources", "registered_vhosts",
                   "muc_online_rooms", "muc_online_rooms_node", "list_cluster",
                   "get_user_rooms", "srg_list", "srg_get_members"})
NUMBERS = frozenset({"connected_users_number", "num_resources", "stats",
                     "get_room_occupants_number", "incoming_s2s_number", "outgoing_s2s_number",
                     "get_offline_count", "expire_invite_tokens",
                     "cleanup_expired_invite_tokens"})
RESCODES = frozenset({"unregister", "change_password", "check_account", "check_password",
                      "kick_session", "send_message", "send_stanza", "set_loglevel", "stop",
                      "add_rosteritem", "delete_rosteritem", "set_load", "create_room",
                      "create_room_with_opts", "destroy_room", "change_room_option",
                      "set_room_affiliation", "srg_create", "srg_delete", "srg_user_add",
                      "srg_user_del", "ban_account", "set_vcard", "set_vcard2",
                      "set_nickname", "delete_old_messages", "delete_old_push_sessions",
                      "oauth_revoke_token"})
CHECKS = frozenset({"check_account", "check_password"})  # "no" is an answer: 1
ROWS = {"get_roster": ("jid", "nick", "subscription", "groups"),
        "get_room_occupants": ("jid", "nick", "role"),
        "get_room_options": ("name", "value"),
        "get_room_affiliations": ("username", "domain", "affiliation", "reason"),
        "srg_get_info": ("key", "value"),
        "connected_users_info": ("jid", "connection", "ip", "port", "priority", "node",
                                 "uptime", "status", "resource", "statustext"),
        "oauth_list_tokens": ("token", "jid", "scope", "expires_in"),
        "list_invites": ("token", "inviter", "account_name", "expires", "token_uri",
                         "landing_page"),
        "user_sessions_info": ("connection", "ip", "port", "priority", "node", "uptime",
                               "status", "resource", "statustext")}
OBJECTS = {"get_last": ("timestamp", "status"), "get_presence": ("jid", "show", "status"),
           "oauth_issue_token": ("token", "scopes", "expires_in"),
           "generate_invite": ("invite_uri", "landing_page"),
           "generate_invite_with_username": ("invite_uri", "landing_page")}
HIDDEN = frozenset({"password", "newpass"})


class ModHttpApi(Module):
    """The REST API's module entry (ejabberd lists it under ``modules``); the
    listener's ``/api: mod_http_api`` request handler serves it."""

    name = "mod_http_api"


def error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"status": "error", "code": code, "message": message},
                             status=status)


def bind_args(fn: Any, given: dict[str, Any]) -> list[str]:
    """The command's positional arguments from the request's named ones."""
    left = dict(given)
    args = []
    for name in inspect.signature(fn).parameters:
        for key in (name, *ALIASES.get(name, ())):
            if key in left:
                value = left.pop(key)
                break
        else:
            raise CommandError(f"missing argument: {name}")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ";".join(value)  # roster groups
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)  # room options: [{"name": ..., "value": ...}]
        elif not isinstance(value, (str, int, float)):
            raise CommandError(f"Argument {name} is not a text or a number")
        args.append(str(value))
    if left:
        raise CommandError("unknown arguments: %s" % ", ".join(sorted(left)))
    return args


def result(command: str, text: str) -> Any:
    """ejabberd's JSON for a command's text answer."""
    lines = text.splitlines()
    if command in LISTS:
        return lines
    if command in NUMBERS:
        try:
            return int(text.strip() or 0)
        except ValueError:
            return text
    if command in RESCODES:
        return 0
    if command in ROWS:
        fields = ROWS[command]
        rows: list[dict[str, Any]] = [dict(zip(fields, line.split("\t"), strict=False))
                                      for line in lines]
        if "groups" in fields:
            for row in rows:
                row["groups"] = [g for g in row.get("groups", "").split(";") if g]
        return rows
    if command in OBJECTS:
        return dict(zip(OBJECTS[command], text.split("\t"), strict=False))
    return text


async def _caller(server: Server, peer: Peer, request: web.Request
                  ) -> tuple[Optional[JID], bool, Optional[frozenset[str]]]:
    """Who logs in with HTTP Basic, or with an OAuth token (``Bearer``): (JID or None,
    credentials good, the token's scopes or None). Failures count for mod_fail2ban as
    failed client logins do (back-off, then a ban of the address)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None, True, None
    token = bearer(header)
    if token is not None:
        jid, scopes = await _token(server, peer, token)
        return jid, jid is not None, scopes
    jid, good = await _basic(server, peer, header)
    return jid, good, None


async def _token(server: Server, peer: Peer, token: str
                 ) -> tuple[Optional[JID], Optional[frozenset[str]]]:
    hooks = server.hooks
    if not peer.may_login or hooks.fire("auth/banned", peer.ip) is not None:
        return None, None
    found = await server.oauth.lookup(token)
    if found is None:
        hooks.fire_all("c2s/auth-failed", next(iter(server.hosts)), peer.ip,
                       "not-authorized", "")
        return None, None
    return found


async def _basic(server: Server, peer: Peer, header: str) -> tuple[Optional[JID], bool]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not peer.may_login:
        return None, False
    try:
        name, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        jid = JID.parse(name).bare
    except (binascii.Error, UnicodeDecodeError, JIDError):
        return None, False
    if jid.local is None or jid.domain not in server.hosts:
        return None, False
    hooks = server.hooks
    if hooks.fire("auth/banned", peer.ip) is not None:
        return None, False
    delays = hooks.fire_all("c2s/auth-delay", jid.domain, peer.ip, jid.local)
    if delays:
        await asyncio.sleep(max(delays))
    creds = await server.accounts.get(jid.domain, jid.local)
    ok = creds is not None and await asyncio.get_running_loop().run_in_executor(
        None, check_password, password, creds.sha256, "sha256")
    if not ok:
        hooks.fire_all("c2s/auth-failed", jid.domain, peer.ip, "not-authorized", jid.local)
        return None, False
    return jid, True


def _from_a_web_page(request: web.Request) -> bool:
    """A browser sent it for another site's page (cross-site request forgery: the page
    would act with the browser's address, loopback for somebody on the server)."""
    if "Origin" in request.headers:
        return True
    return request.headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin")


async def _arguments(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    body = await request.read()
    if not body.strip():
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def add_api(server: Server, listen: ListenConfig, path: str, app: web.Application) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=200, headers={"Allow": "GET, POST, OPTIONS"})
        if request.method not in ("GET", "POST"):
            return error(405, 40, "Use POST (or GET) to call a command.")
        if _from_a_web_page(request):
            return error(403, 32, "Requests from web pages are refused: call the API from a "
                         "script or a server.")
        name = request.match_info["command"]
        try:
            cmd = server.commands.get(name)
        except CommandError:
            return error(404, 44, "Command not found.")
        peer = Peer(server, listen, request)
        jid, good, scopes = await _caller(server, peer, request)
        if not good:
            return error(401, 10, "You are not authorized to call this command.")
        if not allowed(server.config["api_permissions"], server.access, FRONT, name, jid,
                       peer.ip, scopes):
            return error(403, 32, "AccessRules: Account does not have the right to perform "
                         "the operation.")
        try:
            given = await _arguments(request)
        except (ValueError, RecursionError):
            return error(400, 40, "Invalid JSON input: a JSON object of named arguments")
        log.info("API call %s %s from %s%s", name,
                 sorted(k for k in given if k not in HIDDEN), peer.ip,
                 f" as {jid}" if jid is not None else "")
        try:
            args = bind_args(cmd.fn, given)
            text = await server.cluster_commands.call(name, args)
        except CommandError as e:
            if name in CHECKS:
                return web.json_response(1)
            status = {"conflict": 409, "not_found": 404}.get(e.kind or "", 400)
            return error(status, 10, str(e))
        return web.json_response(result(name, "" if text is None else str(text)))

    base = path.rstrip("/")
    app.router.add_route("*", base + "/{command}", handle)
    app.router.add_route("*", base + "/{command}/{version:v[0-9]+}", handle)


HANDLERS[FRONT] = add_api
