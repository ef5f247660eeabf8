"""Uploaded photos are decoded fully and stored as a fresh JPEG, never as the bytes that were sent.

``sanitize_upload(data, max_bytes)`` → ``CleanImage`` or ``ImageRefused`` (a ``ValueError`` with an HTTP status,
a machine code and a message naming the cause):

1. the type comes from the magic bytes (JPEG or PNG only; the client's name and Content-Type are ignored);
2. the header's width × height is read before decoding and bounded (``MAX_PIXELS``), so a small file that
   claims 60,000 × 60,000 pixels cannot make the decoder allocate gigabytes;
3. OpenCV decodes the whole image (``IMREAD_COLOR``, which also applies the EXIF orientation); anything that does
   not decode — a JPEG signature followed by HTML, a truncated file — is refused;
4. the pixels are re-encoded as baseline JPEG (quality 90, lower if needed to fit ``max_bytes``; the long side
   reduced to ``MAX_SIDE``). The copy carries no metadata at all: no EXIF (GPS position, camera serial, time), no
   XMP, no comments, no trailing bytes after the image — and nothing that a browser could sniff as HTML.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 50_000_000  # 8660 x 5773; a 48 MP phone photo fits
MAX_SIDE = 4096  # stored copies are at most this wide/high
QUALITIES = (90, 85, 75, 60, 45)
# SOFn markers that carry the frame size (not DHT C4, JPG C8, DAC CC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class ImageRefused(ValueError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class CleanImage:
    data: bytes  # the re-encoded JPEG
    content_type: str  # always image/jpeg
    width: int
    height: int
    source_type: str  # what was uploaded: image/jpeg or image/png


def sniff_image_type(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` by magic bytes, else None."""
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def header_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) from the PNG IHDR or the JPEG SOF segment, without decoding; None if not found."""
    if content_type == "image/png":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        return None
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (seg_len,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return int(w), int(h)
        i += 2 + seg_len
    return None


def decode_checked(data: bytes, what: str = "file", types: tuple[str, ...] = ("image/jpeg", "image/png")) -> Any:
    """Steps 1-3: the type from the magic bytes (one of ``types``), the header's size bounded before decoding, a
    full decode. Returns the BGR pixels; raises ``ImageRefused`` naming ``what`` and the cause."""
    source = sniff_image_type(data)
    if source is None or source not in types:
        names = " and ".join("JPEG" if t == "image/jpeg" else "PNG" for t in types)
        raise ImageRefused(415, "unsupported_media_type",
                           f"{what}: only {names} images are accepted (detected from the file's bytes)")
    kind = "JPEG" if source == "image/jpeg" else "PNG"
    size = header_size(data, source)
    if size is None:
        raise ImageRefused(422, "invalid_image", f"{what}: starts like a {kind} but has no valid {kind} header "
                                                 "(not an image, or corrupt)")
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageRefused(422, "invalid_image", f"{what}: the {kind} header gives an empty image ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageRefused(413, "image_too_large",
                           f"{what}: {w}x{h} pixels is over the limit of {MAX_PIXELS // 1_000_000} megapixels")

    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageRefused(422, "invalid_image", f"{what}: the {kind} image does not decode (corrupt or not an image)")
    return img


def sanitize_upload(data: bytes, max_bytes: int) -> CleanImage:
    source = sniff_image_type(data) or ""
    img = decode_checked(data)

    import cv2

    ih, iw = img.shape[:2]
    scale = min(1.0, MAX_SIDE / max(ih, iw))
    if scale < 1.0:
        img = cv2.resize(img, (max(1, round(iw * scale)), max(1, round(ih * scale))), interpolation=cv2.INTER_AREA)
    for q in QUALITIES:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            break
        out = buf.tobytes()
        if len(out) <= max_bytes:
            return CleanImage(out, "image/jpeg", img.shape[1], img.shape[0], source)
    raise ImageRefused(413, "payload_too_large",
                       f"file: the image does not fit in {max_bytes} bytes even re-encoded at quality {QUALITIES[-1]}")
