"""Two (or more) xmppd processes federating on loopback."""

from __future__ import annotations

import subprocess
from typing import Any, Callable

from .procs import XmppdServer


def federated_pair(make_server: Callable[..., XmppdServer], *, db: str = "sqlite",
                   config: dict[str, Any] | None = None,
                   config_b: dict[str, Any] | None = None) -> tuple[XmppdServer, XmppdServer]:
    """xmppd for a.test and b.test, each told where the other's s2s port is."""
    a = make_server(db=db, hosts=("a.test",))
    b = make_server(db=db, hosts=("b.test",))
    a.config["s2s_hosts"] = {"b.test": {"host": "127.0.0.1", "port": b.s2s}}
    b.config["s2s_hosts"] = {"a.test": {"host": "127.0.0.1", "port": a.s2s}}
    for srv, extra in ((a, config), (b, config_b if config_b is not None else config)):
        srv.config.update(extra or {})
        srv.config["modules"] = {"mod_ping": {}, "mod_disco": {}, "mod_version": {}}
        srv.write_config()
    return a, b


def s2s_connections(srv: XmppdServer) -> list[str]:
    res = srv.ctl("s2s_connections")
    return [line for line in res.stdout.splitlines() if line.strip()]


def ctl_out(srv: XmppdServer, *args: str) -> str:
    res: subprocess.CompletedProcess[str] = srv.ctl(*args)
    return res.stdout.strip()
