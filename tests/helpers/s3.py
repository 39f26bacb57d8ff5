"""A real S3 API server for tests: moto's standalone server on a loopback port.

moto speaks the S3 REST API (buckets, objects, presigned URLs, ranges) over
HTTP; it does not check signatures, so what a signature binds is checked by
recomputing it with botocore's own SigV4 signer (see tests/test_upload_s3.py).
Stopped by its process id.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from .procs import free_port, wait_port

ACCESS_KEY = "xmppd-test-key"
SECRET_KEY = "xmppd-test-secret-0123456789"
REGION = "us-east-1"


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.dir = Path(tempfile.mkdtemp(prefix="xmppd-moto-"))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        log = open(self.dir / "moto.log", "ab")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        wait_port(self.port, 30, self.proc)
        return self

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"}))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
