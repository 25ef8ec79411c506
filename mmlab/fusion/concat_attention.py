"""Concatenation + attention (seed 003 §5.1, option 5): the image vector attends over the words."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput


class ConcatAttentionFusion(Fusion):
    """Concatenate the image vector with an attention-weighted summary of the words (seed 003, option 5).

    The two representations are kept separate and attention combines them: the pooled image
    vector is the query, the word tokens are keys and values, ``softmax(q k^T / sqrt(D))`` says
    which words matter for this image, and the attended sentence vector is concatenated with the
    image vector ([image; text_attended], 2D) before a Linear + ReLU. (The seed's snippet scores
    each image against the other texts of the batch; here each image attends over its own
    words, padding masked.) The word weights are returned in ``extras["word_attention"]`` (B, T).
    Cost: one single-query attention over T words on top of concatenation; it weights words,
    not image regions, so it keeps no spatial layout. Use it when only some words of a long
    text matter for the image.
    """

    family = "mid"

    def __init__(self, dim: int, *, num_classes: int | None = None, dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        self.norm_image = nn.LayerNorm(dim)
        self.norm_text = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.norm_attended = nn.LayerNorm(dim)  # both halves of the concatenation on the same scale
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        img = self.norm_image(image.pooled)  # (B, D)
        q = self.to_q(img).unsqueeze(1)  # (B, 1, D)
        k, v = self.to_kv(self.norm_text(text.tokens)).chunk(2, dim=-1)  # (B, T, D) each
        scores = (q @ k.transpose(1, 2)).squeeze(1) / self.dim ** 0.5  # (B, T)
        scores = scores.masked_fill(~text.mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # (B, T)
        attended = self.norm_attended((weights.unsqueeze(1) @ v).squeeze(1))  # (B, D)
        fused = self.proj(torch.cat([img, attended], dim=-1))  # (B, D)
        return FusionOutput(fused=fused, extras={"word_attention": weights})
