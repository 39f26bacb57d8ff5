"""The HTTP side of uploads: PUT into a slot, GET/HEAD (with ranges), OPTIONS (CORS).

Registered as the ``mod_http_upload`` request handler of ``ejabberd_http``
listeners: ``/upload/<user hash>/<file id>/<name>``. The body of a PUT is
streamed to disk as it arrives (never held in memory); GET is served by
aiohttp's file response (sendfile on plain HTTP, Range and conditional
requests, HEAD).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..http.body import body_chunks
from ..http.server import HANDLERS
from .fs import SizeMismatch
from .module import DEFAULT_TYPE, normalize_type
from .store import PENDING, STORED, FileRow

if TYPE_CHECKING:
    from ..config import ListenConfig
    from ..server import Server
    from .module import HttpUpload

log = logging.getLogger(__name__)

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}
INLINE = ("image/", "audio/", "video/")
CHUNK = 256 * 1024


def _headers(svc: Optional[HttpUpload]) -> dict[str, str]:
    h = dict(CORS)
    if svc is not None:
        h.update(svc.opts["custom_headers"])
    return h


def _error(svc: Optional[HttpUpload], status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=_headers(svc))


class UploadHttp:
    def __init__(self, server: Server) -> None:
        self.server = server

    def _any(self) -> Optional[HttpUpload]:
        return self.server.hooks.fire("http-upload/service", None)  # type: ignore[no-any-return]

    async def _find(self, request: web.Request) -> tuple[Optional[HttpUpload], Optional[FileRow]]:
        svc = self._any()
        fid = request.match_info["id"]
        if svc is None or not fid.isalnum() or len(fid) > 128:
            return svc, None
        row = await svc.store.get(fid)
        if row is None:
            return svc, None
        owner_svc = self.server.hooks.fire("http-upload/service", row.host)
        if owner_svc is None or owner_svc.path_of(row).split("/")[1] != \
                quote(request.match_info["uh"]) or request.match_info["name"] != row.name:
            return svc, None
        return owner_svc, row

    async def _check_put(self, request: web.Request) -> tuple[HttpUpload, FileRow] | web.Response:
        """Everything that can be checked before the body arrives."""
        svc, row = await self._find(request)
        token = request.query.get("token", "")
        if svc is None or row is None or not token:
            return _error(svc, 403, "unknown upload slot or missing token")
        if row.backend != "filesystem" or svc.s3 is not None:
            return _error(svc, 405, "this file is stored elsewhere")
        why = svc.signer.verify(token, row.id, row.name, row.size, row.content_type, time.time())
        if why is not None:
            return _error(svc, 403, why)
        if row.state != PENDING:
            return _error(svc, 409, "this upload slot was already used")
        length = request.content_length
        if length is None:
            return _error(svc, 411, "Content-Length is required")
        if length != row.size:
            return _error(svc, 413 if length > row.size else 400,
                          f"Content-Length {length} does not match the slot's size {row.size}")
        ct = request.headers.get("Content-Type", DEFAULT_TYPE)
        if normalize_type(ct) != normalize_type(row.content_type):
            return _error(svc, 415, f"Content-Type {ct} does not match the slot's "
                                    f"{row.content_type}")
        return svc, row

    async def expect(self, request: web.Request) -> Optional[web.StreamResponse]:
        """``Expect: 100-continue``: refuse a bad upload before its body is sent."""
        checked = await self._check_put(request)
        if isinstance(checked, web.Response):
            return checked
        if request.headers.get("Expect", "").lower() != "100-continue":
            return _error(checked[0], 417, "only Expect: 100-continue is understood")
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def put(self, request: web.Request) -> web.StreamResponse:
        checked = await self._check_put(request)
        if isinstance(checked, web.Response):
            return checked
        svc, row = checked
        if not await svc.store.claim(row.id):
            return _error(svc, 409, "this upload slot was already used")
        ok = False
        try:
            await svc.files.write(row.id, body_chunks(request.content, request.transport),
                                  row.size)
            ok = True
        except SizeMismatch as e:
            return _error(svc, 400, str(e))
        except TimeoutError:
            log.info("upload: the upload of %s by %s stalled", row.id, row.owner)
            return _error(svc, 408, "the upload stalled")
        except (ConnectionError, HttpProcessingError) as e:
            log.info("upload: %s broke off the upload of %s: %s", row.owner, row.id, e)
            return _error(svc, 400, "the upload broke off")
        finally:
            await svc.store.finish(row.id, ok)
        log.info("upload: %s stored %s (%d bytes)", row.owner, row.id, row.size)
        return web.Response(status=201, text="created\n", headers=_headers(svc))

    async def get(self, request: web.Request) -> web.StreamResponse:
        svc, row = await self._find(request)
        if svc is not None and row is not None and row.state == PENDING and \
                row.backend == "s3" and svc.s3 is not None and \
                await svc.s3.exists(svc.s3.key(row.id, row.name)):
            await svc.store.mark_stored([row.id])  # uploaded straight to S3
            row = dataclasses.replace(row, state=STORED)
        if svc is None or row is None or row.state != STORED or \
                (row.expires_at is not None and row.expires_at < time.time()):
            return _error(svc, 404, "no such file")
        if row.backend == "s3":
            if svc.s3 is None:
                return _error(svc, 404, "no such file")
            url = await svc.s3.get_url(svc.s3.key(row.id, row.name), row.content_type,
                                       min(3600, int(svc.opts["s3_get_url_expiry"])))
            raise web.HTTPFound(url, headers=_headers(svc))
        disp = "inline" if row.content_type.startswith(INLINE) else "attachment"
        headers = _headers(svc)
        headers.update({
            "Content-Type": row.content_type,
            "Content-Disposition": f"{disp}; filename*=UTF-8''{quote(row.name)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=86400",
        })
        path = svc.files.path(row.id)
        if not path.is_file():
            return _error(svc, 404, "no such file")
        return web.FileResponse(path, chunk_size=CHUNK, headers=headers)

    async def options(self, request: web.Request) -> web.StreamResponse:
        svc, _ = await self._find(request)
        return web.Response(status=200, headers=_headers(svc))


def add_routes(server: Server, listen: ListenConfig, path: str, app: web.Application) -> Any:
    h = UploadHttp(server)
    base = path.rstrip("/") + "/{uh}/{id}/{name}"
    app.router.add_route("PUT", base, h.put, expect_handler=h.expect)
    app.router.add_get(base, h.get, allow_head=True)
    app.router.add_route("OPTIONS", base, h.options)


HANDLERS["mod_http_upload"] = add_routes
