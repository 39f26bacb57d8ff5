"""XEP-0156 discovery of the web endpoints: ``/.well-known/host-meta`` (XRD)
and ``/.well-known/host-meta.json`` (JRD), with CORS so that web clients on
any origin can read them. The ``mod_host_meta`` handler serves both files
(the configured path, and the same path with ``.json``).

The links come from the module options ``websocket_url`` and
``bosh_service_url`` (``@HOST@`` is the virtual host); ``auto`` (the default)
lists the ``ejabberd_http_ws`` and ``mod_bosh`` handlers of every configured
``ejabberd_http`` listener at the host name the client asked for, TLS
listeners first (a page served over HTTPS gets only those: browsers refuse
plain ones from it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Union

from aiohttp import web

from ..confval import ConfigError, v_list, v_str
from ..moduleapi import Module, Option
from ..xml import escape_attr
from .server import HANDLERS

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server

WS_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"


def _v_urls(schemes: tuple[str, ...]) -> Any:
    def check(value: Any, path: str) -> Union[str, list[str]]:
        if value in ("auto", "undefined"):
            return str(value)
        urls = v_list(v_str)(value, path)
        for i, url in enumerate(urls):
            if not url.startswith(schemes):
                raise ConfigError(f"{path}[{i}]", "a URL starting with " + " or ".join(schemes),
                                  url)
        return urls
    return check


class ModHostMeta(Module):
    """Options of the host-meta handler for a virtual host."""

    name = "mod_host_meta"
    xeps = ("XEP-0156",)
    options = {
        "websocket_url": Option("auto", _v_urls(("ws://", "wss://")),
                                "auto, undefined, or the WebSocket URLs to publish"),
        "bosh_service_url": Option("auto", _v_urls(("http://", "https://")),
                                   "auto, undefined, or the BOSH URLs to publish"),
    }


def _auto(server: Server, handler: str, host: str, secure_only: bool) -> list[str]:
    found: list[tuple[bool, str]] = []
    for lc in server.config.listen:
        if lc.module != "ejabberd_http":
            continue
        for path, name in lc.request_handlers.items():
            if name != handler or (secure_only and not lc.tls):
                continue
            if handler == "mod_bosh":
                scheme = "https" if lc.tls else "http"
            else:
                scheme = "wss" if lc.tls else "ws"
            found.append((not lc.tls, f"{scheme}://{host}:{lc.port}{path}"))
    return [url for _, url in sorted(found, key=lambda f: f[0])]


def links(server: Server, vhost: str, request_host: str, secure_only: bool) -> list[tuple[str, str]]:
    """(rel, href) pairs to publish for ``vhost``, reached at ``request_host``."""
    mod = server.hosts[vhost].modules.get("mod_host_meta")
    opts = mod.opts if mod is not None else ModHostMeta.validate({}, "", [])
    out: list[tuple[str, str]] = []
    for rel, key, handler in ((WS_REL, "websocket_url", "ejabberd_http_ws"),
                              (BOSH_REL, "bosh_service_url", "mod_bosh")):
        value = opts[key]
        if value == "undefined":
            continue
        urls = _auto(server, handler, request_host, secure_only) if value == "auto" else \
            [u.replace("@HOST@", vhost) for u in value]
        out.extend((rel, url) for url in urls)
    return out


def xrd(items: list[tuple[str, str]]) -> bytes:
    lines = ["<?xml version='1.0' encoding='utf-8'?>",
             "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"]
    lines += ["  <Link rel='%s' href='%s'/>" % (escape_attr(rel), escape_attr(href))
              for rel, href in items]
    lines.append("</XRD>\n")
    return "\n".join(lines).encode()


def jrd(items: list[tuple[str, str]]) -> bytes:
    return json.dumps({"links": [{"rel": rel, "href": href} for rel, href in items]},
                      indent=2).encode() + b"\n"


def add_host_meta(server: Server, listen: ListenConfig, path: str, app: web.Application) -> None:
    base = path[:-5] if path.endswith(".json") else path
    cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type"}

    def make(as_json: bool) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                return web.Response(status=204, headers=cors)
            request_host = _hostname(request.host or "")
            name = request_host.strip("[]").lower()
            vhost = name if name in server.hosts else next(iter(server.hosts))
            items = links(server, vhost, request_host or vhost, request.secure)
            if as_json:
                return web.Response(body=jrd(items), content_type="application/json",
                                    headers=cors)
            return web.Response(body=xrd(items), content_type="application/xrd+xml",
                                charset="utf-8", headers=cors)
        return handle

    taken = {r.canonical for r in app.router.resources()}
    for route, as_json in ((base, False), (base + ".json", True)):
        if route not in taken:  # both paths may be configured: mount each once
            handler = make(as_json)
            app.router.add_route("GET", route, handler)
            app.router.add_route("OPTIONS", route, handler)


def _hostname(host: str) -> str:
    """The host part of a Host header (``[::1]`` kept in brackets for URLs)."""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


HANDLERS["mod_host_meta"] = add_host_meta
