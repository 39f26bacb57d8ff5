"""XEP-0363 HTTP File Upload: the upload service component on ``upload.HOST``.

The service answers disco#info (identity ``store/file``, the namespace and
the XEP-0128 ``max-file-size`` form) and slot requests. A slot is a PUT URL
the client uploads to and a GET URL it shares; the file never travels
through the XMPP stream. Files go to disk (``fs.py``, served by
``http.py``) or to S3 (``s3.py``); metadata, single use, quota and expiry
live in ``store.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from ..confval import INFINITY, ConfigError
from ..datetimes import stamp
from ..jid import JID
from ..moduleapi import Module
from ..stanza import StanzaError, StanzaEvent, not_a_request, payload_key
from ..xml import Element
from . import cleanup
from .fs import FileStore
from .options import OPTIONS, check, v_size
from .quota import decide
from .slots import SlotSigner, load_secret, new_id, sanitize_filename, user_hash
from .store import PENDING, FileRow, UploadStore, now_s

log = logging.getLogger(__name__)

NS = "urn:xmpp:http:upload:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"
PING = "urn:xmpp:ping"
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+(\s*;\s*[\w.+-]+=(\"[^\"\\\r\n]*\"|[\w.+-]+))*$")
DEFAULT_TYPE = "application/octet-stream"


def _subst(value: Any, host: str) -> Any:
    """@HOST@ in option defaults (configured values were substituted by the config)."""
    if isinstance(value, str):
        return value.replace("@HOST@", host)
    if isinstance(value, list):
        return [_subst(v, host) for v in value]
    return value


def normalize_type(ct: str) -> str:
    return re.sub(r"\s+", "", ct).lower()


class HttpUpload(Module):
    name = "mod_http_upload"
    xeps = ("XEP-0363",)
    options = OPTIONS

    @classmethod
    def validate(cls, raw: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
        out = super().validate(raw, path, warnings)
        check(out, path)
        if out["thumbnail"]:
            warnings.append(f"{path}.thumbnail: thumbnails are not supported by xmppd, ignored")
        if out["service_url"]:
            warnings.append(f"{path}.service_url: external upload services are not supported "
                            f"by xmppd, ignored; xmppd hands out slots itself")
        return out

    # -- set-up ------------------------------------------------------------------
    def setup(self) -> None:
        opts = self.opts = {k: _subst(v, self.host) for k, v in self.opts.items()}
        cfg = self.server.config
        self.domains: list[str] = [opts["host"]] if opts["host"] else list(opts["hosts"])
        self.domain = self.domains[0]
        assert self.server.db is not None
        self.store = UploadStore(self.server.db)
        self.signer = SlotSigner(load_secret(opts["secret"], cfg.data_dir))
        docroot = opts["docroot"].replace("@DATA@", str(cfg.data_dir)).replace(
            "@HOME@", os.path.expanduser("~"))
        self.files = FileStore(cfg.path(docroot), opts["file_mode"], opts["dir_mode"])
        self.s3: Any = None
        if opts["storage"] == "s3":
            from .s3 import S3Store
            self.s3 = S3Store(opts)
            self.api.on_unload(self.s3.close)
        self.get_base: str = opts["get_url"] or opts["put_url"]
        self._lock = asyncio.Lock()
        for d in self.domains:
            self.api.add_component(d, self._component)
            self.api.add_item(d, opts["name"])
        self.api.hook("http-upload/service", self._service, host_only=False)
        self.api.hook("account/removed", self._account_removed, host_only=False)
        self._check_listeners()
        self.api.add_timer(opts["cleanup_interval"], self.clean)
        self.api.add_task(self.clean())

    def _check_listeners(self) -> None:
        """Warn when no HTTP listener would receive the URLs this service hands out."""
        if self.opts["storage"] == "s3" and not self.opts["s3_get_redirect"]:
            return
        paths = [p.rstrip("/") for lc in self.server.config.listen
                 for p, h in lc.request_handlers.items() if h == "mod_http_upload"]
        want = urlsplit(self.opts["put_url"] if self.s3 is None else self.get_base).path
        if not paths:
            msg = ("modules.mod_http_upload: no ejabberd_http listener has a request handler "
                   "mod_http_upload; uploads cannot be received")
        elif want.rstrip("/") not in paths:
            msg = (f"modules.mod_http_upload: the URL path {want} is not a mod_http_upload "
                   f"request handler path ({', '.join(paths)}); fine only behind a proxy "
                   f"that rewrites it")
        else:
            return
        self.server.config_warning(msg)

    def _service(self, host: Optional[str]) -> Optional[HttpUpload]:
        return self if host is None or host == self.host else None

    async def clean(self) -> int:
        try:
            return await cleanup.clean(self)
        except Exception:
            log.exception("upload clean-up of %s failed", self.host)
            return 0

    def _account_removed(self, jid: JID) -> None:
        if self.opts["rm_on_unregister"] and jid.domain == self.host:
            self.api.add_task(self._remove_owner(str(jid.bare)))

    async def _remove_owner(self, owner: str) -> None:
        await cleanup.remove(self, await self.store.of_owner(self.host, owner))

    # -- the component -------------------------------------------------------------
    def _component(self, ev: StanzaEvent) -> Any:
        if not_a_request(ev):
            return True
        key = payload_key(ev.stanza)
        handler = {f"{DISCO_INFO}:query": self._disco_info, f"{DISCO_ITEMS}:query": self._items,
                   f"{NS}:request": self._request, f"{PING}:ping": lambda ev: None}.get(key)
        if handler is None or ev.type != "get":
            return ev.error("service-unavailable")
        return self.server.router.answer_iq(ev, handler)

    def _disco_info(self, ev: StanzaEvent) -> Element:
        node = ev.stanza.first_child().attrs.get("node")  # type: ignore[union-attr]
        if node:
            raise StanzaError("item-not-found")
        q = Element("{%s}query" % DISCO_INFO)
        q.add("{%s}identity" % DISCO_INFO, {"category": "store", "type": "file",
                                           "name": self.opts["name"]})
        for var in (DISCO_INFO, DISCO_ITEMS, NS, PING):
            q.add("{%s}feature" % DISCO_INFO, {"var": var})
        if self.opts["max_size"] != INFINITY:
            form = q.add("{%s}x" % DATA, {"type": "result"})
            f = form.add("{%s}field" % DATA, {"var": "FORM_TYPE", "type": "hidden"})
            f.add("{%s}value" % DATA, None, NS)
            f = form.add("{%s}field" % DATA, {"var": "max-file-size"})
            f.add("{%s}value" % DATA, None, str(int(self.opts["max_size"])))
        return q

    def _items(self, ev: StanzaEvent) -> Element:
        return Element("{%s}query" % DISCO_ITEMS)

    # -- slots -------------------------------------------------------------------
    def allowed(self, jid: JID) -> bool:
        return self.server.access.access_or_local(self.opts["access"], jid)

    def quota_for(self, jid: JID) -> float:
        q = self.opts["quota"]
        if not isinstance(q, str):
            return float(q)
        value = self.server.access.shaper_value(q, jid, default="infinity")
        try:
            return float(v_size(value, f"shaper_rules.{q}"))
        except ConfigError as e:
            log.warning("upload quota: %s", e)
            return INFINITY

    async def _request(self, ev: StanzaEvent) -> Element:
        req = ev.stanza.first_child()
        assert req is not None
        frm = ev.from_jid
        if frm.local is None or not self.allowed(frm):
            raise StanzaError("not-allowed", text="You are not allowed to upload files")
        name = req.attrs.get("filename", "")
        size_s = req.attrs.get("size", "")
        ct = (req.attrs.get("content-type") or DEFAULT_TYPE).strip()
        if not name:
            raise StanzaError("bad-request", text="filename is missing")
        if not size_s.isdigit() or int(size_s) <= 0:
            raise StanzaError("bad-request", text="size must be a positive number of bytes")
        size = int(size_s)
        if len(ct) > 200 or not _CONTENT_TYPE.match(ct):
            raise StanzaError("bad-request", text="content-type is not a valid media type")
        max_size = self.opts["max_size"]
        if size > max_size:
            app = Element("{%s}file-too-large" % NS)
            app.add("{%s}max-file-size" % NS, None, str(int(max_size)))
            raise StanzaError("not-acceptable", "modify", app=app,
                              text=f"File too large. The maximum file size is {int(max_size)} bytes")
        owner = str(frm.bare)
        quota = self.quota_for(frm)
        name = sanitize_filename(name)
        file_id = new_id(self.opts["secret_length"])
        now = now_s()
        file_expiry = self.opts["file_expiry"]
        row = FileRow(
            id=file_id, host=self.host, owner=owner, name=name, size=size, content_type=ct,
            backend=self.opts["storage"], state=PENDING, created_at=now,
            slot_expires=now + int(self.opts["slot_expiry"]),
            expires_at=None if file_expiry == INFINITY else now + int(file_expiry))
        async with self._lock:  # quota check and reservation are one step
            if quota != INFINITY:
                d = decide(await self.store.usage(self.host, owner, now), quota, size)
                if d.never:
                    raise StanzaError("not-acceptable", "modify",
                                      text=f"File larger than your quota of {int(quota)} bytes")
                if not d.ok:
                    retry: Optional[Element] = None
                    if d.retry_at is not None:
                        retry = Element("{%s}retry" % NS,
                                        {"stamp": stamp(d.retry_at, millis=False)})
                    raise StanzaError("resource-constraint", "wait", app=retry,
                                      text=f"Quota reached: {d.used} of {int(quota)} bytes used")
            await self.store.add(row)
        put, get = await self.urls(row)
        slot = Element("{%s}slot" % NS)
        slot.add("{%s}put" % NS, {"url": put})
        slot.add("{%s}get" % NS, {"url": get})
        return slot

    def path_of(self, row: FileRow) -> str:
        local = row.owner.split("@", 1)[0] if "@" in row.owner else ""
        uh = user_hash(self.opts["jid_in_url"], row.owner, local)
        return f"/{quote(uh)}/{row.id}/{quote(row.name)}"

    async def urls(self, row: FileRow) -> tuple[str, str]:
        path = self.path_of(row)
        if self.s3 is None:
            token = self.signer.sign(row.id, row.name, row.size, row.content_type,
                                     row.slot_expires)
            return f"{self.opts['put_url']}{path}?token={token}", self.get_base + path
        key = self.s3.key(row.id, row.name)
        put = await self.s3.put_url(key, row.size, row.content_type,
                                    int(self.opts["slot_expiry"]))
        if self.opts["s3_get_redirect"]:
            get = self.get_base + path
        elif self.opts["s3_public_get"]:
            get = self.s3.public_url(key, self.opts["get_url"])
        else:
            get = await self.s3.get_url(key, row.content_type,
                                        int(self.opts["s3_get_url_expiry"]))
        return put, get

    def docroot(self) -> Path:
        return self.files.docroot
