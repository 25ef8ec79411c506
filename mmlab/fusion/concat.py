"""Pooled concatenation (mid fusion), the baseline of seeds 000, 001, 002 and 004."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput


class ConcatFusion(Fusion):
    """Concatenate the pooled image and text vectors, then a Linear + ReLU fusion layer.

    The simplest mid fusion (seed 003 §5.1, seed 000's "intermediate fusion layer"):
    cheap (one (2D x D) layer) and a strong baseline for classification, but the pooled
    vectors have lost *where* things are, so it cannot localise the object a sentence
    names (seed 004: concatenation reached almost no IoU on referring masks). Use it as
    the baseline every other strategy must beat.
    """

    family = "mid"

    def __init__(self, dim: int, *, num_classes: int | None = None, dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        joint = torch.cat([inputs["image"].pooled, inputs["text"].pooled], dim=-1)  # (B, 2D)
        return FusionOutput(fused=self.proj(joint))
