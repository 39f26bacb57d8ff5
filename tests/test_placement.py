"""Rendezvous hashing: stable, balanced, minimal churn."""

from __future__ import annotations

from collections import Counter

import pytest

from xmppd.cluster.placement import owner

ROOMS = [f"room{i}@conference.localhost" for i in range(3000)]
NODES = ["n1", "n2", "n3"]


def test_same_answer_everywhere() -> None:
    assert [owner(r, NODES) for r in ROOMS] == [owner(r, list(reversed(NODES))) for r in ROOMS]


def test_balanced() -> None:
    counts = Counter(owner(r, NODES) for r in ROOMS)
    assert set(counts) == set(NODES)
    assert min(counts.values()) > len(ROOMS) / 3 * 0.8


def test_minimal_churn_when_a_node_leaves_or_joins() -> None:
    before = {r: owner(r, NODES) for r in ROOMS}
    after = {r: owner(r, ["n1", "n3"]) for r in ROOMS}
    moved = [r for r in ROOMS if before[r] != after[r]]
    assert all(before[r] == "n2" for r in moved)  # only n2's rooms moved
    joined = {r: owner(r, NODES + ["n4"]) for r in ROOMS}
    moved = [r for r in ROOMS if before[r] != joined[r]]
    assert all(joined[r] == "n4" for r in moved)
    assert len(moved) < len(ROOMS) / 4 * 1.3


def test_no_nodes() -> None:
    with pytest.raises(LookupError):
        owner("x", [])
