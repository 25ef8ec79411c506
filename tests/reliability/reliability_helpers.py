"""Helpers of the reliability tests: pictures written to bytes in any format."""
import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """``img`` written in ``fmt`` as bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """An incompressible (h, w) picture, so a cut file loses pixel data, not just padding."""
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def png_declaring(w: int, h: int) -> bytes:
    """A tiny real PNG whose IHDR is patched to declare w x h (CRC fixed, so the header is valid)."""
    data = bytearray(encode(Image.new("L", (8, 8), 0), "PNG"))
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, w, h)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def jpeg_declaring(w: int, h: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def gif_declaring(w: int, h: int) -> bytes:
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    struct.pack_into("<HH", data, 6, w, h)  # logical screen size
    return bytes(data)
