"""Registered nicknames (XEP-0045 7.10, with the MUC service as ejabberd does): a user
registers a nickname with a form, and nobody else may use it in any room of the service;
the administrator's muc_register_nick and muc_unregister_nick; kept across restarts."""

from __future__ import annotations

from collections.abc import Callable

from conftest import run
from helpers.peer import Peer, error_condition
from helpers.procs import XmppdServer

MakeServer = Callable[..., XmppdServer]
SERVICE = "conference.localhost"
REG = "jabber:iq:register"
DATA = "jabber:x:data"
MUC = "<x xmlns='http://jabber.org/protocol/muc'/>"


def submit(nick: str) -> str:
    return (f"<query xmlns='{REG}'><x xmlns='{DATA}' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value>"
            f"</field><field var='nick'><value>{nick}</value></field></x></query>")


async def join(p: Peer, room: str, nick: str) -> str:
    """Join (or change nick); the presence's type: None, or 'error' with its condition."""
    await p.send(f"<presence to='{room}@{SERVICE}/{nick}'>{MUC}</presence>")
    el = await p.expect(lambda e: e.tag.endswith("}presence") and
                        e.get("from") == f"{room}@{SERVICE}/{nick}", timeout=10)
    return f"error:{error_condition(el)}" if el.get("type") == "error" else "joined"


def test_a_registered_nickname_is_its_owners(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_disco": {}, "mod_roster": {}, "mod_muc": {}})
    for u in ("alice", "bob"):
        srv.register(u, "secret")
    srv.start()

    async def main() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        bob = await Peer(srv.c2s, "bob").login()
        info = await alice.iq("<query xmlns='http://jabber.org/protocol/disco#info'/>",
                              to=SERVICE)
        assert REG in [f.get("var") for f in info.iter(
            "{http://jabber.org/protocol/disco#info}feature")]
        form = await alice.iq(f"<query xmlns='{REG}'/>", to=SERVICE)
        assert form.find(f"{{{REG}}}query/{{{REG}}}registered") is None
        assert form.find(f".//{{{DATA}}}field[@var='nick']") is not None
        await alice.iq(submit("Wonder"), "set", to=SERVICE)
        form = await alice.iq(f"<query xmlns='{REG}'/>", to=SERVICE)
        assert form.find(f"{{{REG}}}query/{{{REG}}}registered") is not None
        assert form.findtext(f".//{{{DATA}}}field[@var='nick']/{{{DATA}}}value") == "Wonder"
        # bob can neither register it nor use it, in any room
        res = await bob.iq(submit("Wonder"), "set", to=SERVICE, ok=False)
        assert error_condition(res) == "conflict"
        assert await join(bob, "tea", "Wonder") == "error:conflict"
        assert await join(alice, "tea", "Wonder") == "joined"
        assert await join(bob, "party", "bobby") == "joined"
        assert await join(bob, "party", "Wonder") == "error:conflict"  # a nick change
        # an empty form gives it back... the administrator gives it to bob
        res = await alice.iq(submit(""), "set", to=SERVICE, ok=False)
        assert error_condition(res) == "not-acceptable"
        srv.ctl("muc_unregister_nick", "alice@localhost", SERVICE)
        srv.ctl("muc_register_nick", "Wonder", "bob@localhost", SERVICE)
        res = srv.ctl("muc_register_nick", "Wonder", "alice@localhost", SERVICE, check=False)
        assert res.returncode != 0 and "registered by another" in res.stdout + res.stderr
        assert await join(bob, "lounge", "Wonder") == "joined"
        for p in (alice, bob):
            await p.close()
    run(main())
    srv.stop()
    srv.start()

    async def after() -> None:
        alice = await Peer(srv.c2s, "alice").login()
        assert await join(alice, "lounge2", "Wonder") == "error:conflict"
        await alice.iq(f"<query xmlns='{REG}'><remove/></query>", "set", to=SERVICE)
        await alice.close()
    run(after())
