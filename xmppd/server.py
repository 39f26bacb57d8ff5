"""Composition root: hosts, listeners, router, sessions, storage and modules."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any, Optional, Union

from . import delivery
from .acl import AccessControl
from .cluster.ask import Asking
from .cluster.components import ComponentDirectory
from .cluster.ctl import ClusterCommands
from .commands import Commands
from .config import Config, ConfigError, ListenConfig
from .hooks import HookBus
from .iqtracker import IqTracker
from .jid import JID
from .moduleapi import Module, ModuleAPI
from .router import Router
from .sessions import SessionRegistry
from .shaper import RateTable, TokenBucket
from .storage import Database, database_from_config, migrate_sync
from .storage.accounts import AccountStore
from .tls import CertStore
from .xml import Element

log = logging.getLogger("xmppd")

SWEEP_INTERVAL = 5.0


class VirtualHost:
    """One served domain and what its modules registered for it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.features: list[str] = []
        self.identities: list[tuple[str, str, Optional[str]]] = []
        self.items: list[tuple[str, Optional[str], Optional[str]]] = []
        self.extensions: list[Callable[[], Element]] = []
        self.stream_features: dict[str, list[Callable[[Any], Optional[Union[Element, bytes]]]]] = {
            "pre-auth": [], "post-auth": []}
        self.stream_handlers: dict[str, Callable[[Any, Element], Any]] = {}
        # Bind2 (XEP-0386): namespace -> handler(session, request) -> answer bytes or None
        self.bind2_inline: dict[str, Callable[[Any, Element], Optional[bytes]]] = {}
        self.modules: dict[str, Module] = {}
        self.apis: dict[str, ModuleAPI] = {}


# ejabberd modules whose work xmppd does without a module of that name
BUILT_IN = {
    "mod_caps": "entity capabilities are read by mod_pubsub for PEP notifications",
    "mod_s2s_dialback": "server dialback is part of every s2s stream",
    "mod_muc_admin": "mod_muc has its commands (create_room, destroy_room, room options and "
                     "affiliations, muc_online_rooms...): xmppd ctl help",
    "mod_muc_occupantid": "mod_muc adds occupant ids (XEP-0421); its option occupant_id",
    "mod_admin_extra": "xmppd ctl has the account, session and message commands; "
                       "xmppd ctl help lists them",
}
# modules xmppd leaves out on purpose: the warning says why
LEFT_OUT = {
    "mod_mam": "chat is temporary: one-to-one messages are kept until delivered, not "
               "archived; rooms keep their archive in mod_muc (room option mam)",
    "mod_privacy": "privacy lists (XEP-0016) are obsolete; mod_blocking (XEP-0191) blocks",
}


def check_modules(config: Config) -> tuple[dict[str, dict[str, tuple[type[Module], dict[str, Any]]]],
                                           list[str]]:
    """Validate module options of every host; return the load plan and warnings."""
    from .modules import registry

    known = registry()
    warnings: list[str] = []
    plan: dict[str, dict[str, tuple[type[Module], dict[str, Any]]]] = {}
    for host in config.hosts:
        mods: dict[str, tuple[type[Module], dict[str, Any]]] = {}
        for name, raw in config.modules_for(host).items():
            path = f"modules.{name}"
            cls = known.get(name)
            if cls is None:
                if host == config.hosts[0]:
                    built_in = BUILT_IN.get(name)
                    left_out = LEFT_OUT.get(name)
                    warnings.append(f"{path}: built into xmppd ({built_in}), ignored"
                                    if built_in else
                                    f"{path}: left out of xmppd on purpose ({left_out}), ignored"
                                    if left_out else
                                    f"{path}: module not available in xmppd, ignored")
                continue
            opts = cls.validate(raw, path, warnings if host == config.hosts[0] else [])
            mods[name] = (cls, opts)
        # dependencies load with default options when not configured
        changed = True
        while changed:
            changed = False
            for cls, _ in list(mods.values()):
                for dep in cls.depends:
                    if dep.name not in mods:
                        mods[dep.name] = (dep, dep.validate({}, f"modules.{dep.name}", []))
                        changed = True
        plan[host] = mods
    return plan, warnings


class Server:
    def __init__(self, config: Config, *, node: Optional[str] = None,
                 backend: Any = None) -> None:
        from .cluster import backend_from_config, default_node_name

        self.config = config
        self.hosts: dict[str, VirtualHost] = {h: VirtualHost(h) for h in config.hosts}
        self.hooks = HookBus()
        self.router = Router(self)
        self.node = node or os.environ.get("XMPPD_NODE") or config["node_name"] \
            or default_node_name()
        self.sessions = SessionRegistry(backend or backend_from_config(config, self.node))
        self.serve_ctl = True
        self.access = AccessControl(config.acl, config.access_rules, config.shaper_rules,
                                    config.hosts)
        self.commands = Commands()
        self.asking = Asking(self)   # questions to other cluster nodes, and answers
        # external components of every node (each node routes to the others')
        self.component_directory = ComponentDirectory(self)
        self.cluster_commands = ClusterCommands(self)  # ctl commands that act on every node
        self.iq_tracker = IqTracker(self)
        self.certs: Optional[CertStore] = None
        self.db: Optional[Database] = None
        self.accounts: AccountStore = None  # type: ignore[assignment]
        self.connections: set[Any] = set()
        # overload: clear while client connections are not read (see hold_reads)
        self.reads_open = asyncio.Event()
        self.reads_open.set()
        self.listeners: list[Any] = []
        self.oauth: Any = None   # xmppd.oauth.OAuth, made with the admin commands
        self.fast_tokens: Any = None   # xmppd.c2s.fast.FastTokens, made at the first use
        self.started_at = time.time()
        self.reuse_port = False
        self.warnings: list[str] = list(config.warnings)
        self.overload = False
        from .overload import install as install_load
        self.load = install_load(self)
        self._per_ip: dict[str, int] = {}
        self._ip_rate = RateTable()  # connections per address and listener
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.instance_id = secrets.token_hex(4)
        delivery.install(self)
        from .s2s import install as install_s2s
        self.s2s = install_s2s(self)

    def config_warning(self, msg: str) -> None:
        """A configuration warning found after start-up (once, in the log and in
        ``xmppd ctl status``'s warnings)."""
        if msg not in self.warnings:
            self.warnings.append(msg)
            log.warning("config: %s", msg)

    # -- start / stop --------------------------------------------------------
    async def start(self, *, listen: bool = True) -> None:
        cfg = self.config
        plan, warnings = check_modules(cfg)
        self.warnings.extend(warnings)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs = await asyncio.get_running_loop().run_in_executor(
            None, lambda: CertStore(cfg.hosts, cfg.certfiles, cfg.data_dir, cfg.base_dir))
        self.warnings.extend(self.certs.warnings)
        for w in self.warnings:
            log.warning("config: %s", w)
        self.db = database_from_config(cfg)
        applied = await asyncio.get_running_loop().run_in_executor(None, migrate_sync, self.db)
        for a in applied:
            log.info("schema: applied %s", a)
        self.accounts = AccountStore(self.db, cfg["scram_iterations"])
        from . import admin
        admin.install(self)
        from .cluster.node import attach, handle_payloads
        attach(self)
        await self.sessions.backend.start(functools.partial(handle_payloads, self))
        for host, mods in plan.items():
            await self._load_host_modules(self.hosts[host], mods)
        # modules finish start-up work that needs every host loaded (the journal
        # routes what a crash left behind) before the listeners open
        for res in self.hooks.fire_all("server/ready", self):
            if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
                await res
        self._tasks.append(asyncio.ensure_future(self._sweep()))
        self._tasks.append(asyncio.ensure_future(self.load.run()))
        if listen:
            await self._start_listeners()
        if self.serve_ctl:
            from . import ctl
            self._tasks.append(asyncio.ensure_future(ctl.serve(self)))
        self.hooks.fire_all("server/started", self)
        log.info("xmppd started: hosts %s, node %s", ", ".join(cfg.hosts), self.node)

    async def _load_host_modules(self, vhost: VirtualHost,
                                 mods: dict[str, tuple[type[Module], dict[str, Any]]]) -> None:
        loaded: set[str] = set()

        async def load(name: str, stack: tuple[str, ...] = ()) -> None:
            if name in loaded:
                return
            if name in stack:
                raise ConfigError(f"modules.{name}", "modules without circular dependencies",
                                  list(stack), show_got=False)
            cls, opts = mods[name]
            for dep in cls.depends:
                await load(dep.name, stack + (name,))
            api = ModuleAPI(self, vhost, name)
            inst = cls(api, opts)
            inst.start()
            await inst.start_async()
            vhost.modules[name] = inst
            vhost.apis[name] = api
            loaded.add(name)

        for name in mods:
            await load(name)

    def unload_module(self, host: str, name: str) -> None:
        vhost = self.hosts[host]
        inst = vhost.modules.pop(name, None)
        api = vhost.apis.pop(name, None)
        if inst is not None:
            inst.stop()
        if api is not None:
            api.unload()

    async def _start_listeners(self) -> None:
        from .c2s.listener import start_listener as c2s_listener
        from .component import start_listener as component_listener
        from .http.server import start_listener as http_listener
        from .s2s.listener import start_listener as s2s_listener
        from .stun.listener import start_listener as stun_listener

        starters = {"ejabberd_c2s": c2s_listener, "ejabberd_s2s_in": s2s_listener,
                    "ejabberd_http": http_listener, "ejabberd_service": component_listener,
                    "ejabberd_stun": stun_listener}
        for lconf in self.config.listen:
            try:
                srv = await starters[lconf.module](self, lconf)
            except OSError as e:
                raise ConfigError(f"{lconf.path}.port",
                                  f"a free port (port {lconf.port}: {e.strerror})",
                                  lconf.port, show_got=False) from None
            self.listeners.append(srv)
            log.info("listening on %s port %d (%s%s)", lconf.ip, lconf.port, lconf.module,
                     ", tls" if lconf.tls else "")

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down")
        self.hooks.fire_all("server/stopping", self)
        for srv in self.listeners:
            srv.close()
        for conn in list(self.connections):
            stream = getattr(conn, "stream", None)
            if stream is not None:
                stream.stream_error("system-shutdown", "the server is shutting down")
                stream.ended("shutdown")
            else:
                conn.close()
        deadline = time.monotonic() + self.config["shutdown_timeout"]
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            abort = getattr(conn, "abort", None)
            if abort:
                abort()
        for vhost in self.hosts.values():
            for inst in reversed(list(vhost.modules.values())):
                try:
                    await asyncio.wait_for(inst.stop_async(), self.config["shutdown_timeout"])
                except Exception:
                    log.exception("stopping module %s", inst.name)
        for vhost in self.hosts.values():
            for name in reversed(list(vhost.modules)):
                self.unload_module(vhost.name, name)
        for t in self._tasks:
            t.cancel()
        await self.sessions.backend.stop()
        for srv in self.listeners:
            try:
                await asyncio.wait_for(srv.wait_closed(), 2)
            except (TimeoutError, Exception):
                pass
        if self.db is not None:
            await self.db.flush()
            await asyncio.get_running_loop().run_in_executor(None, self.db.close)
        log.info("stopped")

    # -- connections ---------------------------------------------------------
    def shaper_bucket(self, name: str, jid: Optional[JID] = None,
                      ip: Optional[str] = None) -> Optional[TokenBucket]:
        """A new bucket for one connection under a listener's ``shaper``: a shaper's
        name, or a shaper rule evaluated for ``jid`` and ``ip`` (before login, for
        nobody); None when it does not limit."""
        value = self.access.shaper_value(name, jid, ip) if name in self.config.shaper_rules \
            else name
        spec = self.config.shaper.get(str(value)) if value not in (None, "none") else None
        if spec is None or spec["rate"] == float("inf"):
            return None
        return TokenBucket(spec["rate"], spec["burst_size"])

    def hold_reads(self, held: bool) -> None:
        """Stop (or resume) reading from clients: the cluster's queue of hand-overs is
        too long, so senders are slowed down (TCP pushes back on them) rather than
        having their messages bounced. TCP streams pause their transport; WebSocket
        streams stop taking messages and BOSH requests with stanzas wait, all on
        :attr:`reads_open`."""
        if held:
            self.reads_open.clear()
        else:
            self.reads_open.set()
        for conn in list(self.connections):
            apply = getattr(conn, "apply_reading", None)
            if apply is not None:
                apply()

    def admit_connection(self, conn: Any) -> Optional[str]:
        """None to accept a new connection, else why it is refused."""
        ip = conn.peer_ip
        n = self._per_ip.get(ip, 0) + 1
        self._per_ip[ip] = n
        listen = conn.listen
        if n > listen.max_sessions_per_ip:
            return "too many connections from your address"
        if self.connecting_too_often(ip, listen):
            return "connecting too often"
        veto = self.hooks.fire("c2s/connect", conn)
        return str(veto) if veto is not None else None

    def connecting_too_often(self, ip: str, listen: ListenConfig) -> bool:
        """A new connection from ``ip`` to ``listen`` is over its ``max_connection_rate``."""
        return self._ip_rate.over((ip, listen.port), listen.max_connection_rate)

    def release_connection(self, conn: Any) -> None:
        ip = conn.peer_ip
        n = self._per_ip.get(ip, 0) - 1
        if n <= 0:
            self._per_ip.pop(ip, None)
        else:
            self._per_ip[ip] = n

    async def _sweep(self) -> None:
        """Close streams idle past their timeout and negotiations that drag on."""
        from .c2s.stream import BOUND, CLOSED
        negotiation = self.config["negotiation_timeout"]
        shortest = min([negotiation] + [lc.idle_timeout for lc in self.config.listen])
        interval = max(0.5, min(SWEEP_INTERVAL, shortest / 2))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                stream = getattr(conn, "stream", None)
                if stream is None:
                    continue
                idle = now - stream.last_recv
                if stream.state != BOUND and stream.state != CLOSED and \
                        now - stream.created > negotiation:
                    stream.stream_error("connection-timeout", "negotiation took too long")
                elif idle > conn.listen.idle_timeout:
                    stream.stream_error("connection-timeout", "idle for too long")
                elif idle >= interval:
                    # nothing came in since the last sweep: free the XML parser
                    # (rebuilt on the next byte); most connections are idle
                    release = getattr(getattr(conn, "framing", None), "release", None)
                    if release is not None:
                        release()

    # -- helpers for modules -----------------------------------------------------
    def owner_of(self, key: str) -> str:
        """The node that owns ``key`` (a room JID): rendezvous hashing over live nodes."""
        nodes = self.sessions.backend.nodes()
        if len(nodes) <= 1:
            return self.node
        from .cluster.placement import owner
        return owner(key, nodes)

    def forward_to_owner(self, key: str, stanza: Element) -> bool:
        """Hand ``stanza`` to the node owning ``key``; False if this node owns it."""
        node = self.owner_of(key)
        return node != self.node and self.hand_to(node, stanza)

    def hand_to(self, node: str, stanza: Element, last_hop: bool = False) -> bool:
        """Route ``stanza`` on cluster node ``node``; False after too many hops (the
        nodes' views disagree for now: serve it here rather than loop). ``last_hop``:
        ``node`` serves it even if its view disagrees (no further forwarding)."""
        backend: Any = self.sessions.backend
        from .cluster.envelope import MAX_HOPS, route
        hops = MAX_HOPS - 1 if last_hop else getattr(backend, "hops", 0)
        if hops >= MAX_HOPS:
            return False
        backend.send(node, route(stanza, hops))
        return True

    def forward_to_sessions(self, user: JID, stanza: Element) -> bool:
        """Hand ``stanza`` to a node where ``user`` has sessions, if none are here.

        Work on a user's cached state (the roster) is done where the user's sessions
        keep it, so what they see next is current. False: handle it here.
        """
        if self.sessions.local_resources(user):
            return False
        nodes = sorted({s.node for s in self.sessions.resources(user)})
        return bool(nodes) and self.hand_to(nodes[0], stanza)

    def cluster_event(self, name: str, arg: str) -> None:
        """Tell the other nodes (``cluster/event/<name>`` fires there with ``arg``)."""
        broadcast = getattr(self.sessions.backend, "broadcast", None)
        if broadcast is not None:
            from .cluster.envelope import event
            broadcast(event(name, arg))

    @property
    def forwarded(self) -> bool:
        """True while handling a stanza another node handed over."""
        return bool(getattr(self.sessions.backend, "hops", 0))

    def is_local(self, domain: str) -> bool:
        return domain in self.hosts

    def uptime(self) -> float:
        return time.time() - self.started_at
