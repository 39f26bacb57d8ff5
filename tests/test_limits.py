"""Rate limits, slow readers, brute-force bans and load shedding (functional, no timings)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from conftest import run
from helpers.procs import XmppdServer, free_port
from helpers.raw import SASL, C, RawClient, local
from helpers.smclient import SMClient
from helpers.web import BoshClient, WSClient, web_listeners

from xmppd.overload import LoadMonitor, _droppable
from xmppd.xmlstream import parse_stanza

MakeServer = Callable[..., XmppdServer]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_flooding_client_is_slowed_and_others_keep_chatting(make_server: MakeServer) -> None:
    srv = make_server(listen_extra={"max_stanza_rate": 50})
    for u in ("flood", "sink", "alice", "bob"):
        srv.register(u, "pw")
    srv.start()
    n = 600

    async def main() -> None:
        flood, sink = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        alice, bob = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        for c, u in ((flood, "flood"), (sink, "sink"), (alice, "alice"), (bob, "bob")):
            await c.login(u, "pw")

        async def blast() -> None:
            for i in range(n):
                await flood.send(f"<message to='sink@localhost' id='f{i}'><body>{i}</body></message>")
        blaster = asyncio.ensure_future(blast())
        # meanwhile a well-behaved pair keeps chatting
        for i in range(5):
            await alice.send(f"<message to='bob@localhost' id='a{i}'><body>hi {i}</body></message>")
            m = await bob.recv_until(lambda e: e.tag == C + "message", timeout=10)
            assert m.findtext(C + "body") == f"hi {i}"
        await blaster
        got = []
        while len(got) < n:
            m = await sink.recv_until(lambda e: e.tag == C + "message", timeout=30)
            got.append(m.get("id"))
        assert got == [f"f{i}" for i in range(n)]  # slowed, never dropped, in order
    run(main(), timeout=120)
    assert "throttling <C2SStream flood@localhost/raw" in srv.log


def test_web_clients_over_their_stanza_rate_are_slowed(make_server: MakeServer) -> None:
    """``max_stanza_rate`` on the HTTP listener holds back WebSocket messages and BOSH
    requests as it holds back a TCP client's reading: slowed, nothing dropped."""
    srv = web_listeners(make_server(), tls=True, max_stanza_rate=50)
    for u in ("ws", "bosh", "sink", "alice", "bob"):
        srv.register(u, "pw")
    srv.start()
    n = 300

    async def main() -> None:
        ws = WSClient(f"ws://127.0.0.1:{srv.http}/ws")
        bosh = BoshClient(f"http://127.0.0.1:{srv.http}/bosh", wait=5)
        sink = RawClient(srv.c2s_tls, tls=True)
        alice, bob = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        await ws.login("ws", "pw")
        await bosh.login("bosh", "pw")
        for c, u in ((sink, "sink"), (alice, "alice"), (bob, "bob")):
            await c.login(u, "pw")

        def msg(src: str, i: int) -> str:
            return (f"<message xmlns='jabber:client' to='sink@localhost' id='{src}{i}'>"
                    f"<body>{i}</body></message>")

        async def blast_ws() -> None:
            for i in range(n):
                await ws.send(msg("w", i))

        async def blast_bosh() -> None:
            for first in range(0, n, 60):  # 60 stanzas a request, two requests out at most
                await bosh.send("".join(msg("b", i) for i in range(first, first + 60)))
                while len(bosh.outstanding) > 1:
                    await bosh.outstanding.pop(0)
        blasters = [asyncio.ensure_future(blast_ws()), asyncio.ensure_future(blast_bosh())]
        for i in range(5):  # meanwhile a well-behaved pair keeps chatting
            await alice.send(f"<message to='bob@localhost' id='a{i}'><body>hi {i}</body></message>")
            m = await bob.recv_until(lambda e: e.tag == C + "message", timeout=10)
            assert m.findtext(C + "body") == f"hi {i}"
        await asyncio.gather(*blasters)
        got: dict[str, list[str]] = {"w": [], "b": []}
        while sum(map(len, got.values())) < 2 * n:
            m = await sink.recv_until(lambda e: e.tag == C + "message", timeout=30)
            got[m.get("id", "?")[0]].append(m.get("id", ""))
        for src in ("w", "b"):  # slowed, never dropped, in order
            assert got[src] == [f"{src}{i}" for i in range(n)]
        await ws.close()
        await bosh.close()
    run(main(), timeout=120)
    assert "throttling <C2SStream ws@localhost/web" in srv.log
    assert "throttling <C2SStream bosh@localhost/bosh" in srv.log


def test_bosh_requests_wait_for_the_listener_shaper(make_server: MakeServer) -> None:
    srv = web_listeners(make_server(config={"shaper": {"slow": {"rate": 2000,
                                                                 "burst_size": 2000}}}),
                        tls=True, shaper="slow")
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()

    async def main() -> None:
        alice = BoshClient(f"http://127.0.0.1:{srv.http}/bosh", wait=5)
        bob = RawClient(srv.c2s_tls, tls=True)
        await alice.login("alice", "pw")
        await bob.login("bob", "pw")
        body = "x" * 900
        for i in range(8):
            await alice.send(f"<message xmlns='jabber:client' to='bob@localhost' id='m{i}'>"
                             f"<body>{body}</body></message>")
            while len(alice.outstanding) > 1:
                await alice.outstanding.pop(0)
        got = []
        while len(got) < 8:
            el = await bob.recv_until(lambda e: e.tag == C + "message", timeout=15)
            got.append(el.get("id"))
        assert got == [f"m{i}" for i in range(8)]  # all delivered, in order
        await alice.close()
    run(main(), timeout=90)
    assert "throttling <C2SStream alice@localhost/bosh" in srv.log


def test_shaper_rule_is_evaluated_for_the_user(make_server: MakeServer) -> None:
    """ejabberd's stock ``c2s_shaper: {none: admin, normal: all}``: before login every
    connection gets ``normal``; once bound, an admin's connection is not shaped."""
    srv = make_server(config={"shaper": {"slow": {"rate": 3000, "burst_size": 6000}},
                              "acl": {"admin": {"user": "boss"}},
                              "shaper_rules": {"c2s_shaper": {"none": "admin", "slow": "all"}}},
                      listen_extra={"shaper": "c2s_shaper"})
    for u in ("boss", "joe", "sink"):
        srv.register(u, "pw")
    srv.start()
    body = "x" * 1500

    async def main() -> None:
        boss, joe = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        sink = RawClient(srv.c2s_tls, tls=True)
        for c, u in ((boss, "boss"), (joe, "joe"), (sink, "sink")):
            await c.login(u, "pw")
        for who, c in (("boss", boss), ("joe", joe)):
            for i in range(10):
                await c.send(f"<message to='sink@localhost' id='{who}{i}'><body>{body}</body>"
                             "</message>")
        ids = []
        while len(ids) < 20:
            m = await sink.recv_until(lambda e: e.tag == C + "message", timeout=30)
            ids.append(m.get("id"))
        assert sorted(ids) == sorted([f"boss{i}" for i in range(10)] +
                                     [f"joe{i}" for i in range(10)])
    run(main(), timeout=90)
    assert "throttling <C2SStream joe@localhost/raw" in srv.log
    assert "throttling <C2SStream boss@" not in srv.log


def test_a_session_resumed_on_another_listener_takes_its_limits(make_server: MakeServer
                                                                 ) -> None:
    """XEP-0198 resumption through a listener with ``max_stanza_rate``: the resumed
    session is held to that listener's limit, not to the one it was bound on."""
    srv = make_server(modules={"mod_stream_mgmt": {}})
    limited = {**srv.config["listen"][0], "port": free_port(), "max_stanza_rate": 20}
    srv.config["listen"].append(limited)
    srv.write_config()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()
    n = 100

    async def main() -> None:
        alice = await SMClient(srv.c2s, "alice", "pw", "sm").connect()
        bob = RawClient(srv.c2s_tls, tls=True)
        await bob.login("bob", "pw")
        alice.drop()
        alice.port = limited["port"]
        assert local((await alice.resume()).tag) == "resumed"
        for i in range(n):
            await alice.send(f"<message to='bob@localhost' id='r{i}'><body>{i}</body></message>")
        got = []
        while len(got) < n:
            m = await bob.recv_until(lambda e: e.tag == C + "message", timeout=30)
            got.append(m.get("id"))
        assert got == [f"r{i}" for i in range(n)]
        await alice.close()
    run(main(), timeout=90)
    assert "throttling <C2SStream alice@localhost/sm" in srv.log


def test_slow_reader_is_disconnected_and_memory_stays_bounded(make_server: MakeServer) -> None:
    srv = make_server(config={"c2s_queue_limit": 262144})
    srv.register("writer", "pw")
    srv.register("reader", "pw")
    srv.start()

    async def main() -> None:
        writer, reader = RawClient(srv.c2s_tls, tls=True), RawClient(srv.c2s_tls, tls=True)
        await writer.login("writer", "pw")
        await reader.login("reader", "pw")
        # the reader stops reading; its kernel buffers fill, then the server's queue
        sock = reader.writer.get_extra_info("socket")  # type: ignore[union-attr]
        reader.reader._transport.pause_reading()  # type: ignore[union-attr]
        del sock
        before = rss_kib(srv.pid)
        body = "x" * 4000
        for i in range(3000):  # 12 MB towards a reader that takes nothing
            await writer.send(f"<message to='reader@localhost/raw' id='m{i}'><body>{body}</body></message>")
            if i % 200 == 0 and "reader@localhost/raw" not in srv.ctl("connected_users").stdout:
                break
        for _ in range(50):
            if "reader@localhost/raw" not in srv.ctl("connected_users").stdout:
                break
            await asyncio.sleep(0.2)
        assert "reader@localhost/raw" not in srv.ctl("connected_users").stdout
        assert rss_kib(srv.pid) - before < 64 * 1024  # far below the 12 MB sent
        # the writer is fine
        await writer.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        el = await writer.recv_until(lambda e: e.get("id") == "p", timeout=10)
        assert el.get("type") == "result"
    run(main(), timeout=120)
    assert "closing slow reader" in srv.log


def test_brute_force_is_banned(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_fail2ban": {"c2s_max_auth_failures": 3}, "mod_ping": {}})
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        for _ in range(3):
            c = RawClient(srv.c2s_tls, tls=True)
            await c.connect()
            await c.open()
            res = await c.auth_plain("alice", "guess")
            assert local(res.tag) == "failure"
            await c.close()
        c = RawClient(srv.c2s_tls, tls=True)
        await c.connect()
        await c.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                     "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        assert await c.stream_error() == "policy-violation"
    run(main())


def test_whitelisted_addresses_are_not_banned(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_fail2ban": {"c2s_max_auth_failures": 2, "access": "trusted"}},
                      config={"acl": {"loopback": {"ip": "127.0.0.0/8"}},
                              "access_rules": {"trusted": {"allow": "loopback"}}})
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        for _ in range(3):
            c = RawClient(srv.c2s_tls, tls=True)
            await c.connect()
            await c.open()
            assert local((await c.auth_plain("alice", "guess")).tag) == "failure"
            await c.close()
        assert await RawClient(srv.c2s_tls, tls=True).login("alice", "pw")
    run(main())


def test_failed_logins_slow_down_the_account_from_any_address(make_server: MakeServer) -> None:
    """Failures are counted per account too: even from addresses that are never banned
    (here every loopback address), the next attempt on that account waits; other
    accounts do not; the right password ends the count."""
    srv = make_server(modules={"mod_fail2ban": {"access": "trusted"}},
                      config={"acl": {"loopback": {"ip": "127.0.0.0/8"}},
                              "access_rules": {"trusted": {"allow": "loopback"}}})
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    srv.start()

    async def attempt(user: str, password: str, scram: bool) -> str:
        c = RawClient(srv.c2s_tls, tls=True)
        await c.connect()
        await c.open()
        res = await (c.auth_scram(user, password) if scram else c.auth_plain(user, password))
        await c.close()
        return local(res.tag)

    async def main() -> None:
        assert await attempt("bob", "pw", True) == "success"
        for i in range(3):
            assert await attempt("alice", "guess", i % 2 == 0) == "failure"
        assert await attempt("bob", "pw", True) == "success"
        assert await attempt("alice", "pw", True) == "success"  # after its wait
        assert await attempt("alice", "pw", False) == "success"  # no wait any more
    run(main())
    waits = [line for line in srv.log.splitlines() if " waits " in line]
    assert len(waits) == 3, waits  # the 2nd and 3rd failure, and the right password
    assert all("login to alice@localhost from 127.0.0.1 waits" in w for w in waits)
    assert "3 failed attempts on the account" in waits[-1]
    assert "SASL failure" in srv.log


def test_login_rate_per_account(make_server: MakeServer) -> None:
    srv = make_server(modules={"mod_fail2ban": {"max_logins_per_minute": 2}})
    srv.register("alice", "pw")
    srv.start()

    async def main() -> None:
        for i in range(2):
            assert await RawClient(srv.c2s_tls, tls=True).login("alice", "pw", f"r{i}")
        c = RawClient(srv.c2s_tls, tls=True)
        await c.connect()
        await c.open()
        res = await c.auth_scram("alice", "pw")
        assert local(res.tag) == "failure"
        assert res.find(f"{{{SASL}}}temporary-auth-failure") is not None
    run(main())


def test_connection_rate_per_ip(make_server: MakeServer) -> None:
    srv = make_server(listen_extra={"max_connection_rate": 3})
    srv.start()

    async def main() -> Any:
        outcomes = []
        for _ in range(8):
            c = await RawClient(srv.c2s).connect()
            await c.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
                          "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
            el = await c.recv()
            outcomes.append(el.tag.endswith("error"))
            await c.close()
        return outcomes
    outcomes = run(main())
    assert outcomes[0] is False and any(outcomes)


def test_forced_load_level_is_visible(make_server: MakeServer) -> None:
    srv = make_server()
    srv.start()
    assert "load: normal" in srv.ctl("status").stdout
    out = srv.ctl("set_load", "2").stdout
    assert "shedding presence-inactive, chat-states" in out
    assert "shedding presence-inactive, chat-states (forced" in srv.ctl("status").stdout
    srv.ctl("set_load", "auto")
    assert "load: normal" in srv.ctl("status").stdout
    assert srv.ctl("set_load", "9", check=False).returncode == 2
    assert "load: normal -> shedding presence-inactive, chat-states" in srv.log


class _FakeServer:
    def __init__(self) -> None:
        from xmppd.hooks import HookBus
        self.hooks = HookBus()
        self.connections: set[Any] = set()
        self.overload = False


def test_monitor_escalates_in_order_and_recovers() -> None:
    fake = _FakeServer()
    levels: list[int] = []
    fake.hooks.add("server/load", lambda s, level: levels.append(level))
    mon = LoadMonitor(fake, lag_high=0.2, lag_low=0.05)  # type: ignore[arg-type]
    for _ in range(6):
        mon.sample(1.0)
    assert mon.level == 4 and fake.overload
    assert mon.shed("presence-inactive") and mon.shed("markers")
    for _ in range(40):
        mon.sample(0.0)
    assert mon.level == 0 and not fake.overload
    assert levels == [1, 2, 3, 4, 3, 2, 1, 0]
    mon.sample(1.0)
    assert mon.shed("presence-inactive") and not mon.shed("chat-states")


def test_what_the_message_hook_drops_at_each_level() -> None:
    """Only messages that carry nothing but a chat state (level 2 on) or a read marker
    (level 4) are dropped; a body, a receipt, a received marker or an error never are."""
    def msg(inner: str, type_: str = "chat") -> Any:
        return parse_stanza(("<message xmlns='jabber:client' type='%s' to='a@b'>%s</message>"
                             % (type_, inner)).encode())
    cs = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
    shown = "<displayed xmlns='urn:xmpp:chat-markers:0' id='1'/>"
    assert _droppable(msg(cs + "<thread>t</thread>"), False)
    assert not _droppable(msg(cs + "<body>hi</body>"), True)
    assert not _droppable(msg(cs, "error"), True)
    assert not _droppable(msg(shown), False)
    assert _droppable(msg(shown + "<store xmlns='urn:xmpp:hints'/>"), True)
    assert not _droppable(msg("<received xmlns='urn:xmpp:chat-markers:0' id='1'/>"), True)
    assert not _droppable(msg("<received xmlns='urn:xmpp:receipts' id='1'/>" + cs), True)
    assert not _droppable(msg(""), True)
    fake = _FakeServer()
    mon = LoadMonitor(fake)  # type: ignore[arg-type]
    for level, hooked in ((1, False), (2, True), (4, True), (0, False)):
        mon.force(level)
        assert fake.hooks.has("pre-message/full") is hooked


def test_monitor_walks_the_send_queues_only_for_a_limit_or_the_status() -> None:
    """The sum of queued output walks every connection: a sample takes it only when
    ``overload_max_send_queue`` is set; the status line takes it when shown."""
    class Transport:
        asked = 0

        def get_write_buffer_size(self) -> int:
            Transport.asked += 1
            return 300 * 1024

    class Conn:
        transport = Transport()

    fake = _FakeServer()
    fake.connections = {Conn(), Conn()}
    mon = LoadMonitor(fake, lag_high=0.2, lag_low=0.05)  # type: ignore[arg-type]
    mon.sample(0.0)
    assert Transport.asked == 0 and mon.level == 0
    assert "send queues 600 KiB" in mon.description and Transport.asked == 2
    limited = LoadMonitor(fake, lag_high=0.2, lag_low=0.05,  # type: ignore[arg-type]
                          max_send_queue=512 * 1024)
    limited.sample(0.0)
    assert Transport.asked == 4 and limited.level == 1 and fake.overload


def test_connection_rates_of_many_addresses_keep_the_flooder_limited() -> None:
    """A full table of connection rates makes room without forgetting an address that
    keeps connecting: a flood from many new addresses does not reset its count."""
    from xmppd.shaper import RateTable
    table = RateTable(size=10)
    flooder = ("192.0.2.1", 5222)
    assert [table.over(flooder, 2) for _ in range(3)] == [False, False, True]
    for i in range(50):
        assert table.over(("198.51.100.%d" % i, 5222), 2) is False
        assert table.over(flooder, 2) is True
        assert len(table) <= 10
    assert table.over(("198.51.100.0", 5222), 2) is False  # forgotten, counted anew
    assert table.over(flooder, float("inf")) is True  # its bucket is kept, limit and all


def test_connection_rate_table_forgets_refilled_buckets_first() -> None:
    from xmppd.shaper import RateTable
    table = RateTable(size=4)
    table.over("idle", 1e9)             # refills at once: forgotten first
    for key in ("a", "b", "c"):
        table.over(key, 2)
    table.over("d", 2)
    assert "idle" not in table.buckets and set(table.buckets) == {"a", "b", "c", "d"}
