"""In-band registration and account management (XEP-0077, mod_register): a raw client
creates an account before logging in, within the access rules and the per-address
rate; a slixmpp client changes its password and deletes its account."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Optional

from conftest import run
from helpers.clients import Slix
from helpers.procs import XmppdServer
from helpers.raw import C, RawClient

MakeServer = Callable[..., XmppdServer]
NS = "jabber:iq:register"
FEATURE = "{http://jabber.org/features/iq-register}register"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _condition(el: ET.Element) -> Optional[str]:
    err = el.find(C + "error")
    if err is None:
        return None
    for c in err:
        if c.tag.startswith("{%s}" % STANZAS) and not c.tag.endswith("}text"):
            return c.tag.split("}")[1]
    return None


async def _secured(port: int) -> tuple[RawClient, ET.Element]:
    c = RawClient(port)
    await c.connect()
    await c.open()
    feats = await c.starttls()
    return c, feats


async def _register(c: RawClient, user: str, password: str, iid: str) -> ET.Element:
    await c.send(f"<iq type='set' id='{iid}'><query xmlns='{NS}'><username>{user}</username>"
                 f"<password>{password}</password></query></iq>")
    return await c.recv_until(lambda el: el.get("id") == iid)


def test_a_new_user_signs_up_within_the_limits(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_disco": {}, "mod_register": {}})
    srv.register("bob", "pw")
    srv.start()

    async def main() -> None:
        c, feats = await _secured(srv.c2s)
        assert feats.find(FEATURE) is not None
        await c.send(f"<iq type='get' id='g1'><query xmlns='{NS}'/></iq>")
        form = await c.recv_until(lambda el: el.get("id") == "g1")
        q = form.find(f"{{{NS}}}query")
        assert q is not None and q.find(f"{{{NS}}}username") is not None
        assert q.find(f"{{{NS}}}password") is not None
        # a taken name, a bad name, nothing: errors, and no account
        assert _condition(await _register(c, "bob", "x", "r1")) == "conflict"
        assert _condition(await _register(c, "bad@name", "x", "r2")) == "jid-malformed"
        assert _condition(await _register(c, "", "", "r3")) == "not-acceptable"
        res = await _register(c, "dora", "dora-pw", "r4")
        assert res.get("type") == "result", ET.tostring(res)
        await c.close()
        # the account works
        assert await RawClient(srv.c2s).login("dora", "dora-pw") == "dora@localhost/raw"
        # one account per address per registration_timeout
        c, _ = await _secured(srv.c2s)
        assert _condition(await _register(c, "eve", "x", "r5")) == "resource-constraint"
        # anything else still needs authentication
        await c.send("<message to='bob@localhost'><body>hi</body></message>")
        assert await c.stream_error() == "not-authorized"
        await c.close()
        assert srv.ctl("check_account", "eve", "localhost", check=False).returncode == 1

    run(main())
    assert "registered dora@localhost from 127.0.0.1" in srv.log


def test_addresses_not_allowed_see_no_registration(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_register": {"ip_access": "none"}})
    srv.start()

    async def main() -> None:
        c, feats = await _secured(srv.c2s)
        assert feats.find(FEATURE) is None
        assert _condition(await _register(c, "mallory", "x", "r1")) == "forbidden"
        await c.close()

    run(main())
    assert srv.ctl("check_account", "mallory", "localhost", check=False).returncode == 1


def test_a_client_changes_its_password_and_deletes_its_account(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_disco": {}, "mod_roster": {}, "mod_register": {}})
    srv.register("alice", "old-pw")
    srv.start()

    async def main() -> None:
        alice = await Slix("alice@localhost/a", "old-pw",
                           plugins=("xep_0030", "xep_0077")).login(srv.c2s)
        await alice.plugin["xep_0077"].change_password("new-pw", jid="localhost")
        await alice.logout()
        old = RawClient(srv.c2s)
        await old.connect()
        await old.open()
        await old.starttls()
        res = await old.auth_scram("alice", "old-pw")
        assert res.tag.endswith("failure")
        await old.close()
        again = await Slix("alice@localhost/b", "new-pw",
                           plugins=("xep_0030", "xep_0077")).login(srv.c2s)
        await again.plugin["xep_0077"].cancel_registration(jid="localhost")
        await asyncio.sleep(0.5)
        await again.logout()

    run(main())
    assert srv.ctl("check_account", "alice", "localhost", check=False).returncode == 1
    assert "alice@localhost deleted its account" in srv.log


def test_no_sign_up_without_tls(make_server: MakeServer) -> None:
    """Passwords travel in the clear inside the stream: outside TLS there is no sign-up,
    even where the listener lets a client log in without TLS (SCRAM)."""
    srv = make_server(modules={"mod_register": {}}, listen_extra={"starttls_required": False})
    srv.start()

    async def main() -> None:
        c = RawClient(srv.c2s)
        await c.connect()
        feats = await c.open()
        assert feats.find(FEATURE) is None
        assert _condition(await _register(c, "plain", "x", "r1")) == "not-allowed"
        await c.close()

    run(main())
    assert srv.ctl("check_account", "plain", "localhost", check=False).returncode == 1


def test_password_strength_refuses_weak_passwords(make_server: MakeServer) -> None:
    """``password_strength`` (ejabberd's option, bits of entropy): a weak password gets
    ``not-acceptable`` at sign-up and at a change, and makes no account."""
    srv = make_server(modules={"mod_disco": {}, "mod_roster": {},
                               "mod_register": {"password_strength": 48}})
    srv.register("alice", "old-pw")
    srv.start()

    async def main() -> None:
        c, _ = await _secured(srv.c2s)
        res = await _register(c, "dora", "secret", "r1")     # 6 x log2(26): 28 bits
        assert _condition(res) == "not-acceptable", ET.tostring(res)
        assert "too weak" in (res.findtext(f"{C}error/{{{STANZAS}}}text") or "")
        res = await _register(c, "dora", "Tr0ub4dor-3-horse", "r2")
        assert res.get("type") == "result", ET.tostring(res)
        await c.close()
        alice = await RawClient(srv.c2s).login("alice", "old-pw")
        assert alice == "alice@localhost/raw"

    run(main())
    assert srv.ctl("check_account", "dora", "localhost", check=False).returncode == 0

    async def change() -> None:
        alice = await Slix("alice@localhost/a", "old-pw",
                           plugins=("xep_0030", "xep_0077")).login(srv.c2s)
        try:
            await alice.plugin["xep_0077"].change_password("abcabc", jid="localhost")
        except Exception as e:  # slixmpp's IqError
            assert "not-acceptable" in str(getattr(e, "condition", e)), e
        else:
            raise AssertionError("a weak password was accepted")
        await alice.plugin["xep_0077"].change_password("c0rrect-Horse-battery", jid="localhost")
        await alice.logout()

    run(change())
    assert srv.ctl("check_password", "alice", "localhost", "c0rrect-Horse-battery",
                   check=False).returncode == 0


def test_entropy_counts_as_ejabberd() -> None:
    from xmppd.modules.register import entropy
    assert entropy("") == 0
    assert round(entropy("abcdef"), 1) == round(6 * 4.7004, 1)          # 26 symbols
    assert round(entropy("aB3"), 2) == round(3 * __import__("math").log2(62), 2)
    assert entropy("pässword") > entropy("password")                      # non-ASCII: 128
