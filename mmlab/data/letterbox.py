"""Letterboxing: a picture of any shape into the model's square input without squashing it.

``letterbox(img, side)`` scales the picture so its longer side is ``side`` and pads the shorter one
(centred, with the mean colour of the picture's border); ``ImageView`` remembers how, so that
maps, masks and points computed on the square are drawn back on the original picture
(``to_original``, ``peak``). A square picture is only resized, exactly as before letterboxing
existed, so the shipped checkpoints see the same pixels.

A picture at least twice the model's side is area-averaged (``Image.BOX``) rather than filtered
bilinearly: an upload that is a 2x, 4x, ... enlargement of a picture of the model's kind comes back
pixel for pixel, where the bilinear filter's wide footprint blurred its edges and the domain check
called half such scenes unlike the training pictures. Smaller reductions and enlargements keep
bilinear, so photos under twice the side (every shipped photo) see the same pixels as before.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image


class ImageView(NamedTuple):
    """How a picture of ``size`` (H, W) sits in the model's ``side`` x ``side`` input.

    scale: model pixels per original pixel; offset: (top, left) padding in model pixels;
    content: (height, width) of the picture inside the square, in model pixels.
    """

    size: tuple[int, int]
    side: int
    scale: float
    offset: tuple[int, int]
    content: tuple[int, int]

    @classmethod
    def square(cls, side: int) -> "ImageView":
        """The view of a picture that already is the model's square input."""
        return cls((side, side), side, 1.0, (0, 0), (side, side))

    def to_original(self, map_: np.ndarray) -> np.ndarray:
        """An (h, w) map over the model's square input -> (H, W) float32 over the original picture
        (bilinear; the padding is cut away)."""
        m = np.nan_to_num(np.asarray(map_, dtype=np.float32))
        if m.ndim != 2:
            raise ValueError(f"a map must be 2-D (h, w), got shape {m.shape}")
        full = np.asarray(Image.fromarray(m, mode="F").resize((self.side, self.side), Image.BILINEAR))
        (top, left), (ch, cw) = self.offset, self.content
        crop = full[top:top + ch, left:left + cw]
        H, W = self.size
        return np.asarray(Image.fromarray(np.ascontiguousarray(crop), mode="F").resize((W, H), Image.BILINEAR),
                          dtype=np.float32)

    def cell_box(self, grid: tuple[int, int], row: int, col: int) -> tuple[float, float, float, float]:
        """The original-picture box (x0, y0, x1, y1) that cell (row, col) of a ``grid`` map covers."""
        h, w = grid
        cy, cx = self.side / h, self.side / w
        (top, left), s = self.offset, self.scale
        x0, x1 = (col * cx - left) / s, ((col + 1) * cx - left) / s
        y0, y1 = (row * cy - top) / s, ((row + 1) * cy - top) / s
        H, W = self.size
        return max(0.0, x0), max(0.0, y0), min(float(W), x1), min(float(H), y1)

    def content_cells(self, grid: tuple[int, int]) -> np.ndarray:
        """(h, w) bool: the cells of a ``grid`` map that show some of the picture (not only padding)."""
        h, w = grid
        out = np.zeros((h, w), bool)
        for r in range(h):
            for c in range(w):
                x0, y0, x1, y1 = self.cell_box(grid, r, c)
                out[r, c] = x1 > x0 and y1 > y0
        return out

    def peak(self, map_: np.ndarray) -> tuple[int, int]:
        """(x, y) in the original picture's pixels of the map's highest cell that shows the picture
        (the centre of its visible part)."""
        m = np.nan_to_num(np.asarray(map_, dtype=np.float64), nan=-np.inf)
        m = np.where(self.content_cells(m.shape), m, -np.inf)
        r, c = np.unravel_index(int(np.argmax(m)), m.shape)
        x0, y0, x1, y1 = self.cell_box(m.shape, r, c)
        H, W = self.size
        return min(W - 1, int((x0 + x1) / 2)), min(H - 1, int((y0 + y1) / 2))


def fit(width: int, height: int, side: int) -> ImageView:
    """Where a ``width`` x ``height`` picture lands in a ``side`` x ``side`` letterbox (geometry only)."""
    scale = side / max(width, height)
    cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
    return ImageView((height, width), side, scale, ((side - ch) // 2, (side - cw) // 2), (ch, cw))


def border_colour(img: Image.Image) -> tuple[int, int, int]:
    """The mean RGB colour of the picture's outermost pixels: the padding blends in."""
    a = np.asarray(img.convert("RGB"), dtype=np.float64)
    edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])  # (2W + 2H, 3)
    return tuple(int(round(v)) for v in edge.mean(0))


def letterbox(img: Image.Image, side: int, *, fill: tuple[int, int, int] | None = None,
              resample=Image.BILINEAR) -> tuple[Image.Image, ImageView]:
    """Scale ``img`` so its longer side is ``side`` and pad it to ``side`` x ``side``, centred.

    Returns the square picture and its ``ImageView``. ``fill``: the padding colour (default: the
    picture's mean border colour). A square picture is resized only. A reduction by 2x or more
    averages areas (``Image.BOX``) unless ``resample`` is NEAREST.
    """
    view = fit(*img.size, side)
    (top, left), (ch, cw) = view.offset, view.content
    if resample != Image.NEAREST and max(img.size) >= 2 * side:
        resample = Image.BOX
    if (cw, ch) == (side, side):
        return img.resize((side, side), resample), view
    small = img.resize((cw, ch), resample)
    if fill is None:
        fill = border_colour(img) if img.mode == "RGB" else 0
    canvas = Image.new(img.mode, (side, side), fill)
    canvas.paste(small, (left, top))
    return canvas, view
