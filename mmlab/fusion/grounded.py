"""Grounded text -> image cross-attention: the mask decoder sees only the patches the attention selects."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.fusion.base import Fusion, masked_mean, mean_attention
from mmlab.fusion.cross_attention import CrossAttentionBlock, attend
from mmlab.types import EncoderOutput, FusionOutput

__all__ = ["GroundedCrossAttentionFusion", "mean_attention"]


class GroundedCrossAttentionFusion(Fusion):
    """Cross-attention whose maps decide the mask: text tokens attend to image patches as in
    ``cross_attention`` (seed 004), then a learned softmax weighting of the words' attention
    rows (mean over layers and heads, the very maps the app shows for each word)
    gives one selection map over the patches, normalised to a maximum of 1. The patch tokens
    handed to the mask decoder are the sentence-FiLM'd patches times that map, so a patch the
    attention ignores carries no signal: the mask can only be drawn where the words looked.
    In ``cross_attention`` the FiLM'd patches reach the decoder whatever the attention does,
    and its maps point at the named object in under a fifth of scenes; here they are on the
    decision path, and the training loss ``attention_supervision`` (``TrainConfig``) can teach
    the head noun's row to cover the named object. ``extras``: "selection" (B, P) and
    "word_weights" (B, T). Cost: that of ``cross_attention`` (O(T x P) per layer and head).
    """

    family = "attention"
    spatial = True
    attends = True

    def __init__(self, dim: int, *, num_classes: int | None = None, heads: int = 4, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__(dim, num_classes=num_classes)
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads=heads, dropout=dropout) for _ in range(layers))
        self.word_score = nn.Linear(dim, 1)  # how much each word's attention row counts in the selection
        self.film = nn.Linear(dim, 2 * dim)
        self.patch_norm = nn.LayerNorm(dim)
        self.proj = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU())

    def select(self, maps: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor):
        """maps (B, T, P) attention rows, words (B, T, D) -> selection (B, P) in [0, 1] with max 1,
        word weights (B, T) summing to 1 over real words."""
        score = self.word_score(words).squeeze(-1).masked_fill(~word_mask, float("-inf"))  # (B, T)
        weights = score.softmax(-1)  # (B, T)
        selection = (weights.unsqueeze(1) @ maps).squeeze(1)  # (B, P)
        return selection / selection.amax(-1, keepdim=True).clamp_min(1e-12), weights

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        x, attention = attend(self.blocks, text, image)  # x (B, T, D), attention {"layer{i}": (B, H, T, P)}
        selection, weights = self.select(mean_attention(attention), x, text.mask)  # (B, P), (B, T)
        sentence = masked_mean(x, text.mask)  # (B, D)
        scale, shift = self.film(sentence).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, D) each
        patches = F.relu(self.patch_norm(image.tokens) * (1 + scale) + shift)  # (B, P, D)
        tokens = patches * selection.unsqueeze(-1)  # (B, P, D): only what the attention selects
        fused = self.proj(torch.cat([sentence, masked_mean(tokens, image.mask)], dim=-1))
        return FusionOutput(fused=fused, tokens=tokens, attention=attention,
                            extras={"selection": selection, "word_weights": weights})
