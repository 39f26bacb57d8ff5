"""XEP-0363 HTTP File Upload on the filesystem backend, driven by real clients.

slixmpp discovers the service, requests slots and uploads; aiohttp downloads.
Images, audio and a 50 MB video come back byte for byte, on SQLite and
PostgreSQL. Forged, reused, expired, oversized and mistyped uploads are
refused; ranges, HEAD and CORS work; quota, access rules, expiry and the
clean-up do what the configuration says.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aioxmpp
import aioxmpp.httpupload
import pytest
from conftest import run
from helpers.clients import aioxmpp_client
from helpers.procs import PostgresServer, XmppdServer
from helpers.upload import MB, NS, client, http, png, sha, slot, upload, upload_server, video, wav
from slixmpp.exceptions import IqError


@pytest.fixture(scope="module", params=["sqlite", "pgsql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    pg: PostgresServer | None = request.getfixturevalue("postgres") if request.param == "pgsql" else None
    srv = upload_server(tmp_path_factory.mktemp(f"upload-{request.param}"), db=request.param, pg=pg)
    for user in ("romeo", "juliet", "nurse", "tybalt", "mercutio"):
        srv.register(user, "pass-" + user)
    srv.start()
    yield srv
    srv.stop()


def docroot(srv: XmppdServer) -> Path:
    return Path(srv.config["data_dir"]) / "upload"


def stored_files(srv: XmppdServer) -> list[Path]:
    return [p for p in docroot(srv).rglob("*") if p.is_file()]


def with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q["token"] = token
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_upload_and_download_image_audio_video(server: XmppdServer) -> None:
    media = [("juliet.png", png(), "image/png"), ("nightingale.wav", wav(), "audio/wav"),
             ("balcony.mp4", video(50 * MB), "video/mp4")]

    async def main() -> None:
        romeo = await client(server, "romeo")
        for name, data, ctype in media:
            url = await upload(romeo, name, data, ctype)
            assert url.startswith(f"http://127.0.0.1:{server.http}/upload/")
            assert url.endswith("/" + name)
            status, headers, body = await http("GET", url)
            assert status == 200
            assert len(body) == len(data) and sha(body) == sha(data)
            assert headers["Content-Type"] == ctype
            assert headers["Content-Length"] == str(len(data))
            assert headers["Access-Control-Allow-Origin"] == "*"
        await romeo.logout()
    run(main(), timeout=180)


def test_disco_advertises_service_and_max_size(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        items = await romeo.plugin["xep_0030"].get_items(jid="localhost", timeout=10)
        assert "upload.localhost" in [i[0] for i in items["disco_items"]["items"]]
        info = await romeo.plugin["xep_0030"].get_info(jid="upload.localhost", timeout=10)
        assert ("store", "file", None, "HTTP File Upload") in info["disco_info"]["identities"]
        assert NS in info["disco_info"]["features"]
        form = info.xml.find(".//{jabber:x:data}x")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in form.findall("{jabber:x:data}field")}
        assert fields == {"FORM_TYPE": NS, "max-file-size": str(60 * MB)}
        await romeo.logout()
    run(main())


def test_aioxmpp_requests_slot_and_uploads(server: XmppdServer) -> None:
    data = png(20, 20)

    async def main() -> None:
        c = aioxmpp_client("juliet@localhost/aio", "pass-juliet", server.c2s)
        async with c.connected() as stream:
            s = await aioxmpp.httpupload.request_slot(
                stream, aioxmpp.JID.fromstr("upload.localhost"), "rose.png", len(data),
                "image/png")
            status, _, _ = await http("PUT", s.put.url, data=data,
                                      headers={"Content-Type": "image/png"})
            assert status == 201
            status, _, body = await http("GET", s.get.url)
            assert status == 200 and body == data
    run(main())


def test_reused_slot_is_refused(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "once.txt", 5, "text/plain")
        hdr = {"Content-Type": "text/plain"}
        assert (await http("PUT", put, b"hello", hdr))[0] == 201
        status, _, body = await http("PUT", put, b"HELLO", hdr)
        assert status == 409 and b"already used" in body
        assert (await http("GET", get))[2] == b"hello"
        await romeo.logout()
    run(main())


def test_forged_urls_are_refused(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "forged.bin", 4)
        other_put, _ = await slot(romeo, "other.bin", 4)
        token = dict(parse_qsl(urlsplit(put).query))["token"]
        expires, mac = token.split(".")
        altered = mac[:-2] + ("BB" if mac.endswith("AA") else "AA")
        forged = [
            with_token(put, f"{expires}.{altered}"),              # altered signature
            with_token(put, f"{int(expires) + 3600}.{mac}"),     # extended expiry
            with_token(put, dict(parse_qsl(urlsplit(other_put).query))["token"]),  # other slot's
            put.split("?")[0],                                    # no token
            put.replace(urlsplit(put).path.split("/")[3], "A" * 40),  # guessed id
        ]
        for url in forged:
            status, _, _ = await http("PUT", url, b"evil")
            assert status == 403, url
        assert (await http("GET", get))[0] == 404  # nothing was stored
        assert (await http("PUT", put, b"good"))[0] == 201
        await romeo.logout()
    run(main())


def test_size_and_type_must_match_the_slot(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "pic.jpg", 10, "image/jpeg")
        jpeg = {"Content-Type": "image/jpeg"}
        status, _, body = await http("PUT", put, b"x" * 11, jpeg)
        assert status == 413 and b"does not match" in body
        assert (await http("PUT", put, b"x" * 9, jpeg))[0] == 400
        status, _, body = await http("PUT", put, b"x" * 10, {"Content-Type": "text/html"})
        assert status == 415
        assert (await http("PUT", put, b"x" * 10, jpeg))[0] == 201
        with pytest.raises(IqError) as e:
            await slot(romeo, "huge.mkv", 60 * MB + 1, "video/x-matroska")
        err = e.value.iq["error"]
        assert err["condition"] == "not-acceptable" and err["type"] == "modify"
        max_el = e.value.iq.xml.find(f".//{{{NS}}}file-too-large/{{{NS}}}max-file-size")
        assert max_el is not None and max_el.text == str(60 * MB)
        for bad in ({"size": "0"}, {"ctype": "no type"}, {"size": "-5"}):
            with pytest.raises(IqError) as e:
                iq = romeo.make_iq_get(ito="upload.localhost")
                iq["http_upload_request"]["filename"] = "x"
                iq["http_upload_request"]["size"] = bad.get("size", "5")
                iq["http_upload_request"]["content-type"] = bad.get("ctype", "text/plain")
                await iq.send(timeout=10)
            assert e.value.iq["error"]["condition"] == "bad-request"
        await romeo.logout()
    run(main())


def test_range_head_and_cors(server: XmppdServer) -> None:
    data = bytes(range(256)) * 400

    async def main() -> None:
        romeo = await client(server, "romeo")
        url = await upload(romeo, "clip.webm", data, "video/webm")
        status, headers, body = await http("GET", url, headers={"Range": "bytes=1000-1999"})
        assert status == 206 and body == data[1000:2000]
        assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        status, headers, body = await http("GET", url, headers={"Range": "bytes=-100"})
        assert status == 206 and body == data[-100:]
        status, headers, body = await http("HEAD", url)
        assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))
        assert headers["Accept-Ranges"] == "bytes"
        status, headers, _ = await http("OPTIONS", url, headers={
            "Origin": "https://web.example", "Access-Control-Request-Method": "PUT"})
        assert status == 200
        assert "PUT" in headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in headers["Access-Control-Allow-Headers"]
        await romeo.logout()
    run(main())


def test_file_names_are_sanitised_and_never_paths(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "../../../etc/passwd", 3, "text/plain")
        assert "/../" not in put and get.endswith("/passwd")
        assert (await http("PUT", put, b"abc", {"Content-Type": "text/plain"}))[0] == 201
        assert not (docroot(server).parent / "etc").exists()
        status, headers, _ = await http("GET", get)
        assert status == 200 and headers["Content-Disposition"].startswith("attachment")
        put, get = await slot(romeo, "sp ace & ünï.txt", 3, "text/plain")
        assert (await http("PUT", put, b"xyz", {"Content-Type": "text/plain"}))[0] == 201
        assert (await http("GET", get))[2] == b"xyz"
        names = {p.name for p in stored_files(server)}
        assert not any("passwd" in n or "ünï" in n for n in names)
        await romeo.logout()
    run(main())


def test_access_rule_denies(server: XmppdServer) -> None:
    async def main() -> None:
        nurse = await client(server, "nurse")
        with pytest.raises(IqError) as e:
            await slot(nurse, "secret.txt", 10)
        assert e.value.iq["error"]["condition"] == "not-allowed"
        assert e.value.iq["error"]["type"] == "cancel"
        await nurse.logout()
    run(main())


def test_quota_exceeded_gives_retry_time(server: XmppdServer) -> None:
    async def main() -> None:
        tybalt = await client(server, "tybalt")  # quota 300000 bytes by shaper rule
        url = await upload(tybalt, "one.bin", b"1" * 200000, "application/octet-stream")
        assert (await http("GET", url))[0] == 200
        with pytest.raises(IqError) as e:
            await slot(tybalt, "two.bin", 200000)
        err = e.value.iq["error"]
        assert err["condition"] == "resource-constraint" and err["type"] == "wait"
        retry = e.value.iq.xml.find(f".//{{{NS}}}retry")
        assert retry is not None
        stamp = time.mktime(time.strptime(retry.get("stamp"), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert time.time() + 29 * 86400 < stamp < time.time() + 31 * 86400  # the default expiry
        with pytest.raises(IqError) as e:
            await slot(tybalt, "three.bin", 400000)  # larger than the whole quota
        assert e.value.iq["error"]["condition"] == "not-acceptable"
        await slot(tybalt, "small.bin", 100000)  # still fits
        await tybalt.logout()
    run(main())


def test_https_listener(tmp_path: Path) -> None:
    """The default layout: uploads on the HTTPS listener (self-signed certificate here)."""
    srv = upload_server(tmp_path / "tls")
    srv.config["listen"][3]["tls"] = True
    srv.config["modules"]["mod_http_upload"]["put_url"] = f"https://127.0.0.1:{srv.http}/upload"
    srv.write_config()
    srv.register("romeo", "pass-romeo")
    srv.start()
    try:
        async def main() -> None:
            import aiohttp
            romeo = await client(srv, "romeo")
            put, get = await slot(romeo, "tls.txt", 6, "text/plain")
            assert put.startswith("https://")
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as s:
                async with s.put(put, data=b"secret", headers={"Content-Type": "text/plain"}) as r:
                    assert r.status == 201
                async with s.get(get) as r:
                    assert await r.read() == b"secret"
            await romeo.logout()
        run(main())
    finally:
        srv.stop()
    assert "mod_http_upload" not in "\n".join(
        line for line in srv.log.splitlines() if "WARNING" in line)


def test_missing_http_handler_is_reported(tmp_path: Path) -> None:
    srv = upload_server(tmp_path / "nohandler")
    srv.config["listen"][3]["request_handlers"] = {}
    srv.write_config()
    srv.start()
    srv.stop()
    assert "no ejabberd_http listener has a request handler mod_http_upload" in srv.log


def test_expiry_and_cleanup(tmp_path: Path) -> None:
    srv = upload_server(tmp_path / "exp", slot_expiry=1, file_expiry=3, cleanup_interval=1)
    srv.register("romeo", "pass-romeo")
    srv.start()
    try:
        async def main() -> None:
            romeo = await client(srv, "romeo")
            put, _ = await slot(romeo, "late.txt", 4, "text/plain")
            await asyncio.sleep(2.2)
            status, _, body = await http("PUT", put, b"late", {"Content-Type": "text/plain"})
            assert status == 403 and b"expired" in body
            url = await upload(romeo, "short.txt", b"brief", "text/plain")
            assert (await http("GET", url))[0] == 200
            assert len(stored_files(srv)) == 1
            deadline = time.monotonic() + 15
            while stored_files(srv) and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            assert stored_files(srv) == []
            assert (await http("GET", url))[0] == 404
            await romeo.logout()
        run(main())
    finally:
        srv.stop()


def test_files_go_with_the_account(server: XmppdServer) -> None:
    async def main() -> None:
        mercutio = await client(server, "mercutio")
        url = await upload(mercutio, "keep.txt", b"mine", "text/plain")
        assert (await http("GET", url))[0] == 200
        await mercutio.logout()
        server.ctl("unregister", "mercutio", "localhost")
        deadline = time.monotonic() + 10
        while (await http("GET", url))[0] == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert (await http("GET", url))[0] == 404
        file_id = urlsplit(url).path.split("/")[3]
        assert not (docroot(server) / file_id[:2] / file_id).exists()
    run(main())


async def raw_put(url: str, head_extra: str, body: bytes = b"", *, wait_continue: bool = False,
                  close_early: bool = False) -> bytes:
    """A PUT over a bare socket, to control Expect and to break off an upload."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"{head_extra}\r\n".encode())
    await writer.drain()
    if wait_continue:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not line.startswith(b"HTTP/1.1 100"):
            writer.close()
            return line
    writer.write(body)
    await writer.drain()
    if close_early:
        writer.close()
        await writer.wait_closed()
        return b""
    data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return data


def test_expect_continue_refuses_before_the_body(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "big.bin", 1000)
        head = "Expect: 100-continue\r\nContent-Type: application/octet-stream\r\n"
        answer = await raw_put(put, head + "Content-Length: 2000\r\n", wait_continue=True)
        assert answer.startswith(b"HTTP/1.1 413")  # no body was sent
        answer = await raw_put(put, head + "Content-Length: 1000\r\n", b"z" * 1000,
                               wait_continue=True)
        assert answer.startswith(b"HTTP/1.1 201")
        assert (await http("GET", get))[2] == b"z" * 1000
        await romeo.logout()
    run(main())


def test_broken_upload_leaves_nothing(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, get = await slot(romeo, "broken.bin", 100000)
        before = set(stored_files(server))
        await raw_put(put, "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n",
                      b"q" * 5000, close_early=True)
        deadline = time.monotonic() + 10
        while set(stored_files(server)) != before and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # no half file, no .part left (the server's upload log lines say why, should one stay)
        assert set(stored_files(server)) == before, \
            [line for line in server.log.splitlines() if "upload" in line][-8:]
        assert (await http("GET", get))[0] == 404
        assert (await http("PUT", put, b"q" * 100000))[0] == 409  # the slot is used up
        await romeo.logout()
    run(main())
