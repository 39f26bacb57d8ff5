"""Options of ``mod_http_upload``: ejabberd's names where the meaning is the same."""

from __future__ import annotations

import re
from typing import Any, Optional

from ..confval import (
    INFINITY,
    ConfigError,
    v_bool,
    v_dict,
    v_enum,
    v_int,
    v_list,
    v_nonempty_str,
    v_str,
    v_timeout,
)
from ..moduleapi import Option

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b|bytes?)?\s*$", re.I)
_FACTORS = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": 1000, "kb": 1000, "kib": 1024,
            "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "g": 1000**3, "gb": 1000**3,
            "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ki": 1024,
            "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def v_size(value: Any, path: str) -> float:
    """Bytes: an integer, '100 MB', '1 GiB' or 'infinity'."""
    if value in ("infinity", "infinite", "unlimited"):
        return INFINITY
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m and (m.group(2) or "").lower() in _FACTORS:
            n = int(float(m.group(1)) * _FACTORS[(m.group(2) or "").lower()])
            if n > 0:
                return n
    raise ConfigError(path, "a size in bytes such as 104857600, '100 MB' or 'infinity'", value)


def v_quota(value: Any, path: str) -> Any:
    """A size, or the name of a ``shaper_rules`` entry whose values are sizes."""
    if isinstance(value, str) and not _SIZE.match(value) and \
            value not in ("infinity", "infinite", "unlimited"):
        return value  # a shaper rule name, evaluated per user
    return v_size(value, path)


def v_mode(value: Any, path: str) -> Optional[int]:
    """A Unix permission mode: '0640' or 0o640 (YAML reads 0640 as octal 416)."""
    if value is None or value == "undefined":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777:
        return value
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value.strip()):
        return int(value.strip(), 8)
    raise ConfigError(path, "a permission mode such as '0640'", value)


def v_url(value: Any, path: str) -> str:
    s = v_nonempty_str(value, path).rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", s):
        raise ConfigError(path, "an http:// or https:// URL", value)
    return s


def v_opt_url(value: Any, path: str) -> Optional[str]:
    return None if value in (None, "undefined") else v_url(value, path)


def v_opt_str(value: Any, path: str) -> Optional[str]:
    return None if value in (None, "undefined") else v_nonempty_str(value, path)


def v_secret(value: Any, path: str) -> Optional[str]:
    if value in (None, "undefined"):
        return None
    s = v_str(value, path)
    if len(s) < 16:
        raise ConfigError(path, "a secret of at least 16 characters", "(too short)",
                          show_got=False)
    return s


def v_headers(value: Any, path: str) -> dict[str, str]:
    out = v_dict(v_nonempty_str, v_str)(value, path)
    for k, v in out.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k) or "\n" in v or "\r" in v:
            raise ConfigError(f"{path}.{k}", "an HTTP header name and a one-line value", k)
    return out


OPTIONS: dict[str, Option] = {
    "name": Option("HTTP File Upload", v_str, "disco identity name of the upload service"),
    "host": Option(None, v_opt_str, "domain of the upload service (ejabberd's older option)"),
    "hosts": Option(["upload.@HOST@"], v_list(v_nonempty_str), "domain of the upload service"),
    "access": Option("local", lambda v, p: v, "access rule: who may request slots"),
    "max_size": Option(104857600, v_size, "largest file in bytes"),
    "secret_length": Option(40, v_int(8, 128), "length of the random part of file URLs"),
    "jid_in_url": Option("sha1", v_enum("sha1", "node"), "user part of file URLs"),
    "file_mode": Option(None, v_mode, "permissions of stored files"),
    "dir_mode": Option(None, v_mode, "permissions of created directories"),
    "docroot": Option("@DATA@/upload", v_nonempty_str, "where files are stored"),
    "put_url": Option("https://@HOST@:5443/upload", v_url, "base URL for uploads"),
    "get_url": Option(None, v_opt_url, "base URL for downloads (default: put_url)"),
    "service_url": Option(None, v_opt_url, "external upload service: not supported"),
    "custom_headers": Option({}, v_headers, "headers added to every HTTP response"),
    "rm_on_unregister": Option(True, v_bool, "delete a user's files with the account"),
    "thumbnail": Option(False, v_bool, "not supported (ignored)"),
    "secret": Option(None, v_secret, "HMAC key for upload URLs (default: generated)"),
    "slot_expiry": Option(300.0, v_timeout("second"), "how long an upload URL is valid"),
    "file_expiry": Option(30 * 86400.0, v_timeout("second", allow_infinity=True),
                          "how long files are kept"),
    "quota": Option(INFINITY, v_quota, "storage per user in bytes, or a shaper rule name"),
    "cleanup_interval": Option(3600.0, v_timeout("second"), "how often expired files go"),
    "storage": Option("filesystem", v_enum("filesystem", "s3"), "where files are stored"),
    "s3_bucket": Option(None, v_opt_str, "S3 bucket"),
    "s3_region": Option("us-east-1", v_nonempty_str, "S3 region"),
    "s3_endpoint_url": Option(None, v_opt_url, "S3 endpoint (MinIO, Garage, Ceph...)"),
    "s3_access_key": Option(None, v_opt_str, "S3 access key (default: boto3's lookup)"),
    "s3_secret_key": Option(None, v_opt_str, "S3 secret key"),
    "s3_prefix": Option("", v_str, "key prefix inside the bucket"),
    "s3_addressing_style": Option("auto", v_enum("auto", "path", "virtual"),
                                  "bucket in the path or in the host name"),
    "s3_public_get": Option(False, v_bool, "GET URLs without signature (public bucket)"),
    "s3_get_url_expiry": Option(7 * 86400.0, v_timeout("second"),
                                "validity of presigned GET URLs (at most 7 days)"),
    "s3_get_redirect": Option(False, v_bool,
                              "GET URLs point at xmppd, which redirects to a fresh presigned URL"),
}


def check(opts: dict[str, Any], path: str) -> None:
    """Cross-option checks after the per-option validators."""
    if opts["storage"] == "s3" and not opts["s3_bucket"]:
        raise ConfigError(f"{path}.s3_bucket", "a bucket name (storage is s3)", None,
                          show_got=False)
    if opts["s3_get_url_expiry"] > 7 * 86400 or opts["s3_get_url_expiry"] < 1:
        raise ConfigError(f"{path}.s3_get_url_expiry", "a duration from 1 second to 7 days",
                          opts["s3_get_url_expiry"])
    if bool(opts["s3_access_key"]) != bool(opts["s3_secret_key"]):
        raise ConfigError(f"{path}.s3_secret_key", "s3_access_key and s3_secret_key together",
                          None, show_got=False)
