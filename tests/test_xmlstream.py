"""The sans-IO stream parser: bytes in, events out, at every split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppd.xml import Element, serialize
from xmppd.xmlstream import StreamClose, StreamError, StreamOpen, XMLStreamParser

HEAD = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
STANZAS = (
    b"<message to='juliet@example.com/balcony' id='m1' type='chat'>"
    b"<body>Wherefore art thou &amp; &lt;Romeo&gt;? \xc3\xa9\xe2\x82\xac</body>"
    b"<request xmlns='urn:xmpp:receipts'/></message>"
    b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
    b"<presence><show>away</show><x:y xmlns:x='urn:x' x:a='1'><x:z/></x:y></presence>"
    b"<message to='a@b'><![CDATA[<not a tag>]]></message>"
    b"  \n<iq type='result' id='e'/>"
)
TAIL = b"</stream:stream>"
DOC = HEAD + STANZAS + TAIL


def parse_all(chunks: list[bytes], max_size: int = 65536) -> list[object]:
    p = XMLStreamParser(max_size)
    out: list[object] = []
    for c in chunks:
        out.extend(p.feed(c))
    return out


def summary(events: list[object]) -> list[object]:
    out: list[object] = []
    for e in events:
        if isinstance(e, Element):
            out.append((serialize(e), e.raw))
        else:
            out.append(type(e).__name__)
    return out


REFERENCE = summary(parse_all([DOC]))


def test_whole_document_events() -> None:
    events = parse_all([DOC])
    assert isinstance(events[0], StreamOpen)
    assert events[0].attrs["to"] == "localhost"
    assert events[0].default_ns == "jabber:client"
    assert isinstance(events[-1], StreamClose)
    stanzas = [e for e in events if isinstance(e, Element)]
    assert [s.tag for s in stanzas] == ["{jabber:client}message", "{jabber:client}iq",
                                        "{jabber:client}presence", "{jabber:client}message",
                                        "{jabber:client}iq"]
    msg = stanzas[0]
    assert msg.findtext("{jabber:client}body") == "Wherefore art thou & <Romeo>? é€"
    assert msg.find("{urn:xmpp:receipts}request") is not None
    assert stanzas[3].text == "<not a tag>"


@pytest.mark.parametrize("split", range(1, len(DOC)))
def test_split_at_every_boundary(split: int) -> None:
    assert summary(parse_all([DOC[:split], DOC[split:]])) == REFERENCE


def test_byte_by_byte() -> None:
    assert summary(parse_all([DOC[i:i + 1] for i in range(len(DOC))])) == REFERENCE


def test_raw_reuse_matches_tree_serialization() -> None:
    for e in parse_all([DOC]):
        if isinstance(e, Element) and e.raw is not None:
            reparsed = parse_all([HEAD + serialize(e) + TAIL])[1]
            assert isinstance(reparsed, Element)
            assert reparsed == e
            tree_only = e.deepcopy()
            tree_only.raw = None
            assert parse_all([HEAD + serialize(tree_only) + TAIL])[1] == e


def test_prefix_declared_outside_disables_raw() -> None:
    head = HEAD.replace(b"version='1.0'>", b"version='1.0' xmlns:o='urn:outer'>")
    events = parse_all([head + b"<message><o:x/></message>" + TAIL])
    msg = events[1]
    assert isinstance(msg, Element) and msg.raw is None
    assert serialize(msg) == b"<message><x xmlns='urn:outer'/></message>"


def test_server_namespace_is_normalized() -> None:
    head = HEAD.replace(b"xmlns='jabber:client'", b"xmlns='jabber:server'")
    events = parse_all([head + b"<message from='a@b' to='c@d'><body>x</body></message>" + TAIL])
    assert isinstance(events[0], StreamOpen) and events[0].default_ns == "jabber:server"
    msg = events[1]
    assert isinstance(msg, Element)
    assert msg.tag == "{jabber:client}message"
    assert msg.findtext("{jabber:client}body") == "x"


@pytest.mark.parametrize("payload", [
    b"<!DOCTYPE foo [<!ENTITY x 'y'>]>",
    b"<!-- a comment -->",
    b"<?php echo 1; ?>",
    b"<message><body>&lol;</body></message>",
    b"<message><!-- hidden --></message>",
    b"<message><?pi x?></message>",
])
def test_restricted_xml(payload: bytes) -> None:
    p = XMLStreamParser()
    if payload.startswith(b"<!DOCTYPE"):
        data = b"<?xml version='1.0'?>" + payload + HEAD[21:]
    else:
        data = HEAD + payload
    with pytest.raises(StreamError) as ei:
        p.feed(data)
    assert ei.value.condition == "restricted-xml"
    # the parser stays failed
    with pytest.raises(StreamError):
        p.feed(b"<presence/>")


def test_billion_laughs_is_never_expanded() -> None:
    dtd = b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>" + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)) + b"]>"
    p = XMLStreamParser()
    with pytest.raises(StreamError) as ei:
        p.feed(dtd + HEAD[21:] + b"<message><body>&lol9;</body></message>")
    assert ei.value.condition == "restricted-xml"


def test_external_entity_refused() -> None:
    data = (b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
            + HEAD[21:] + b"<message><body>&xxe;</body></message>")
    with pytest.raises(StreamError) as ei:
        XMLStreamParser().feed(data)
    assert ei.value.condition == "restricted-xml"


@pytest.mark.parametrize("bad", [
    b"<message><body></message>",
    b"<message to='a\"></message>",
    b"<message>\x00</message>",
    b"<message>\xff\xfe</message>",
    b"<a:b/>",
])
def test_not_well_formed(bad: bytes) -> None:
    with pytest.raises(StreamError) as ei:
        XMLStreamParser().feed(HEAD + bad)
    assert ei.value.condition == "not-well-formed"


def test_stanza_size_limit() -> None:
    p = XMLStreamParser(max_stanza_size=1000)
    p.feed(HEAD)
    assert p.feed(b"<message><body>" + b"x" * 800 + b"</body></message>")
    with pytest.raises(StreamError) as ei:
        for _ in range(20):
            p.feed(b"<message><body>" + b"y" * 100)
    assert ei.value.condition == "policy-violation"


def test_complete_stanza_over_limit_in_one_chunk() -> None:
    p = XMLStreamParser(max_stanza_size=1000)
    p.feed(HEAD)
    with pytest.raises(StreamError) as ei:
        p.feed(b"<message><body>" + b"z" * 2000 + b"</body></message>")
    assert ei.value.condition == "policy-violation"


def test_unfinished_huge_start_tag_is_limited() -> None:
    p = XMLStreamParser(max_stanza_size=1000)
    p.feed(HEAD)
    with pytest.raises(StreamError) as ei:
        p.feed(b"<message to='" + b"a" * 5000)
    assert ei.value.condition == "policy-violation"


def test_wrong_stream_namespace() -> None:
    with pytest.raises(StreamError) as ei:
        XMLStreamParser().feed(b"<stream xmlns='jabber:client'>")
    assert ei.value.condition == "invalid-namespace"


def test_text_at_stream_level() -> None:
    with pytest.raises(StreamError) as ei:
        XMLStreamParser().feed(HEAD + b"hello")
    assert ei.value.condition == "bad-format"


def test_unsupported_encoding() -> None:
    with pytest.raises(StreamError) as ei:
        XMLStreamParser().feed(b"<?xml version='1.0' encoding='ISO-8859-1'?>" + HEAD[21:])
    assert ei.value.condition == "unsupported-encoding"


def test_reset_for_stream_restart() -> None:
    p = XMLStreamParser()
    assert isinstance(p.feed(HEAD)[0], StreamOpen)
    p.reset()
    events = p.feed(HEAD + b"<presence/>")
    assert isinstance(events[0], StreamOpen) and isinstance(events[1], Element)


@st.composite
def stanza_bytes(draw: st.DrawFn) -> bytes:
    text = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
    attr = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
    el = Element("{jabber:client}message", {"to": "a@b", "id": attr})
    el.add("{jabber:client}body", None, text)
    el.add("{urn:xmpp:receipts}request")
    return serialize(el)


@settings(max_examples=200, deadline=None)
@given(st.lists(stanza_bytes(), min_size=1, max_size=5), st.data())
def test_property_any_chunking_gives_same_stanzas(stanzas: list[bytes], data: st.DataObject) -> None:
    doc = HEAD + b"".join(stanzas) + TAIL
    cuts = sorted(data.draw(st.lists(st.integers(0, len(doc)), max_size=8)))
    chunks = [doc[a:b] for a, b in zip([0] + cuts, cuts + [len(doc)])]
    whole = summary(parse_all([doc]))
    assert summary(parse_all(chunks)) == whole
    assert [w[0] for w in whole[1:-1]] == [  # type: ignore[index]
        serialize(parse_all([HEAD + s + TAIL])[1]) for s in stanzas]  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_garbage_never_crashes(garbage: bytes) -> None:
    p = XMLStreamParser(max_stanza_size=4096)
    try:
        p.feed(HEAD)
        p.feed(garbage)
    except StreamError as e:
        assert e.condition in {"not-well-formed", "restricted-xml", "policy-violation",
                               "bad-format", "unsupported-encoding", "invalid-namespace"}


# -- idle connections: the expat parser is freed and rebuilt on the next byte ----

def parse_releasing(chunks: list[bytes], max_size: int = 65536) -> list[object]:
    """Like parse_all, but try to free the parser before every chunk."""
    p = XMLStreamParser(max_size)
    out: list[object] = []
    for c in chunks:
        p.release()
        out.extend(p.feed(c))
    return out


@pytest.mark.parametrize("split", range(0, len(DOC), 7))
def test_release_between_chunks_changes_nothing(split: int) -> None:
    chunks = [DOC[i:i + 1] for i in range(split)] + [DOC[split:]]
    assert summary(parse_releasing(chunks)) == REFERENCE


def test_release_only_between_stanzas() -> None:
    p = XMLStreamParser()
    assert not p.release()  # no stream yet
    p.feed(HEAD)
    assert p.release()
    assert p.release()  # already released
    p.feed(b"<message to='a@b'><body>half")
    assert not p.release()  # a stanza is open
    events = p.feed(b" done</body></message>")
    assert [serialize(e) for e in events] == [  # type: ignore[arg-type]
        b"<message to='a@b'><body>half done</body></message>"]
    assert p.release()
    events = p.feed(b"<presence/></stream:stream>")
    assert [type(e).__name__ for e in events] == ["Element", "StreamClose"]
    assert not p.release()  # closed


def test_release_keeps_custom_prefixes_and_limits() -> None:
    head = (b"<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' "
            b"xmlns:x='urn:x' to='localhost' version='1.0'>")
    p = XMLStreamParser(max_stanza_size=100)
    p.feed(head)
    assert p.release()
    (el,) = p.feed(b"<message><x:y a='1'/></message>")
    assert isinstance(el, Element) and el.raw is None  # prefix declared on the header
    assert el.children[0].tag == "{urn:x}y"  # type: ignore[union-attr]
    assert p.release()
    assert isinstance(p.feed(b"</s:stream>")[0], StreamClose)
    p = XMLStreamParser(max_stanza_size=100)
    p.feed(head)
    p.release()
    with pytest.raises(StreamError) as e:
        p.feed(b"<message><body>" + b"x" * 200 + b"</body></message>")
    assert e.value.condition == "policy-violation"


@settings(max_examples=150, deadline=None)
@given(st.lists(stanza_bytes(), min_size=1, max_size=5), st.data())
def test_property_release_anywhere_gives_same_stanzas(stanzas: list[bytes],
                                                      data: st.DataObject) -> None:
    doc = HEAD + b"".join(stanzas) + TAIL
    cuts = sorted(data.draw(st.lists(st.integers(0, len(doc)), max_size=8)))
    chunks = [doc[a:b] for a, b in zip([0] + cuts, cuts + [len(doc)])]
    assert summary(parse_releasing(chunks)) == summary(parse_all([doc]))


@pytest.mark.parametrize("start", [
    b"<message a=\"it's\" b='x>y'>", b"<message a='x\"y' b=\"z>w\">", b"<message b='>'>",
    b"<message b=\">>\" c='/'>", b"<message\n a='1'\t>",
])
def test_raw_with_tricky_attribute_values(start: bytes) -> None:
    inner = b"<body>hi &amp; bye</body>"
    (el,) = parse_all([HEAD, start + inner + b"</message>"])[1:]
    assert isinstance(el, Element) and el.raw == inner


def test_raw_of_empty_stanza_with_slash_in_value() -> None:
    (el,) = parse_all([HEAD, b"<presence to='a@b/c/'/>"])[1:]
    assert isinstance(el, Element) and el.raw == b"" and el.attrs["to"] == "a@b/c/"
