"""Idle connections give their XML parser back; the stream goes on unchanged.

The server's sweep frees the expat parser of a stream that received nothing
since the last sweep (about 10 KiB per connection) and the next byte rebuilds
it. With ``negotiation_timeout: 2`` the sweep runs every second.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest
from conftest import run
from helpers.procs import XmppdServer
from helpers.raw import C, RawClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("idle"), config={"negotiation_timeout": 2})
    for user in ("ann", "ben"):
        srv.register(user, "secret")
    srv.start()
    yield srv
    srv.stop()


def test_streams_work_after_idle_periods(server: XmppdServer) -> None:
    async def main() -> None:
        a = RawClient(server.c2s_tls, tls=True)
        b = RawClient(server.c2s_tls, tls=True)
        await a.login("ann", "secret", "one")
        await b.login("ben", "secret", "two")
        for n in range(2):
            await asyncio.sleep(2.5)  # both idle across sweeps
            await a.send(f"<message to='ben@localhost' type='chat' id='i{n}'>"
                         f"<body>after idle {n} &amp; more</body></message>")
            msg = await b.recv_until(lambda e: e.tag == C + "message")
            assert msg.get("from") == "ann@localhost/one"
            assert msg.findtext(C + "body") == f"after idle {n} & more"
        # a stanza cut in two across sweeps is held, not lost
        await a.send("<message to='ben@localhost' type='chat' id='half'><body>first half, ")
        await asyncio.sleep(2.5)
        await a.send("second half</body></message>")
        msg = await b.recv_until(lambda e: e.tag == C + "message")
        assert msg.get("id") == "half" and msg.findtext(C + "body") == "first half, second half"
        # and the stream still ends cleanly
        await asyncio.sleep(2.5)
        await b.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        pong = await b.recv_until(lambda e: e.tag == C + "iq")
        assert pong.get("id") == "p1" and pong.get("type") == "result"
        await a.close()
        await b.close()
    run(main())
