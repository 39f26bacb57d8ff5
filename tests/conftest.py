"""Shared fixtures: real xmppd processes and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.procs import PostgresServer, RedisServer, XmppdServer  # noqa: E402

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 60) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    r = RedisServer().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def make_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., XmppdServer]]:
    """Factory: make_server(db='sqlite', **kw) -> a configured, not yet started server."""
    made: list[XmppdServer] = []

    def factory(db: str = "sqlite", **kw: Any) -> XmppdServer:
        pg = request.getfixturevalue("postgres") if db == "pgsql" else None
        srv = XmppdServer(tmp_path / f"srv{len(made)}", db=db, pg=pg, **kw)
        made.append(srv)
        return srv

    yield factory
    for srv in made:
        srv.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for srv in made:  # shown with the failure: what the servers said
            print(f"--- {srv.log_path} (last 60 lines) ---")
            print("\n".join(srv.log.splitlines()[-60:]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item (``rep_call``) for fixtures."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test is a failure."""
    if os.environ.get("CI") == "true":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and reporter.stats.get("skipped"):
            reporter.write_line("CI: skipped tests count as failures", red=True)
            session.exitstatus = 1
