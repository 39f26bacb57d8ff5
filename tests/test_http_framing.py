"""The sans-IO framings of the web transports, with bytes alone: RFC 7395
WebSocket messages and XEP-0206 BOSH bodies; and their configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xmppd.config import ConfigError, parse_config
from xmppd.http.framing import (
    FRAMING_NS,
    WebSocketFraming,
    add_client_ns,
    parse_body,
)
from xmppd.xml import Element
from xmppd.xmlstream import StreamClose, StreamError, StreamOpen

OPEN = f"<open xmlns='{FRAMING_NS}' to='example.org' version='1.0' xml:lang='en'/>".encode()


def test_open_stanza_close() -> None:
    f = WebSocketFraming()
    [ev] = f.feed(OPEN)
    assert isinstance(ev, StreamOpen)
    assert ev.attrs["to"] == "example.org" and ev.attrs["version"] == "1.0"
    assert ev.attrs["{http://www.w3.org/XML/1998/namespace}lang"] == "en"
    assert ev.default_ns == "jabber:client"
    [msg] = f.feed(b"<message xmlns='jabber:client' to='a@example.org'><body>hi</body></message>")
    assert isinstance(msg, Element) and msg.tag == "{jabber:client}message"
    assert msg.raw == b"<body>hi</body>"  # routing reuses the bytes
    [sm] = f.feed(b"<r xmlns='urn:xmpp:sm:3'/>")
    assert isinstance(sm, Element) and sm.tag == "{urn:xmpp:sm:3}r"
    [close] = f.feed(f"<close xmlns='{FRAMING_NS}'/>".encode())
    assert isinstance(close, StreamClose)


def test_restart_after_reset_and_xml_declaration() -> None:
    f = WebSocketFraming()
    f.feed(OPEN)
    f.reset()  # after SASL success
    [ev] = f.feed(b"<?xml version='1.0'?>" + OPEN)
    assert isinstance(ev, StreamOpen)
    assert f.feed(b"") == [] and f.feed(b"  \n") == []


def test_a_message_must_hold_complete_elements() -> None:
    f = WebSocketFraming()
    f.feed(OPEN)
    with pytest.raises(StreamError) as e:
        f.feed(b"<message xmlns='jabber:client'><body>half")
    assert e.value.condition == "not-well-formed"
    with pytest.raises(StreamError):  # and the framing stays failed
        f.feed(b"</body></message>")


@pytest.mark.parametrize("data,condition", [
    (b"<!-- hello --><message/>", "restricted-xml"),
    (b"<!DOCTYPE message><message/>", "restricted-xml"),
    (b"<message xmlns='jabber:client'><?pi x?></message>", "restricted-xml"),
    (b"<message xmlns='jabber:client'>&ent;</message>", "restricted-xml"),
    (b"<message xmlns='jabber:client'><body></message>", "not-well-formed"),
    (b"just text", "bad-format"),
    (b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>", "invalid-namespace"),
    (b"<message xmlns='jabber:client'><body>" + b"x" * 200 + b"</body></message>",
     "policy-violation"),
])
def test_bad_messages(data: bytes, condition: str) -> None:
    f = WebSocketFraming(max_stanza_size=100)
    f.feed(OPEN)
    with pytest.raises(StreamError) as e:
        f.feed(data)
    assert e.value.condition == condition


def test_output() -> None:
    f = WebSocketFraming()
    assert f.header({"from": "example.org", "id": "a'b"}) == (
        f"<open xmlns='{FRAMING_NS}' from='example.org' id='a&apos;b'/>".encode())
    assert f.footer() == f"<close xmlns='{FRAMING_NS}'/>".encode()
    assert f.features(b"<x/>") == (b"<stream:features xmlns:stream='http://etherx.jabber.org"
                                   b"/streams'><x/></stream:features>")
    err = f.error("policy-violation", "too <big>")
    assert err.startswith(b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
                          b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
    assert b"too &lt;big&gt;" in err


@pytest.mark.parametrize("data,expected", [
    (b"<message to='a'><body>x</body></message>",
     b"<message xmlns='jabber:client' to='a'><body>x</body></message>"),
    (b"<iq/>", b"<iq xmlns='jabber:client'/>"),
    (b"<presence>", b"<presence xmlns='jabber:client'>"),
    (b"<message xmlns='jabber:client'/>", b"<message xmlns='jabber:client'/>"),
    (b"<messages/>", b"<messages/>"),
    (b"<r xmlns='urn:xmpp:sm:3'/>", b"<r xmlns='urn:xmpp:sm:3'/>"),
    (b"<message to='a'><x xmlns='y'/></message>",
     b"<message xmlns='jabber:client' to='a'><x xmlns='y'/></message>"),
])
def test_add_client_ns(data: bytes, expected: bytes) -> None:
    assert add_client_ns(data) == expected


BODY = "http://jabber.org/protocol/httpbind"


def test_parse_body() -> None:
    attrs, children = parse_body(
        f"<body xmlns='{BODY}' xmlns:xmpp='urn:xmpp:xbosh' rid='7' sid='s' xmpp:restart='true'>"
        f"<message xmlns='jabber:client' to='a@b'><body>one</body></message>"
        f"<iq xmlns='jabber:client' type='get' id='2'/></body>".encode(), 1000)
    assert attrs["rid"] == "7" and attrs["{urn:xmpp:xbosh}restart"] == "true"
    assert [c.tag for c in children] == ["{jabber:client}message", "{jabber:client}iq"]
    assert children[0].findtext("{jabber:client}body") == "one"
    attrs, children = parse_body(f"<body xmlns='{BODY}' rid='8'/>".encode(), 1000)
    assert attrs == {"rid": "8"} and children == []


@pytest.mark.parametrize("data,condition", [
    (f"<body xmlns='{BODY}' rid='1'>", "not-well-formed"),
    (f"<body xmlns='{BODY}' rid='1'><message></body>", "not-well-formed"),
    ("<body rid='1'/>", "bad-format"),
    (f"<!DOCTYPE body><body xmlns='{BODY}'/>", "restricted-xml"),
    (f"<body xmlns='{BODY}'>text</body>", "bad-format"),
    (f"<body xmlns='{BODY}'><message xmlns='jabber:client'>{'x' * 300}</message></body>",
     "policy-violation"),
])
def test_bad_bodies(data: str, condition: str) -> None:
    with pytest.raises(StreamError) as e:
        parse_body(data.encode(), 200)
    assert e.value.condition == condition


def test_many_stanzas_in_one_body_each_within_the_limit() -> None:
    stanza = "<message xmlns='jabber:client'><body>" + "y" * 100 + "</body></message>"
    _, children = parse_body(f"<body xmlns='{BODY}' rid='1'>{stanza * 20}</body>".encode(), 200)
    assert len(children) == 20


def cfg(**kw: Any) -> Any:
    return parse_config({"hosts": ["localhost"], **kw}, base_dir=Path("/tmp"))


def test_web_options() -> None:
    c = cfg(websocket_origin=["https://Chat.Example.org/"], trusted_proxies=["10.0.0.0/8"],
            websocket_ping_interval="2 minutes", websocket_timeout=30,
            listen=[{"port": 5280, "module": "ejabberd_http", "allowed_origins": "ignore"}])
    assert c["websocket_origin"] == ("https://chat.example.org",)
    assert c["trusted_proxies"] == ("10.0.0.0/8",)
    assert c["websocket_ping_interval"] == 120 and c["websocket_timeout"] == 30
    assert c.listen[0].allowed_origins == ()
    assert cfg(trusted_proxies="all")["trusted_proxies"] == ("0.0.0.0/0", "::/0")
    assert c.warnings == ()


@pytest.mark.parametrize("data,path", [
    ({"websocket_origin": ["chat.example.org"]}, "websocket_origin[0]"),
    ({"trusted_proxies": ["10.0.0.300/8"]}, "trusted_proxies[0]"),
    ({"websocket_timeout": "soon"}, "websocket_timeout"),
    ({"listen": [{"port": 5280, "module": "ejabberd_http", "allowed_origins": [5]}]},
     "listen[0].allowed_origins[0]"),
])
def test_bad_web_options_name_their_path(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(**data)
    assert e.value.path == path
