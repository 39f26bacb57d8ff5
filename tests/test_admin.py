"""The admin command line (xmppd ctl), shutdown, timeouts and shaping."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any, Callable

from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import RawClient

from xmppd.shaper import TokenBucket

MakeServer = Callable[..., XmppdServer]


def test_account_commands_offline_then_live(make_server: MakeServer, tmp_path: Path) -> None:
    srv = make_server()
    assert "successfully registered" in srv.ctl("register", "alice", "localhost", "pw").stdout
    dup = srv.ctl("register", "alice", "localhost", "pw", check=False)
    assert dup.returncode == 1 and "already registered" in dup.stderr
    bad = srv.ctl("register", "alice", "elsewhere.org", "pw", check=False)
    assert bad.returncode == 1 and "unknown host" in bad.stderr
    usage = srv.ctl("register", "alice", check=False)
    assert usage.returncode == 2 and "usage: register USER HOST PASSWORD" in usage.stderr
    assert srv.ctl("status", check=False).returncode == 3  # not running
    srv.start()
    assert "started" in srv.ctl("status").stdout
    srv.ctl("register", "bob", "localhost", "pw")
    assert srv.ctl("registered_users", "localhost").stdout.split() == ["alice", "bob"]
    srv.ctl("change_password", "bob", "localhost", "new")

    async def main() -> None:
        c = RawClient(srv.c2s_tls, tls=True)
        await c.login("bob", "new", "r1")
        assert srv.ctl("connected_users").stdout.split() == ["bob@localhost/r1"]
        assert srv.ctl("connected_users_number").stdout.strip() == "1"
        srv.ctl("kick_session", "bob", "localhost", "r1", "bye bye")
        assert await c.stream_error() == "policy-violation"
        c = RawClient(srv.c2s_tls, tls=True)
        await c.login("alice", "pw", "r2")
        srv.ctl("unregister", "alice", "localhost")
        assert await c.stream_error() == "not-authorized"
    run(main())
    assert srv.ctl("registered_users", "localhost").stdout.split() == ["bob"]
    srv.stop()
    assert srv.ctl("registered_users", "localhost").stdout.split() == ["bob"]
    missing = srv.ctl("unregister", "nobody", "localhost", check=False)
    assert missing.returncode == 1


def test_help_checks_stats_and_stop(make_server: MakeServer) -> None:
    srv = make_server()
    srv.register("alice", "pw")
    # without a running server: help lists the core commands, account checks work
    for args in ((), ("help",)):
        res = srv.ctl(*args)
        assert "register USER HOST PASSWORD" in res.stdout and "stop:" in res.stdout
        assert "not running" in res.stderr
    assert srv.ctl("help", "check_password").stdout.startswith("check_password USER HOST PASSWORD")
    assert srv.ctl("help", "nonsense", check=False).returncode == 2
    assert srv.ctl("check_account", "alice", "localhost").returncode == 0
    missing = srv.ctl("check_account", "nobody", "localhost", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert srv.ctl("check_password", "alice", "localhost", "pw").returncode == 0
    wrong = srv.ctl("check_password", "alice", "localhost", "nope", check=False)
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    srv.start()
    from xmppd import __version__
    assert f"xmppd {__version__} is running" in srv.ctl("status").stdout
    live = srv.ctl("help").stdout
    # the running server lists its modules' commands too (s2s), and every line has its help
    assert "s2s_connections" in live and "stats " in live and "kick_session USER" in live
    assert srv.ctl("check_password", "alice", "localhost", "pw").returncode == 0
    assert srv.ctl("check_password", "alice", "localhost", "x", check=False).returncode == 1
    srv.register("bob", "pw")

    async def main() -> None:
        c = RawClient(srv.c2s_tls, tls=True)
        await c.login("bob", "pw", "r1")
        assert srv.ctl("stats", "onlineusers").stdout.strip() == "1"
        assert srv.ctl("stats", "onlineusersnode").stdout.strip() == "1"
        assert srv.ctl("stats", "registeredusers").stdout.strip() == "2"
        assert int(srv.ctl("stats", "uptimeseconds").stdout) >= 0
        bad = srv.ctl("stats", "processes", check=False)
        assert bad.returncode == 2 and "usage: stats registeredusers|" in bad.stderr
        # stop: the client is told (system-shutdown), and the command returns once it is over
        res = srv.ctl("stop")
        assert res.returncode == 0, res.stderr
        assert await c.stream_error() == "system-shutdown"
    run(main())
    assert srv.proc is not None
    assert srv.proc.wait(10) == 0
    assert srv.ctl("status", check=False).returncode == 3
    assert "Traceback" not in srv.log  # (stop's probes of the admin channel are no requests)


def test_send_message_send_stanza_get_last_and_loglevel(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_roster": {}, "mod_last": {"flush_interval": 0.1}})
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()
    assert srv.ctl("get_last", "alice", "localhost").stdout.strip() == "never\tNOT FOUND"
    C = "{jabber:client}"

    async def main() -> None:
        bob = RawClient(srv.c2s_tls, tls=True)
        await bob.login("bob", "pw", "r")
        await bob.send("<presence/>")
        assert srv.ctl("get_last", "bob", "localhost").stdout.strip().endswith("\tONLINE")
        srv.ctl("send_message", "headline", "localhost", "bob@localhost", "News", "Maintenance at 6")
        m = await bob.recv_until(lambda e: e.tag == C + "message")
        assert m.get("from") == "localhost" and m.get("type") == "headline"
        assert m.findtext(C + "subject") == "News" and m.findtext(C + "body") == "Maintenance at 6"
        srv.ctl("send_stanza", "alice@localhost/x", "bob@localhost/r",
                "<message type='chat'><body>from the admin</body></message>")
        m = await bob.recv_until(lambda e: e.tag == C + "message")
        assert m.get("from") == "alice@localhost/x" and m.findtext(C + "body") == "from the admin"
        bad = srv.ctl("send_stanza", "alice@localhost", "bob@localhost", "<message>", check=False)
        assert bad.returncode == 1 and "not a stanza" in bad.stderr
        bad = srv.ctl("send_stanza", "alice@localhost", "bob@localhost", "<foo/>", check=False)
        assert bad.returncode == 1 and "not a stanza" in bad.stderr
        bad = srv.ctl("send_message", "chat", "a@@b", "bob@localhost", "", "x", check=False)
        assert bad.returncode == 1
        await bob.send("<presence type='unavailable'><status>gone fishing</status></presence>")
        await bob.close()
    run(main())
    deadline = time.monotonic() + 10
    while "ONLINE" in (last := srv.ctl("get_last", "bob", "localhost").stdout):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    when, status = last.strip().split("\t")
    assert status == "gone fishing" and when.startswith("20") and when.endswith("Z")
    assert srv.ctl("get_last", "bob", "elsewhere", check=False).returncode == 1

    async def bad_stream() -> None:
        c = await RawClient(srv.c2s).connect()
        await c.send("<stream:stream to='localhost' version='1.0' xmlns='jabber:server' "
                     "xmlns:stream='http://etherx.jabber.org/streams'>")
        assert await c.stream_error() == "invalid-namespace"  # logged at info

    srv.ctl("set_loglevel", "error")
    run(bad_stream())
    assert "log level: error" in srv.log and "invalid-namespace" not in srv.log
    srv.ctl("set_loglevel", "info")
    run(bad_stream())
    deadline = time.monotonic() + 5
    while "invalid-namespace" not in srv.log:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert srv.ctl("set_loglevel", "loud", check=False).returncode == 2


def test_register_bulk(make_server: MakeServer, tmp_path: Path) -> None:
    srv = make_server()
    f = tmp_path / "users.txt"
    f.write_text("# migrated accounts\n" + "".join(f"user{i} pass{i}\n" for i in range(300)))
    out = srv.ctl("register_bulk", str(f), "localhost").stdout
    assert "300 accounts registered, 0 skipped" in out
    srv.start()

    async def main() -> None:
        assert await RawClient(srv.c2s_tls, tls=True).login("user299", "pass299")
    run(main())


def test_sigterm_closes_streams_with_system_shutdown(make_server: MakeServer) -> None:
    srv = make_server()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()

    async def main() -> None:
        a = RawClient(srv.c2s_tls, tls=True)
        b = RawClient(srv.c2s, tls=False)
        await a.login("alice", "pw")
        await b.login("bob", "pw")
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await a.stream_error() == "system-shutdown"
        assert await b.stream_error() == "system-shutdown"
        assert await a.closed()
    run(main())
    assert srv.stop() == 0


def test_negotiation_and_idle_timeouts(make_server: MakeServer) -> None:
    srv = make_server(config={"negotiation_timeout": 1.5},
                      listen_extra={"idle_timeout": 3})
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        slow = await RawClient(srv.c2s).connect()
        await slow.open()
        assert await slow.stream_error(timeout=10) == "connection-timeout"
        idle = RawClient(srv.c2s_tls, tls=True)
        await idle.login("alice", "pw")
        busy = RawClient(srv.c2s_tls, tls=True)
        await busy.login("alice", "pw", "busy")
        for _ in range(6):  # whitespace keepalives keep a quiet client alive
            await busy.send(" ")
            await asyncio.sleep(0.5)
        assert await idle.stream_error(timeout=10) == "connection-timeout"
        await busy.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await busy.recv_until(lambda e: e.get("id") == "p")
        assert el.get("type") == "result"
    run(main())


def test_token_bucket() -> None:
    b = TokenBucket(1000, 2000)
    assert b.consume(1500) == 0
    delay = b.consume(1500)
    assert 0.9 < delay < 1.1


def test_shaper_slows_reading_without_dropping(make_server: MakeServer) -> None:
    srv = make_server(config={"shaper": {"slow": {"rate": 2000, "burst_size": 2000}}},
                      listen_extra={"shaper": "slow"})
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()

    async def main() -> Any:
        a = RawClient(srv.c2s_tls, tls=True)
        b = RawClient(srv.c2s_tls, tls=True)
        await a.login("alice", "pw")
        await b.login("bob", "pw")
        body = "x" * 900
        t0 = time.monotonic()
        for i in range(8):
            await a.send(f"<message to='bob@localhost' id='m{i}'><body>{body}</body></message>")
        got = []
        while len(got) < 8:
            el = await b.recv_until(lambda e: e.tag == "{jabber:client}message", timeout=15)
            got.append(el.get("id"))
        return got, time.monotonic() - t0
    got, _elapsed = run(main())
    assert got == [f"m{i}" for i in range(8)]  # all delivered, in order


def test_plain_needs_tls_when_tls_is_optional(make_server: MakeServer) -> None:
    srv = make_server(listen_extra={"starttls_required": False})
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        c = await RawClient(srv.c2s).connect()
        feats = await c.open()
        mechs = [m.text for m in feats.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")]
        assert "SCRAM-SHA-1" in mechs and "PLAIN" not in mechs and \
            not any(m and m.endswith("-PLUS") for m in mechs)
        res = await c.auth_plain("alice", "pw")
        assert res.find("{urn:ietf:params:xml:ns:xmpp-sasl}encryption-required") is not None
        # SCRAM works without TLS when the listener allows it
        res = await c.auth_scram("alice", "pw")
        assert res.tag.endswith("success")
    run(main())


def test_server_pings_quiet_clients_and_drops_dead_ones(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_ping": {"send_pings": True, "ping_interval": 1,
                                            "ping_ack_timeout": 1, "timeout_action": "kill"}})
    srv.register("alive", "pw")
    srv.register("dead", "pw")
    srv.start()

    async def main() -> None:
        alive, dead = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        await alive.login("alive", "pw")
        await dead.login("dead", "pw")
        ping = await dead.recv_until(lambda e: e.find("{urn:xmpp:ping}ping") is not None, timeout=10)
        assert ping.get("type") == "get" and ping.get("from") == "localhost"
        for _ in range(3):  # the live client answers its pings
            p = await alive.recv_until(lambda e: e.find("{urn:xmpp:ping}ping") is not None,
                                       timeout=10)
            await alive.send(f"<iq type='result' id='{p.get('id')}' to='localhost'/>")
        assert await dead.stream_error(timeout=10) == "connection-timeout"
        assert srv.ctl("connected_users").stdout.split() == ["alive@localhost/raw"]
    run(main())


def test_roster_and_resource_commands(make_server: MakeServer) -> None:
    """ejabberdctl's add_rosteritem, get_roster, delete_rosteritem (the user's client gets
    roster pushes), user_resources, num_resources and registered_vhosts."""
    srv = make_server(modules={"mod_roster": {}, "mod_disco": {}})
    for u in ("alice", "bob"):
        srv.register(u, "pw")
    srv.start()
    roster = "jabber:iq:roster"

    async def main() -> None:
        c = RawClient(srv.c2s_tls, tls=True)
        await c.login("alice", "pw", "desk")
        await c.send(f"<iq type='get' id='r0'><query xmlns='{roster}'/></iq>")
        await c.recv_until(lambda e: e.get("id") == "r0", timeout=10)
        srv.ctl("add_rosteritem", "alice", "localhost", "bob", "localhost", "Bobby",
                "Friends;Work", "both")
        push = await c.recv_until(lambda e: e.get("type") == "set", timeout=10)
        item = push.find(f"{{{roster}}}query/{{{roster}}}item")
        assert item is not None and item.get("jid") == "bob@localhost"
        assert item.get("name") == "Bobby" and item.get("subscription") == "both"
        assert [g.text for g in item.findall(f"{{{roster}}}group")] == ["Friends", "Work"]
        await c.send(f"<iq type='result' id='{push.get('id')}'/>")
        assert srv.ctl("get_roster", "alice", "localhost").stdout.strip() == \
            "bob@localhost\tBobby\tboth\tFriends;Work"
        bad = srv.ctl("add_rosteritem", "alice", "localhost", "bob", "localhost", "B", "",
                      "sometimes", check=False)
        assert bad.returncode == 1 and "SUBS is one of" in bad.stderr
        assert srv.ctl("user_resources", "alice", "localhost").stdout.split() == ["desk"]
        assert srv.ctl("num_resources", "alice", "localhost").stdout.strip() == "1"
        assert srv.ctl("num_resources", "bob", "localhost").stdout.strip() == "0"
        assert srv.ctl("registered_vhosts").stdout.split() == ["localhost"]
        srv.ctl("delete_rosteritem", "alice", "localhost", "bob", "localhost")
        push = await c.recv_until(lambda e: e.get("type") == "set", timeout=10)
        item = push.find(f"{{{roster}}}query/{{{roster}}}item")
        assert item is not None and item.get("subscription") == "remove"
        assert srv.ctl("get_roster", "alice", "localhost").stdout.strip() == ""
        missing = srv.ctl("delete_rosteritem", "alice", "localhost", "bob", "localhost",
                          check=False)
        assert missing.returncode == 1 and "not in the roster" in missing.stderr
        await c.close()
    run(main())
