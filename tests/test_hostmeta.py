"""XEP-0156: /.well-known/host-meta (XRD) and host-meta.json list the
WebSocket and BOSH endpoints, readable from any origin (CORS)."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
from conftest import run
from helpers.web import web_listeners

XRD = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"
WS = "urn:xmpp:alt-connections:websocket"
BOSH = "urn:xmpp:alt-connections:xbosh"


async def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Origin": "https://elsewhere.example"},
                            ssl=False) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def test_host_meta_lists_the_configured_endpoints(make_server: Any) -> None:
    srv = web_listeners(make_server(), tls=True)
    srv.start()

    async def main() -> None:
        status, headers, data = await fetch(
            f"http://localhost:{srv.http}/.well-known/host-meta")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"].startswith("application/xrd+xml")
        links = [(link.get("rel"), link.get("href"))
                 for link in ET.fromstring(data).iter(f"{XRD}Link")]
        # TLS endpoints first, at the host name the client asked for
        assert links == [
            (WS, f"wss://localhost:{srv.https}/ws"), (WS, f"ws://localhost:{srv.http}/ws"),
            (BOSH, f"https://localhost:{srv.https}/bosh"),
            (BOSH, f"http://localhost:{srv.http}/bosh")]

        status, headers, data = await fetch(
            f"http://localhost:{srv.http}/.well-known/host-meta.json")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"].startswith("application/json")
        assert [(x["rel"], x["href"]) for x in json.loads(data)["links"]] == links

        # over HTTPS only the TLS endpoints (a secure page cannot use the others)
        status, _, data = await fetch(f"https://localhost:{srv.https}/.well-known/host-meta.json")
        assert [x["href"] for x in json.loads(data)["links"]] == [
            f"wss://localhost:{srv.https}/ws", f"https://localhost:{srv.https}/bosh"]
    run(main())


def test_host_meta_module_options(make_server: Any) -> None:
    srv = web_listeners(make_server(modules={"mod_host_meta": {
        "websocket_url": "wss://@HOST@/xmpp-websocket", "bosh_service_url": "undefined"}}))
    srv.start()

    async def main() -> None:
        _, _, data = await fetch(f"http://127.0.0.1:{srv.http}/.well-known/host-meta.json")
        assert json.loads(data) == {"links": [
            {"rel": WS, "href": "wss://localhost/xmpp-websocket"}]}
    run(main())


def test_host_meta_bad_option_names_the_path(make_server: Any) -> None:
    srv = web_listeners(make_server(modules={"mod_host_meta": {"websocket_url": "http://x/ws"}}))
    proc = subprocess.run(srv.cmd("check", "--config", str(srv.config_path)),
                          capture_output=True, text=True, timeout=60, cwd=str(srv.base))
    assert proc.returncode != 0
    assert "modules.mod_host_meta.websocket_url[0]" in proc.stderr + proc.stdout
