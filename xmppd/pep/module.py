"""mod_pubsub: personal eventing (XEP-0163 PEP), ejabberd's ``pep`` plugin.

Every account is a publish-subscribe service (XEP-0060) at its bare JID:

- **publish** (with ``publish-options``, XEP-0060 7.1.5): the node is created on
  first publish with the XEP-0163 defaults (``presence`` access, one item, the last
  item sent on presence), the options given, then what ``force_node_config`` forces
  for that node name; on an existing node each option is a precondition
  (``conflict`` + ``precondition-not-met`` when the node's differs, as OMEMO clients
  expect). One item per publish; an item without an id gets one.
- **items** retrieval by anyone the access model lets in: ``open`` (anybody),
  ``presence`` (the owner and contacts subscribed to the owner's presence),
  ``whitelist`` (the owner). Specific items by id, or the newest ``max_items``.
- **retract** (notified as XEP-0060 says), **create** with a configuration, and as
  owner: **configure** (the ``pubsub#node_config`` form), **delete**, **purge**.
- **Notifications** (headline messages from the owner's bare JID) go to the owner's
  own available sessions and, unless the node is ``whitelist``, to those of the
  contacts subscribed to the owner's presence who did not block and are not
  blocked; in all cases only to sessions whose entity capabilities (XEP-0115)
  announce ``NODE+notify`` (:mod:`xmppd.pep.caps`). Sessions of contacts on other
  servers are known from the presence they send to local users (and forgotten with
  their unavailable presence). A session that becomes available gets the last item
  of each node it wants, of its own account and of the contacts whose presence it
  receives (``send_last_published_item``); a contact's session on another server,
  of the local user it sent presence to.

Subscriptions of other kinds (explicit ``subscribe``), collections and a pubsub
service at ``pubsub.HOST`` are not implemented; nodes and items are in the database
(SQLite or PostgreSQL) and shared by the cluster's nodes. What a cluster node
knows of contacts on other servers comes from the presence it received itself
(over its own server-to-server streams): a publish on another node does not reach
them.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Optional

from ..confval import ConfigError, join, v_any, v_dict, v_int, v_list, v_str
from ..dataforms import X
from ..datetimes import stamp
from ..jid import JID
from ..moduleapi import Module, Option, hook, iq_handler
from ..presence.roster import RosterModule
from ..stanza import MESSAGE, StanzaError, StanzaEvent
from ..xml import Child, Element
from ..xmlstream import parse_xml
from . import config as nodecfg
from .caps import NOTIFY, Caps, wants, wants_any
from .ns import CAPS, DELAY, ERRORS, EVENT, NODE_CONFIG, OWNER, PUBLISH_OPTIONS, PUBSUB, q
from .store import LastItem, PepStore

log = logging.getLogger(__name__)

REMOTE_MAX = 100_000   # sessions of contacts on other servers tracked, at most
FEATURES = [PUBSUB] + [PUBSUB + "#" + f for f in (
    "publish", "publish-options", "auto-create", "create-nodes", "config-node",
    "persistent-items", "retrieve-items", "retract-items", "delete-items", "delete-nodes",
    "purge-nodes", "item-ids", "last-published", "access-open", "access-presence",
    "access-whitelist", "filtered-notifications", "multi-items")]


def _pubsub_error(condition: str, app: str, text: Optional[str] = None,
                  feature: Optional[str] = None) -> StanzaError:
    attrs = {"feature": feature} if feature else None
    return StanzaError(condition, text=text, app=Element(q(ERRORS, app), attrs))


def _v_forced(value: Any, path: str) -> dict[str, dict[str, Any]]:
    nodes = v_dict(v_str, v_dict(v_str, v_any))(value, path)
    for node, opts in nodes.items():
        try:
            nodecfg.forced_options(opts, 100_000)
        except ValueError as e:
            raise ConfigError(join(path, node), "node options", str(e)) from None
    return nodes


class PubsubModule(Module):
    name = "mod_pubsub"
    xeps = ("XEP-0060", "XEP-0163")
    depends = (RosterModule,)
    stores = ("xmppd.pep.store",)
    options = {
        "plugins": Option(["flat", "pep"], v_list(v_str),
                          "accepted; xmppd has the pep plugin (no pubsub.HOST service)"),
        "force_node_config": Option({}, _v_forced,
                                    "node name -> options every such node gets"),
        "max_items_node": Option(1000, v_int(1, 100_000), "items a node keeps at most"),
        "max_nodes": Option(500, v_int(1, 100_000), "nodes an account may have"),
    }

    def setup(self) -> None:
        assert self.server.db is not None
        self.store = PepStore(self.server.db)
        self.caps = Caps(self.server, self.host)
        self.cap = int(self.opts["max_items_node"])
        self.forced = {node: nodecfg.forced_options(opts, self.cap)
                       for node, opts in self.opts["force_node_config"].items()}
        # contacts on other servers, from the presence they send to local users: their
        # sessions' +notify nodes, and the local users whose last items they have had
        self.remote: dict[JID, tuple[frozenset[str], set[JID]]] = {}
        self.remote_by_bare: dict[JID, set[JID]] = {}
        self.api.hook("disco-account-features", lambda ev: FEATURES)
        self.api.hook("disco-account-identities", lambda ev: [("pubsub", "pep", None)])

    def _new_config(self, node: str, options: dict[str, Any]) -> dict[str, Any]:
        """A new node's configuration: the defaults, the client's options, then what
        the operator forces for that node name."""
        return {**nodecfg.DEFAULTS, **options, **self.forced.get(node, {})}

    # -- publish, retract, create (the owner) --------------------------------------
    @iq_handler("set", PUBSUB, "pubsub", dest="self")
    async def pubsub_set(self, ev: StanzaEvent) -> Optional[Element]:
        ps = ev.stanza.find(q(PUBSUB, "pubsub"))
        assert ps is not None  # (the handler's key)
        action = next((c for c in ps.elements() if c.ns == PUBSUB and c.name != "publish-options"
                       and c.name != "configure"), None)
        name = action.name if action is not None else ""
        if action is None:
            raise StanzaError("bad-request", text="publish, retract or create")
        if name == "publish":
            return await self._publish(ev, ps, action)
        if name == "retract":
            await self._retract(ev, action)
            return None
        if name == "create":
            return await self._create(ev, ps, action)
        if name in ("subscribe", "unsubscribe", "options"):
            raise _pubsub_error("feature-not-implemented", "unsupported",
                                "PEP subscriptions follow presence subscriptions",
                                feature="subscribe")
        raise StanzaError("bad-request", text="unknown pubsub request: " + name)

    def _node(self, action: Element) -> str:
        node = action.attrs.get("node")
        if not node:
            raise _pubsub_error("bad-request", "nodeid-required")
        return node

    async def _publish(self, ev: StanzaEvent, ps: Element, action: Element) -> Element:
        node = self._node(action)
        items = action.findall(q(PUBSUB, "item"))
        if len(items) != 1:
            raise _pubsub_error("bad-request", "item-required" if not items else "invalid-payload",
                                "one item per publish")
        payload = list(items[0].elements())
        if len(payload) != 1:
            raise _pubsub_error("bad-request", "payload-required" if not payload
                                else "invalid-payload", "one payload element per item")
        options: dict[str, Any] = {}
        po = ps.find(q(PUBSUB, "publish-options"))
        form = po.find(X) if po is not None else None
        if form is not None:
            options = nodecfg.submitted(form, PUBLISH_OPTIONS, self.cap)
        item_id = items[0].attrs.get("id") or secrets.token_hex(8)
        await self.publish(ev.from_jid.bare, node, item_id, payload[0], options)
        return Element(q(PUBSUB, "pubsub"), None, [Element(q(PUBSUB, "publish"), {"node": node}, [
            Element(q(PUBSUB, "item"), {"id": item_id})])])

    async def publish(self, owner: JID, node: str, item_id: str, payload: Element,
                      options: Optional[dict[str, Any]] = None, by: str = "client") -> None:
        """Publish ``payload`` as the item ``item_id`` of the owner's ``node`` (created
        if needed; ``options`` are preconditions on an existing node) and notify;
        ``pep/published`` (owner, node, item id, payload, ``by``: ``client`` or the
        module that published for the owner) tells the other modules."""
        options = options or {}
        user = owner.local or ""
        cfg = await self.store.node(self.host, user, node)
        create = cfg is None
        if cfg is None:
            await self._room_for_a_node(user)
            cfg = self._new_config(node, options)
        else:
            nodecfg.check_preconditions(cfg, options)
        await self.store.publish(self.host, user, node, cfg, item_id,
                                 payload.to_bytes().decode(), create)
        shown: list[Child] = [payload] if cfg["deliver_payloads"] else []
        await self._notify(owner, node, cfg, Element(q(EVENT, "items"), {"node": node}, [
            Element(q(EVENT, "item"), {"id": item_id}, shown)]))
        await self.server.hooks.run_all("pep/published", owner, node, item_id, payload, by)

    async def item(self, owner: JID, node: str, item_id: str) -> Optional[Element]:
        """The payload of one item of the owner's node, if it is there."""
        found = await self.store.items(self.host, owner.local or "", node, [item_id])
        return parse_xml(found[0].payload) if found else None

    async def _retract(self, ev: StanzaEvent, action: Element) -> None:
        node = self._node(action)
        ids = [i.attrs.get("id", "") for i in action.findall(q(PUBSUB, "item"))]
        if len(ids) != 1 or not ids[0]:
            raise _pubsub_error("bad-request", "item-required", "one item id to retract")
        notify = action.attrs.get("notify")
        if not await self.retract(ev.from_jid.bare, node, ids[0],
                                  None if notify is None else notify in ("1", "true")):
            raise StanzaError("item-not-found")

    async def retract(self, owner: JID, node: str, item_id: str, notify: Optional[bool] = None,
                      by: str = "client") -> bool:
        """Retract an item of the owner's node (False: there was none), notified when
        ``notify`` says so or, left out, as the node's ``notify_retract`` does;
        ``pep/retracted`` (owner, node, item id, ``by``) tells the other modules."""
        cfg = await self.store.node(self.host, owner.local or "", node)
        if cfg is None or not await self.store.retract(self.host, owner.local or "", node, item_id):
            return False
        if notify or (notify is None and cfg["notify_retract"]):
            await self._notify(owner, node, cfg, Element(q(EVENT, "items"), {"node": node}, [
                Element(q(EVENT, "retract"), {"id": item_id})]))
        await self.server.hooks.run_all("pep/retracted", owner, node, item_id, by)
        return True

    async def items_of(self, owner: JID, node: str) -> dict[str, Element]:
        """The items of the owner's node: id -> payload."""
        out: dict[str, Element] = {}
        for it in await self.store.items(self.host, owner.local or "", node):
            el = parse_xml(it.payload)
            if el is not None:
                out[it.id] = el
        return out

    async def has_node(self, owner: JID, node: str) -> bool:
        return await self.store.node(self.host, owner.local or "", node) is not None

    async def _create(self, ev: StanzaEvent, ps: Element, action: Element) -> Optional[Element]:
        node = action.attrs.get("node") or "node-" + secrets.token_hex(6)
        user = ev.from_jid.local or ""
        if await self.store.node(self.host, user, node) is not None:
            raise StanzaError("conflict", text="the node exists")
        await self._room_for_a_node(user)
        configure = ps.find(q(PUBSUB, "configure"))
        form = configure.find(X) if configure is not None else None
        options = nodecfg.submitted(form, NODE_CONFIG, self.cap) if form is not None else {}
        await self.store.configure(self.host, user, node, self._new_config(node, options))
        if action.attrs.get("node"):
            return None
        return Element(q(PUBSUB, "pubsub"), None, [Element(q(PUBSUB, "create"), {"node": node})])

    async def _room_for_a_node(self, user: str) -> None:
        if len(await self.store.nodes(self.host, user)) >= self.opts["max_nodes"]:
            raise _pubsub_error("not-allowed", "max-nodes-exceeded",
                                "at most %d nodes per account" % self.opts["max_nodes"])

    # -- items (anybody the access model lets in) -----------------------------------
    @iq_handler("get", PUBSUB, "pubsub", dest=("self", "bare"))
    async def pubsub_get(self, ev: StanzaEvent) -> Element:
        ps = ev.stanza.find(q(PUBSUB, "pubsub"))
        assert ps is not None
        req = ps.find(q(PUBSUB, "items"))
        if req is None:
            raise _pubsub_error("feature-not-implemented", "unsupported",
                                "only items are retrieved here", feature="retrieve-subscriptions")
        node = self._node(req)
        owner, asker = ev.to_jid.bare, ev.from_jid.bare
        cfg = await self.store.node(self.host, owner.local or "", node)
        if cfg is None:
            raise StanzaError("item-not-found")
        await self._may_read(owner, asker, cfg)
        ids = [i.attrs["id"] for i in req.findall(q(PUBSUB, "item")) if i.attrs.get("id")]
        newest: Optional[int] = None
        if req.attrs.get("max_items", "").isdigit():
            newest = int(req.attrs["max_items"])
        rows = await self.store.items(self.host, owner.local or "", node, ids or None, newest)
        out = Element(q(PUBSUB, "items"), {"node": node})
        for row in reversed(rows):   # oldest first
            kept = parse_xml(row.payload)
            out.append(Element(q(PUBSUB, "item"), {"id": row.id}, [kept] if kept is not None else []))
        return Element(q(PUBSUB, "pubsub"), None, [out])

    async def _may_read(self, owner: JID, asker: JID, cfg: dict[str, Any]) -> None:
        if owner == asker or cfg["access_model"] == "open":
            return
        if cfg["access_model"] == "whitelist":
            raise _pubsub_error("not-allowed", "closed-node")
        roster = RosterModule.of(self.server, self.host)
        subscribed = roster is not None and await roster.cache.run(
            owner, lambda r: r.state(asker).frm)
        if not subscribed or self.server.hooks.fire("privacy/blocked", owner, asker):
            raise _pubsub_error("not-authorized", "presence-subscription-required")

    @iq_handler("set", PUBSUB, "pubsub", dest="bare")
    @iq_handler("get", OWNER, "pubsub", dest="bare")
    @iq_handler("set", OWNER, "pubsub", dest="bare")
    def not_yours(self, ev: StanzaEvent) -> None:
        raise StanzaError("forbidden", text="only the account's owner publishes and configures")

    # -- owner: configure, delete, purge ---------------------------------------------
    @iq_handler("get", OWNER, "pubsub", dest="self")
    async def owner_get(self, ev: StanzaEvent) -> Element:
        ps = ev.stanza.find(q(OWNER, "pubsub"))
        assert ps is not None
        if ps.find(q(OWNER, "default")) is not None:
            return Element(q(OWNER, "pubsub"), None, [Element(q(OWNER, "default"), None, [
                nodecfg.form(dict(nodecfg.DEFAULTS), "")])])
        req = ps.find(q(OWNER, "configure"))
        if req is None:
            raise _pubsub_error("feature-not-implemented", "unsupported",
                                feature="manage-subscriptions")
        node = self._node(req)
        cfg = await self.store.node(self.host, ev.from_jid.local or "", node)
        if cfg is None:
            raise StanzaError("item-not-found")
        return Element(q(OWNER, "pubsub"), None, [Element(q(OWNER, "configure"), {"node": node}, [
            nodecfg.form(cfg, node)])])

    @iq_handler("set", OWNER, "pubsub", dest="self")
    async def owner_set(self, ev: StanzaEvent) -> None:
        ps = ev.stanza.find(q(OWNER, "pubsub"))
        assert ps is not None
        action = ps.first_child()
        if action is None or action.ns != OWNER:
            raise StanzaError("bad-request")
        node = self._node(action)
        owner = ev.from_jid.bare
        user = owner.local or ""
        cfg = await self.store.node(self.host, user, node)
        if cfg is None:
            raise StanzaError("item-not-found")
        if action.name == "configure":
            form = action.find(X)
            if form is None:
                raise StanzaError("bad-request", text="a configuration form")
            if form.attrs.get("type") == "cancel":
                return
            new = {**cfg, **nodecfg.submitted(form, NODE_CONFIG, self.cap),
                   **self.forced.get(node, {})}
            await self.store.configure(self.host, user, node, new)
        elif action.name in ("delete", "purge"):
            await self.store.delete_node(self.host, user, node, purge_only=action.name == "purge")
            await self._notify(owner, node, cfg, Element(q(EVENT, action.name), {"node": node}))
        else:
            raise _pubsub_error("feature-not-implemented", "unsupported", feature=action.name)

    # -- notifications ---------------------------------------------------------------
    async def _notify(self, owner: JID, node: str, cfg: dict[str, Any], what: Element) -> None:
        """Send an event to every session that should have it (see the module's doc)."""
        sessions = self.server.sessions
        targets = [s for s in sessions.resources(owner) if s.available and wants(s, node)]
        if cfg["access_model"] != "whitelist":
            roster = RosterModule.of(self.server, self.host)
            subscribers = await roster.cache.run(owner, lambda r: r.subscribers()) \
                if roster is not None else []
            hooks = self.server.hooks
            remote: list[JID] = []
            for contact in subscribers:
                if hooks.fire("privacy/blocked", owner, contact) or \
                        hooks.fire("privacy/blocked", contact, owner):
                    continue
                targets.extend(s for s in sessions.resources(contact)
                               if s.available and wants(s, node))
                remote.extend(full for full in self.remote_by_bare.get(contact, ())
                              if node in self.remote[full][0])
            for full in remote:
                self._send_event(owner, full, what)
        for s in targets:
            self._send_event(owner, s.jid, what)

    def _send_event(self, owner: JID, to: JID, what: Element, delay: Optional[float] = None) -> None:
        children: list[Child] = [Element(q(EVENT, "event"), None, [what])]
        if delay is not None:
            children.append(Element(q(DELAY, "delay"), {"from": str(owner),
                                                        "stamp": stamp(delay)}))
        self.server.router.route(Element(MESSAGE, {
            "from": str(owner), "to": str(to), "type": "headline",
            "id": secrets.token_hex(6)}, children))

    # -- sessions: what they want, and the last items on presence ---------------------
    @hook("presence/available")
    def _available(self, session: Any, first: bool) -> None:
        if session.jid.domain != self.host:
            return
        if session.presence.find(q(CAPS, "c")) is None and not wants_any(session):
            return   # (a client without caps, as most bots: nothing to ask, no task)
        self.api.add_task(self._caps_then_last(session, first))

    async def _caps_then_last(self, session: Any, first: bool) -> None:
        nodes = await self.caps.notify_nodes(session.jid, session.presence) or frozenset()
        if session.gone or not session.available:
            return
        new = {NOTIFY + n for n in nodes}
        old = self.server.sessions.set_flags(session, NOTIFY, new)  # the cluster sees them
        fresh = nodes if first else frozenset(f[len(NOTIFY):] for f in new - old)
        if fresh:
            await self._send_last(session, fresh)

    async def _send_last(self, session: Any, nodes: frozenset[str]) -> None:
        user = session.jid.bare
        roster = RosterModule.of(self.server, self.host)
        publishers = await roster.cache.run(user, lambda r: r.publishers()) \
            if roster is not None else []
        owners = {user.local or ""} | {p.local or "" for p in publishers
                                       if p.domain == self.host and p.local}
        hooks = self.server.hooks
        for last in await self.store.last_items(self.host, sorted(owners), sorted(nodes)):
            owner = JID(last.owner, self.host)
            if owner == user or not hooks.fire("privacy/blocked", owner, user):
                self._send_last_item(last, session.jid, own=owner == user)

    def _send_last_item(self, last: LastItem, to: JID, own: bool) -> None:
        """The last item of a node on presence, with its delay, where the node's
        configuration allows it (a ``whitelist`` node: to the owner's sessions only)."""
        cfg = last.config
        if cfg.get("send_last_published_item") != "on_sub_and_presence" or \
                (not own and cfg["access_model"] == "whitelist"):
            return
        kept = parse_xml(last.item.payload) if cfg["deliver_payloads"] else None
        self._send_event(JID(last.owner, self.host), to, Element(
            q(EVENT, "items"), {"node": last.node}, [Element(
                q(EVENT, "item"), {"id": last.item.id}, [kept] if kept is not None else [])]),
            last.item.published / 1e6)

    # -- contacts on other servers -------------------------------------------------------
    @hook("presence/bare", priority=50)
    def _presence_in(self, ev: StanzaEvent) -> None:
        frm = ev.from_jid
        if frm.domain in self.server.hosts or frm.resource is None or ev.to_jid.local is None:
            return None
        if ev.type == "available":
            self.api.add_task(self._remote_available(ev.to_jid.bare, frm, ev.stanza))
        elif ev.type in ("unavailable", "error"):
            self._forget_remote(frm)
        return None   # (observed only: the presence goes on to its recipients)

    @hook("presence/full", priority=50)
    def _presence_in_full(self, ev: StanzaEvent) -> None:
        if ev.type in ("available", "unavailable", "error"):
            self._presence_in(ev)
        return None

    def _forget_remote(self, full: JID) -> None:
        if self.remote.pop(full, None) is not None:
            fulls = self.remote_by_bare.get(full.bare)
            if fulls is not None:
                fulls.discard(full)
                if not fulls:
                    del self.remote_by_bare[full.bare]

    async def _remote_available(self, owner: JID, contact: JID, presence: Element) -> None:
        nodes = await self.caps.notify_nodes(contact, presence) or frozenset()
        if not nodes:
            self._forget_remote(contact)
            return
        known = self.remote.get(contact)
        owners: set[JID] = known[1] if known is not None else set()
        fresh = nodes if known is None or owner not in owners else nodes - known[0]
        if known is None and len(self.remote) >= REMOTE_MAX:
            self._forget_remote(next(iter(self.remote)))   # the one seen first
        owners.add(owner)
        self.remote[contact] = (nodes, owners)
        self.remote_by_bare.setdefault(contact.bare, set()).add(contact)
        if not fresh:
            return
        roster = RosterModule.of(self.server, self.host)
        subscribed = roster is not None and await roster.cache.run(
            owner, lambda r: r.state(contact.bare).frm)
        if not subscribed or self.server.hooks.fire("privacy/blocked", owner, contact.bare):
            return
        for last in await self.store.last_items(self.host, [owner.local or ""], sorted(fresh)):
            self._send_last_item(last, contact, own=False)

    @hook("account/removed")
    async def _account_removed(self, user: JID) -> None:
        if user.domain == self.host and user.local is not None:
            await self.store.delete_user(self.host, user.local)
