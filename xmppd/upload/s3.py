"""S3 storage through boto3: presigned PUT URLs that bind size and content type.

The PUT URL is an AWS Signature V4 presigned URL whose signed headers are
``content-length``, ``content-type`` and ``host``: S3 (and MinIO, Garage,
Ceph...) refuse a body of another size or type, an altered URL and a URL
past its expiry. Downloads get a presigned GET URL, a plain public URL, or
(``s3_get_redirect``) an xmppd URL that redirects to a fresh presigned one.
boto3 is blocking: every call runs in a small thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Optional
from urllib.parse import quote


class S3Store:
    def __init__(self, opts: dict[str, Any]) -> None:
        import boto3
        from botocore.config import Config

        self.bucket: str = opts["s3_bucket"]
        self.prefix: str = opts["s3_prefix"]
        self.endpoint: Optional[str] = opts["s3_endpoint_url"]
        self.region: str = opts["s3_region"]
        style = opts["s3_addressing_style"]
        if style == "auto":
            style = "path" if self.endpoint else "virtual"
        self.style = style
        session = boto3.session.Session(
            aws_access_key_id=opts["s3_access_key"], aws_secret_access_key=opts["s3_secret_key"],
            region_name=self.region)
        self.client = session.client(
            "s3", endpoint_url=self.endpoint,
            config=Config(signature_version="s3v4", s3={"addressing_style": style},
                          retries={"max_attempts": 3, "mode": "standard"}))
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="xmppd-s3")

    def key(self, file_id: str, name: str) -> str:
        return f"{self.prefix}{file_id}/{name}"

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kw))

    async def put_url(self, key: str, size: int, content_type: str, expires_in: int) -> str:
        return str(await self._call(
            self.client.generate_presigned_url, "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type,
                    "ContentLength": size},
            ExpiresIn=expires_in))

    async def get_url(self, key: str, content_type: str, expires_in: int) -> str:
        params = {"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type}
        return str(await self._call(self.client.generate_presigned_url, "get_object",
                                    Params=params, ExpiresIn=expires_in))

    def public_url(self, key: str, base: Optional[str]) -> str:
        if base is None:
            if self.style == "path":
                base = f"{self.endpoint or f'https://s3.{self.region}.amazonaws.com'}/{self.bucket}"
            else:
                base = f"https://{self.bucket}.s3.{self.region}.amazonaws.com"
        return f"{base}/{quote(key)}"

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError
        try:
            await self._call(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            await self._call(self.client.delete_objects, Bucket=self.bucket,
                             Delete={"Objects": [{"Key": k} for k in part], "Quiet": True})

    def close(self) -> None:
        self._pool.shutdown(wait=False)
