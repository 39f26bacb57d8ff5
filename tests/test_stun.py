"""xmppd's own STUN/TURN listener (``ejabberd_stun``, xmppd/stun/): coturn's clients
(turnutils_stunclient, turnutils_uclient: real STUN/TURN clients from Debian's coturn)
get their address and relay through it with the credentials mod_stun_disco hands out
over XMPP; a raw client in Python checks the TURN errors and a relay to a plain UDP
peer. All on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import RawClient

from xmppd.config import ConfigError, parse_config
from xmppd.stun import message as m

NS = "urn:xmpp:extdisco:2"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MODULES = {"mod_disco": {}, "mod_stun_disco": {}}
CONFIG = {"acl": {"local": {"user_regexp": ""}}}


def stun_server(srv: XmppdServer, **stun: Any) -> XmppdServer:
    """``srv`` (made, not started) with an ejabberd_stun listener on a free port."""
    port = free_udp_port()
    srv.config["listen"].append({"port": port, "ip": "127.0.0.1", "transport": "udp",
                                 "module": "ejabberd_stun", **stun})
    srv.write_config()
    srv.stun = port  # type: ignore[attr-defined]
    srv.register("alice", "pw-alice")
    return srv


def tool(name: str) -> str:
    exe = shutil.which(name)
    # coturn's clients are part of the test: never skipped (tests/services/install.sh)
    assert exe is not None, f"{name} is not installed (coturn): run make services"
    return exe


def uclient(port: int, username: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Two TURN clients that relay to each other (``-y``), five messages each."""
    return subprocess.run([tool("turnutils_uclient"), "-u", username, "-w", password,
                           "-p", str(port), "-e", "127.0.0.1", "-n", "5", "-m", "1", "-y",
                           *extra, "127.0.0.1"], capture_output=True, text=True, timeout=60)


async def services(srv: XmppdServer) -> list[ET.Element]:
    alice = RawClient(srv.c2s_tls, tls=True)
    await alice.login("alice", "pw-alice")
    await alice.send(f"<iq type='get' id='s' to='localhost'><services xmlns='{NS}'/></iq>")
    res = await alice.recv_until(lambda e: e.get("id") == "s", timeout=10)
    assert res.get("type") == "result", ET.tostring(res)
    await alice.close()
    return res.findall(f"{{{NS}}}services/{{{NS}}}service")


class Turn:
    """A raw STUN/TURN client on one UDP socket (the codec is xmppd's; coturn's clients
    above check it against another implementation)."""

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)
        self.key: Optional[bytes] = None
        self.auth: list[tuple[int, bytes]] = []

    def request(self, method: int, attrs: list[tuple[int, bytes]], *,
                sign: bool = True) -> m.Message:
        tid = os.urandom(12)
        extra = self.auth if sign and self.key else []
        self.sock.sendto(m.encode(method, m.REQUEST, tid, attrs + extra,
                                  self.key if sign else None), self.server)
        while True:
            msg = m.decode(self.sock.recv(65536))
            if msg is not None and msg.tid == tid:
                return msg

    def challenge(self, username: str, password: str) -> None:
        """An unsigned Allocate: the 401 with the realm and a nonce, for the key."""
        first = self.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")], sign=False)
        assert first.cls == m.ERROR and m.error_code(first.get(m.ERROR_CODE) or b"") == 401
        realm, nonce = first.get(m.REALM), first.get(m.NONCE)
        assert realm and nonce
        self.key = m.long_term_key(username, realm.decode(), password)
        self.auth = [(m.USERNAME, username.encode()), (m.REALM, realm), (m.NONCE, nonce)]

    def login(self, username: str, password: str) -> m.Message:
        """An Allocate: the 401 challenge, then again with the credentials."""
        self.challenge(username, password)
        return self.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")])

    def recv(self) -> bytes:
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


def code(msg: m.Message) -> int:
    assert msg.cls == m.ERROR, (msg.method, msg.cls)
    return m.error_code(msg.get(m.ERROR_CODE) or b"")


def echo_peer() -> tuple[socket.socket, int]:
    """A plain UDP peer (not a TURN client) that answers what it gets, upper-cased."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s, int(s.getsockname()[1])


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = stun_server(XmppdServer(tmp_path_factory.mktemp("turn"), modules=MODULES,
                                  config=CONFIG),
                      use_turn=True, turn_blacklist=[], turn_ipv4_address="127.0.0.1",
                      turn_max_allocations=100)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_binding_for_coturns_stun_client(make_server: Any) -> None:
    srv = stun_server(make_server(modules=MODULES, config=CONFIG))
    srv.start()
    out = subprocess.run([tool("turnutils_stunclient"), "-p", str(srv.stun), "127.0.0.1"],  # type: ignore[attr-defined]
                         capture_output=True, text=True, timeout=30)
    assert "UDP reflexive addr: 127.0.0.1:" in out.stdout + out.stderr, out
    # without use_turn, mod_stun_disco offers STUN only, at the listener's address
    found = run(services(srv))
    assert [(s.get("type"), s.get("host"), s.get("port")) for s in found] == [
        ("stun", "127.0.0.1", str(srv.stun))]  # type: ignore[attr-defined]
    srv.stop()


def test_calls_relay_with_credentials_from_the_xmpp_server(turn_server: XmppdServer) -> None:
    port = turn_server.stun  # type: ignore[attr-defined]
    found = run(services(turn_server))
    assert [(s.get("type"), s.get("port"), s.get("restricted")) for s in found] == [
        ("stun", str(port), None), ("turn", str(port), "1")]
    turn = found[1]
    username, password = turn.get("username", ""), turn.get("password", "")
    assert username.endswith(":alice@localhost") and password
    # coturn's client: channels, then Send/Data indications (-c)
    for extra in ((), ("-c",)):
        res = uclient(port, username, password, *extra)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "Total lost packets 0 (0.000000%)" in res.stdout + res.stderr
    res = uclient(port, username, "not-" + password)
    assert res.returncode != 0
    assert "relay port" in turn_server.log and "closed (500 bytes out, 500 in)" in turn_server.log

    # a raw client relays to a plain UDP peer: indications, then a channel
    peer, peer_port = echo_peer()
    c = Turn(port)
    ok = c.login(username, password)
    assert ok.cls == m.SUCCESS, code(ok)
    relayed = m.read_xor_address(ok.get(m.XOR_RELAYED_ADDRESS) or b"", ok.tid)
    assert relayed[0] == "127.0.0.1"
    assert struct.unpack("!I", ok.get(m.LIFETIME) or b"")[0] == 600
    assert m.integrity_ok(ok, c.key or b"")                 # the answer is signed too
    to_peer = [(m.XOR_PEER_ADDRESS, m.xor_address("127.0.0.1", peer_port, b""))]
    # "this host" and multicast are never relayed to, whatever turn_blacklist says
    for bad in ("0.0.0.0", "224.0.0.1"):
        assert code(c.request(m.CREATE_PERMISSION, [(m.XOR_PEER_ADDRESS, m.xor_address(
            bad, peer_port, b""))])) == 403
    # no permission yet: what the client sends is dropped
    c.sock.sendto(m.encode(m.SEND, m.INDICATION, os.urandom(12),
                           to_peer + [(m.DATA_ATTR, b"too early")]), c.server)
    assert c.request(m.CREATE_PERMISSION, [(m.XOR_PEER_ADDRESS, m.xor_address(
        "127.0.0.1", peer_port, b""))]).cls == m.SUCCESS
    c.sock.sendto(m.encode(m.SEND, m.INDICATION, os.urandom(12),
                           to_peer + [(m.DATA_ATTR, b"hello peer")]), c.server)
    data, src = peer.recvfrom(2048)
    assert data == b"hello peer" and src == relayed        # "too early" never came
    peer.sendto(b"HELLO CLIENT", src)
    ind = m.decode(c.recv())
    assert ind is not None and ind.method == m.DATA and ind.cls == m.INDICATION
    assert ind.get(m.DATA_ATTR) == b"HELLO CLIENT"
    assert m.read_xor_address(ind.get(m.XOR_PEER_ADDRESS) or b"", ind.tid) == (
        "127.0.0.1", peer_port)
    bound = c.request(m.CHANNEL_BIND, [(m.CHANNEL_NUMBER, b"\x40\x01\0\0")] + to_peer)
    assert bound.cls == m.SUCCESS
    c.sock.sendto(struct.pack("!HH", 0x4001, 3) + b"abc", c.server)
    data, _ = peer.recvfrom(2048)
    assert data == b"abc"
    peer.sendto(b"ABC", src)
    assert c.recv() == struct.pack("!HH", 0x4001, 3) + b"ABC"
    # the same channel for another peer, or another channel for this one: 400
    assert code(c.request(m.CHANNEL_BIND, [(m.CHANNEL_NUMBER, b"\x40\x01\0\0"), (
        m.XOR_PEER_ADDRESS, m.xor_address("127.0.0.1", peer_port + 1, b""))])) == 400
    assert code(c.request(m.CHANNEL_BIND, [(m.CHANNEL_NUMBER, b"\x40\x02\0\0")]
                          + to_peer)) == 400
    # a second Allocate from the same address: 437; Refresh 0 ends the allocation
    assert code(c.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")])) == 437
    assert c.request(m.REFRESH, [(m.LIFETIME, b"\0\0\0\0")]).cls == m.SUCCESS
    assert code(c.request(m.CREATE_PERMISSION, to_peer)) == 437
    peer.sendto(b"gone", src)
    c.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        c.recv()
    c.close()
    peer.close()


def test_turn_refuses_what_it_should(make_server: Any) -> None:
    """Loopback peers (ejabberd's default turn_blacklist), the allocation quota, bad
    credentials and nonces, unknown attributes, TCP relays, malformed datagrams."""
    srv = stun_server(make_server(modules=MODULES, config=CONFIG), use_turn=True, turn_max_allocations=1,
                      turn_ipv4_address="127.0.0.1")
    srv.start()
    port = srv.stun  # type: ignore[attr-defined]
    found = run(services(srv))
    username, password = found[1].get("username", ""), found[1].get("password", "")

    c = Turn(port)
    assert c.login(username, password).cls == m.SUCCESS
    peer = [(m.XOR_PEER_ADDRESS, m.xor_address("127.0.0.1", 9, b""))]
    forbidden = c.request(m.CREATE_PERMISSION, peer)
    assert code(forbidden) == 403
    assert m.integrity_ok(forbidden, c.key or b"")   # signed: the request was authenticated
    assert code(c.request(m.CREATE_PERMISSION, [])) == 400
    other = Turn(port)
    assert code(other.login(username, password)) == 486   # one allocation per user
    # wrong password: a new challenge; a made-up nonce: 438 with a fresh one
    bad = Turn(port)
    assert code(bad.login(username, "wrong")) == 401
    bad.auth[2] = (m.NONCE, b"1-forged")
    stale = bad.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")])
    assert code(stale) == 438 and stale.get(m.NONCE) not in (None, b"1-forged")
    # credentials past their expiry
    from xmppd.stun.credentials import local_secret, turn_credentials
    old_user, old_pw = turn_credentials(local_secret(srv.base / "data"), "alice@localhost",
                                        int(time.time()) - 10)
    assert code(Turn(port).login(old_user, old_pw)) == 401
    # an attribute the server must understand and does not
    assert code(c.request(m.REFRESH, [(0x7777, b"?")])) == 420
    # a TCP relay: not offered (442)
    assert c.request(m.REFRESH, [(m.LIFETIME, b"\0\0\0\0")]).cls == m.SUCCESS
    tcp = Turn(port)
    tcp.challenge(username, password)
    assert code(tcp.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x06\0\0\0")])) == 442
    assert code(tcp.request(m.ALLOCATE, [])) == 400
    # the quota is free again
    assert tcp.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")]).cls == m.SUCCESS
    # garbage is dropped; the server still answers
    junk = Turn(port)
    for data in (b"", b"\0" * 19, b"\x00\x01\x00\x08" + b"\x21\x12\xa4\x42" + b"x" * 12,
                 os.urandom(200), b"<stream:stream>"):
        junk.sock.sendto(data, junk.server)
    # an unknown method: one error answer, nothing else
    tid = os.urandom(12)
    junk.sock.sendto(m.encode(0x0ABC, m.REQUEST, tid, []), junk.server)
    answer = m.decode(junk.recv())
    assert answer is not None and answer.tid == tid and code(answer) == 400
    junk.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        junk.recv()
    junk.sock.settimeout(3)
    binding = junk.request(m.BINDING, [], sign=False)
    assert binding.cls == m.SUCCESS
    assert m.read_xor_address(binding.get(m.XOR_MAPPED_ADDRESS) or b"", binding.tid) == \
        junk.sock.getsockname()
    for t in (c, other, bad, tcp, junk):
        t.close()
    srv.stop()


def test_turn_over_tcp_and_tls(make_server: Any) -> None:
    """For networks that let no UDP out: the same relay reached over TCP and over TLS
    (coturn's client with -t, and -t -S), offered by mod_stun_disco as turn/tcp and
    turns; a client that is not a STUN client is disconnected; a closed connection
    takes its allocation with it."""
    srv = stun_server(make_server(modules=MODULES, config=CONFIG), use_turn=True, turn_blacklist=[],
                      turn_ipv4_address="127.0.0.1", transport="tcp")
    limited = free_udp_port()   # a STUN-only TCP listener with limits
    srv.config["listen"].append({"port": limited, "ip": "127.0.0.1", "transport": "tcp",
                                 "module": "ejabberd_stun", "max_sessions_per_ip": 3,
                                 "idle_timeout": 2})
    tls_port = free_udp_port()
    srv.config["listen"].append({"port": tls_port, "ip": "127.0.0.1", "tls": True,
                                 "module": "ejabberd_stun", "use_turn": True,
                                 "turn_blacklist": [], "turn_ipv4_address": "127.0.0.1"})
    srv.write_config()
    srv.start()
    port = srv.stun  # type: ignore[attr-defined]
    found = run(services(srv))
    assert [(s.get("type"), s.get("transport"), s.get("port")) for s in found] == [
        ("stun", "tcp", str(port)), ("turn", "tcp", str(port)), ("stun", "tcp", str(limited)),
        ("stuns", "tcp", str(tls_port)), ("turns", "tcp", str(tls_port))]
    username, password = found[1].get("username", ""), found[1].get("password", "")
    for extra, p in ((("-t",), port), (("-t", "-S"), tls_port)):
        res = uclient(p, username, password, *extra)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "Total lost packets 0 (0.000000%)" in res.stdout + res.stderr
    # a raw TCP client: framing, then garbage closes the connection
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        tid = os.urandom(12)
        req = m.encode(m.BINDING, m.REQUEST, tid, [])
        s.sendall(req[:7])           # in pieces: the server waits for the whole message
        time.sleep(0.2)
        s.sendall(req[7:])
        got = m.decode(s.recv(4096))
        assert got is not None and got.cls == m.SUCCESS and got.tid == tid
        s.sendall(b"\xff" * 8)
        assert s.recv(4096) == b""   # closed
    # max_sessions_per_ip (3): the fourth connection is closed at once; idle ones go
    socks = [socket.create_connection(("127.0.0.1", limited), timeout=5) for _ in range(4)]
    assert socks[3].recv(16) == b""
    time.sleep(0.2)
    assert socks[0].recv(16) == b"" and socks[1].recv(16) == b""   # idle_timeout: 2 s
    for s in socks:
        s.close()
    srv.stop()
    assert "closed (500 bytes out, 500 in)" in srv.log


def test_anonymous_turn(make_server: Any) -> None:
    srv = stun_server(make_server(modules=MODULES, config=CONFIG), use_turn=True,
                      auth_type="anonymous", turn_blacklist=[], turn_ipv4_address="127.0.0.1")
    srv.start()
    c = Turn(srv.stun)  # type: ignore[attr-defined]
    ok = c.request(m.ALLOCATE, [(m.REQUESTED_TRANSPORT, b"\x11\0\0\0")], sign=False)
    assert ok.cls == m.SUCCESS
    found = run(services(srv))
    assert [(s.get("type"), s.get("restricted")) for s in found] == [
        ("stun", None), ("turn", None)]
    c.close()
    srv.stop()


def test_listener_config(tmp_path: Path) -> None:
    def listen(**opts: Any) -> Any:
        return parse_config({"hosts": ["localhost"], "listen": [
            {"port": 3478, "module": "ejabberd_stun", "transport": "udp", **opts}]},
            base_dir=tmp_path)
    c = listen(use_turn=True)
    assert c.listen[0].stun["turn_blacklist"] == ["127.0.0.0/8", "::1/128"]
    assert c.listen[0].stun["auth_type"] == "user"
    with pytest.raises(ConfigError) as e:
        listen(turn_min_port=60000, turn_max_port=50000)
    assert "listen[0].turn_min_port" in str(e.value)
    with pytest.raises(ConfigError) as e:
        listen(turn_ipv4_address="not-an-address")
    assert "listen[0].turn_ipv4_address" in str(e.value)
    assert c.listen[0].stun["transport"] == "udp"     # ejabberd_stun's default
    c = parse_config({"hosts": ["localhost"], "listen": [
        {"port": 5349, "module": "ejabberd_stun", "transport": "udp", "tls": True}]},
        base_dir=tmp_path)
    assert c.listen[0].stun["transport"] == "tcp" and any("over TCP" in w for w in c.warnings)


def test_malformed_messages_decode_to_nothing() -> None:
    good = m.encode(m.BINDING, m.REQUEST, b"t" * 12, [(m.SOFTWARE, b"x")])
    assert m.decode(good) is not None
    assert m.decode(good[:-1]) is None                     # length mismatch
    assert m.decode(good[:2] + b"\x00\x40" + good[4:]) is None
    assert m.decode(b"\x80" + good[1:]) is None            # not STUN (first bits)
