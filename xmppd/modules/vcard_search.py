"""The vCard user directory of mod_vcard (XEP-0055 Jabber Search), as ejabberd's
``search: true`` offers it: a service at ``vjud.HOST`` (option ``hosts``) that finds
the accounts whose vCard matches.

The service is listed in the host's disco#items (identity ``directory/user``, features
``jabber:iq:search`` and ``vcard-temp``). An iq get of ``jabber:iq:search`` gives the
instructions, the legacy fields (first, last, nick, email) and a data form (FORM_TYPE
``jabber:iq:search``; the fields user, fn, first, middle, last, nick, bday, ctry,
locality, email, orgname, orgunit). An iq set with the form answers with a form of type
``result`` (``reported`` and an ``item`` per account); with legacy fields, with
``<item jid=...>`` and first, last, nick, email. A value matches case-insensitively, in
full, or by its beginning when it ends in ``*``; every field given must match. At most
``matches`` accounts come back; a search without any value (a lone ``*`` counts as none)
finds nobody unless ``allow_return_all``. ``search_all_hosts`` (the default) searches
the accounts of every virtual host of this server that loads mod_vcard, otherwise those
of the service's own host only.

The index (table ``vcard_search``, :mod:`.vcard_search_store`) is kept with every stored
vCard (``vcard/set``) and dropped with the account, also while ``search`` is off, so
turning the directory on later finds everybody.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from ..confval import ConfigError, v_bool, v_list, v_nonempty_str, v_pos_int_or_infinity, v_str
from ..dataforms import DATA, FIELD, VALUE, X, add_field, form_values
from ..jid import JID, JIDError
from ..moduleapi import Option
from ..stanza import StanzaError, StanzaEvent, not_a_request, payload_key
from ..xml import Element
from .vcard_search_store import RESULT_FIELDS, SEARCH_FIELDS, SearchIndex

if TYPE_CHECKING:
    from .vcard import VcardModule

NS = "jabber:iq:search"
QUERY = "{%s}query" % NS
VCARD_NS = "vcard-temp"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
LEGACY = ("first", "last", "nick", "email")

SEARCH_LABELS = (
    ("user", "User"), ("fn", "Full Name"), ("first", "Given Name"),
    ("middle", "Middle Name"), ("last", "Family Name"), ("nick", "Nickname"),
    ("bday", "Birthday"), ("ctry", "Country"), ("locality", "City"), ("email", "Email"),
    ("orgname", "Organization Name"), ("orgunit", "Organization Unit"),
)
RESULT_LABELS = dict(SEARCH_LABELS, jid="Jabber ID")
INSTRUCTIONS = ("Fill in one or more fields to search for users; a value ending in * "
                "matches every value that begins with the rest")


def _v_vcard(value: Any, path: str) -> Optional[dict[str, Any]]:
    if value is None or isinstance(value, dict):
        return value
    raise ConfigError(path, "a vCard as a mapping (fn, desc, url, ...)", value)


OPTIONS = {
    "search": Option(False, v_bool, "the user directory (XEP-0055) at vjud.HOST"),
    "hosts": Option(["vjud.@HOST@"], v_list(v_nonempty_str), "the directory's domains"),
    "host": Option(None, v_str, "the directory's domain (ejabberd's older option)"),
    "name": Option("vCard User Search", v_str, "the directory's name in discovery"),
    "matches": Option(30, v_pos_int_or_infinity, "results of one search, at most"),
    "allow_return_all": Option(False, v_bool, "an empty search finds everybody"),
    "search_all_hosts": Option(True, v_bool, "search every virtual host, not only this one"),
    "vcard": Option(None, _v_vcard, "the directory's own vCard"),
}


def check(opts: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """``host`` alone (ejabberd's older option) names the directory's one domain."""
    if "host" in raw and "hosts" not in raw and opts["host"]:
        opts["hosts"] = [opts["host"]]
    return opts


def vcard_of(value: Any, tag: str) -> Optional[Element]:
    """A vCard element from the option's YAML (ejabberd's form: lowercase names, a
    mapping for a structured field, a list for a repeated one, ``true`` for a flag such
    as ``home``)."""
    if value is None or value is False:
        return None
    el = Element(tag)
    if isinstance(value, dict):
        for key, sub in value.items():
            name = "{%s}%s" % (VCARD_NS, str(key).upper())
            for item in sub if isinstance(sub, list) else [sub]:
                child = vcard_of(item, name)
                if child is not None:
                    el.append(child)
    elif value is not True:
        el.children = [str(value)]
    return el


def install(mod: VcardModule) -> None:
    """Keep the index of ``mod``'s host; with ``search: true``, run the directory."""
    assert mod.server.db is not None
    index = SearchIndex(mod.server.db)

    async def vcard_set(user: JID, card: Element, by: str) -> None:
        if user.domain == mod.host and user.local is not None:
            await index.put(mod.host, user.local, card)

    async def account_removed(user: JID) -> None:
        if user.domain == mod.host and user.local is not None:
            await index.delete_user(mod.host, user.local)

    mod.api.hook("vcard/set", vcard_set)
    mod.api.hook("account/removed", account_removed)
    if mod.opts["search"]:
        Directory(mod, index)


class Directory:
    """The search service at each of the module's ``hosts``."""

    def __init__(self, mod: VcardModule, index: SearchIndex) -> None:
        self.mod = mod
        self.index = index
        o = mod.opts
        self.name: str = o["name"]
        self.limit: Optional[int] = None if o["matches"] == float("inf") else int(o["matches"])
        self.card = vcard_of(o["vcard"], "{%s}vCard" % VCARD_NS)
        for raw in o["hosts"]:
            domain = raw.replace("@HOST@", mod.host)
            try:
                domain = JID.parse(domain).domain
            except JIDError:
                raise ConfigError(f"modules.{mod.name}.hosts", "a domain name", raw) from None
            mod.api.add_component(domain, self._component)
            mod.api.add_item(domain, self.name)

    def _component(self, ev: StanzaEvent) -> Any:
        if not_a_request(ev):
            return True
        key = payload_key(ev.stanza)
        router = self.mod.server.router
        handler: Optional[Callable[[StanzaEvent], Any]]
        if ev.type == "get":
            handler = {f"{DISCO_INFO}:query": self._info, f"{DISCO_ITEMS}:query": self._items,
                       f"{VCARD_NS}:vCard": self._vcard, f"{NS}:query": self._form}.get(key)
        else:
            handler = self._search if key == f"{NS}:query" else None
        if handler is None:
            return ev.error("service-unavailable")
        return router.answer_iq(ev, handler)

    # -- discovery and the service's vCard ---------------------------------------------
    def _info(self, ev: StanzaEvent) -> Element:
        if ev.stanza.first_child().attrs.get("node"):  # type: ignore[union-attr]
            raise StanzaError("item-not-found")
        q = Element("{%s}query" % DISCO_INFO)
        q.add("{%s}identity" % DISCO_INFO, {"category": "directory", "type": "user",
                                           "name": self.name})
        for var in (DISCO_INFO, DISCO_ITEMS, NS, VCARD_NS):
            q.add("{%s}feature" % DISCO_INFO, {"var": var})
        return q

    def _items(self, ev: StanzaEvent) -> Element:
        if ev.stanza.first_child().attrs.get("node"):  # type: ignore[union-attr]
            raise StanzaError("item-not-found")
        return Element("{%s}query" % DISCO_ITEMS)

    def _vcard(self, ev: StanzaEvent) -> Element:
        if self.card is not None:
            return self.card.deepcopy()
        card = Element("{%s}vCard" % VCARD_NS)
        card.add("{%s}FN" % VCARD_NS, None, self.name)
        return card

    # -- the search ---------------------------------------------------------------------
    def _form(self, ev: StanzaEvent) -> Element:
        q = Element(QUERY)
        q.add("{%s}instructions" % NS, None, INSTRUCTIONS)
        for name in LEGACY:
            q.add("{%s}%s" % (NS, name))
        x = q.add(X, {"type": "form"})
        x.add("{%s}title" % DATA, None, f"Search users in {ev.to_jid}")
        x.add("{%s}instructions" % DATA, None, INSTRUCTIONS)
        add_field(x, "FORM_TYPE", "hidden", "", [NS])
        for var, label in SEARCH_LABELS:
            add_field(x, var, "text-single", label, [])
        return q

    def _hosts(self) -> list[str]:
        mod = self.mod
        if not mod.opts["search_all_hosts"]:
            return [mod.host]
        return [h for h in mod.server.hosts if type(mod).of(mod.server, h) is not None]

    async def _search(self, ev: StanzaEvent) -> Element:
        q = ev.stanza.first_child()
        assert q is not None
        x = q.find(X)
        if x is not None:
            if x.attrs.get("type") != "submit":
                raise StanzaError("bad-request", "modify", "submit a data form of type submit")
            criteria = {var: vals[0] for var, vals in form_values(x).items()
                        if var in SEARCH_FIELDS and len(vals) == 1 and vals[0]}
        else:
            criteria = {name: q.findtext("{%s}%s" % (NS, name)) or "" for name in LEGACY}
        found: list[dict[str, str]] = []
        if any(v.strip() not in ("", "*") for v in criteria.values()) or \
                self.mod.opts["allow_return_all"]:
            found = await self.index.search(self._hosts(), criteria, self.limit)
        return self._results(ev, found) if x is not None else self._legacy_results(found)

    def _results(self, ev: StanzaEvent, found: list[dict[str, str]]) -> Element:
        q = Element(QUERY)
        x = q.add(X, {"type": "result"})
        x.add("{%s}title" % DATA, None, f"Search results for {ev.to_jid}")
        add_field(x, "FORM_TYPE", "hidden", "", [NS])
        reported = x.add("{%s}reported" % DATA)
        fields = ("jid", *RESULT_FIELDS)
        for var in fields:
            add_field(reported, var, "jid-single" if var == "jid" else "text-single",
                      RESULT_LABELS[var], [])
        for entry in found:
            item = x.add("{%s}item" % DATA)
            for var in fields:
                f = item.add(FIELD, {"var": var})
                f.add(VALUE, None, entry[var])
        return q

    @staticmethod
    def _legacy_results(found: list[dict[str, str]]) -> Element:
        q = Element(QUERY)
        for entry in found:
            item = q.add("{%s}item" % NS, {"jid": entry["jid"]})
            for name in LEGACY:
                item.add("{%s}%s" % (NS, name), None, entry[name])
        return q
