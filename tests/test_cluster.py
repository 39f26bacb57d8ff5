"""Several nodes serve one domain through a real Redis: sessions and routing."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml
from conftest import run
from helpers.peer import (ROSTER, Peer, befriend, error_condition, is_message, is_presence, is_push,
                          push_state)
from helpers.procs import RedisServer, XmppdServer, free_port, wait_port
from helpers.raw import STANZA_ERR, C, RawClient
from helpers.smclient import SMClient
from helpers.smclient import body as sm_body

MakeServer = Callable[..., XmppdServer]


def make_cluster(make_server: MakeServer, redis: RedisServer, tmp: Path, n: int = 3,
                 users: tuple[str, ...] = ("alice", "bob", "carol"),
                 modules: Optional[dict[str, Any]] = None, password: str = "pw") -> list[XmppdServer]:
    """``n`` started nodes on one Redis (emptied first) and one database."""
    subprocess.run(["redis-cli", "-p", str(redis.port), "flushall"], check=True,
                   capture_output=True)
    shared_db = str(tmp / "shared.db")
    nodes = []
    for i in range(n):
        srv = make_server(config={"sm_db_type": "redis", "redis_server": "127.0.0.1",
                                  "redis_port": redis.port, "node_name": f"node{i}@test",
                                  "sql_database": shared_db}, modules=modules)
        nodes.append(srv)
    for u in users:
        nodes[0].register(u, password)
    for srv in nodes:
        srv.start()
    return nodes


@pytest.fixture
def cluster(make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[list[XmppdServer]]:
    yield make_cluster(make_server, redis_server, tmp_path)


async def _settle() -> None:
    await asyncio.sleep(0.3)  # directory changes travel through Redis pub/sub


def test_chat_across_nodes(cluster: list[XmppdServer]) -> None:
    n0, n1, n2 = cluster

    async def main() -> None:
        a = RawClient(n0.c2s_tls, tls=True)
        b = RawClient(n1.c2s_tls, tls=True)
        c = RawClient(n2.c2s_tls, tls=True)
        await a.login("alice", "pw", "a")
        await b.login("bob", "pw", "b")
        await c.login("carol", "pw", "c")
        await _settle()
        await a.send("<message to='bob@localhost' type='chat' id='1'><body>hello bob</body></message>")
        msg = await b.recv_until(lambda e: e.tag == C + "message")
        assert msg.findtext(C + "body") == "hello bob" and msg.get("from") == "alice@localhost/a"
        await b.send("<message to='alice@localhost/a' type='chat' id='2'><body>hi alice</body></message>")
        msg = await a.recv_until(lambda e: e.tag == C + "message")
        assert msg.findtext(C + "body") == "hi alice"
        await c.send("<iq type='get' id='q' to='bob@localhost/b'><ping xmlns='urn:xmpp:ping'/></iq>")
        iq = await b.recv_until(lambda e: e.tag == C + "iq" and e.get("id") == "q")
        await b.send(f"<iq type='result' id='q' to='{iq.get('from')}'/>")
        res = await c.recv_until(lambda e: e.get("id") == "q")
        assert res.get("type") == "result" and res.get("from") == "bob@localhost/b"
        # in order across nodes
        for i in range(50):
            await a.send(f"<message to='carol@localhost' type='chat' id='o{i}'><body>{i}</body></message>")
        got = [(await c.recv_until(lambda e: e.tag == C + "message")).findtext(C + "body")
               for _ in range(50)]
        assert got == [str(i) for i in range(50)]
    run(main())


def test_resource_conflict_across_nodes(cluster: list[XmppdServer]) -> None:
    n0, n1, _ = cluster

    async def main() -> None:
        first = RawClient(n0.c2s_tls, tls=True)
        await first.login("alice", "pw", "phone")
        await _settle()
        second = RawClient(n1.c2s_tls, tls=True)
        await second.login("alice", "pw", "phone")
        assert await first.stream_error() == "conflict"
        await _settle()
        assert n0.ctl("connected_users").stdout.split() == ["alice@localhost/phone"]
    run(main())


def test_admin_sees_the_cluster_and_dead_nodes_vanish(cluster: list[XmppdServer]) -> None:
    n0, n1, n2 = cluster

    async def main() -> None:
        a = RawClient(n0.c2s_tls, tls=True)
        b = RawClient(n1.c2s_tls, tls=True)
        await a.login("alice", "pw", "a")
        await b.login("bob", "pw", "b")
        await _settle()
        assert n2.ctl("connected_users").stdout.split() == ["alice@localhost/a", "bob@localhost/b"]
        nodes = n2.ctl("cluster_nodes").stdout
        assert all(f"node{i}@test" in nodes for i in range(3))
        # remote kick
        n2.ctl("kick_session", "bob", "localhost", "b", "maintenance")
        assert await b.stream_error() == "policy-violation"
        b2 = RawClient(n1.c2s_tls, tls=True)
        await b2.login("bob", "pw", "b2")
        await _settle()
        n1.kill()  # SIGKILL: no goodbye
        for _ in range(100):
            if "bob@localhost/b2" not in n0.ctl("connected_users").stdout:
                break
            await asyncio.sleep(0.2)
        assert n0.ctl("connected_users").stdout.split() == ["alice@localhost/a"]
        assert "node1@test" not in n0.ctl("cluster_nodes").stdout
        # bob is offline now: no offline storage configured, so the sender is told
        await a.send("<message to='bob@localhost' type='chat' id='x'><body>?</body></message>")
        err = await a.recv_until(lambda e: e.get("id") == "x")
        assert err.find(f"{C}error/{{{STANZA_ERR}}}service-unavailable") is not None
    run(main())


def test_admin_commands_for_every_node_reach_every_node(make_server: MakeServer,
                                                       redis_server: RedisServer,
                                                       tmp_path: Path) -> None:
    """set_load and set_loglevel asked of one node act on all of them (with --workers,
    ctl reaches worker 0 only); the s2s counts add up the nodes'."""
    n0, n1 = make_cluster(make_server, redis_server, tmp_path, n=2)
    # node1 knows node0 from its start, though node0 has no sessions (it used to learn of
    # it only at its watch's first look, and took itself for alone until then)
    assert "node node1@test joined (1 other nodes alive)" in n1.log
    out = n0.ctl("set_load", "2").stdout
    assert "node0@test: shedding presence-inactive, chat-states (forced" in out
    assert "node1@test: shedding presence-inactive, chat-states (forced" in out
    assert "shedding presence-inactive, chat-states (forced" in n1.ctl("status").stdout
    assert n0.ctl("set_load", "9", check=False).returncode == 2  # refused, sent nowhere
    n0.ctl("set_load", "auto")
    assert "load: normal" in n1.ctl("status").stdout
    n0.ctl("set_loglevel", "debug")
    assert "log level: debug" in n1.log
    assert n1.ctl("incoming_s2s_number").stdout.strip() == "0"
    n1.stop()  # a clean stop: node0 hears that it left
    for _ in range(50):
        if "node1@test" not in n0.ctl("cluster_nodes").stdout:
            break
        time.sleep(0.1)
    assert n0.ctl("set_load", "auto").returncode == 0


def test_a_session_resumed_on_another_node_hands_over_what_it_had_not_delivered(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    """With --workers, a phone that reconnects lands on any worker. Its session cannot
    move there, but the node holding it releases it at once: the messages it had not
    delivered reach the new session now, not when resume_timeout (120 s) runs out."""
    n0, n1 = make_cluster(make_server, redis_server, tmp_path, n=2, users=("alice", "bob"),
                          modules={"mod_disco": {}, "mod_offline": {},
                                   "mod_stream_mgmt": {"resume_timeout": 120}})

    async def main() -> None:
        phone = SMClient(n0.c2s, "alice", "pw", "phone", ack_each=False)
        phone.mute = True          # receives, never acknowledges
        await phone.connect()
        bob = await SMClient(n1.c2s, "bob", "pw", "desk").connect()
        await _settle()
        for i in range(3):
            await bob.send(f"<message to='alice@localhost/phone' type='chat'><body>m{i}</body>"
                           "</message>")
        await phone.messages(3)
        phone.drop()
        await asyncio.sleep(0.3)
        phone.port = n1.c2s        # back, through the other node
        res = await phone.resume()
        assert res.tag.endswith("failed"), ET.tostring(res)
        again = await SMClient(n1.c2s, "alice", "pw", "phone").connect()
        got = await again.messages(3, timeout=10)
        assert [sm_body(m) for m in got] == ["m0", "m1", "m2"]
        await again.close()
        await bob.close()

    run(main())
    assert "released here" in n0.log


def test_workers_share_ports(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    cfg = {"hosts": ["localhost"], "data_dir": str(tmp_path / "data"), "workers": 2,
           "worker_cpu_affinity": True,
           "listen": [{"port": port, "ip": "127.0.0.1", "module": "ejabberd_c2s"},
                      {"port": tls_port, "ip": "127.0.0.1", "module": "ejabberd_c2s", "tls": True}],
           "modules": {"mod_ping": {}}, "node_name": "w@test"}
    path = tmp_path / "xmppd.yml"
    path.write_text(yaml.safe_dump(cfg))
    ctl = [sys.executable, "-m", "xmppd", "ctl", "--config", str(path)]
    n = 16
    users = tmp_path / "users.txt"
    users.write_text("".join(f"u{i} pw\n" for i in range(n)))
    subprocess.run(ctl + ["register_bulk", str(users), "localhost"], check=True, capture_output=True)
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "xmppd", "run", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(tls_port, proc=proc)
        for _ in range(100):
            out = subprocess.run(ctl + ["cluster_nodes"], capture_output=True, text=True)
            if out.returncode == 0 and len(re.findall(r"w@test-w\d", out.stdout)) == 2:
                break
            import time
            time.sleep(0.2)
        assert len(re.findall(r"w@test-w\d", out.stdout)) == 2, out.stdout + out.stderr
        # worker_cpu_affinity: true: worker i runs on the i-th CPU (round-robin)
        cpus = sorted(os.sched_getaffinity(0))
        for i in range(2):
            pid = int(subprocess.run(["pgrep", "-f", f"node w@test-w{i} "], capture_output=True,
                                     text=True).stdout.split()[0])
            assert os.sched_getaffinity(pid) == ({cpus[i % len(cpus)]} if len(cpus) > 1
                                                 else set(cpus))

        async def main() -> None:
            clients = [RawClient(tls_port, tls=True) for _ in range(n)]
            for i, c in enumerate(clients):
                await c.login(f"u{i}", "pw", "r")
            await asyncio.sleep(0.5)
            # the kernel spread the connections over both workers
            per_node = subprocess.run(ctl + ["cluster_nodes"], capture_output=True, text=True).stdout
            counts = [int(x) for x in re.findall(r"w@test-w\d\t(\d+) sessions", per_node)]
            assert len(counts) == 2 and sum(counts) == n and min(counts) > 0, per_node
            # everyone writes to everyone, whichever worker holds the recipient
            for i, c in enumerate(clients):
                for j in range(n):
                    if i != j:
                        await c.send(f"<message to='u{j}@localhost/r' type='chat'><body>{i}</body></message>")
            for j, c in enumerate(clients):
                got = set()
                while len(got) < n - 1:
                    m = await c.recv_until(lambda e: e.tag == C + "message", timeout=10)
                    got.add(m.findtext(C + "body"))
                assert got == {str(i) for i in range(n) if i != j}
        run(main())
        # `ctl stop` reaches the worker that serves the admin channel; it stops the
        # master, which stops both workers and its Redis
        subprocess.run(ctl + ["stop"], check=True, capture_output=True, timeout=60)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    assert proc.returncode == 0


def test_worker_cpu_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto pins when each worker can own a CPU; true round-robin; false never."""
    from xmppd.config import parse_config
    from xmppd.confval import ConfigError
    from xmppd.workers import affinity

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert affinity("auto", 4) == [{0}, {1}, {2}, {3}]
    assert affinity("auto", 2) == [None, None]
    assert affinity(True, 6) == [{0}, {1}, {2}, {3}, {0}, {1}]
    assert affinity(False, 4) == [None] * 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert affinity(True, 2) == [None, None]  # one CPU: nothing to choose
    with pytest.raises(ConfigError) as err:
        parse_config({"hosts": ["localhost"], "worker_cpu_affinity": "yes"})
    assert "worker_cpu_affinity" in str(err.value)


def test_example_cluster_config_is_valid() -> None:
    from xmppd.config import load_config
    from xmppd.server import check_modules
    c = load_config(Path(__file__).resolve().parents[1] / "config" / "cluster.example.yml")
    assert c["sm_db_type"] == "redis" and c["sql_type"] == "pgsql"
    assert c.warnings == () and check_modules(c)[1] == []


MUC = "http://jabber.org/protocol/muc"
OID = "{urn:xmpp:occupant-id:0}occupant-id"


async def _join(c: RawClient, room: str, nick: str) -> None:
    await c.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>")
    while True:
        el = await c.recv_until(lambda e: e.tag == C + "presence", timeout=10)
        codes = {s.get("code") for s in el.iter(f"{{{MUC}#user}}status")}
        if "110" in codes:
            if "201" in codes:  # a new room: accept the default configuration
                await c.send(f"<iq type='set' id='cfg' to='{room}'><query xmlns='{MUC}#owner'>"
                             "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
                await c.recv_until(lambda e: e.get("id") == "cfg", timeout=10)
            return


def _room_owned_by(node: str, nodes: list[str]) -> str:
    from xmppd.cluster.placement import owner
    for i in range(1000):
        room = f"room{i}@conference.localhost"
        if owner(room, nodes) == node:
            return room
    raise AssertionError("no room name found")


def test_rooms_are_sharded_and_survive_their_node(make_server: MakeServer, redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True,
                   capture_output=True)
    shared_db = str(tmp_path / "shared.db")
    nodes = []
    for i in range(3):
        nodes.append(make_server(config={
            "sm_db_type": "redis", "redis_server": "127.0.0.1", "redis_port": redis_server.port,
            "node_name": f"node{i}@test", "sql_database": shared_db},
            modules={"mod_muc": {"default_room_options": {"persistent": True}}, "mod_ping": {}}))
    for u in ("alice", "bob", "carol"):
        nodes[0].register(u, "pw")
    for n in nodes:
        n.start()
    names = [f"node{i}@test" for i in range(3)]
    room = _room_owned_by("node2@test", names)
    # room administration from any node acts on the node that holds the room
    made = _room_owned_by("node1@test", names)
    made_name, service = made.split("@")
    for cmd in (("create_room", made_name, service, "localhost"),
                ("set_room_affiliation", made_name, service, "carol@localhost", "admin"),
                ("change_room_option", made_name, service, "title", "Made")):
        assert nodes[0].ctl(*cmd).stdout.strip() == ""
    assert [n.ctl("muc_online_rooms_node", "global").stdout.split() for n in nodes] == [
        [], [made], []]
    assert nodes[2].ctl("get_room_affiliations", made_name, service).stdout.strip() == \
        "carol\tlocalhost\tadmin"
    assert "title\tMade" in nodes[2].ctl("get_room_options", made_name, service).stdout
    assert "exists" in nodes[2].ctl("create_room", made_name, service, "localhost",
                                    check=False).stderr
    nodes[2].ctl("destroy_room", made_name, service)
    assert nodes[0].ctl("muc_online_rooms", "global").stdout.split() == []

    async def main() -> None:
        a = RawClient(nodes[0].c2s_tls, tls=True)
        b = RawClient(nodes[1].c2s_tls, tls=True)
        c = RawClient(nodes[2].c2s_tls, tls=True)
        await a.login("alice", "pw", "a")
        await b.login("bob", "pw", "b")
        await c.login("carol", "pw", "c")
        await _settle()
        for client, nick in ((a, "Alice"), (b, "Bob"), (c, "Carol")):
            await _join(client, room, nick)
        # the room lives on exactly one node: its owner
        held = [n.ctl("muc_online_rooms_node", "global").stdout.split() for n in nodes]
        assert held == [[], [], [room]]
        # muc_online_rooms (as in ejabberd) lists the rooms of the whole cluster, and the
        # occupants of a room are known from any node
        assert [n.ctl("muc_online_rooms", "global").stdout.split() for n in nodes] == [[room]] * 3
        name, service = room.split("@")
        assert nodes[0].ctl("get_room_occupants_number", name, service).stdout.strip() == "3"
        lines = nodes[1].ctl("get_room_occupants", name, service).stdout.splitlines()
        assert sorted(line.split("\t")[:2] for line in lines) == [
            ["alice@localhost/a", "Alice"], ["bob@localhost/b", "Bob"], ["carol@localhost/c", "Carol"]]
        # several senders on several nodes: everyone sees one order
        for i in range(10):
            await a.send(f"<message to='{room}' type='groupchat'><body>a{i}</body></message>")
            await b.send(f"<message to='{room}' type='groupchat'><body>b{i}</body></message>")

        oids: set[tuple[str, str]] = set()  # (sender, occupant id: XEP-0421)

        async def bodies(cl: RawClient) -> list[str]:
            out: list[str] = []
            while len(out) < 20:
                m = await cl.recv_until(lambda e: e.tag == C + "message" and
                                        e.find(C + "body") is not None, timeout=10)
                out.append(m.findtext(C + "body") or "")
                oids.add((m.get("from") or "", m.find(OID).get("id") or ""))
            return out
        seen = [await bodies(x) for x in (a, b, c)]
        assert seen[0] == seen[1] == seen[2]
        assert [x for x in seen[0] if x[0] == "a"] == [f"a{i}" for i in range(10)]
        assert len(oids) == 2 and all(oid for _, oid in oids)
        # the owner dies: another node serves the (persistent) room
        nodes[2].kill()
        for _ in range(100):
            if all("node2@test" not in n.ctl("cluster_nodes").stdout for n in nodes[:2]):
                break
            await asyncio.sleep(0.2)
        await _settle()
        for client, nick in ((a, "Alice"), (b, "Bob")):
            await _join(client, room, nick)
        await a.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
        for cl in (a, b):
            m = await cl.recv_until(lambda e: e.tag == C + "message" and
                                    e.findtext(C + "body") == "after", timeout=10)
            assert m.get("from") == f"{room}/Alice"
            # the new node gives alice the same occupant id (the key is in the database)
            assert (f"{room}/Alice", m.find(OID).get("id")) in oids
        held = [n.ctl("muc_online_rooms_node", "global").stdout.split() for n in nodes[:2]]
        assert sorted(held, key=len) == [[], [room]]
    run(main(), timeout=120)


def test_a_stalled_node_comes_back_and_rooms_keep_one_owner(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    """A node that stops answering for longer than the heartbeat TTL is taken for dead;
    when it comes back, every room has one owner again (one order for each room)."""
    nodes = make_cluster(make_server, redis_server, tmp_path, n=2, users=("alice", "bob"),
                         modules={"mod_muc": {"default_room_options": {"persistent": True}}})
    room = _room_owned_by("node0@test", ["node0@test", "node1@test"])

    async def main() -> None:
        a = RawClient(nodes[0].c2s_tls, tls=True)
        b = RawClient(nodes[1].c2s_tls, tls=True)
        await a.login("alice", "pw", "a")
        await b.login("bob", "pw", "b")
        await _settle()
        await _join(a, room, "Alice")
        await _join(b, room, "Bob")
        assert nodes[1].ctl("muc_online_rooms_node", "global").stdout.split() == []
        assert nodes[0].pid is not None
        os.kill(nodes[0].pid, signal.SIGSTOP)  # node0 stalls: no heartbeat, no answers
        try:
            for _ in range(150):
                if "node0@test" not in nodes[1].ctl("cluster_nodes").stdout:
                    break
                await asyncio.sleep(0.2)
            assert "node0@test" not in nodes[1].ctl("cluster_nodes").stdout
            # meanwhile node1 serves the room: bob joins it there again
            await b.send(f"<presence to='{room}/Bob'><x xmlns='{MUC}'/></presence>")
            await b.recv_until(lambda e: e.tag == C + "presence" and any(
                s.get("code") == "110" for s in e.iter(f"{{{MUC}#user}}status")), timeout=10)
            assert nodes[1].ctl("muc_online_rooms_node", "global").stdout.split() == [room]
        finally:
            os.kill(nodes[0].pid, signal.SIGCONT)
        # node0 is back: node1 hands the room back to its owner and tells bob (332)
        gone = await b.recv_until(lambda e: e.tag == C + "presence" and any(
            s.get("code") == "332" for s in e.iter(f"{{{MUC}#user}}status")), timeout=20)
        assert gone.get("type") == "unavailable"
        assert "node0@test" in nodes[1].ctl("cluster_nodes").stdout
        held = [n.ctl("muc_online_rooms_node", "global").stdout.split() for n in nodes]
        assert held == [[room], []]
        # one room, one order: bob rejoins and both see each other's messages
        await _join(b, room, "Bob")
        await b.send(f"<message to='{room}' type='groupchat'><body>back</body></message>")
        for cl in (a, b):
            m = await cl.recv_until(lambda e: e.tag == C + "message" and
                                    e.findtext(C + "body") == "back", timeout=10)
            assert m.get("from") == f"{room}/Bob"
    run(main(), timeout=120)


def test_no_acknowledged_message_is_lost_when_a_node_dies(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    """Messages flow to users on node2; node2 is killed; every message the sender saw
    acknowledged reaches the recipients when they log in again elsewhere, once each."""
    from helpers.smclient import SMClient, body, stanza_id

    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True,
                   capture_output=True)
    shared_db = str(tmp_path / "shared.db")
    nodes = []
    for i in range(3):
        nodes.append(make_server(config={
            "sm_db_type": "redis", "redis_server": "127.0.0.1", "redis_port": redis_server.port,
            "node_name": f"node{i}@test", "sql_database": shared_db},
            modules={"mod_stream_mgmt": {"resume_timeout": 60}, "mod_ping": {}}))
    for u in ("sender", "r1", "r2"):
        nodes[0].register(u, "pw")
    for n in nodes:
        n.start()
    n = 150

    async def main() -> None:
        sender = await SMClient(nodes[0].c2s, "sender", "pw", "s").connect()
        r1 = SMClient(nodes[2].c2s, "r1", "pw", "a")
        r2 = SMClient(nodes[2].c2s, "r2", "pw", "b")
        for r in (r1, r2):
            r.mute = True  # they receive, but never acknowledge
            await r.connect()
        await _settle()
        for i in range(n):
            to = "r1" if i % 2 == 0 else "r2"
            await sender.send(f"<message to='{to}@localhost' type='chat' id='m{i}'>"
                              f"<body>{i}</body></message>")
        await sender.wait_acked(timeout=30)
        acked = [str(i) for i in range(n)]
        # the recipients' node dies with everything they did not acknowledge
        await r1.messages(1, timeout=10)
        nodes[2].kill()
        for _ in range(100):
            if all("node2@test" not in s.ctl("cluster_nodes").stdout for s in nodes[:2]):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        got: dict[str, list[str]] = {}
        for name, parity in (("r1", 0), ("r2", 1)):
            again = await SMClient(nodes[1].c2s, name, "pw", "again").connect()
            want = [x for x in acked if int(x) % 2 == parity]
            msgs = await again.messages(len(want), timeout=30)
            extra = [m for m in await again.quiet(1.0) if m.tag == C + "message"]
            ids = [stanza_id(m) for m in msgs + extra]
            assert len(ids) == len(set(ids)), "a message arrived twice"
            got[name] = [body(m) or "" for m in msgs + extra]
            assert got[name] == want, f"{name}: {got[name]} != {want}"
            await again.close()
        await sender.close()
    run(main(), timeout=240)


def test_carbons_receipts_and_markers_across_nodes(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    nodes = make_cluster(make_server, redis_server, tmp_path, users=("alice", "bob"),
                         modules={"mod_carboncopy": {}, "mod_receipts": {}, "mod_offline": {},
                                  "mod_stanza_id": {}, "mod_ping": {}})
    carbons = "urn:xmpp:carbons:2"
    fwd = "{urn:xmpp:forward:0}forwarded"

    async def main() -> None:
        a1 = RawClient(nodes[0].c2s_tls, tls=True)
        a2 = RawClient(nodes[1].c2s_tls, tls=True)
        bob = RawClient(nodes[2].c2s_tls, tls=True)
        await a1.login("alice", "pw", "phone")
        await a2.login("alice", "pw", "laptop")
        await bob.login("bob", "pw", "b")
        for c in (a1, a2):
            await c.send(f"<iq type='set' id='cc'><enable xmlns='{carbons}'/></iq>")
            await c.recv_until(lambda e: e.get("id") == "cc")
        await _settle()
        # alice writes from her phone: bob gets it, her laptop gets a sent carbon
        await a1.send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body>"
                      "<request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/>"
                      "</message>")
        m = await bob.recv_until(lambda e: e.tag == C + "message")
        assert m.findtext(C + "body") == "hi"
        sent = await a2.recv_until(lambda e: e.find(f"{{{carbons}}}sent") is not None)
        assert sent.find(f"{{{carbons}}}sent/{fwd}/{C}message/{C}body").text == "hi"  # type: ignore[union-attr]
        # bob's receipt goes to the phone, and his read marker is carbon-copied to the laptop
        await bob.send("<message to='alice@localhost/phone' id='r1'>"
                       "<received xmlns='urn:xmpp:receipts' id='m1'/></message>")
        r = await a1.recv_until(lambda e: e.find("{urn:xmpp:receipts}received") is not None)
        assert r.get("from") == "bob@localhost/b"
        await bob.send("<message to='alice@localhost/phone' type='chat' id='d1'>"
                       "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>")
        d = await a1.recv_until(lambda e: e.find("{urn:xmpp:chat-markers:0}displayed") is not None)
        assert d.get("from") == "bob@localhost/b"
        marker = f"{{{carbons}}}received/{fwd}/{C}message/{{urn:xmpp:chat-markers:0}}displayed"
        rc = await a2.recv_until(lambda e: e.find(marker) is not None)
        assert rc.get("from") == "alice@localhost"
    run(main(), timeout=120)


def test_presence_rosters_and_blocking_across_nodes(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    """Contacts on different nodes subscribe, see each other come and go, and block."""
    nodes = make_cluster(make_server, redis_server, tmp_path, users=("romeo", "juliet"),
                         modules={"mod_roster": {}, "mod_blocking": {}, "mod_last": {},
                                  "mod_ping": {}}, password="secret")

    async def main() -> None:
        romeo = await Peer(nodes[0].c2s, "romeo", resource="balcony").login()
        juliet = await Peer(nodes[1].c2s, "juliet", resource="garden").login()
        await _settle()
        await befriend(romeo, juliet)
        # Juliet's second device, on a third node, gets her roster pushes too
        tablet = await Peer(nodes[2].c2s, "juliet", resource="tablet").login()
        await romeo.expect(is_presence("juliet@localhost/tablet"))
        await _settle()
        await juliet.iq("<query xmlns='jabber:iq:roster'><item jid='romeo@localhost' "
                        "name='Romeo'/></query>", type="set")
        for p in (juliet, tablet):
            push = await p.expect(is_push("romeo@localhost"))
            assert push.find(f"{ROSTER}query/{ROSTER}item").get("name") == "Romeo"  # type: ignore[union-attr]
        # Romeo comes back: the probe is answered by the nodes where Juliet is
        await romeo.close()
        for p in (juliet, tablet):
            await p.expect(is_presence("romeo@localhost/balcony", "unavailable"))
        romeo = await Peer(nodes[0].c2s, "romeo", resource="balcony").login()
        for full in ("juliet@localhost/garden", "juliet@localhost/tablet"):
            await romeo.expect(is_presence(full))
        # last activity of a contact on another node: she is online now
        res = await romeo.iq("<query xmlns='jabber:iq:last'/>", to="juliet@localhost")
        assert res.find("{jabber:iq:last}query").get("seconds") == "0"  # type: ignore[union-attr]
        # Juliet blocks Romeo on node 1: both her devices get the push, Romeo sees her
        # go away, and node 0 refuses his messages to her
        await juliet.iq("<block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block>",
                        type="set")
        is_block = lambda el: el.find("{urn:xmpp:blocking}block") is not None  # noqa: E731
        await tablet.expect(is_block)
        for full in ("juliet@localhost/garden", "juliet@localhost/tablet"):
            await romeo.expect(is_presence(full, "unavailable"))
        await _settle()
        await romeo.send("<message to='juliet@localhost' type='chat' id='b1'><body>hello?</body></message>")
        err = await romeo.expect(lambda el: el.get("id") == "b1")
        assert err.get("type") == "error" and error_condition(err) == "service-unavailable"
        await juliet.nothing(is_message("romeo@localhost"), 0.5)
        await tablet.nothing(is_message("romeo@localhost"), 0.1)
        # she unblocks him from her tablet on node 2: messages flow again
        await tablet.iq("<unblock xmlns='urn:xmpp:blocking'/>", type="set")
        await juliet.expect(lambda el: el.find("{urn:xmpp:blocking}unblock") is not None)
        await _settle()
        await romeo.send("<message to='juliet@localhost/garden' type='chat' id='b2'>"
                         "<body>hello!</body></message>")
        msg = await juliet.expect(is_message("romeo@localhost"))
        assert msg.findtext(C + "body") == "hello!"
        # the admin deletes Juliet's account on node 0: her sessions on nodes 1 and 2 end,
        # and Romeo's roster shows that the subscriptions ended
        nodes[0].ctl("unregister", "juliet", "localhost")
        for p in (juliet, tablet):
            assert await p.client.stream_error() == "policy-violation"
        while push_state(await romeo.expect(is_push("juliet@localhost"))) != ("none", None):
            pass
    run(main(), timeout=120)


def test_the_senders_journal_copy_stays_until_the_other_nodes_queue_has_it(
        make_server: MakeServer, redis_server: RedisServer, tmp_path: Path) -> None:
    """A durable-acked message to a user on another node: the sender's node keeps its
    journal copy while Redis does not take the hand-over (CLIENT PAUSE WRITE), and
    deletes it once Redis did and the message was written to the recipient."""
    import sqlite3

    from helpers.smclient import SMClient, body

    subprocess.run(["redis-cli", "-p", str(redis_server.port), "flushall"], check=True,
                   capture_output=True)
    shared_db = tmp_path / "shared.db"
    nodes = [make_server(config={
        "sm_db_type": "redis", "redis_server": "127.0.0.1", "redis_port": redis_server.port,
        "node_name": f"node{i}@test", "sql_database": str(shared_db)},
        modules={"mod_stream_mgmt": {"resume_timeout": 60}, "mod_ping": {}}) for i in range(2)]
    for u in ("sender", "rcpt"):
        nodes[0].register(u, "pw")
    for n in nodes:
        n.start()
    n = 20

    def journaled() -> int:
        with sqlite3.connect(str(shared_db), timeout=10) as db:
            return int(db.execute("SELECT COUNT(*) FROM message_journal").fetchone()[0])

    async def main() -> None:
        sender = await SMClient(nodes[0].c2s, "sender", "pw", "s").connect()
        rcpt = await SMClient(nodes[1].c2s, "rcpt", "pw", "r").connect(enable=False)
        await _settle()
        redis_cli = ["redis-cli", "-p", str(redis_server.port)]
        subprocess.run(redis_cli + ["client", "pause", "4000", "write"], check=True,
                       capture_output=True)
        try:
            for i in range(n):
                await sender.send(f"<message to='rcpt@localhost' type='chat' id='j{i}'>"
                                  f"<body>{i}</body></message>")
            await sender.wait_acked(timeout=10)  # durable: the journal has them
            assert journaled() == n  # and keeps them: Redis has not taken them yet
            assert await rcpt.quiet(0.5) == []
        finally:
            subprocess.run(redis_cli + ["client", "unpause"], check=True, capture_output=True)
        msgs = await rcpt.messages(n, timeout=15)
        assert [body(m) for m in msgs] == [str(i) for i in range(n)]
        for _ in range(100):
            if journaled() == 0:
                break
            await asyncio.sleep(0.1)
        assert journaled() == 0  # delivered: no copy is left on either node
        await sender.close()
        await rcpt.close()
    run(main(), timeout=120)


def test_one_new_account_per_address_for_the_whole_cluster(make_server: MakeServer,
                                                          redis_server: RedisServer,
                                                          tmp_path: Path) -> None:
    """mod_register's registration_timeout is counted once for all nodes (Redis)."""
    from test_register import _condition, _register, _secured

    nodes = make_cluster(make_server, redis_server, tmp_path, n=2,
                         modules={"mod_disco": {}, "mod_register": {}})

    async def main() -> None:
        c, _ = await _secured(nodes[0].c2s)
        res = await _register(c, "dora", "dora-pw", "r1")
        assert res.get("type") == "result"
        await c.close()
        c, _ = await _secured(nodes[1].c2s)
        assert _condition(await _register(c, "eve", "x", "r2")) == "resource-constraint"
        await c.close()
    run(main())
