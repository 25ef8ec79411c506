"""Classifier head: fused vector (B, D) -> logits (B, C)."""
from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, *, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim, num_classes))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused)
