"""Parser choice: expat with Python callbacks vs lxml and ElementTree pull parsers.

Usage: .venv/bin/python bench/parser.py   (lxml comes with the test dependencies)

Prints microseconds per stanza (median of 5 runs) and KiB per idle parser object.
"""

from __future__ import annotations

import gc
import pyexpat
import statistics
import time
import xml.etree.ElementTree as ET
from typing import Any

from lxml import etree as LET  # type: ignore[import-untyped]

from xmppd.xmlstream import XMLStreamParser

N = 20000
STANZA = (b"<message to='juliet@capulet.lit/balcony' id='abc123' type='chat'><body>Wherefore art "
          b"thou, Romeo? 12345678</body><request xmlns='urn:xmpp:receipts'/><markable "
          b"xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='xyz'/></message>")
HEAD = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        b"to='capulet.lit' version='1.0'>")
DATA = STANZA * N
CHUNKS = [DATA[i:i + 4096] for i in range(0, len(DATA), 4096)]


def xmppd_parser() -> float:
    p = XMLStreamParser(1 << 20)
    p.feed(HEAD)
    t = time.perf_counter()
    n = 0
    for c in CHUNKS:
        n += len(p.feed(c))
    assert n == N
    return time.perf_counter() - t


def lxml_pull() -> float:
    p = LET.XMLPullParser(events=("start", "end"), resolve_entities=False)
    p.feed(HEAD)
    list(p.read_events())
    depth = 0
    t = time.perf_counter()
    for c in CHUNKS:
        p.feed(c)
        for ev, el in p.read_events():
            if ev == "start":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    el.getparent().remove(el)
    return time.perf_counter() - t


def etree_pull() -> float:
    p: Any = ET.XMLPullParser(events=("start", "end"))  # its events are typed as a union
    p.feed(HEAD)
    root = None
    for _ev, el in p.read_events():
        root = el
    assert root is not None
    depth = 0
    t = time.perf_counter()
    for c in CHUNKS:
        p.feed(c)
        for ev, el in p.read_events():
            if ev == "start":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    root.remove(el)
    return time.perf_counter() - t


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def memory(kind: str, n: int = 3000) -> float:
    gc.collect()
    keep: list[Any] = []
    before = rss()
    for _ in range(n):
        p: Any
        if kind == "expat":
            p = pyexpat.ParserCreate("UTF-8", " ")
            p.StartElementHandler = lambda n, a: None
            p.Parse(HEAD, False)
        elif kind == "lxml":
            p = LET.XMLPullParser(events=("start", "end"))
            p.feed(HEAD)
            list(p.read_events())
        else:
            p = ET.XMLPullParser(events=("start", "end"))
            p.feed(HEAD)
            list(p.read_events())
        keep.append(p)
    return (rss() - before) / n / 1024


def main() -> None:
    for fn in (xmppd_parser, lxml_pull, etree_pull):
        runs = [fn() for _ in range(5)]
        print(f"{fn.__name__:14s} {statistics.median(runs) / N * 1e6:6.2f} us/stanza (median of 5)")
    for kind in ("expat", "lxml", "etree"):
        print(f"{kind:14s} {memory(kind):6.1f} KiB per parser")


if __name__ == "__main__":
    main()
