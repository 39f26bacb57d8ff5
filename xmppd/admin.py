"""Core admin commands, modelled on ejabberdctl.

Account commands work on the database alone (so they also run while the
server is stopped); the running server wraps them to add live effects such as
kicking the sessions of an unregistered account.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, admin_sessions, oauth
from .c2s import fast, scram
from .cli import LEVELS
from .commands import CommandError, per_node
from .jid import JID, JIDError
from .stanza import BODY, MESSAGE, STANZA_TAGS
from .storage.accounts import AccountError, AccountStore
from .xml import CLIENT_NS, Element
from .xmlstream import StreamError, parse_stanza

if TYPE_CHECKING:
    from .server import Server

SUBJECT = "{%s}subject" % CLIENT_NS


def _host(hosts: tuple[str, ...] | list[str], host: str) -> str:
    h = host.lower()
    if h not in hosts:
        raise CommandError(f"unknown host {host!r} (served: {', '.join(hosts)})")
    return h


def read_bulk_file(path: str) -> list[tuple[str, str]]:
    """``user password`` per line; blank lines and #comments are skipped."""
    pairs = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise CommandError(f"{path}:{n}: expected 'user password'")
        pairs.append((parts[0], parts[1]))
    return pairs


def account_commands(store: AccountStore, hosts: tuple[str, ...]) -> dict[str, Callable[..., str]]:
    """The account commands as synchronous functions over a store."""

    def register(user: str, host: str, password: str) -> str:
        h = _host(hosts, host)
        try:
            created = store.create_sync(h, user, password)
        except AccountError as e:
            raise CommandError(str(e)) from None
        if not created:
            raise CommandError(f"user {user}@{h} already registered", "conflict")
        return f"User {user}@{h} successfully registered"

    def unregister(user: str, host: str) -> str:
        h = _host(hosts, host)
        try:
            if not store.delete_sync(h, user):
                raise CommandError(f"user {user}@{h} does not exist", "not_found")
        except AccountError as e:
            raise CommandError(str(e)) from None
        return ""

    def change_password(user: str, host: str, password: str) -> str:
        h = _host(hosts, host)
        try:
            if not store.set_password_sync(h, user, password):
                raise CommandError(f"user {user}@{h} does not exist", "not_found")
        except AccountError as e:
            raise CommandError(str(e)) from None
        return ""

    def registered_users(host: str) -> str:
        return "\n".join(store.list_sync(_host(hosts, host)))

    def check_account(user: str, host: str) -> str:
        h = _host(hosts, host)
        if store.get_sync(h, user) is None:
            raise CommandError(f"user {user}@{h} does not exist", "not_found")
        return ""

    def check_password(user: str, host: str, password: str) -> str:
        h = _host(hosts, host)
        creds = store.get_sync(h, user)
        if creds is None:
            raise CommandError(f"user {user}@{h} does not exist", "not_found")
        if not scram.check_password(password, creds.sha256, "sha256"):
            raise CommandError(f"wrong password for {user}@{h}")
        return ""

    def register_bulk(path: str, host: str) -> str:
        h = _host(hosts, host)
        pairs = read_bulk_file(path)
        created, skipped = store.create_bulk_sync(h, pairs)
        return f"{created} accounts registered, {skipped} skipped"

    return {"register": register, "unregister": unregister, "change_password": change_password,
            "registered_users": registered_users, "register_bulk": register_bulk,
            "check_account": check_account, "check_password": check_password}


HELP = {
    "register": "register USER HOST PASSWORD: create an account",
    "unregister": "unregister USER HOST: delete an account (and end its sessions)",
    "change_password": "change_password USER HOST PASSWORD",
    "registered_users": "registered_users HOST: list accounts",
    "register_bulk": "register_bulk FILE HOST: create accounts from 'user password' lines",
    "connected_users": "connected_users: list full JIDs of sessions",
    "connected_users_number": "connected_users_number: count sessions",
    "user_resources": "user_resources USER HOST: the resources of the user's sessions",
    "num_resources": "num_resources USER HOST: how many sessions the user has",
    "registered_vhosts": "registered_vhosts: the hosts this server serves",
    "kick_session": "kick_session USER HOST RESOURCE REASON: end one session",
    "status": "status: is the server running, and how is it doing",
    "cluster_nodes": "cluster_nodes: the nodes of the cluster with their sessions",
    "set_load": "set_load LEVEL|auto: force a load-shedding level (0-4) or measure again, "
                "on every node of the cluster",
    "check_account": "check_account USER HOST: exit status 0 if the account exists, 1 if not",
    "check_password": "check_password USER HOST PASSWORD: exit status 0 if the password is right",
    "help": "help [COMMAND]: the commands, or one command's arguments",
    "stats": "stats registeredusers|onlineusers|onlineusersnode|uptimeseconds: one figure",
    "stop": "stop: close every stream (system-shutdown) and stop the server, all its workers",
    "send_message": "send_message TYPE FROM TO SUBJECT BODY: send a message (chat, normal, "
                    "headline...) as FROM; an empty SUBJECT is left out",
    "send_stanza": "send_stanza FROM TO STANZA: route an XML stanza with those addresses",
    "set_loglevel": "set_loglevel LEVEL: debug, info, warning, error... until the next start "
                    "(on every node of the cluster)",
}
STATS = ("registeredusers", "onlineusers", "onlineusersnode", "uptimeseconds")


def describe(help_lines: dict[str, str], command: str = "") -> str:
    """``help``: a line per command, or the line of one (its arguments)."""
    if command:
        if command not in help_lines:
            raise CommandError(f"unknown command {command!r}")
        return help_lines[command]
    return "\n".join(help_lines[name] or name for name in sorted(help_lines))


def install(server: Server) -> None:
    cmds = server.commands
    sync = account_commands(server.accounts, server.config.hosts)

    def in_thread(fn: Callable[..., str]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def run(*args: str) -> str:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return run

    for name, fn in sync.items():
        cmds.register(name, in_thread(fn), HELP[name])

    async def unregister(user: str, host: str) -> str:
        out = await in_thread(sync["unregister"])(user, host)
        try:
            bare = JID(user, host)
        except JIDError:
            return out
        await account_deleted(server, bare)
        return out
    cmds.register("unregister", unregister, HELP["unregister"])

    def connected_users() -> str:
        return "\n".join(sorted(str(j) for j in server.sessions.online()))

    def connected_users_number() -> str:
        return str(server.sessions.count() + len(server.sessions.all_remote()))

    def kick_session(user: str, host: str, resource: str, reason: str) -> str:
        try:
            full = JID(user, host, resource)
        except JIDError as e:
            raise CommandError(str(e)) from None
        s = server.sessions.get_local(full)
        if s is None:
            remote = server.sessions.backend.remote_session(full)
            if remote is None:
                raise CommandError(f"no session {full}")
            server.sessions.kick_remote(full, remote.node, reason or "kicked")
            return ""
        s.stream_error("policy-violation", reason)
        s.ended("kicked")
        return ""

    def cluster_nodes() -> str:
        """Nodes with their session counts (ejabberd: list_cluster)."""
        counts: dict[str, int] = {n: 0 for n in server.sessions.backend.nodes()}
        counts[server.node] = server.sessions.count()
        for e in server.sessions.all_remote():
            counts[e.node] = counts.get(e.node, 0) + 1
        lines = [f"{n}\t{c} sessions" for n, c in sorted(counts.items())]
        for extra in server.hooks.fire_all("admin/cluster-nodes", server):
            lines.append(str(extra))
        return "\n".join(lines)

    def status() -> str:
        lines = [
            f"The node {server.node} is started with status: started",
            f"cluster: {', '.join(server.sessions.backend.nodes())}",
            f"xmppd {__version__} is running in that node (pid {os.getpid()})",
            f"hosts: {', '.join(server.config.hosts)}",
            f"uptime: {int(server.uptime())} s",
            f"sessions: {server.sessions.count()}, connections: {len(server.connections)}",
            f"load: {server.load.description}",
        ]
        for extra in server.hooks.fire_all("admin/status", server):
            lines.append(str(extra))
        return "\n".join(lines)

    def resources_of(user: str, host: str) -> list[str]:
        """The resources of the user's sessions, on every cluster node."""
        try:
            bare = JID(user, host)
        except JIDError as e:
            raise CommandError(str(e)) from None
        return sorted(j.resource or "" for j in server.sessions.online(bare.domain)
                      if j.bare == bare)

    def user_resources(user: str, host: str) -> str:
        return "\n".join(resources_of(user, host))

    def num_resources(user: str, host: str) -> str:
        return str(len(resources_of(user, host)))

    cmds.register("user_resources", user_resources, HELP["user_resources"])
    cmds.register("num_resources", num_resources, HELP["num_resources"])
    cmds.register("registered_vhosts", lambda: "\n".join(server.config.hosts),
                  HELP["registered_vhosts"])
    cmds.register("connected_users", connected_users, HELP["connected_users"])
    cmds.register("connected_users_number", connected_users_number, HELP["connected_users_number"])
    cmds.register("kick_session", kick_session, HELP["kick_session"])
    cmds.register("status", status, HELP["status"])
    cmds.register("cluster_nodes", cluster_nodes, HELP["cluster_nodes"])

    def set_load(level: str) -> str:
        """Force a load level (0-4) for drills, or 'auto' to measure again."""
        if level == "auto":
            server.load.force(None)
        else:
            try:
                n = int(level)
            except ValueError:
                raise CommandError("usage: set_load 0-4|auto") from None
            if not 0 <= n <= 4:
                raise CommandError("usage: set_load 0-4|auto")
            server.load.force(n)
        return server.load.description
    cmds.register("set_load", set_load, HELP["set_load"], merge=per_node)
    cmds.register("list_cluster", cluster_nodes, "list_cluster: the same as cluster_nodes")

    def help_cmd(command: str = "") -> str:
        return describe(cmds.help_lines(), command)
    cmds.register("help", help_cmd, HELP["help"])

    def count_accounts() -> int:
        return sum(server.accounts.count_sync(h) for h in server.config.hosts)

    async def stats(name: str) -> str:
        """ejabberdctl's figures for monitoring scripts."""
        if name == "registeredusers":
            return str(await asyncio.get_running_loop().run_in_executor(None, count_accounts))
        if name == "onlineusers":
            return connected_users_number()
        if name == "onlineusersnode":
            return str(server.sessions.count())
        if name == "uptimeseconds":
            return str(int(server.uptime()))
        raise CommandError(f"usage: stats {'|'.join(STATS)}")
    cmds.register("stats", stats, HELP["stats"])

    def stop() -> str:
        """As SIGTERM: the master of several workers stops them all (workers.py
        names itself in XMPPD_MASTER_PID); the reply goes out first."""
        target = int(os.environ.get("XMPPD_MASTER_PID") or os.getpid())
        asyncio.get_running_loop().call_later(0.1, os.kill, target, signal.SIGTERM)
        return ""
    cmds.register("stop", stop, HELP["stop"])

    def send_stanza(frm: str, to: str, stanza: str) -> str:
        try:
            el = parse_stanza(stanza.encode())
        except StreamError as e:
            raise CommandError(f"not a stanza: {e.text or e.condition}") from None
        return _route_as(server, el, frm, to)
    cmds.register("send_stanza", send_stanza, HELP["send_stanza"])

    def send_message(type: str, frm: str, to: str, subject: str, body: str) -> str:
        children: list[Any] = []
        if subject:
            children.append(Element(SUBJECT, None, [subject]))
        children.append(Element(BODY, None, [body]))
        el = Element(MESSAGE, {"type": type}, children)
        return _route_as(server, el, frm, to)
    cmds.register("send_message", send_message, HELP["send_message"])

    def set_loglevel(level: str) -> str:
        if level not in LEVELS:
            raise CommandError(f"usage: set_loglevel {'|'.join(LEVELS)}")
        logging.getLogger().setLevel(LEVELS[level])
        # at the new level, or warning if that is lower: the change is always in the log
        logging.getLogger("xmppd").log(max(LEVELS[level], logging.WARNING),
                                       "log level: %s (until the next start)", level)
        return ""
    cmds.register("set_loglevel", set_loglevel, HELP["set_loglevel"], merge=per_node)
    admin_sessions.install(server)
    oauth.install(server)
    fast.install(server)


async def account_deleted(server: Server, bare: JID) -> None:
    """An account was deleted (``xmppd ctl unregister``, XEP-0077 remove): its sessions
    end, on every cluster node, and the modules drop its data (roster, block list,
    offline messages, files...)."""
    for s in server.sessions.local_resources(bare):
        s.stream_error("not-authorized", "account deleted")
        s.ended("unregistered")
    for e in server.sessions.backend.remote_sessions(bare):  # on other cluster nodes
        server.sessions.kick_remote(e.jid, e.node, "account deleted")
    await server.hooks.run_all("account/removed", bare)


def _route_as(server: Server, el: Element, frm: str, to: str) -> str:
    """Route ``el`` from ``frm`` to ``to`` (both checked), as the admin asked."""
    if el.tag not in STANZA_TAGS:
        raise CommandError("not a stanza: message, presence or iq in jabber:client")
    try:
        el.attrs["from"] = str(JID.parse(frm))
        el.attrs["to"] = str(JID.parse(to))
    except JIDError as e:
        raise CommandError(str(e)) from None
    server.router.route(el)
    return ""
