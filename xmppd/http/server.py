"""One HTTP server (aiohttp) for every ``ejabberd_http`` listener.

``request_handlers`` map URL paths to handler modules (``ejabberd_http_ws``,
``mod_bosh``, ``mod_http_upload``...). Modules register their handler
factories in :data:`HANDLERS`; a path whose handler xmppd lacks is skipped
with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server

log = logging.getLogger(__name__)

# handler module name -> function(server, listen, path, app) that adds routes
HANDLERS: dict[str, Callable[[Server, ListenConfig, str, web.Application], None]] = {}


class HttpListener:
    def __init__(self, runner: web.AppRunner, site: web.BaseSite) -> None:
        self.runner = runner
        self.site = site

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        await self.runner.cleanup()


async def start_listener(server: Server, listen: ListenConfig) -> Any:
    app = web.Application(client_max_size=1024 * 1024)
    app["xmppd"] = server
    for path, handler in listen.request_handlers.items():
        add = HANDLERS.get(handler)
        if add is None:
            server.warnings.append(f"{listen.path}.request_handlers.{path}: handler {handler} "
                                   f"is not available in xmppd, ignored")
            log.warning("config: %s", server.warnings[-1])
            continue
        add(server, listen, path, app)
    for fn in server.hooks.fire_all("http/app", server, listen, app):
        del fn
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ssl_ctx = None
    if listen.tls:
        assert server.certs is not None
        ssl_ctx = server.certs.sni_context(next(iter(server.hosts)), ["http/1.1"])
    site = web.TCPSite(runner, host=listen.ip if listen.ip != "::" else None, port=listen.port,
                       ssl_context=ssl_ctx, backlog=listen.backlog, reuse_address=True,
                       reuse_port=server.reuse_port)
    await site.start()
    return HttpListener(runner, site)
