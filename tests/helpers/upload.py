"""HTTP upload test helpers: a server with mod_http_upload, media samples, a slixmpp uploader."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Optional

import aiohttp
from slixmpp import JID

from .clients import Slix
from .procs import PostgresServer, XmppdServer

NS = "urn:xmpp:http:upload:0"
MB = 1024 * 1024


def upload_server(base: Path, *, db: str = "sqlite", pg: Optional[PostgresServer] = None,
                  **opts: Any) -> XmppdServer:
    """An xmppd with mod_http_upload served on its plain HTTP listener at /upload."""
    srv = XmppdServer(base, db=db, pg=pg, modules={}, config={
        "acl": {"blocked": {"user": "nurse"}, "small": {"user": "tybalt"}},
        "access_rules": {"upload": [{"deny": "blocked"}, {"allow": "all"}]},
        "shaper_rules": {"upload_quota": [{300000: "small"}, {"infinity": "all"}]},
    })
    module = {"put_url": f"http://127.0.0.1:{srv.http}/upload", "access": "upload",
              "max_size": 60 * MB, "quota": "upload_quota", **opts}
    srv.config["modules"] = {"mod_disco": {}, "mod_ping": {}, "mod_http_upload": module}
    srv.config["listen"][3]["request_handlers"] = {"/upload": "mod_http_upload"}
    srv.write_config()
    return srv


def png(width: int = 64, height: int = 48) -> bytes:
    """A real PNG image (a colour gradient)."""
    raw = b"".join(b"\0" + b"".join(bytes((x * 4 % 256, y * 5 % 256, (x * y) % 256))
                                     for x in range(width)) for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV audio file (a 440 Hz square wave)."""
    n = int(seconds * rate)
    pcm = bytes(200 if (i * 440 * 2 // rate) % 2 else 56 for i in range(n))
    return (b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8) + b"data" + struct.pack("<I", n) + pcm)


def video(size: int = 50 * MB) -> bytes:
    """A video-sized file: an MP4 'ftyp' box followed by incompressible bytes."""
    head = struct.pack(">I", 24) + b"ftypisom" + b"\0\0\2\0" + b"isomiso2"
    return head + os.urandom(size - len(head))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def client(srv: XmppdServer, user: str) -> Slix:
    c = Slix(f"{user}@localhost/up", "pass-" + user, plugins=("xep_0030", "xep_0363"))
    return await c.login(srv.c2s)


async def upload(c: Slix, name: str, data: bytes, ctype: str) -> str:
    """The whole XEP-0363 flow as slixmpp does it: discover, request a slot, PUT."""
    return str(await c.plugin["xep_0363"].upload_file(
        name, size=len(data), content_type=ctype, input_file=io.BytesIO(data),
        domain=JID("localhost"), timeout=60))


async def slot(c: Slix, name: str, size: int, ctype: str = "application/octet-stream",
               service: str = "upload.localhost") -> tuple[str, str]:
    iq = await c.plugin["xep_0363"].request_slot(JID(service), name, size, ctype, timeout=10)
    s = iq["http_upload_slot"]
    return str(s["put"]["url"]), str(s["get"]["url"])


async def http(method: str, url: str, data: Any = None, headers: Optional[dict[str, str]] = None,
               allow_redirects: bool = True) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, data=data, headers=headers or {},
                             allow_redirects=allow_redirects) as r:
            return r.status, dict(r.headers), await r.read()
