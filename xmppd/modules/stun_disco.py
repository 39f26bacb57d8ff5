"""XEP-0215 external service discovery (``mod_stun_disco``, as in ejabberd): the STUN
and TURN servers clients use for audio and video calls (Conversations, Dino...).

The services come from the configuration (``services``) and, with
``offer_local_services`` (true, as in ejabberd), from xmppd's own ``ejabberd_stun``
listeners: STUN, and TURN where ``use_turn`` is on. A ``restricted`` TURN service gets
short-lived credentials, made as the TURN REST API describes and coturn checks with
``use-auth-secret``: the username is ``EXPIRY:JID`` (EXPIRY in seconds since the
epoch) and the password the base64 of the HMAC-SHA-1 of the username under the
``secret`` the TURN server shares (xmppd's own TURN listener uses the same secret,
or without one a local secret: :mod:`xmppd.stun.credentials`). Clients get them with
the list of services (``<services/>``) or ask for one service's (``<credentials/>``).
"""

from __future__ import annotations

import time
from typing import Any

from ..acl import v_access
from ..confval import ConfigError, join, v_bool, v_enum, v_nonempty_str, v_port, v_timeout
from ..datetimes import stamp
from ..jid import JID
from ..moduleapi import Module, Option, iq_handler
from ..stanza import StanzaError, StanzaEvent
from ..stun.credentials import shared_secret, turn_credentials
from ..xml import Element

NS = "urn:xmpp:extdisco:2"
SERVICE = "{%s}service" % NS
SERVICE_KEYS = ("host", "port", "type", "transport", "restricted")


def _v_services(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(path, "a list of services (host, port, type, transport, restricted)",
                          value)
    out = []
    for i, raw in enumerate(value):
        p = join(path, i)
        if not isinstance(raw, dict):
            raise ConfigError(p, "a mapping (host, port, type, transport, restricted)", raw)
        d = raw
        for key in d:
            if key not in SERVICE_KEYS:
                raise ConfigError(join(p, key), "one of " + ", ".join(SERVICE_KEYS), key,
                                  show_got=False)
        if "host" not in d or "type" not in d:
            raise ConfigError(p, "a service with a host and a type", raw)
        type_ = v_enum("stun", "turn", "stuns", "turns")(d["type"], join(p, "type"))
        out.append({
            "host": v_nonempty_str(d["host"], join(p, "host")),
            "port": v_port(d.get("port", 5349 if type_ in ("stuns", "turns") else 3478),
                           join(p, "port")),
            "type": type_,
            "transport": v_enum("udp", "tcp")(d.get("transport", "udp"), join(p, "transport")),
            "restricted": v_bool(d.get("restricted", type_ in ("turn", "turns")),
                                 join(p, "restricted")),
        })
    return out


class StunDisco(Module):
    name = "mod_stun_disco"
    features = (NS,)
    xeps = ("XEP-0215",)
    options = {
        "access": Option("local", v_access, "who may learn the services"),
        "services": Option([], _v_services, "STUN and TURN services offered to clients"),
        "secret": Option(None, v_nonempty_str, "the TURN server's shared secret (use-auth-secret)"),
        "credentials_lifetime": Option(12 * 3600.0, v_timeout("second"),
                                       "how long TURN credentials are valid"),
        "offer_local_services": Option(True, v_bool,
                                       "offer xmppd's own ejabberd_stun listeners too"),
    }

    @classmethod
    def validate(cls, raw: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
        opts = super().validate(raw, path, warnings)
        if any(s["restricted"] for s in opts["services"]) and not opts["secret"]:
            raise ConfigError(join(path, "secret"),
                              "the TURN server's secret for restricted services", None,
                              show_got=False)
        return opts

    def _all_services(self) -> list[dict[str, Any]]:
        out = list(self.opts["services"])
        if self.opts["offer_local_services"]:
            for lst in self.server.listeners:
                local = getattr(lst, "services", None)
                if local is not None:
                    out.extend(local())
        return out

    def _check(self, ev: StanzaEvent) -> None:
        if not self.server.access.access(self.opts["access"], ev.from_jid.bare):
            raise StanzaError("forbidden", text="you may not use these services")

    def _element(self, svc: dict[str, Any], requester: JID) -> Element:
        attrs = {"host": svc["host"], "port": str(svc["port"]), "type": svc["type"],
                 "transport": svc["transport"]}
        if svc["restricted"]:
            expires = int(time.time() + self.opts["credentials_lifetime"])
            # xmppd's own listener checks with the server's shared secret, on every host
            secret = shared_secret(self.server) if svc.get("local") else self.opts["secret"]
            attrs["username"], attrs["password"] = turn_credentials(
                secret, str(requester.bare), expires)
            attrs["expires"] = stamp(expires, millis=False)
            attrs["restricted"] = "1"
        return Element(SERVICE, attrs)

    @iq_handler("get", NS, "services")
    def services(self, ev: StanzaEvent) -> Element:
        self._check(ev)
        want = ev.stanza.first_child().attrs.get("type")  # type: ignore[union-attr]
        out = Element("{%s}services" % NS, {"type": want} if want else {})
        for svc in self._all_services():
            if not want or svc["type"] == want:
                out.append(self._element(svc, ev.from_jid))
        return out

    @iq_handler("get", NS, "credentials")
    def credentials(self, ev: StanzaEvent) -> Element:
        self._check(ev)
        asked = ev.stanza.first_child().find(SERVICE)  # type: ignore[union-attr]
        if asked is None or not asked.attrs.get("host") or not asked.attrs.get("type"):
            raise StanzaError("bad-request", text="name a service by host and type")
        out = Element("{%s}credentials" % NS)
        for svc in self._all_services():
            if svc["restricted"] and svc["host"] == asked.attrs["host"] and \
                    svc["type"] == asked.attrs["type"] and \
                    asked.attrs.get("port", str(svc["port"])) == str(svc["port"]):
                out.append(self._element(svc, ev.from_jid))
        if not out.children:
            raise StanzaError("item-not-found", text="no such restricted service")
        return out
