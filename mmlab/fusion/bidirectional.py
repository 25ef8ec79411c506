"""Bidirectional cross-attention (seed 001): words attend to patches and patches attend to words."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion, masked_mean
from mmlab.fusion.cross_attention import CrossAttentionBlock
from mmlab.types import EncoderOutput, FusionOutput


class BidirectionalCrossAttentionFusion(Fusion):
    """Cross-attention in both directions, layer by layer (seed 001's attention-based fusion).

    In every layer the words attend to the image patches (text -> image, as in
    ``cross_attention``) and, in parallel, the patches attend to the words (image -> text), and
    both streams carry their update into the next layer (co-attention). The image patches thus
    learn which words describe them and stay on the patch grid, so the fused tokens feed the
    mask decoder; the fused vector joins the mean of both streams. ``attention["layer{i}"]``
    holds the text -> image maps (B, H, T, P); the image -> text maps are returned as
    ``extras["image_to_text.layer{i}"]`` (B, H, P, T). Cost: twice the cross-attention,
    O(T x P) per layer and head in each direction. Use it when each modality should be
    re-read in the light of the other (alignment, retrieval, grounding).
    """

    family = "attention"
    spatial = True
    attends = True

    def __init__(self, dim: int, *, num_classes: int | None = None, heads: int = 4, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__(dim, num_classes=num_classes)
        def blocks() -> nn.ModuleList:
            return nn.ModuleList(CrossAttentionBlock(dim, heads=heads, dropout=dropout) for _ in range(layers))

        self.text_to_image, self.image_to_text = blocks(), blocks()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU())

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        words, patches = text.tokens, image.tokens  # (B, T, D), (B, P, D)
        attention: dict[str, torch.Tensor] = {}
        extras: dict[str, torch.Tensor] = {}
        for i, (t2i, i2t) in enumerate(zip(self.text_to_image, self.image_to_text)):
            new_words, a_ti = t2i(words, patches, image.mask)  # (B, T, D), (B, H, T, P)
            new_patches, a_it = i2t(patches, words, text.mask)  # (B, P, D), (B, H, P, T)
            words, patches = new_words, new_patches
            attention[f"layer{i}"] = a_ti
            extras[f"image_to_text.layer{i}"] = a_it
        tokens = self.norm(patches)  # (B, P, D)
        fused = self.proj(torch.cat([masked_mean(words, text.mask), masked_mean(tokens, image.mask)], dim=-1))
        return FusionOutput(fused=fused, tokens=tokens, attention=attention, extras=extras)
