"""Request bodies end when the client goes away or goes quiet (xmppd/http/body.py).

On a real aiohttp server on loopback: a client that sends half a body and then
nothing is answered 408 once the idle time passes; one that closes gets a
ConnectionResetError. On aiohttp's own StreamReader: a body whose connection was
lost before the handler ran fails with a ConnectionResetError (aiohttp alone
gives a RuntimeError), and a body that arrived whole is read even then.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import StreamReader, web
from aiohttp.base_protocol import BaseProtocol
from conftest import run
from xmppd.http.body import body_chunks


async def serve(results: list[object], idle: float) -> tuple[web.AppRunner, int]:
    async def put(request: web.Request) -> web.Response:
        got = 0
        try:
            async for chunk in body_chunks(request.content, request.transport, idle):
                got += len(chunk)
        except TimeoutError:
            results.append(("stalled", got))
            return web.Response(status=408)
        except ConnectionResetError:
            results.append(("closed", got))
            raise
        results.append(("whole", got))
        return web.Response(status=201)

    app = web.Application()
    app.router.add_put("/", put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def put_raw(port: int, body: bytes, length: int) -> tuple[asyncio.StreamReader,
                                                                  asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (length, body))
    await writer.drain()
    return reader, writer


def test_whole_stalled_and_closed_bodies() -> None:
    async def main() -> None:
        results: list[object] = []
        runner, port = await serve(results, idle=0.3)
        try:
            reader, writer = await put_raw(port, b"a" * 1000, 1000)
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 201")
            writer.close()
            reader, writer = await put_raw(port, b"b" * 500, 1000)  # and then nothing
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).startswith(
                b"HTTP/1.1 408")
            writer.close()
            reader, writer = await put_raw(port, b"c" * 500, 1000)
            writer.close()
            await writer.wait_closed()
            for _ in range(100):
                if len(results) == 3:
                    break
                await asyncio.sleep(0.05)
            assert results == [("whole", 1000), ("stalled", 500), ("closed", 500)] or \
                results == [("whole", 1000), ("stalled", 500), ("closed", 0)]
        finally:
            await runner.cleanup()
    run(main())


def test_a_body_whose_connection_is_gone_before_the_handler_is_broken_off() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        content = StreamReader(BaseProtocol(loop), 2 ** 16, loop=loop)
        content.feed_data(b"half")
        with pytest.raises(ConnectionResetError):
            async for _ in body_chunks(content, None, idle=30):
                pass
        whole = StreamReader(BaseProtocol(loop), 2 ** 16, loop=loop)
        whole.feed_data(b"all of it")
        whole.feed_eof()
        assert [c async for c in body_chunks(whole, None, idle=30)] == [b"all of it"]
    run(main())
