"""Parse (and optionally stamp and serialize) N chat stanzas: a fixed workload for callgrind.

Instructions per stanza, independent of other load on the machine:

    for n in 1000 11000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/stanza_cost.py $n ser 2>&1 | grep Collected; done
    # (second - first) / 10000 = instructions per stanza

Modes: ``parse`` (XMLStreamParser only) and ``ser`` (parse, set ``from``, serialize, as
routing does).
"""

from __future__ import annotations

import sys

from xmppd.xml import serialize
from xmppd.xmlstream import XMLStreamParser

STANZA = b"<message to='juliet@capulet.lit' id='abc123' type='chat'><body>B:1234567890:42:E</body></message>"
HEAD = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        b"to='capulet.lit' version='1.0'>")


def main() -> None:
    n = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "parse"
    p = XMLStreamParser(1 << 20)
    p.feed(HEAD)
    done = 0
    for _ in range(n):
        events = p.feed(STANZA)
        if mode == "ser":
            for el in events:
                el.attrs["from"] = "romeo@montague.lit/orchard"  # type: ignore[union-attr]
                serialize(el)  # type: ignore[arg-type]
        done += len(events)
    assert done == n


if __name__ == "__main__":
    main()
