"""The module API's bookkeeping: what a module starts is undone when it unloads, and
what finished is forgotten (a task per ping or probe must not pile up)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from xmppd.moduleapi import ModuleAPI


def test_finished_tasks_are_forgotten_and_running_ones_cancelled_at_unload() -> None:
    async def main() -> tuple[int, int, bool]:
        vhost: Any = SimpleNamespace(name="localhost")
        api = ModuleAPI(SimpleNamespace(), vhost, "mod_test")   # type: ignore[arg-type]
        for _ in range(1000):
            api.add_task(asyncio.sleep(0))
        await asyncio.sleep(0.01)
        after_done = len(api._undo)
        forever = api.add_task(asyncio.sleep(3600))
        while_running = len(api._undo)
        api.unload()
        await asyncio.sleep(0)
        return after_done, while_running, forever.cancelled()

    after_done, while_running, cancelled = asyncio.run(main())
    assert after_done == 0        # nothing left of the thousand finished tasks
    assert while_running == 1     # one undo for all running tasks
    assert cancelled
