"""Typed interfaces shared by encoders, fusion strategies, heads and the UI."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    tokens: (B, N, D) patch or word tokens.
    mask:   (B, N) bool, True where a token is real (False for padding).
    pooled: (B, D) one vector per input.
    grid:   (h, w) of the patch grid for image tokens (N == h * w), None for text.
    present: (B,) bool, False where the modality was dropped (missing) for that sample;
             None means present everywhere. Strategies that can skip a missing modality
             (late fusion, gates) read it; the others see the model's stand-in features.
    detail: image feature maps finer than the patch grid, ((B, C, H, W), ...) coarse to fine, that
            the mask decoder's skip connections read to draw sharp edges; None when the encoder
            keeps none (text, frozen backbones).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, int] | None = None
    present: torch.Tensor | None = None
    detail: tuple[torch.Tensor, ...] | None = None


class FusionOutput(NamedTuple):
    """What every fusion strategy returns.

    fused:     (B, D) the joint vector the heads read.
    tokens:    (B, P, D) fused tokens on the image patch grid (for the mask decoder), or None
               when the strategy keeps no spatial layout (pooled concat, late fusion, ...).
    attention: {"layer{l}": (B, H, T, P)} text-token -> image-patch attention per layer and
               head, or None for strategies without cross-modal attention.
    logits:    (B, C) class logits decided by the strategy itself (late fusion), else None.
    extras:    named side outputs (unimodal logits of late fusion, gate values, ...).
    """

    fused: torch.Tensor
    tokens: torch.Tensor | None = None
    attention: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] | None = None


class Prediction(NamedTuple):
    """One answer of ``Model.predict`` for one (image, text) pair.

    label:      the predicted class name (or None for a mask-only model).
    probs:      {class name: probability}.
    mask:       (H, W) float array of mask probabilities at the model's input size, or None.
    attention:  {"layer{l}": (H_heads, T, h, w)} text-token -> image-patch maps, or None.
    embeddings: {"image": (D,), "text": (D,), "fused": (D,)} numpy vectors.
    tokens:     the text tokens the attention rows refer to.
    extras:     other named outputs (gates, unimodal probabilities, ...).
    """

    label: str | None
    probs: dict[str, float]
    mask: np.ndarray | None
    attention: dict[str, np.ndarray] | None
    embeddings: dict[str, np.ndarray]
    tokens: list[str]
    extras: dict[str, object] | None = None
