"""Gated mid fusion: learned per-modality gates (seed 003 §5.4, "adaptive fusion with modality weighting")."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput


def presence(enc: EncoderOutput) -> torch.Tensor:
    """(B,) bool: True where the modality is present (``EncoderOutput.present`` None means everywhere)."""
    if enc.present is None:
        return torch.ones(enc.pooled.shape[0], dtype=torch.bool, device=enc.pooled.device)
    return enc.present


def normalise_gates(gates: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """gates (B, M) >= 0, present (B, M) bool -> weights (B, M) summing to 1 per row.

    A missing modality's gate is forced to 0 and the others are renormalised; a row with no
    modality present keeps its gates (renormalised) rather than dividing by zero.
    """
    none = ~present.any(dim=1, keepdim=True)  # (B, 1)
    g = gates * (present | none).to(gates.dtype)
    return g / g.sum(dim=1, keepdim=True).clamp_min(1e-6)


class GatedFusion(Fusion):
    """Adaptive fusion with learned modality gates (seed 003 §5.4, solution 2).

    A small gate network per modality (Linear, ReLU, Linear, Sigmoid) reads that modality's
    pooled vector and says how much to trust it for this sample; the gates are renormalised to
    sum to 1 and weight the projected modality vectors, whose sum is the seed's concatenation of
    gated features followed by one Linear. When a modality
    is missing (``present`` False) its gate is forced to 0, so the model falls back on the other
    one without the numeric shock of zero features, and the gates (returned in
    ``extras["gates"]``, image then text) show which modality the model leaned on. Cost: two
    tiny gate MLPs on top of pooled fusion; no spatial layout. Use it when one modality may be
    noisy or absent at test time.
    """

    family = "mid"

    def __init__(self, dim: int, *, num_classes: int | None = None, gate_hidden: int | None = None,
                 dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        hidden = gate_hidden or max(8, dim // 2)
        self.gate = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())
            for m in ("image", "text")
        })
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim)) for m in ("image", "text")})
        self.out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        order = ("image", "text")
        raw = torch.cat([self.gate[m](inputs[m].pooled) for m in order], dim=1)  # (B, 2)
        present = torch.stack([presence(inputs[m]) for m in order], dim=1)  # (B, 2)
        gates = normalise_gates(raw, present)  # (B, 2)
        feats = torch.stack([self.proj[m](inputs[m].pooled) for m in order], dim=1)  # (B, 2, D)
        fused = self.out((gates.unsqueeze(-1) * feats).sum(1))  # (B, D)
        return FusionOutput(fused=fused, extras={"gates": gates})
