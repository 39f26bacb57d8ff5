"""Feature modules and the API they register through.

A module is a class that declares, as data, its ejabberd name, options (with
defaults and validators), dependencies, disco features and XEPs, and hooks
or iq handlers as decorated methods that return results. Every registration
goes through :class:`ModuleAPI`, which records it, so unloading a module
undoes everything without hand-written teardown.

    class Ping(Module):
        name = "mod_ping"
        features = ("urn:xmpp:ping",)

        @iq_handler("get", "urn:xmpp:ping", "ping", dest=("host", "self"))
        def ping(self, ev):
            return None   # empty result
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional, TypeVar, Union

from .confval import ConfigError, Validator, join
from .stanza import StanzaEvent
from .xml import Element

if TYPE_CHECKING:
    from .server import Server, VirtualHost

log = logging.getLogger(__name__)

M = TypeVar("M", bound="Module")

Dest = Union[str, tuple[str, ...]]


@dataclass(frozen=True)
class Option:
    default: Any
    validator: Validator
    doc: str = ""


def hook(event: str, priority: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as a handler of hook ``event``."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__dict__.setdefault("_xmppd_hooks", []).append((event, priority))
        return fn
    return deco


def iq_handler(type: str, ns: str, name: str, dest: Dest = "host",
               priority: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as the answerer of ``iq-<type>/<dest>/<ns>:<name>``.

    The method returns the result payload (an Element), None for an empty
    result, an awaitable of either, or raises StanzaError.
    """
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        dests = (dest,) if isinstance(dest, str) else dest
        fn.__dict__.setdefault("_xmppd_iqs", []).extend(
            (type, d, ns, name, priority) for d in dests)
        return fn
    return deco


def v_hosts(value: Any, path: str) -> list[str]:
    """A service module's ``hosts`` option: one domain or a list of them."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, v in enumerate(items):
        if not isinstance(v, str) or not v:
            raise ConfigError(join(path, i), "a domain name", v)
        out.append(v)
    return out


def service_domain(module: Module) -> str:
    """The domain of a service module (``host``, or the first of ``hosts``; ``@HOST@``
    is the virtual host), e.g. ``conference.example.org``."""
    from .jid import JID, JIDError

    o = module.opts
    domain = (o["hosts"][0] if o["hosts"] else o["host"]).replace("@HOST@", module.host)
    try:
        return JID.parse(domain).domain
    except JIDError:
        raise ConfigError(f"modules.{module.name}.host", "a domain name", domain) from None


class ModuleAPI:
    """Records what one module instance registers; :meth:`unload` undoes it."""

    def __init__(self, server: Server, vhost: VirtualHost, module_name: str) -> None:
        self.server = server
        self.vhost = vhost
        self.host = vhost.name
        self.module_name = module_name
        self._undo: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()   # running; cancelled at unload

    def _record(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def hook(self, event: str, handler: Callable[..., Any], priority: int = 0,
             host_only: bool = True) -> None:
        """Hook ``event``; with ``host_only`` only for stanzas of this host."""
        if host_only and "/" in event:
            host = self.host
            outgoing = event.startswith("pre-")

            def scoped(*args: Any) -> Any:
                if args and isinstance(args[0], StanzaEvent):
                    ev = args[0]
                    if (ev.from_jid.domain if outgoing else ev.host) != host:
                        return None
                return handler(*args)
            self._record(self.server.hooks.add(event, scoped, priority))
        else:
            self._record(self.server.hooks.add(event, handler, priority))

    def iq_handler(self, type: str, dest: str, ns: str, name: str,
                   handler: Callable[[StanzaEvent], Any], priority: int = 0) -> None:
        router = self.server.router

        def answer(ev: StanzaEvent) -> bool:
            return router.answer_iq(ev, handler)
        self.hook(f"iq-{type}/{dest}/{ns}:{name}", answer, priority)

    def add_feature(self, ns: str) -> None:
        self.vhost.features.append(ns)
        self._record(lambda: self.vhost.features.remove(ns))

    def add_identity(self, category: str, type: str, name: Optional[str] = None) -> None:
        ident = (category, type, name)
        self.vhost.identities.append(ident)
        self._record(lambda: self.vhost.identities.remove(ident))

    def add_item(self, jid: str, name: Optional[str] = None, node: Optional[str] = None) -> None:
        item = (jid, name, node)
        self.vhost.items.append(item)
        self._record(lambda: self.vhost.items.remove(item))

    def add_extension(self, form_factory: Callable[[], Element]) -> None:
        """A XEP-0128 data form for the host's disco#info."""
        self.vhost.extensions.append(form_factory)
        self._record(lambda: self.vhost.extensions.remove(form_factory))

    def add_stream_feature(self, stage: str,
                           factory: Callable[[Any], Optional[Union[Element, bytes]]]) -> None:
        """``stage`` is 'pre-auth' or 'post-auth'; ``factory(stream)`` returns a feature:
        an element, or its serialized bytes (a feature the same for every stream, made
        once: every login asks twice), or None."""
        lst = self.vhost.stream_features[stage]
        lst.append(factory)
        self._record(lambda: lst.remove(factory))

    def add_bind2_inline(self, ns: str,
                         handler: Callable[[Any, Element], Optional[bytes]]) -> None:
        """Handle Bind2's inline requests in namespace ``ns`` (XEP-0386): the answer goes
        in ``<bound/>`` (None: nothing to say). SASL2 advertises the namespace."""
        self.vhost.bind2_inline[ns] = handler
        self._record(lambda: _discard(self.vhost.bind2_inline, ns))

    def add_stream_handler(self, tag: str, handler: Callable[[Any, Element], Any]) -> None:
        """Handle a non-stanza top-level element (``{ns}name``) on bound c2s streams."""
        self.vhost.stream_handlers[tag] = handler
        self._record(lambda: _discard(self.vhost.stream_handlers, tag))

    def add_component(self, domain: str, handler: Callable[[StanzaEvent], Any]) -> None:
        router = self.server.router
        if domain in router.components:
            raise ConfigError(f"modules.{self.module_name}", f"a free domain ({domain} is taken)",
                              domain)
        router.components[domain] = handler
        self._record(lambda: _discard(router.components, domain))

    def add_timer(self, interval: float, fn: Callable[[], Any]) -> None:
        """Call ``fn`` every ``interval`` seconds (coroutines are awaited)."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    res = fn()
                    if asyncio.iscoroutine(res):
                        await res
                except Exception:
                    log.exception("timer of %s failed", self.module_name)
        self.add_task(loop())

    def add_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro``; it is cancelled if the module unloads first. A finished task
        is forgotten (modules start one per ping, probe or presence)."""
        task = asyncio.ensure_future(coro)
        if not self._tasks:
            self._record(self._cancel_tasks)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            try:
                self._undo.remove(self._cancel_tasks)
            except ValueError:
                pass

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def add_command(self, name: str, fn: Callable[..., Any], help: str = "",
                    merge: Optional[Callable[[dict[str, str]], str]] = None) -> None:
        """An admin command for ``xmppd ctl`` (``merge``: on every cluster node, see
        :meth:`xmppd.commands.Commands.register`)."""
        self.server.commands.register(name, fn, help, merge)
        self._record(lambda: self.server.commands.unregister(name, fn))

    def on_unload(self, fn: Callable[[], None]) -> None:
        self._record(fn)

    def unload(self) -> None:
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:
                log.exception("unloading %s", self.module_name)


def _discard(d: dict[str, Any], key: str) -> None:
    d.pop(key, None)


class Module:
    """Base class of feature modules. Subclasses declare data and handlers."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    depends: ClassVar[tuple[type[Module], ...]] = ()
    features: ClassVar[tuple[str, ...]] = ()
    xeps: ClassVar[tuple[str, ...]] = ()
    # a migrations-bearing store module to import before the schema is migrated
    stores: ClassVar[tuple[str, ...]] = ()

    def __init__(self, api: ModuleAPI, opts: dict[str, Any]) -> None:
        self.api = api
        self.server = api.server
        self.host = api.host
        self.opts = opts

    @classmethod
    def of(cls: type[M], server: Any, host: str) -> Optional[M]:
        """This module's instance on ``host`` (None where it is not loaded): for
        modules that depend on it, and for admin commands that name a host."""
        vhost = server.hosts.get(host)
        mod = vhost.modules.get(cls.name) if vhost is not None else None
        return mod if isinstance(mod, cls) else None

    @classmethod
    def validate(cls, raw: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in raw:
            if key not in cls.options:
                warnings.append(f"{join(path, key)}: option not supported by xmppd, ignored")
        for key, opt in cls.options.items():
            out[key] = opt.validator(raw[key], join(path, key)) if key in raw else opt.default
        return out

    def start(self) -> None:
        """Register features, then decorated hooks and iq handlers."""
        for ns in self.features:
            self.api.add_feature(ns)
        for attr in dir(type(self)):
            fn = getattr(type(self), attr, None)
            if fn is None or not callable(fn):
                continue
            meta = getattr(fn, "__dict__", {})
            for event, prio in meta.get("_xmppd_hooks", ()):
                self.api.hook(event, getattr(self, attr), prio)
            for type_, dest, ns, name, prio in meta.get("_xmppd_iqs", ()):
                self.api.iq_handler(type_, dest, ns, name, getattr(self, attr), prio)
        self.setup()

    def setup(self) -> None:
        """Extra registrations; override as needed."""

    async def start_async(self) -> None:
        """Asynchronous start-up work (loading state); override as needed."""

    async def stop_async(self) -> None:
        """Asynchronous shut-down work (flushing pending writes) while the
        database is still open; called on every module before any unloads."""

    def stop(self) -> None:
        """Called before the API undoes the registrations."""
