"""Photo uploads are decoded fully and stored as a re-encoded JPEG: a JPEG signature followed by HTML is refused
(422 naming the cause), EXIF (GPS, orientation, descriptions), PNG text chunks and bytes after the image are gone
from the stored copy, the EXIF orientation is applied to the pixels, and a header claiming gigapixels is refused
before decoding."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from central.db import upgrade
from central.images import MAX_SIDE, header_size, sanitize_upload
from tests.test_api_support import ApiEnv, make_api

SECRET = b"GPS-30.2590N-120.1633E-serial-XK42"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ApiEnv]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade(url)
    e = make_api(url, tmp_path)
    with e.client:
        yield e


def _exif_segment(orientation: int = 6) -> bytes:
    """APP1 Exif: IFD0 with Orientation, ImageDescription (SECRET) and a GPS IFD with a latitude reference."""
    desc = SECRET + b"\0"
    ifd0_entries = 3
    ifd0_size = 2 + 12 * ifd0_entries + 4
    gps_offset = 8 + ifd0_size
    gps_size = 2 + 12 + 4
    desc_offset = gps_offset + gps_size
    tiff = b"II*\0" + struct.pack("<I", 8)
    tiff += struct.pack("<H", ifd0_entries)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation, SHORT
    tiff += struct.pack("<HHII", 0x010E, 2, len(desc), desc_offset)  # ImageDescription, ASCII
    tiff += struct.pack("<HHII", 0x8825, 4, 1, gps_offset)  # GPSInfo IFD pointer, LONG
    tiff += struct.pack("<I", 0)
    tiff += struct.pack("<H", 1) + struct.pack("<HHI", 0x0001, 2, 2) + b"N\0\0\0" + struct.pack("<I", 0)
    tiff += desc
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _photo(w: int = 64, h: int = 32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)  # left half red (BGR), right half black: orientation is visible
    return img


def _jpeg_with_exif(orientation: int = 6) -> bytes:
    ok, buf = cv2.imencode(".jpg", _photo(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    raw = buf.tobytes()
    return raw[:2] + _exif_segment(orientation) + raw[2:] + b"<html><script>alert(1)</script></html>"


def _upload(env: ApiEnv, data: bytes, name: str = "photo.jpg") -> object:
    case_id = env.new_case()
    return env.client.post(f"/api/v1/cases/{case_id}/attachments", files={"file": (name, data, "image/jpeg")},
                           headers=env.auth("handler"))


def test_jpeg_signature_followed_by_html_is_refused(env: ApiEnv) -> None:
    for data in (b"\xff\xd8\xff\xe0<html><script>alert(1)</script></html>",
                 b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00<html><script>x</script>",
                 b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"):
        r = _upload(env, data)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "invalid_image"
        assert "file:" in body["detail"] and ("header" in body["detail"] or "decode" in body["detail"])
    assert not [p for p in Path(env.central.config.evidence_dir).rglob("*") if p.is_file()]


def test_real_jpeg_with_exif_is_stored_without_it(env: ApiEnv) -> None:
    original = _jpeg_with_exif()
    assert SECRET in original and b"Exif" in original
    r = _upload(env, original)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["content_type"] == "image/jpeg"
    stored = env.central.store.open(out["sha256"])
    assert hashlib.sha256(stored).hexdigest() == out["sha256"] and out["bytes"] == len(stored)
    assert SECRET not in stored and b"Exif" not in stored and b"\xff\xe1" not in stored
    assert b"<html" not in stored and stored.endswith(b"\xff\xd9")
    img = cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_COLOR)
    # orientation 6 (rotate 90° clockwise) was applied to the pixels: 64x32 became 32x64, red half on top
    assert img.shape[:2] == (64, 32) and (out["width"], out["height"]) == (32, 64)
    assert img[5, 16, 2] > 200 and img[58, 16, 2] < 50
    # served as the clean JPEG
    got = env.client.get(out["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content == stored


def test_png_text_chunks_are_dropped_and_big_images_reduced(env: ApiEnv) -> None:
    ok, buf = cv2.imencode(".png", np.full((10, MAX_SIDE + 904, 3), 128, np.uint8))
    assert ok
    raw = buf.tobytes()
    text = b"tEXt" + b"Comment\0" + SECRET
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    png = raw[:33] + chunk + raw[33:]  # after IHDR
    r = _upload(env, png, "x.png")
    assert r.status_code == 201, r.text
    stored = env.central.store.open(r.json()["sha256"])
    assert SECRET not in stored
    assert r.json()["width"] == MAX_SIDE and r.json()["content_type"] == "image/jpeg"


def test_header_claiming_gigapixels_is_refused_before_decoding(env: ApiEnv) -> None:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + b"\0" * 64
    assert header_size(png, "image/png") == (60_000, 60_000)
    r = _upload(env, png, "bomb.png")
    assert r.status_code == 413 and r.json()["code"] == "image_too_large", r.text
    assert "60000x60000" in r.json()["detail"]


def test_sanitize_upload_directly() -> None:
    clean = sanitize_upload(_jpeg_with_exif(orientation=1), 1_000_000)
    assert (clean.width, clean.height, clean.source_type) == (64, 32, "image/jpeg")
    assert header_size(clean.data, "image/jpeg") == (64, 32)
    with pytest.raises(ValueError, match="only JPEG and PNG"):
        sanitize_upload(b"GIF89a" + b"\0" * 64, 1_000_000)
