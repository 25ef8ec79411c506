"""Plain numpy pictures for the demo: the attention heat overlay and the mask overlay.

Nothing here imports Gradio or torch; every function maps arrays to arrays.

- ``attention_map``: one (h, w) map from ``Prediction.attention`` ``{"layer{l}": (H, T, h, w)}``:
  the last layer, averaged over its heads and over the sentence's tokens (or the rows of
  one chosen token), min-max normalised to [0, 1].
- ``upsample``: bilinear resize of an (h, w) map to (H, W) (half-pixel centres, like
  ``torch.nn.functional.interpolate(..., align_corners=False)``).
- ``heat_overlay``: blend a jet-coloured map over an (H, W, 3) uint8 picture.
- ``mask_overlay``: tint the predicted mask's probabilities over the picture and outline
  where it is above one half.
"""
from __future__ import annotations

import re

import numpy as np

from mmlab.errors import InputError
from mmlab.viz import normalize  # noqa: F401 - re-exported: explain.normalize / overlay.normalize

WHOLE_SENTENCE = "(whole sentence)"

# jet: dark blue -> blue -> cyan -> yellow -> red -> dark red (reads well on a projector)
_JET_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_JET_RGB = np.array([[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]],
                    dtype=np.float64)  # (6, 3)




def last_layer(attention: dict[str, np.ndarray]) -> np.ndarray:
    """The (H, T, h, w) maps of the highest-numbered ``layer{l}`` key."""
    keys = [k for k in attention if re.fullmatch(r"layer\d+", k)]
    if not keys:
        raise InputError("no attention layers in this prediction")
    return np.asarray(attention[max(keys, key=lambda k: int(k[5:]))])


def attention_map(attention: dict[str, np.ndarray], tokens: list[str], token: str | None = None) -> np.ndarray:
    """(h, w) map in [0, 1]: last layer, mean over heads, then mean over the text rows.

    ``token`` None (or ``WHOLE_SENTENCE``) averages every row of the sentence; a token string
    averages the rows where that token occurs. Raises ``InputError`` for a token that is not
    in ``tokens``.
    """
    maps = last_layer(attention)  # (H, T, h, w)
    if maps.ndim != 4:
        raise InputError(f"attention maps must be (heads, tokens, h, w), got shape {maps.shape}")
    per_token = maps.mean(0)  # (T, h, w)
    if token is None or token == "" or token == WHOLE_SENTENCE:
        return normalize(per_token.mean(0))
    rows = [i for i, t in enumerate(tokens) if t == token]
    if not rows:
        raise InputError(f"token {token!r} is not in the sentence; its tokens are: {', '.join(tokens)}")
    if len(tokens) != per_token.shape[0]:
        raise InputError(f"this model's {per_token.shape[0]} attention rows do not line up with the "
                         f"{len(tokens)} words; use {WHOLE_SENTENCE}")
    return normalize(per_token[rows].mean(0))


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices and the weight of the second."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample(map_hw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) map to size (H, W), half-pixel centres. Returns float32 (H, W)."""
    m = np.asarray(map_hw, dtype=np.float32)
    if m.ndim != 2:
        raise InputError(f"map must be 2-D (h, w), got shape {m.shape}")
    H, W = int(size[0]), int(size[1])
    if H < 1 or W < 1:
        raise InputError(f"size must be positive, got {size!r}")
    r0, r1, wr = _axis_weights(m.shape[0], H)
    c0, c1, wc = _axis_weights(m.shape[1], W)
    rows = m[r0] * (1 - wr)[:, None] + m[r1] * wr[:, None]  # (H, w)
    return rows[:, c0] * (1 - wc)[None, :] + rows[:, c1] * wc[None, :]  # (H, W)


def jet(values: np.ndarray) -> np.ndarray:
    """Colour values in [0, 1] with the jet colormap: (...,) -> (..., 3) uint8."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    rgb = np.stack([np.interp(v, _JET_STOPS, _JET_RGB[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise InputError(f"image must be (H, W, 3), got shape {img.shape}")
    return img.astype(np.float32)


def heat_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend a heat map over a picture.

    image: (H, W, 3) uint8; heat: (h, w) in [0, 1] on any grid (upsampled to (H, W)).
    Returns (H, W, 3) uint8 = (1 - alpha) * image + alpha * jet(heat).
    """
    img = _check_image(image)
    up = upsample(heat, img.shape[:2])  # (H, W)
    out = (1.0 - alpha) * img + alpha * jet(up).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, *, colour: tuple[int, int, int] = (0, 220, 90),
                 alpha: float = 0.6, threshold: float = 0.5) -> np.ndarray:
    """Tint a picture by mask probabilities and outline the region above ``threshold``.

    image: (H, W, 3) uint8; mask: (S, S) probabilities in [0, 1] (upsampled to (H, W)).
    Returns (H, W, 3) uint8: image * (1 - alpha * p) + colour * alpha * p, with the
    boundary of {p >= threshold} drawn in ``colour``.
    """
    img = _check_image(image)
    p = np.clip(upsample(mask, img.shape[:2]), 0.0, 1.0)[..., None]  # (H, W, 1)
    col = np.asarray(colour, dtype=np.float32)
    out = img * (1.0 - alpha * p) + col * (alpha * p)
    inside = p[..., 0] >= threshold
    interior = inside
    for _ in range(max(1, round(min(img.shape[:2]) / 160))):  # outline ~2 px on a 384 px picture
        padded = np.pad(interior, 1, mode="constant", constant_values=False)
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out[inside & ~interior] = col
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
