"""The pure parts of HTTP upload: tokens, names, quota arithmetic, option errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from xmppd.config import ConfigError, parse_config
from xmppd.server import check_modules
from xmppd.upload.quota import decide
from xmppd.upload.slots import SlotSigner, load_secret, new_id, sanitize_filename


def test_tokens_bind_every_field() -> None:
    s = SlotSigner(b"k" * 32)
    tok = s.sign("abc", "a.png", 10, "image/png", 2000)
    assert s.verify(tok, "abc", "a.png", 10, "image/png", 1000) is None
    assert s.verify(tok, "abc", "a.png", 10, "image/png", 2001) == "upload slot expired"
    for args in (("abd", "a.png", 10, "image/png"), ("abc", "b.png", 10, "image/png"),
                 ("abc", "a.png", 11, "image/png"), ("abc", "a.png", 10, "text/html")):
        assert s.verify(tok, *args, 1000) == "invalid signature"
    assert SlotSigner(b"x" * 32).verify(tok, "abc", "a.png", 10, "image/png", 1000) == \
        "invalid signature"
    assert s.verify("2999." + tok.split(".")[1], "abc", "a.png", 10, "image/png", 1000) == \
        "invalid signature"
    assert s.verify("garbage", "abc", "a.png", 10, "image/png", 1000) == "malformed token"


def test_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    a = load_secret(None, tmp_path)
    assert len(a) == 32 and load_secret(None, tmp_path) == a
    assert (tmp_path / "upload_secret").stat().st_mode & 0o777 == 0o600
    assert load_secret("configured-secret-123", tmp_path) == b"configured-secret-123"


def test_ids_are_random_letters_and_digits() -> None:
    ids = {new_id(40) for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 40 and i.isalnum() for i in ids)


@pytest.mark.parametrize("name,expected", [
    ("photo.jpg", "photo.jpg"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\x\\report.pdf", "report.pdf"),
    (".htaccess", "htaccess"),
    ("a\x00b\nc?d#e%f.txt", "abcdef.txt"),
    ("", "file"),
    ("/", "file"),
    ("très cool.jpg", "très cool.jpg"),
])
def test_file_names_are_sanitised(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def test_long_names_keep_their_extension() -> None:
    out = sanitize_filename("é" * 300 + ".mp4")
    assert out.endswith(".mp4") and len(out.encode()) <= 200


def test_quota_decisions() -> None:
    usage = [(100, 50), (200, 30), (None, 10)]  # (expires_at, size), soonest first
    assert decide(usage, 100, 10).ok
    d = decide(usage, 100, 40)
    assert not d.ok and d.used == 90 and d.retry_at == 100
    assert decide(usage, 100, 75).retry_at == 200
    d = decide(usage, 100, 95)
    assert not d.ok and d.retry_at is None and not d.never  # the file that never expires stays
    assert decide(usage, 100, 101).never


def _modules(opts: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    cfg = parse_config({"modules": {"mod_http_upload": opts}})
    plan, warnings = check_modules(cfg)
    return plan["localhost"]["mod_http_upload"][1], warnings


def test_options_and_their_errors() -> None:
    opts, warnings = _modules({"max_size": "10 MB", "quota": "1 GiB", "file_mode": "0640",
                               "thumbnail": True, "service_url": "https://x.example/up"})
    assert opts["max_size"] == 10_000_000 and opts["quota"] == 1024**3
    assert opts["file_mode"] == 0o640
    assert any("thumbnail" in w for w in warnings) and any("service_url" in w for w in warnings)
    for bad, path in [({"max_size": "lots"}, "modules.mod_http_upload.max_size"),
                      ({"storage": "s3"}, "modules.mod_http_upload.s3_bucket"),
                      ({"storage": "ftp"}, "modules.mod_http_upload.storage"),
                      ({"put_url": "ftp://x"}, "modules.mod_http_upload.put_url"),
                      ({"secret": "short"}, "modules.mod_http_upload.secret"),
                      ({"s3_get_url_expiry": "8 days"},
                       "modules.mod_http_upload.s3_get_url_expiry")]:
        with pytest.raises(ConfigError) as e:
            _modules(bad)
        assert str(e.value).startswith(path + ":"), str(e.value)
