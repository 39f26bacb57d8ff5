"""Reliable delivery with an off-the-shelf client: slixmpp's stream management (XEP-0198),
receipts (XEP-0184), chat markers (XEP-0333) and carbons (XEP-0280) against xmppd."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest
from conftest import run
from helpers.clients import Slix
from helpers.procs import XmppdServer

PLUGINS = ("xep_0030", "xep_0198", "xep_0184", "xep_0280", "xep_0333", "xep_0203", "xep_0359")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = XmppdServer(tmp_path_factory.mktemp("delivery-clients"), modules={
        "mod_disco": {}, "mod_stream_mgmt": {}, "mod_offline": {}, "mod_carboncopy": {},
        "mod_receipts": {}})
    for user in ("romeo", "juliet", "nurse"):
        srv.register(user, "pw")
    srv.start()
    yield srv
    srv.stop()


def client(jid: str) -> Slix:
    c = Slix(jid, "pw", plugins=PLUGINS)
    c.events: dict[str, asyncio.Queue[Any]] = {}  # type: ignore[misc]
    for name in ("receipt_received", "marker_displayed", "carbon_received", "carbon_sent"):
        q: asyncio.Queue[Any] = asyncio.Queue()
        c.events[name] = q
        c.add_event_handler(name, q.put_nowait)
    return c


async def next_event(c: Slix, name: str) -> Any:
    return await asyncio.wait_for(c.events[name].get(), 10)


def test_slixmpp_receipts_markers_carbons_and_sm(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client("romeo@localhost/balcony").login(server.c2s)
        j1 = await client("juliet@localhost/phone").login(server.c2s)
        j2 = await client("juliet@localhost/laptop").login(server.c2s)
        for c in (romeo, j1, j2):
            for _ in range(100):
                if c.plugin["xep_0198"].sm_id is not None:
                    break
                await asyncio.sleep(0.05)
            assert c.plugin["xep_0198"].sm_id is not None  # resumable SM is on
        await j1.plugin["xep_0280"].enable()
        await j2.plugin["xep_0280"].enable()
        romeo.plugin["xep_0184"].auto_request = True

        # to the phone: the laptop sees a carbon, romeo gets the "delivered" receipt
        msg = romeo.make_message(mto="juliet@localhost/phone", mbody="It is the east",
                                 mtype="chat")
        msg["id"] = "east-1"
        msg.enable("markable")
        msg.send()
        got = await asyncio.wait_for(j1.messages.get(), 10)
        assert got["body"] == "It is the east" and got["stanza_id"]["id"]
        carbon = await next_event(j2, "carbon_received")
        assert carbon["carbon_received"]["body"] == "It is the east"
        receipt = await next_event(romeo, "receipt_received")
        assert receipt["receipt"] == "east-1", str(receipt)

        # read on the phone: romeo gets "displayed", the laptop a <sent/> carbon of it
        j1.plugin["xep_0333"].send_marker(got["from"], "east-1", "displayed")
        shown = await next_event(romeo, "marker_displayed")
        assert shown["displayed"]["id"] == "east-1"
        # (the first <sent/> carbon is the receipt the phone sent automatically)
        while True:
            sent = await next_event(j2, "carbon_sent")
            shown_copy = sent["carbon_sent"].xml.find("{urn:xmpp:chat-markers:0}displayed")
            if shown_copy is not None:
                break
        assert shown_copy.get("id") == "east-1"

        # romeo leaves; juliet's receipt and marker wait for him in offline storage.
        # He acks what he got first: without that, whatever he had not acked yet (XEP-0198)
        # goes to offline storage at the close and comes again (the marker east-1, at times)
        romeo.plugin["xep_0198"].send_ack()
        await romeo.logout()
        await asyncio.sleep(0.5)
        late = j1.make_message(mto="romeo@localhost/balcony", mtype="chat")
        late["receipt"] = "east-2"
        late.send()
        j1.plugin["xep_0333"].send_marker(romeo.boundjid.bare, "east-2", "displayed")
        await asyncio.sleep(0.5)
        romeo2 = await client("romeo@localhost/balcony").login(server.c2s)
        receipt = await next_event(romeo2, "receipt_received")
        assert receipt["receipt"] == "east-2" and receipt["delay"]["stamp"] is not None
        shown = await next_event(romeo2, "marker_displayed")
        assert shown["displayed"]["id"] == "east-2"
        for c in (romeo2, j1, j2):
            await c.logout()
    run(main())


def test_slixmpp_gets_offline_messages_in_order(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client("romeo@localhost/x").login(server.c2s)
        for i in range(10):
            romeo.send_message(mto="nurse@localhost", mbody=f"message {i}", mtype="chat")
        await asyncio.sleep(1)
        nurse = await client("nurse@localhost/y").login(server.c2s)
        got = [await asyncio.wait_for(nurse.messages.get(), 10) for _ in range(10)]
        assert [m["body"] for m in got] == [f"message {i}" for i in range(10)]
        assert all(m["delay"]["stamp"] is not None for m in got)
        await romeo.logout()
        await nurse.logout()
    run(main())
