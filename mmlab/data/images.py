"""The one validated image loader: every path (CLI, app, demo, datasets) goes through it."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmlab.errors import InputError

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 2
MAX_ASPECT = 50.0

ImageLike = Union[str, os.PathLike, bytes, BinaryIO, Image.Image, np.ndarray]


def _open(source: ImageLike) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"image not found: {path}")
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"image file too large: {path.stat().st_size} bytes (limit {MAX_BYTES})")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise InputError(f"image upload too large (limit {MAX_BYTES} bytes)")
    else:
        raise InputError(f"not an image: {type(source).__name__}")
    if not data:
        raise InputError("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"not a readable image ({type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"not a readable image: {e}") from None
    if img.format not in ALLOWED_FORMATS:
        raise InputError(f"image format {img.format} not allowed (allowed: {', '.join(ALLOWED_FORMATS)})")
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(f"image too large: {w}x{h} pixels (limit {MAX_PIXELS:,})")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: first frame, EXIF orientation, alpha on white, 16-bit scaled."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF is not worth refusing the picture
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(source: ImageLike) -> Image.Image:
    """Open, validate and convert an image to RGB.

    Accepts a path, bytes, a binary file object, a PIL image or an (H, W[, C]) array.
    Raises ``InputError`` for anything that is not a safe, readable picture.
    """
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise InputError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
        if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise InputError(f"image too large: {arr.shape[1]}x{arr.shape[0]} pixels")
        if arr.dtype != np.uint8:
            a = np.nan_to_num(arr.astype(np.float64))
            a = a * 255.0 if a.max() <= 1.0 else a
            arr = np.clip(a, 0, 255).astype(np.uint8)
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        img = Image.fromarray(arr)
    elif isinstance(source, Image.Image):
        img = source
        if img.size[0] * img.size[1] > MAX_PIXELS:
            raise InputError(f"image too large: {img.size[0]}x{img.size[1]} pixels")
    else:
        img = _open(source)
    try:
        img.load()
        rgb = _to_rgb(img)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or corrupt data
        raise InputError(f"image is truncated or corrupt: {e}") from None
    w, h = rgb.size
    if min(w, h) < MIN_SIDE:
        raise InputError(f"image too small: {w}x{h} (at least {MIN_SIDE}x{MIN_SIDE})")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InputError(f"image aspect ratio {w}x{h} is too extreme (limit {MAX_ASPECT:.0f}:1)")
    return rgb


def to_array(img: Image.Image, size: int) -> np.ndarray:
    """Resize an RGB image to (size, size) and return a (3, size, size) uint8 array."""
    img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
