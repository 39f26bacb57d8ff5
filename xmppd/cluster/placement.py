"""Which node owns a key (a room JID): rendezvous (highest random weight) hashing.

Every node computes the same owner from the same list of live nodes, without
talking to the others. When a node joins or leaves, only the keys it wins or
held move (about 1/N of them), the minimal churn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(node: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, nodes: Iterable[str]) -> str:
    """The live node that owns ``key``."""
    best = ""
    best_w = -1
    for node in nodes:
        w = weight(node, key)
        if w > best_w or (w == best_w and node > best):
            best, best_w = node, w
    if not best:
        raise LookupError("no live node")
    return best
