"""BatchedReads (xmppd/storage/batched.py): the reads asked for while a batch runs go
together in the next one; what a batch answers, or how it fails, reaches every asker.
The credential and roster lookups at login use it (see test_storage for those on
SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from xmppd.storage.batched import BatchedReads


class Reader:
    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.running = 0
        self.most_running = 0
        self.fail_first = fail_first

    async def read_many(self, keys: list[str]) -> dict[str, int]:
        self.batches.append(keys)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        if self.fail_first and len(self.batches) == 1:
            raise OSError("database away")
        return {k: len(k) for k in keys if k != "missing"}


def test_reads_asked_meanwhile_go_together_in_the_next_batch() -> None:
    async def main() -> tuple[list[list[str]], list[object]]:
        r = Reader()
        reads: BatchedReads[str, int] = BatchedReads(r.read_many)
        first = [reads.get("a"), reads.get("bb")]
        await asyncio.sleep(0)  # the first batch starts
        later = [reads.get("ccc"), reads.get("a"), reads.get("missing"), reads.get("ccc")]
        await asyncio.sleep(0.01)
        assert r.batches == [["a", "bb"]]  # one at a time: the others wait
        r.gate.set()
        got = await asyncio.gather(*first, *later)
        await reads.drain()
        assert not reads.busy
        return r.batches, got

    batches, got = asyncio.run(main())
    assert batches == [["a", "bb"], ["ccc", "a", "missing"]]  # one read per key
    assert got == [1, 2, 3, 1, None, 3]


def test_a_failed_batch_fails_its_askers_and_the_next_goes_on() -> None:
    async def main() -> tuple[list[object], object]:
        r = Reader(fail_first=True)
        reads: BatchedReads[str, int] = BatchedReads(r.read_many)
        first = [reads.get("a"), reads.get("b")]
        await asyncio.sleep(0)
        second = reads.get("cc")
        r.gate.set()
        failed = await asyncio.gather(*first, return_exceptions=True)
        return failed, await second

    failed, second = asyncio.run(main())
    assert all(isinstance(f, OSError) for f in failed) and len(failed) == 2
    assert second == 2


@pytest.mark.parametrize("limit", [1, 2])
def test_batches_in_flight_at_most(limit: int) -> None:
    async def main() -> int:
        r = Reader()
        reads: BatchedReads[str, int] = BatchedReads(r.read_many, limit)
        futs = []
        for k in ("a", "b", "c", "d"):
            futs.append(reads.get(k))
            await asyncio.sleep(0)  # each in a turn of its own
        await asyncio.sleep(0.01)
        r.gate.set()
        assert await asyncio.gather(*futs) == [1, 1, 1, 1]
        return r.most_running

    assert asyncio.run(main()) == limit
