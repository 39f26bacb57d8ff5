"""XEP-0030 service discovery, XEP-0115 server caps, XEP-0157 contact addresses."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Optional

from ..confval import ConfigError, join, v_list
from ..moduleapi import Module, Option, iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..xml import Element

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
CAPS = "http://jabber.org/protocol/caps"
DATA = "jabber:x:data"
CAPS_NODE = "https://xmppd.invalid/caps"


def _v_server_info(value: Any, path: str) -> list[dict[str, Any]]:
    out = []
    for i, entry in enumerate(value or []):
        p = join(path, i)
        if not isinstance(entry, dict) or "name" not in entry or "urls" not in entry:
            raise ConfigError(p, "a mapping with name and urls", entry)
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        out.append({"modules": entry.get("modules", "all"), "name": str(entry["name"]),
                    "urls": [str(u) for u in urls]})
    return out


def form_type(form: Element) -> str:
    for f in form.findall("{jabber:x:data}field"):
        if f.attrs.get("var") == "FORM_TYPE":
            return f.findtext("{jabber:x:data}value") or ""
    return ""


def caps_ver(identities: list[tuple[str, str, Optional[str]]], features: list[str],
             forms: list[Element]) -> str:
    """XEP-0115 5.1 verification string, SHA-1, base64."""
    s = "".join(f"{c}/{t}//{n or ''}<" for c, t, n in sorted(identities))
    s += "".join(f + "<" for f in sorted(set(features)))
    for form in sorted(forms, key=form_type):
        s += form_type(form) + "<"
        fields = [f for f in form.findall("{jabber:x:data}field") if f.attrs.get("var") != "FORM_TYPE"]
        for f in sorted(fields, key=lambda f: f.attrs.get("var", "")):
            s += f.attrs.get("var", "") + "<"
            for v in sorted(x.text for x in f.findall("{jabber:x:data}value")):
                s += v + "<"
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


class Disco(Module):
    name = "mod_disco"
    xeps = ("XEP-0030", "XEP-0115", "XEP-0157")
    options = {
        "server_info": Option([], _v_server_info, "XEP-0157 contact addresses"),
        "extra_domains": Option([], v_list(lambda v, p: str(v)), "extra disco items"),
        "name": Option("xmppd", lambda v, p: str(v), "server identity name"),
    }

    def setup(self) -> None:
        self.api.add_feature(INFO)
        self.api.add_feature(ITEMS)
        self.api.add_identity("server", "im", self.opts["name"])
        for d in self.opts["extra_domains"]:
            self.api.add_item(d)
        if self.opts["server_info"]:
            self.api.add_extension(self._contact_form)
        self.api.add_stream_feature("pre-auth", self._caps_feature)
        self.api.add_stream_feature("post-auth", self._caps_feature)
        self._ver: Optional[tuple[int, str, bytes]] = None

    def _contact_form(self) -> Element:
        form = Element("{jabber:x:data}x", {"type": "result"})
        f = form.add("{jabber:x:data}field", {"var": "FORM_TYPE", "type": "hidden"})
        f.add("{jabber:x:data}value", None, "http://jabber.org/network/serverinfo")
        for entry in self.opts["server_info"]:
            f = form.add("{jabber:x:data}field", {"var": entry["name"]})
            for url in entry["urls"]:
                f.add("{jabber:x:data}value", None, url)
        return form

    def host_info(self) -> tuple[list[tuple[str, str, Optional[str]]], list[str], list[Element]]:
        vh = self.api.vhost
        return list(vh.identities), list(vh.features), [f() for f in vh.extensions]

    def _caps(self) -> tuple[str, bytes]:
        """The host's XEP-0115 hash and its stream feature, made again when the host's
        features change."""
        vh = self.api.vhost
        key = len(vh.features) * 1000 + len(vh.identities) * 10 + len(vh.extensions)
        if self._ver is None or self._ver[0] != key:
            ver = caps_ver(*self.host_info())
            self._ver = (key, ver, Element("{%s}c" % CAPS, {
                "hash": "sha-1", "node": CAPS_NODE, "ver": ver}).to_bytes(""))
        return self._ver[1], self._ver[2]

    def _caps_feature(self, stream: Any) -> bytes:
        return self._caps()[1]

    @iq_handler("get", INFO, "query", dest="host")
    def info(self, ev: StanzaEvent) -> Element:
        node = ev.stanza.first_child().attrs.get("node")  # type: ignore[union-attr]
        q = Element("{%s}query" % INFO, {"node": node} if node else {})
        if node and node != f"{CAPS_NODE}#{self._caps()[0]}":
            handled = self.server.hooks.fire("disco-info-node/host", ev, node, q)
            if handled is None:
                raise StanzaError("item-not-found")
            return q
        identities, features, forms = self.host_info()
        for c, t, n in identities:
            attrs = {"category": c, "type": t}
            if n:
                attrs["name"] = n
            q.add("{%s}identity" % INFO, attrs)
        for f in sorted(set(features)):
            q.add("{%s}feature" % INFO, {"var": f})
        for form in forms:
            q.append(form)
        return q

    @iq_handler("get", ITEMS, "query", dest="host")
    def items(self, ev: StanzaEvent) -> Element:
        node = ev.stanza.first_child().attrs.get("node")  # type: ignore[union-attr]
        q = Element("{%s}query" % ITEMS, {"node": node} if node else {})
        if node:
            if self.server.hooks.fire("disco-items-node/host", ev, node, q) is None:
                raise StanzaError("item-not-found")
            return q
        for jid, name, inode in self.api.vhost.items:
            attrs = {"jid": jid}
            if name:
                attrs["name"] = name
            if inode:
                attrs["node"] = inode
            q.add("{%s}item" % ITEMS, attrs)
        return q

    @iq_handler("get", INFO, "query", dest=("bare", "self"))
    def account_info(self, ev: StanzaEvent) -> Element:
        """disco#info on an account's bare JID (XEP-0030 section 3.3)."""
        q = Element("{%s}query" % INFO)
        node = ev.stanza.first_child().attrs.get("node")  # type: ignore[union-attr]
        if node:
            q.attrs["node"] = node
        identities = {("account", "registered", None)}
        for extra in self.server.hooks.fire_all("disco-account-identities", ev):
            identities.update(extra)   # (category, type, name)
        for category, type_, name in sorted(identities, key=lambda i: (i[0], i[1], i[2] or "")):
            attrs = {"category": category, "type": type_}
            if name:
                attrs["name"] = name
            q.add("{%s}identity" % INFO, attrs)
        feats = {INFO, ITEMS}
        for extra in self.server.hooks.fire_all("disco-account-features", ev):
            feats.update(extra)
        for f in sorted(feats):
            q.add("{%s}feature" % INFO, {"var": f})
        return q

    @iq_handler("get", ITEMS, "query", dest=("bare", "self"))
    def account_items(self, ev: StanzaEvent) -> Element:
        q = Element("{%s}query" % ITEMS)
        for extra in self.server.hooks.fire_all("disco-account-items", ev, q):
            del extra
        return q
