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


def test_a_host_unloading_its_module_keeps_the_other_hosts_commands() -> None:
    from xmppd.commands import Commands

    server: Any = SimpleNamespace(commands=Commands())
    apis = [ModuleAPI(server, SimpleNamespace(name=h), "mod_test")  # type: ignore[arg-type]
            for h in ("a.test", "b.test")]
    for i, api in enumerate(apis):
        api.add_command("get_thing", lambda i=i: f"host {i}", "get_thing: a thing")
    assert server.commands.get("get_thing").fn() == "host 1"
    apis[1].unload()
    assert server.commands.get("get_thing").fn() == "host 0"   # still there
    apis[0].unload()
    assert "get_thing" not in server.commands.names()
