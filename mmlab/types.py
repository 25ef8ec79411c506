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
    extras:    named side outputs for people to look at (gate values, unimodal probabilities, ...):
               ``Model.predict`` passes them on; one name is read: ``sentence_attention`` (B, P), a
               strategy's own map of the whole sentence, which ``explain`` shows for the whole sentence
               instead of the mean of the word rows.
    branch_logits: {modality: (B, C)} logits of per-modality classifiers (late fusion), which the
               strategy's ``loss`` trains; None for strategies without branches.
    joint_attention: {"layer{l}": (B, H, N, N)} full self-attention over one joint sequence
               (multimodal transformer), for rollout and relevance; the strategy's
               ``joint_slices`` says where the image and text tokens sit in it.
    """

    fused: torch.Tensor
    tokens: torch.Tensor | None = None
    attention: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] | None = None
    branch_logits: dict[str, torch.Tensor] | None = None
    joint_attention: dict[str, torch.Tensor] | None = None


class Prediction(NamedTuple):
    """One answer of ``Model.predict`` for one (image, text) pair.

    label:      the predicted class name (or None for a mask-only model).
    probs:      {class name: probability}.
    mask:       (H, W) float array of mask probabilities at the model's input size, or None.
    attention:  {"layer{l}": (H_heads, T, h, w)} text-token -> image-patch maps, or None.
    embeddings: {"image": (D,), "text": (D,), "fused": (D,)} numpy vectors.
    tokens:     the text tokens the attention rows refer to.
    extras:     other named outputs (gates, unimodal probabilities, ...).
    view:       how the picture was letterboxed into the model's square input
                (``mmlab.data.letterbox.ImageView``): ``view.to_original(map)`` draws a map or the
                mask back on the original picture, ``view.peak(map)`` gives a map's peak in its pixels.
    in_distribution: False when the input is unlike what the model was trained on (the picture,
                or every word of the sentence); None when the model keeps no record of its domain.
    domain:     the full check (``mmlab.domain.DomainCheck``): the reason, the picture's score and
                threshold, and the words the model never saw.
    """

    label: str | None
    probs: dict[str, float]
    mask: np.ndarray | None
    attention: dict[str, np.ndarray] | None
    embeddings: dict[str, np.ndarray]
    tokens: list[str]
    extras: dict[str, object] | None = None
    view: object | None = None
    in_distribution: bool | None = None
    domain: object | None = None
