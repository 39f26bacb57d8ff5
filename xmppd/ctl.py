"""The local-only admin channel: a Unix socket in the data directory.

One JSON request per line: ``{"command": NAME, "args": [...]}``; one JSON
reply per line: ``{"ok": true, "result": TEXT}`` or ``{"ok": false,
"error": TEXT}``. The socket is created mode 0600: only the server's user
can talk to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .commands import CommandError

if TYPE_CHECKING:
    from .config import Config
    from .server import Server

log = logging.getLogger(__name__)

REQUEST_LIMIT = 1 << 20  # bytes of one request line (send_stanza carries a stanza)


def socket_path(config: Config) -> Path:
    custom = config["ctl_socket"]
    return config.path(custom) if custom else config.data_dir / "xmppd.ctl"


async def serve(server: Server) -> None:
    path = socket_path(server.config)
    if path.exists() or path.is_symlink():
        if _alive(path):
            log.warning("another server answers on %s; the admin channel is not opened", path)
            return
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        srv = await asyncio.start_unix_server(lambda r, w: _client(server, r, w),
                                             path=str(path), limit=REQUEST_LIMIT)
    finally:
        os.umask(old)
    try:
        await asyncio.Event().wait()
    finally:
        srv.close()
        try:
            path.unlink()
        except OSError:
            pass


async def _client(server: Server, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        try:
            line = await reader.readline()
        except ValueError:  # longer than REQUEST_LIMIT: answer, and read no further
            reply: dict[str, Any] = {"ok": False, "error": "request too long"}
        else:
            if not line:
                return  # a probe (is a server there?) that sent nothing
            reply = await _answer(server, line)
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    except ConnectionError:
        pass  # the caller went away (ctl interrupted): nobody to answer
    finally:
        writer.close()


async def _answer(server: Server, line: bytes) -> dict[str, Any]:
    """Run the command of one request line; its reply."""
    try:
        req = json.loads(line)
        name = str(req["command"])
        args = [str(a) for a in req.get("args", [])]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": "bad request"}
    try:
        result = await server.cluster_commands.call(name, args)
        return {"ok": True, "result": "" if result is None else str(result)}
    except CommandError as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:
        log.exception("command %s failed", name)
        return {"ok": False, "error": f"internal error: {e}"}


def _alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def is_running(config: Config) -> bool:
    """Does a server answer on the admin channel?"""
    return _alive(socket_path(config))


class NotRunning(Exception):
    pass


def call(config: Config, command: str, args: list[str], timeout: float = 300) -> dict[str, Any]:
    """Send one command to the running server; raise NotRunning if there is none."""
    path = socket_path(config)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except OSError:
            raise NotRunning(str(path)) from None
        s.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf) if buf else {"ok": False, "error": "no answer"}
