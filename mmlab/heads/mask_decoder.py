"""Mask decoder (seed 004): upsample from the fused patch grid to the image size.

When the strategy keeps fused tokens on the patch grid (cross-attention, transformer, ...),
the decoder starts from them; otherwise it starts from the fused vector alone, projected
to a grid as seed 004's ConvTranspose decoder did, and so must guess where the object is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MaskDecoder(nn.Module):
    def __init__(self, dim: int, *, grid: tuple[int, int], image_size: int, width: int = 32):
        super().__init__()
        self.grid, self.image_size = grid, image_size
        h, w = grid
        self.from_vector = nn.Linear(dim, dim * h * w)
        self.stem = nn.Sequential(nn.Conv2d(dim, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU())
        stages = max(0, int(math.log2(image_size / h)))
        widths = [max(8, width >> (i + 1)) for i in range(stages)]  # halve the width as resolution doubles
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU())
            for cin, cout in zip([width, *widths[:-1]], widths)
        )
        self.out = nn.Conv2d(widths[-1] if widths else width, 1, 1)

    def forward(self, fused: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """fused (B, D), tokens (B, h*w, D) or None -> mask logits (B, S, S)."""
        h, w = self.grid
        B, D = fused.shape
        if tokens is not None:
            x = tokens.transpose(1, 2).reshape(B, D, h, w)  # (B, D, h, w)
        else:
            x = self.from_vector(fused).view(B, D, h, w)  # (B, D, h, w)
        x = self.stem(x)
        for stage in self.up:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        x = self.out(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x[:, 0]  # (B, S, S)
