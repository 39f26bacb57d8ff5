"""Raw WebSocket (RFC 7395) and BOSH (XEP-0206) clients for tests.

They speak literal XML over aiohttp's HTTP and WebSocket client and parse
what the server sends with the standard library's ElementTree, reusing the
SCRAM and bind steps of :class:`~helpers.raw.RawClient`.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any, Optional, Union

import aiohttp

from .raw import RawClient, StreamClosed, local

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
BOSH = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
STREAM = "http://etherx.jabber.org/streams"


class WSClient(RawClient):
    """XMPP over WebSocket: one element per message."""

    def __init__(self, url: str, *, host: str = "localhost", origin: Optional[str] = None,
                 protocols: tuple[str, ...] = ("xmpp",), ssl: Any = None) -> None:
        super().__init__(0, host=host)
        self.url = url
        self.origin = origin
        self.protocols = protocols
        self.ssl = ssl
        self.http: Optional[aiohttp.ClientSession] = None
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self.messages: list[str] = []  # every text message received, as sent

    async def connect(self) -> "WSClient":
        self.http = aiohttp.ClientSession()
        headers = {"Origin": self.origin} if self.origin else {}
        try:
            self.ws = await self.http.ws_connect(self.url, protocols=self.protocols,
                                                 headers=headers, ssl=self.ssl,
                                                 autoping=True, max_msg_size=0)
        except Exception:
            await self.http.close()
            raise
        return self

    def _new_parser(self) -> None:
        return None

    async def send(self, data: Union[str, bytes]) -> None:
        assert self.ws is not None
        await self.ws.send_str(data.decode() if isinstance(data, bytes) else data)

    async def recv(self, timeout: float = 15.0) -> ET.Element:
        assert self.ws is not None
        if self.eof:
            raise StreamClosed("closed")
        msg = await self.ws.receive(timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            self.eof = True
            raise StreamClosed(f"websocket {msg.type.name}")
        self.messages.append(msg.data)
        return ET.fromstring(msg.data)

    async def open(self, to: Optional[str] = None, extra: str = "") -> ET.Element:
        await self.send(f"<open xmlns='{FRAMING}' to='{to or self.host}' version='1.0'{extra}/>")
        head = await self.recv()
        assert head.tag == f"{{{FRAMING}}}open", ET.tostring(head)
        feats = await self.recv()
        assert feats.tag == f"{{{STREAM}}}features", ET.tostring(feats)
        return feats

    async def login(self, user: str, password: str, resource: Optional[str] = "web",
                    presence: bool = True) -> str:
        if self.ws is None:
            await self.connect()
        await self.open()
        res = await self.auth_scram(user, password)
        assert local(res.tag) == "success", ET.tostring(res)
        await self.open()
        jid = await self.bind(resource)
        if presence:
            await self.send("<presence xmlns='jabber:client'/>")
        return jid

    async def bind(self, resource: Optional[str] = None) -> str:
        inner = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq xmlns='jabber:client' type='set' id='bind1'>"
                        f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")
        res = await self.recv()
        assert res.get("type") == "result", ET.tostring(res)
        jid = res.find("{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}jid")
        assert jid is not None and jid.text
        self.jid = jid.text
        return jid.text

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()


class BoshClient(RawClient):
    """A BOSH client. ``post`` sends one body and waits for its response;
    ``send`` leaves its request pending, as real clients do with ``hold=1``
    (the server answers it when output comes or the next request arrives);
    ``recv`` returns the next child of any response, polling when needed."""

    def __init__(self, url: str, *, host: str = "localhost", wait: int = 5, hold: int = 1,
                 origin: Optional[str] = None, ssl: Any = None, rid: int = 1000) -> None:
        super().__init__(0, host=host)
        self.url = url
        self.wait = wait
        self.hold = hold
        self.origin = origin
        self.ssl = ssl
        self.rid = rid
        self.sid: Optional[str] = None
        self.http: Optional[aiohttp.ClientSession] = None
        self.last: Optional[ET.Element] = None  # the last response body
        self.outstanding: list[asyncio.Task[ET.Element]] = []

    async def connect(self) -> "BoshClient":
        self.http = aiohttp.ClientSession()
        return self

    def _new_parser(self) -> None:
        return None

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid

    async def post(self, payload: str = "", *, rid: Optional[int] = None,
                   timeout: float = 15.0, **attrs: str) -> ET.Element:
        """POST one body; return the response <body/> (children also queued)."""
        data = self.wrap(payload, rid=rid, **attrs)
        return await self.post_raw(data, timeout=timeout)

    def wrap(self, payload: str = "", *, rid: Optional[int] = None, **attrs: str) -> str:
        a = {"rid": str(rid if rid is not None else self.next_rid())}
        if self.sid is not None:
            a["sid"] = self.sid
        a.update({k.replace("__", ":"): v for k, v in attrs.items()})  # xml__lang=...
        attr_s = "".join(f" {k}='{v}'" for k, v in a.items())
        return f"<body xmlns='{BOSH}' xmlns:xmpp='{XBOSH}'{attr_s}>{payload}</body>"

    async def post_raw(self, data: Union[str, bytes], *, timeout: float = 15.0,
                       headers: Optional[dict[str, str]] = None) -> ET.Element:
        if self.http is None:
            await self.connect()
        assert self.http is not None
        hdrs = {"Content-Type": "text/xml; charset=utf-8"}
        if self.origin:
            hdrs["Origin"] = self.origin
        hdrs.update(headers or {})
        async with self.http.post(self.url, data=data, headers=hdrs, ssl=self.ssl,
                                  timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            text = await resp.read()
        el = ET.fromstring(text)
        assert el.tag == f"{{{BOSH}}}body", text
        self.last = el
        for child in el:
            self.pending.append(child)
        if el.get("type") == "terminate":
            self.eof = True
        return el

    async def create(self, **attrs: str) -> ET.Element:
        a = {"to": self.host, "wait": str(self.wait), "hold": str(self.hold), "ver": "1.6",
             "xml__lang": "en", "xmpp__version": "1.0"}
        a.update(attrs)
        el = await self.post_raw(self.wrap("", **a))
        self.sid = el.get("sid")
        return el

    async def send(self, data: Union[str, bytes]) -> None:
        payload = self.wrap(data.decode() if isinstance(data, bytes) else data)
        self.outstanding.append(asyncio.ensure_future(self.post_raw(payload)))
        await asyncio.sleep(0)  # let it leave before the next request

    async def recv(self, timeout: float = 15.0) -> ET.Element:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.pending:
            if self.eof:
                raise StreamClosed("session terminated")
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError()
            if self.outstanding:
                await asyncio.wait_for(self.outstanding.pop(0), max(left, 1) + self.wait)
            else:
                await self.post(timeout=max(left, 1) + self.wait)
        return self.pending.pop(0)

    async def open(self, to: Optional[str] = None, extra: str = "") -> ET.Element:
        if self.sid is None:
            await self.create()
        else:
            await self.post(to=to or self.host, xmpp__restart="true")
        feats = await self.recv()
        assert feats.tag == f"{{{STREAM}}}features", ET.tostring(feats)
        return feats

    async def login(self, user: str, password: str, resource: Optional[str] = "bosh",
                    presence: bool = True) -> str:
        await self.open()
        res = await self.auth_scram(user, password)
        assert local(res.tag) == "success", ET.tostring(res)
        await self.open()
        jid = await self.bind(resource)
        if presence:
            await self.send("<presence xmlns='jabber:client'/>")
        return jid

    async def bind(self, resource: Optional[str] = None) -> str:
        inner = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq xmlns='jabber:client' type='set' id='bind1'>"
                        f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")
        res = await self.recv()
        assert res.get("type") == "result", ET.tostring(res)
        jid = res.find("{urn:ietf:params:xml:ns:xmpp-bind}bind/{urn:ietf:params:xml:ns:xmpp-bind}jid")
        assert jid is not None and jid.text
        self.jid = jid.text
        return jid.text

    async def close(self) -> None:
        for t in self.outstanding:
            t.cancel()
        if self.http is not None:
            await self.http.close()


HANDLERS = {"/ws": "ejabberd_http_ws", "/bosh": "mod_bosh",
            "/.well-known/host-meta": "mod_host_meta"}


def web_listeners(srv: Any, *, tls: bool = False, **opts: Any) -> Any:
    """Mount the web handlers on the server's HTTP listener (``srv.http``) and,
    with ``tls``, on an extra HTTPS listener (``srv.https``); ``opts`` are
    listener options for both. Call before ``srv.start()``."""
    from .procs import free_port

    http = srv.config["listen"][3]
    http.update({"request_handlers": dict(HANDLERS), **opts})
    if tls:
        srv.https = free_port()
        srv.config["listen"].append({"port": srv.https, "ip": "127.0.0.1",
                                     "module": "ejabberd_http", "tls": True,
                                     "request_handlers": dict(HANDLERS), **opts})
    srv.write_config()
    return srv
