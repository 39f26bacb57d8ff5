"""HTTP upload throughput and the server's peak memory during a 50 MB upload.

Usage: .venv/bin/python bench/upload.py [--runs 5] [--size-mb 50] [--tls] [--db sqlite|pgsql]

Starts xmppd (filesystem backend) in its own process on loopback, requests a
slot per run with slixmpp (XEP-0363), PUTs the file with aiohttp and GETs it
back. Prints upload and download MB/s and the server's peak RSS during the
upload (VmHWM after resetting it through /proc/PID/clear_refs), as medians
of the runs, and the server's RSS before the first upload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
from helpers.procs import PostgresServer  # noqa: E402
from helpers.upload import MB, client, slot, upload_server  # noqa: E402


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS


async def bench(args: argparse.Namespace, srv: object) -> None:
    from helpers.procs import XmppdServer
    assert isinstance(srv, XmppdServer)
    size = args.size_mb * MB
    data = os.urandom(size)
    ssl = not args.tls  # with TLS, the self-signed certificate is not checked
    c = await client(srv, "romeo")
    base_rss = rss_kib(srv.pid, "VmRSS")
    ups, downs, peaks = [], [], []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as http:
        for i in range(args.runs):
            put, get = await slot(c, f"video{i}.mp4", size, "video/mp4")
            reset_peak(srv.pid)
            before = rss_kib(srv.pid, "VmRSS")
            t = time.perf_counter()
            async with http.put(put, data=data, headers={"Content-Type": "video/mp4"}) as r:
                assert r.status == 201, await r.text()
            up = time.perf_counter() - t
            peak = rss_kib(srv.pid, "VmHWM")
            t = time.perf_counter()
            got = 0
            async with http.get(get) as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1 << 20):
                    got += len(chunk)
            down = time.perf_counter() - t
            assert got == size
            ups.append(size / MB / up)
            downs.append(size / MB / down)
            peaks.append(peak)
            print(f"run {i + 1}: upload {ups[-1]:.0f} MB/s, download {downs[-1]:.0f} MB/s, "
                  f"server RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
    await c.logout()
    scheme = "https" if args.tls else "http"
    print(f"\n{args.size_mb} MB file over {scheme} on loopback, {args.db}, median of {args.runs} runs:")
    print(f"  upload   {statistics.median(ups):7.0f} MB/s")
    print(f"  download {statistics.median(downs):7.0f} MB/s")
    print(f"  server peak RSS during upload {statistics.median(peaks) / 1024:.1f} MiB "
          f"(idle after login {base_rss / 1024:.1f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--tls", action="store_true", help="HTTPS listener")
    ap.add_argument("--db", choices=("sqlite", "pgsql"), default="sqlite")
    args = ap.parse_args()
    pg = None
    if args.db == "pgsql":
        pg = PostgresServer()
        pg.start()
    base = Path(tempfile.mkdtemp(prefix="xmppd-bench-upload-"))
    srv = upload_server(base, db=args.db, pg=pg, max_size=(args.size_mb + 1) * MB,
                        quota="infinity")
    if args.tls:
        srv.config["listen"][3]["tls"] = True
        srv.config["modules"]["mod_http_upload"]["put_url"] = \
            f"https://127.0.0.1:{srv.http}/upload"
    srv.config["loglevel"] = "warning"
    srv.write_config()
    srv.register("romeo", "pass-romeo")
    srv.start()
    try:
        asyncio.run(bench(args, srv))
    finally:
        srv.stop()
        if pg is not None:
            pg.stop()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
