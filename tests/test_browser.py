"""A real web client in a real browser: Strophe.js (from npm) in Debian's
headless Chromium, driven by Playwright, logs in over WebSocket and over BOSH
from a page served on loopback, chats with a slixmpp user over TCP, and logs
out. The screenshot of the page is kept in the test's tmp dir.

`make services` (tests/services/install.sh) installs chromium and the npm
packages of tests/browser/.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import run
from helpers.clients import Slix
from helpers.procs import free_port

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = "/usr/bin/chromium"


def _require_browser() -> None:
    missing = [what for what, ok in (
        ("node", shutil.which("node") is not None),
        (CHROMIUM, Path(CHROMIUM).exists()),
        ("tests/browser/node_modules", (BROWSER_DIR / "node_modules" / "playwright-core").exists()
         and (BROWSER_DIR / "node_modules" / "strophe.js").exists()),
    ) if not ok]
    assert not missing, f"missing {missing}: run `make services` (tests/services/install.sh)"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["websocket", "bosh"])
def test_strophe_in_chromium_chats_with_a_tcp_client(make_server: Any, tmp_path: Path,
                                                     transport: str) -> None:
    _require_browser()
    srv = make_server()
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    http = srv.config["listen"][3]
    # only the test page's origin may use the endpoints: proves CORS and the check
    http["request_handlers"] = {"/ws": "ejabberd_http_ws", "/bosh": "mod_bosh"}
    http["allowed_origins"] = [origin]
    srv.write_config()
    srv.register("alice", "alice-pw")
    srv.register("bob", "bob-pw")
    srv.start()
    service = (f"ws://127.0.0.1:{srv.http}/ws" if transport == "websocket"
               else f"http://127.0.0.1:{srv.http}/bosh")
    text = f"hello bob, from Chromium over {transport}"
    shot = tmp_path / f"chat-{transport}.png"

    async def scenario() -> dict[str, Any]:
        app = web.Application()
        app.router.add_static("/", BROWSER_DIR)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", page_port).start()
        bob = Slix("bob@localhost", "bob-pw")
        await bob.login(srv.c2s)
        url = (f"{origin}/chat.html?service={service}&jid=alice@localhost"
               f"&password=alice-pw&peer=bob@localhost&text={text}")
        proc = await asyncio.create_subprocess_exec(
            "node", "run.mjs", url, str(shot), "60000", cwd=str(BROWSER_DIR),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(tmp_path), "CHROMIUM": CHROMIUM})
        browser = asyncio.ensure_future(proc.communicate())
        got = asyncio.ensure_future(bob.messages.get())
        try:
            await asyncio.wait({browser, got}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
            if not got.done():
                if proc.returncode is None:
                    proc.kill()
                out, err = await browser
                raise AssertionError(f"bob got nothing; browser said {out!r} {err!r}")
            msg = got.result()
            assert msg["body"] == text
            assert str(msg["from"]).startswith("alice@localhost/")
            bob.send_message(mto=msg["from"], mbody="hello alice, from slixmpp", mtype="chat")
            out, err = await asyncio.wait_for(browser, 90)
        finally:
            got.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await bob.logout()
            await runner.cleanup()
        lines = out.decode().strip().splitlines()
        assert lines, err.decode()
        return json.loads(lines[-1])  # type: ignore[no-any-return]

    result = run(scenario(), timeout=170)
    state = result["state"]
    assert state is not None, result["logs"]
    assert state["error"] is None, result
    assert [r["body"] for r in state["received"]] == ["hello alice, from slixmpp"]
    assert state["received"][0]["from"].startswith("bob@localhost/")
    assert "CONNECTED" in state["status"] and state["status"][-1] == "DISCONNECTED", state
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000
