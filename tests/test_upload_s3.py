"""XEP-0363 HTTP File Upload with the S3 backend, against a real S3 API server (moto).

slixmpp requests slots and PUTs to the presigned URL xmppd hands out; the
file goes straight to the S3 server and comes back byte for byte through a
presigned GET URL, a public URL, or xmppd's redirect. moto does not verify
signatures, so what a PUT URL binds is checked by recomputing its AWS SigV4
signature with botocore's signer: the URL is valid for exactly the slot's
size, content type, key and expiry, and for nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import run
from helpers.procs import XmppdServer
from helpers.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer
from helpers.upload import MB, client, http, png, sha, slot, upload, upload_server, video, wav

BUCKET = "xmppd-media"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    m = MotoServer().start()
    m.client().create_bucket(Bucket=BUCKET)
    try:
        yield m
    finally:
        m.stop()


def s3_server(base: Path, moto: MotoServer, **opts: Any) -> XmppdServer:
    opts = {"storage": "s3", "s3_bucket": BUCKET, "s3_region": REGION,
            "s3_endpoint_url": moto.endpoint, "s3_access_key": ACCESS_KEY,
            "s3_secret_key": SECRET_KEY, "s3_prefix": "media/", **opts}
    srv = upload_server(base, **opts)
    srv.register("romeo", "pass-romeo")
    return srv.start()


@pytest.fixture(scope="module")
def server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdServer]:
    srv = s3_server(tmp_path_factory.mktemp("upload-s3"), moto)
    yield srv
    srv.stop()


def objects(moto: MotoServer) -> list[str]:
    return [o["Key"] for o in moto.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def signature(url: str, method: str, headers: dict[str, str]) -> tuple[str, str]:
    """(signature in ``url``, SigV4 signature of the request described) by botocore."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    given = query.pop("X-Amz-Signature")
    req = AWSRequest(method=method, url=urlunsplit(parts._replace(query=urlencode(query))),
                     headers=headers)
    req.context["timestamp"] = query["X-Amz-Date"]
    auth = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION,
                            expires=int(query["X-Amz-Expires"]))
    return given, auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)


def test_upload_and_download_image_audio_video(server: XmppdServer, moto: MotoServer) -> None:
    media = [("juliet.png", png(), "image/png"), ("nightingale.wav", wav(), "audio/wav"),
             ("balcony.mp4", video(50 * MB), "video/mp4")]

    async def main() -> None:
        romeo = await client(server, "romeo")
        for name, data, ctype in media:
            url = await upload(romeo, name, data, ctype)
            assert url.startswith(moto.endpoint + f"/{BUCKET}/media/")
            assert "X-Amz-Signature=" in url
            status, headers, body = await http("GET", url)
            assert status == 200
            assert len(body) == len(data) and sha(body) == sha(data)
            assert headers["Content-Type"] == ctype
        await romeo.logout()
    run(main(), timeout=240)
    s3 = moto.client()
    keys = [k for k in objects(moto) if k.rsplit("/", 1)[-1] in {m[0] for m in media}]
    assert len(keys) == 3 and all(k.startswith("media/") for k in keys)
    video_key = next(k for k in keys if k.endswith("/balcony.mp4"))
    head = s3.head_object(Bucket=BUCKET, Key=video_key)
    assert head["ContentLength"] == 50 * MB and head["ContentType"] == "video/mp4"


def test_range_request_on_s3(server: XmppdServer) -> None:
    data = bytes(range(256)) * 300

    async def main() -> None:
        romeo = await client(server, "romeo")
        url = await upload(romeo, "clip.webm", data, "video/webm")
        status, _, body = await http("GET", url, headers={"Range": "bytes=5000-5099"})
        assert status == 206 and body == data[5000:5100]
        await romeo.logout()
    run(main())


def test_put_url_binds_size_type_key_and_expiry(server: XmppdServer) -> None:
    async def main() -> None:
        romeo = await client(server, "romeo")
        put, _ = await slot(romeo, "kiss.jpg", 1234, "image/jpeg")
        await romeo.logout()
        return put
    put = run(main())
    q = dict(parse_qsl(urlsplit(put).query))
    assert q["X-Amz-SignedHeaders"] == "content-length;content-type;host"
    assert q["X-Amz-Expires"] == "300"
    good = {"Content-Type": "image/jpeg", "Content-Length": "1234"}
    given, computed = signature(put, "PUT", good)
    assert given == computed  # S3 accepts exactly this request
    for bad in ({"Content-Type": "text/html", "Content-Length": "1234"},
                {"Content-Type": "image/jpeg", "Content-Length": "99999999"}):
        assert signature(put, "PUT", bad)[1] != given  # S3 answers SignatureDoesNotMatch
    other_key = put.replace("/kiss.jpg?", "/kiss2.jpg?")
    assert signature(other_key, "PUT", good)[1] != given
    longer = put.replace("X-Amz-Expires=300", "X-Amz-Expires=999999")
    assert signature(longer, "PUT", good)[1] != given


def test_oversized_and_denied_slots_on_s3(server: XmppdServer) -> None:
    from slixmpp.exceptions import IqError

    async def main() -> None:
        romeo = await client(server, "romeo")
        with pytest.raises(IqError) as e:
            await slot(romeo, "huge.mkv", 60 * MB + 1, "video/x-matroska")
        assert e.value.iq["error"]["condition"] == "not-acceptable"
        await romeo.logout()
    run(main())


def test_public_get_and_redirect_and_cleanup(moto: MotoServer, tmp_path: Path) -> None:
    # a public bucket policy for the prefix, as an operator sets it for s3_public_get
    moto.client().put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/public/*"}]}))
    public = s3_server(tmp_path / "public", moto, s3_public_get=True, s3_prefix="public/")
    redirect = s3_server(tmp_path / "redirect", moto, s3_get_redirect=True, s3_prefix="short/",
                         file_expiry=3, cleanup_interval=1)
    try:
        async def main() -> None:
            romeo = await client(public, "romeo")
            data = wav(0.5)
            url = await upload(romeo, "song.wav", data, "audio/wav")
            assert url.startswith(f"{moto.endpoint}/{BUCKET}/public/")
            assert "X-Amz-Signature" not in url and url.endswith("/song.wav")
            assert (await http("GET", url))[2] == data
            await romeo.logout()

            romeo = await client(redirect, "romeo")
            data = png(30, 30)
            url = await upload(romeo, "face.png", data, "image/png")
            assert url.startswith(f"http://127.0.0.1:{redirect.http}/upload/")
            status, headers, _ = await http("GET", url, allow_redirects=False)
            assert status == 302 and headers["Location"].startswith(moto.endpoint)
            status, _, body = await http("GET", url)
            assert status == 200 and body == data
            assert any(k.startswith("short/") for k in objects(moto))
            deadline = time.monotonic() + 15
            while any(k.startswith("short/") for k in objects(moto)) and \
                    time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            assert not any(k.startswith("short/") for k in objects(moto))
            assert (await http("GET", url))[0] == 404
            await romeo.logout()
        run(main())
    finally:
        public.stop()
        redirect.stop()
