"""ejabberdctl's session and account commands of mod_admin_extra that look into
sessions: ``connected_users_info``, ``user_sessions_info``, ``get_presence`` and
``ban_account``. The first three ask every cluster node for its own sessions (a session's
address, connection and presence are known only where it is connected)."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from .commands import CommandError, all_lines
from .jid import JID, JIDError
from .storage.accounts import AccountError

if TYPE_CHECKING:
    from .server import Server

SHOW = "{jabber:client}show"
STATUS = "{jabber:client}status"
SHOWS = ("away", "chat", "dnd", "xa")
NOBODY = -1000  # below any priority (-128 at least): no available session on that node

HELP = {
    "connected_users_info": "connected_users_info: a line per session of the cluster: JID, "
                            "connection, address, port, priority, node, uptime (s), status, "
                            "resource, status text",
    "user_sessions_info": "user_sessions_info USER HOST: a line per session of the user: "
                          "connection, address, port, priority, node, uptime (s), status, "
                          "resource, status text",
    "get_presence": "get_presence USER HOST: the JID, show (available, away, chat, dnd, xa "
                    "or unavailable) and status text of the user's session of highest "
                    "priority",
    "ban_account": "ban_account USER HOST REASON: end the user's sessions and set a random "
                   "password (change_password lifts the ban)",
}


def _connection(s: Any) -> str:
    """ejabberd's names: c2s, c2s_tls, websocket, http_bind."""
    module = type(s.conn).__module__
    if module.endswith("websocket"):
        return "websocket"
    if module.endswith("bosh"):
        return "http_bind"
    return "c2s_tls" if getattr(s.conn, "secure", False) else "c2s"


def _port(s: Any) -> str:
    transport = getattr(s.conn, "transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[1]) if peer else ""


def _show(s: Any) -> tuple[str, str]:
    """The session's show and status text, from its last broadcast presence."""
    p = s.presence
    if not s.available or p is None:
        return "unavailable", ""
    show = p.findtext(SHOW) or ""
    return (show if show in SHOWS else "available"), p.findtext(STATUS) or ""


def _info(s: Any) -> list[str]:
    show, text = _show(s)
    return [_connection(s), getattr(s.conn, "peer_ip", "") or "", _port(s), str(s.priority),
            s.node, str(int(time.monotonic() - s.created)), show, s.jid.resource or "",
            text.replace("\t", " ").replace("\n", " ")]


def _best(answers: dict[str, str]) -> str:
    """The nodes' best sessions: the one of highest priority (then the newest line)."""
    lines = [line.split("\t") for out in answers.values() for line in out.splitlines()]
    lines = [parts for parts in lines if len(parts) == 4]
    if not lines:
        return ""
    best = max(lines, key=lambda parts: int(parts[0]))
    return "\t".join(best[1:])


def install(server: Server) -> None:
    cmds = server.commands

    def bare(user: str, host: str) -> JID:
        try:
            jid = JID(user, host)
        except JIDError as e:
            raise CommandError(str(e)) from None
        if jid.domain not in server.hosts:
            raise CommandError(f"unknown host {host}", "not_found")
        return jid

    def connected_users_info() -> str:
        return "\n".join("\t".join([str(s.jid)] + _info(s)) for s in server.sessions.all_local()
                         if s.jid is not None)

    def user_sessions_info(user: str, host: str) -> str:
        return "\n".join("\t".join(_info(s))
                         for s in server.sessions.local_resources(bare(user, host)))

    def get_presence(user: str, host: str) -> str:
        """This node's best session as 'priority, JID, show, status'; the merge picks
        the best of all nodes (none available: the bare JID, unavailable)."""
        jid = bare(user, host)
        best = None
        for s in server.sessions.local_resources(jid):
            if s.available and (best is None or s.priority > best.priority):
                best = s
        if best is None:
            line = f"{NOBODY}\t{jid}\tunavailable\t"
        else:
            show, text = _show(best)
            line = "\t".join((str(best.priority), str(best.jid), show, text.replace("\t", " ")))
        # (alone, nothing merges the answers: the line is the answer)
        return line if len(server.sessions.backend.nodes()) > 1 else _best({"": line})

    async def ban_account(user: str, host: str, reason: str) -> str:
        jid = bare(user, host)
        try:
            if not await server.accounts.set_password(jid.domain, jid.local or "",
                                                      secrets.token_urlsafe(24)):
                raise CommandError(f"user {jid} does not exist", "not_found")
        except AccountError as e:
            raise CommandError(str(e)) from None
        text = reason or "banned"
        for s in server.sessions.local_resources(jid):
            s.stream_error("not-authorized", text)
            s.ended("banned")
        for entry in server.sessions.backend.remote_sessions(jid):
            server.sessions.kick_remote(entry.jid, entry.node, text)
        return ""

    cmds.register("connected_users_info", connected_users_info, HELP["connected_users_info"],
                  merge=all_lines)
    cmds.register("user_sessions_info", user_sessions_info, HELP["user_sessions_info"],
                  merge=all_lines)
    cmds.register("get_presence", get_presence, HELP["get_presence"], merge=_best)
    cmds.register("ban_account", ban_account, HELP["ban_account"])
