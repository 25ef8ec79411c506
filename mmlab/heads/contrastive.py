"""Contrastive projection (seed 001: CLIP-style alignment of image and text embeddings)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveHead(nn.Module):
    """Pooled image (B, D) and text (B, D) -> unit vectors (B, E) in one shared space, and a learned
    temperature: ``logit_scale`` = log(1 / temperature), initialised to 1 / 0.07 as in CLIP.

    Trained with ``mmlab.losses.info_nce``; scored with image->text and text->image recall@k.
    """

    def __init__(self, dim: int, *, embed_dim: int | None = None, temperature: float = 0.07):
        super().__init__()
        embed_dim = embed_dim or dim
        self.to_image = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, embed_dim))
        self.to_text = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.to_image(image), dim=-1), F.normalize(self.to_text(text), dim=-1)
