"""The stream entries that carry payloads (:mod:`.envelope`) to a node's queue.

A write batch of the Redis backend (:mod:`.redis`) puts what it hands to one
node into one entry, and the node's reader (:mod:`.reader`) splits it again.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pack_entry(payloads: list[bytes]) -> tuple[bytes, bytes]:
    """The field and value of the stream entry that carries ``payloads`` to a node:
    ``p``, one payload; ``z``, several separated by NUL bytes (stanzas and the other
    envelopes never hold one: XML forbids it), split again in one call; ``m``, several
    with their lengths, for the odd batch where a payload does hold a NUL byte."""
    if len(payloads) == 1:
        return b"p", payloads[0]
    joined = b"\0".join(payloads)
    if joined.count(b"\0") == len(payloads) - 1:
        return b"z", joined
    return b"m", join_payloads(payloads)


def entry_payloads(fields: dict[bytes, bytes]) -> list[bytes]:
    """The payloads of a stream entry (see :func:`pack_entry`)."""
    value = fields.get(b"z")
    if value is not None:
        return value.split(b"\0")
    value = fields.get(b"p")
    if value is not None:
        return [value]
    value = fields.get(b"m")
    return split_payloads(value) if value is not None else []


def split_entries(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> tuple[list[bytes], list[bytes]]:
    """The ids of the entries of a read, and all their payloads in order."""
    ids = []
    payloads: list[bytes] = []
    for entry_id, fields in entries:
        ids.append(entry_id)
        payloads += entry_payloads(fields)
    return ids, payloads


def join_payloads(payloads: list[bytes]) -> bytes:
    """Several payloads in one stream entry: each after its length (4 bytes)."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


def split_payloads(packed: bytes) -> list[bytes]:
    out = []
    i, end = 0, len(packed)
    while i + 4 <= end:
        n = int.from_bytes(packed[i:i + 4], "big")
        if i + 4 + n > end:
            log.warning("cluster: a stream entry ends inside a payload; dropping its tail")
            break
        out.append(packed[i + 4:i + 4 + n])
        i += 4 + n
    return out
