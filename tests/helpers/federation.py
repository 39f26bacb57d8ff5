"""Two (or more) xmppd processes federating on loopback."""

from __future__ import annotations

import subprocess
from typing import Any, Callable

from .peer import Peer, befriend
from .procs import XmppdServer


def federated_pair(make_server: Callable[..., XmppdServer], *, db: str = "sqlite",
                   config: dict[str, Any] | None = None,
                   config_b: dict[str, Any] | None = None,
                   modules: dict[str, Any] | None = None) -> tuple[XmppdServer, XmppdServer]:
    """xmppd for a.test and b.test, each told where the other's s2s port is (and with
    ``modules``, or ping, disco and version)."""
    a = make_server(db=db, hosts=("a.test",))
    b = make_server(db=db, hosts=("b.test",))
    a.config["s2s_hosts"] = {"b.test": {"host": "127.0.0.1", "port": b.s2s}}
    b.config["s2s_hosts"] = {"a.test": {"host": "127.0.0.1", "port": a.s2s}}
    for srv, extra in ((a, config), (b, config_b if config_b is not None else config)):
        srv.config.update(extra or {})
        srv.config["modules"] = modules if modules is not None else {
            "mod_ping": {}, "mod_disco": {}, "mod_version": {}}
        srv.write_config()
    return a, b


def s2s_connections(srv: XmppdServer) -> list[str]:
    res = srv.ctl("s2s_connections")
    return [line for line in res.stdout.splitlines() if line.strip()]


def ctl_out(srv: XmppdServer, *args: str) -> str:
    res: subprocess.CompletedProcess[str] = srv.ctl(*args)
    return res.stdout.strip()


def alice_and_bob(make_server: Callable[..., XmppdServer],
                  modules: dict[str, Any]) -> tuple[XmppdServer, XmppdServer]:
    """A started pair with alice@a.test and bob@b.test (password ``secret``)."""
    a, b = federated_pair(make_server, modules=modules)
    a.register("alice", "secret", host="a.test")
    b.register("bob", "secret", host="b.test")
    a.start()
    b.start()
    return a, b


async def friends_across(a: XmppdServer, b: XmppdServer) -> tuple[Peer, Peer]:
    """alice@a.test/home and bob@b.test/phone logged in, the s2s streams up both ways,
    and subscribed to each other."""
    alice = await Peer(a.c2s, "alice", resource="home", host="a.test").login()
    bob = await Peer(b.c2s, "bob", resource="phone", host="b.test").login()
    # the first stanza each way waits for an s2s stream (dialback): give it time
    await alice.send("<message to='bob@b.test/phone' id='w1'><body>hi</body></message>")
    await bob.expect(lambda el: el.get("id") == "w1", 20)
    await bob.send("<message to='alice@a.test/home' id='w2'><body>hi</body></message>")
    await alice.expect(lambda el: el.get("id") == "w2", 20)
    await befriend(alice, bob)
    return alice, bob
