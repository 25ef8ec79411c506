"""The one validated image loader: every path (CLI, app, demo, datasets) goes through it.

Pictures come from strangers, so ``load_image`` refuses anything that is not a safe, readable
picture with one ``InputError`` line, and converts every accepted picture to RGB:

- only the formats in ``ALLOWED_FORMATS`` are ever parsed (Pillow's other plugins, EPS and its
  Ghostscript call among them, are never consulted); other known formats are named in the refusal;
- the size is checked from the header, before decoding: more than ``MAX_PIXELS`` pixels
  (decompression bombs), a side under ``MIN_SIDE`` or an aspect ratio over ``MAX_ASPECT`` is refused;
- truncated and corrupt data are refused, never decoded half-way;
- first frame of animations; EXIF orientation applied; CMYK, 16-bit, 32-bit and float grey
  scaled to 8 bits; palette, grey and RGB transparency and alpha composited on white.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

from mmlab.errors import InputError

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF")  # MPO: phone JPEGs with a preview
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 2
MAX_ASPECT = 50.0

ImageLike = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]

# Image.open is called with warnings turned into errors; catch_warnings swaps process-wide state,
# so mmlab's own threads take turns (opening only parses the header: it is quick).
_OPEN_LOCK = threading.Lock()
# refused by magic bytes, named in the refusal: files that are no pictures, and EPS in both its forms
_NOT_PICTURES = ((b"PK\x03\x04", "a zip archive"), (b"\x7fELF", "an ELF executable"), (b"MZ", "a Windows executable"))
_OTHER_FORMATS = ((b"%PDF", "PDF"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%!PS", "EPS"))

def _one_line(value: object, limit: int = 160) -> str:
    """``value`` as printable text on one line (exception messages and file names may hold newlines)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in " ".join(str(value).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_size(w: int, h: int) -> None:
    """Refuse a picture from its header size: too many pixels, too small, or too elongated."""
    if w * h > MAX_PIXELS:
        raise InputError(f"image too large: {w}x{h} pixels (limit {MAX_PIXELS:,} pixels)")
    if min(w, h) < MIN_SIDE:
        raise InputError(f"image too small: {w}x{h} (at least {MIN_SIDE}x{MIN_SIDE})")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InputError(f"image aspect ratio {w}x{h} is too extreme (limit {MAX_ASPECT:.0f}:1)")


def _sniff(data: bytes) -> str:
    """Why ``data`` is refused when no allowed format reads it, from magic bytes only (nothing is parsed)."""
    head = data[:32]
    allowed = ", ".join(ALLOWED_FORMATS)
    for magic, what in _NOT_PICTURES:
        if head.startswith(magic):
            return f"not an image: the data looks like {what} (allowed formats: {allowed})"
    known = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)
    Image.init()
    for fmt, (_, accept) in Image.OPEN.items():
        if known or fmt in ALLOWED_FORMATS or accept is None:
            continue
        try:
            known = fmt if accept(head) else None
        except Exception:  # noqa: BLE001 - a plugin's prefix check failing means "not this one"
            continue
    if known:
        return f"image format {known} not allowed (allowed: {allowed})"
    return f"not a readable image (allowed formats: {allowed})"

def _read(source: ImageLike) -> bytes:
    """The bytes of a path, bytes-like object or binary file object, at most ``MAX_BYTES``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        shown = _one_line(path)
        try:
            if not path.exists():
                raise InputError(f"image not found: {shown}")
            if not path.is_file():
                raise InputError(f"not an image file: {shown}")
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise InputError(f"image file too large: {size:,} bytes (limit {MAX_BYTES:,})")
            return path.read_bytes()
        except InputError:
            raise
        except OSError as e:
            raise InputError(f"cannot read image {shown}: {_one_line(e.strerror or e)}") from None
        except ValueError:  # a NUL byte in the path
            raise InputError(f"not a valid image path: {shown!r}") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read(MAX_BYTES + 1)
        except Exception as e:  # noqa: BLE001 - closed or broken stream
            raise InputError(f"cannot read the image upload: {_one_line(e)}") from None
        if isinstance(data, str):
            raise InputError("image file object must be opened in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"image file object returned {type(data).__name__}, not bytes")
        data = bytes(data)
    else:
        raise InputError(f"not an image: {type(source).__name__}")
    if len(data) > MAX_BYTES:
        raise InputError(f"image upload too large: more than {MAX_BYTES:,} bytes")
    return data


def _open(source: ImageLike) -> Image.Image:
    """Parse the header of an allowed format and check its size; nothing is decoded yet."""
    data = _read(source)
    if not data:
        raise InputError("image is empty (0 bytes)")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[f for f in ALLOWED_FORMATS if f != "MPO"])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image too large: its header declares more than {MAX_PIXELS:,} pixels "
                         "(decompression bomb refused)") from None
    except Exception:  # noqa: BLE001 - UnidentifiedImageError, and any parser failure, is bad input
        raise InputError(_sniff(data)) from None
    if img.format not in ALLOWED_FORMATS:  # defensive: a plugin may report a sub-format
        raise InputError(f"image format {img.format} not allowed (allowed: {', '.join(ALLOWED_FORMATS)})")
    _check_size(*img.size)
    return img


def header_size(path: Union[str, os.PathLike]) -> tuple[int, int] | None:
    """(width, height) of the picture file at ``path``, read from its header alone (the first few
    KB; nothing is decoded), or None when it is not a readable picture of an allowed format no
    larger than ``MAX_BYTES`` (``load_image`` then says why). For budgets checked before decoding."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_BYTES:
                return None
            with _OPEN_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(f, formats=[f for f in ALLOWED_FORMATS if f != "MPO"]) as img:
                    return img.size
    except Exception:  # noqa: BLE001 - unreadable, refused or a bomb: load_image reports it
        return None


def _scale_to_8bit(arr: np.ndarray) -> np.ndarray:
    """Grey values of any range to (H, W) uint8: 0..255 kept, 0..65535 (16-bit) scaled, else min-max;
    floats in [0, 1] are scaled by 255. NaN and infinities become 0."""
    a = np.asarray(arr, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0 and arr.dtype != np.uint16:
        pass
    elif lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0
    else:
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: first frame, EXIF orientation, alpha on white, 16-bit scaled."""
    if getattr(img, "is_animated", False) and img.tell() != 0:
        img.seek(0)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF is not worth refusing the picture
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = Image.fromarray(_scale_to_8bit(np.asarray(img).astype(np.uint16)))  # (H, W) uint8: L
    elif img.mode in ("I", "F"):
        img = Image.fromarray(_scale_to_8bit(np.asarray(img)))  # (H, W) uint8: L
    if img.mode in ("P", "PA") or ("transparency" in img.info and img.mode in ("1", "L", "RGB")):
        img = img.convert("RGBA")  # palette / colour-key transparency becomes an alpha channel
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"image mode {img.mode} cannot be converted to RGB ({_one_line(e)})") from None


def _from_array(source: np.ndarray) -> Image.Image:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of bool, integers or floats as a PIL image.

    bool: True -> 255; uint8 as is; other integers 0..255 as is, 16-bit ranges scaled by 255/65535;
    floats in [0, 1] scaled by 255 (else clipped to 0..255); NaN -> 0. 4 channels: RGBA.
    """
    arr = np.asarray(source)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"image array must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise InputError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {tuple(arr.shape)}")
    _check_size(arr.shape[1], arr.shape[0])
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        a = np.where(np.isfinite(a), a, 0.0)
        if np.issubdtype(arr.dtype, np.floating):
            a = a * 255.0 if a.min() >= 0.0 and a.max() <= 1.0 else a
        elif arr.dtype == np.uint16 or a.max() > 255:
            a = a / 257.0  # 16-bit range
        arr = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)  # (H, W, 1) -> (H, W, 3)
    return Image.fromarray(np.ascontiguousarray(arr))  # (H, W, 3) uint8: RGB; (H, W, 4): RGBA


def load_image(source: ImageLike) -> Image.Image:
    """Open, validate and convert an image to RGB.

    Accepts a path, bytes, a binary file object, a PIL image or an (H, W[, C]) array; returns an
    RGB ``PIL.Image`` of the picture's size (width and height swapped when EXIF says it is turned).
    Raises ``InputError`` (one line) for anything that is not a safe, readable picture.
    """
    if isinstance(source, np.ndarray):
        img = _from_array(source)
    elif isinstance(source, Image.Image):
        img = source
        _check_size(*img.size)
    else:
        img = _open(source)
    try:
        img.load()
        rgb = _to_rgb(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image too large (limit {MAX_PIXELS:,} pixels)") from None
    except Exception as e:  # noqa: BLE001 - truncated or corrupt data
        raise InputError(f"image is truncated or corrupt: {_one_line(e)}") from None
    _check_size(*rgb.size)
    return rgb


def to_array(img: Image.Image, size: int) -> np.ndarray:
    """Letterbox an RGB image into (size, size), never squashing it (``mmlab.data.letterbox``), and
    return a (3, size, size) uint8 array."""
    from mmlab.data.letterbox import letterbox

    square, _ = letterbox(img, size)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()  # (S, S, 3) -> (3, S, S)
