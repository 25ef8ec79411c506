"""Element-wise mid fusion (seed 003 §5.1, options 2 and 3): sum and Hadamard product.

Both act on vectors of the shared width D, so they apply to the pooled image vector and, by
broadcasting the sentence vector over the patch grid, to every image patch as well: the pooled
result is the seed's formula and the per-patch result gives the mask decoder a spatial map.
"""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput


class _ElementwiseFusion(Fusion):
    """Shared body: LayerNorm each modality, combine element-wise, then Linear + ReLU."""

    family = "mid"
    spatial = True

    def __init__(self, dim: int, *, num_classes: int | None = None, dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        self.norm_image = nn.LayerNorm(dim)
        self.norm_text = nn.LayerNorm(dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))

    @staticmethod
    def combine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        sentence = self.norm_text(text.pooled)  # (B, D)
        fused = self.mix(self.combine(self.norm_image(image.pooled), sentence))  # (B, D)
        tokens = self.mix(self.combine(self.norm_image(image.tokens), sentence.unsqueeze(1)))  # (B, P, D)
        return FusionOutput(fused=fused, tokens=tokens)


class AddFusion(_ElementwiseFusion):
    """Element-wise addition of the image and sentence vectors (seed 003, option 2).

    Both modalities live in the same D-dimensional space, so their sum keeps the width at D:
    dimensions on which both are high are amplified, dimensions of opposite sign cancel, so the
    sum finds agreement, but afterwards nothing tells which modality a feature came from. It is
    the cheapest fusion (no parameters beyond one D x D layer) and the sentence vector is also
    added to every image patch, so the fused tokens stay on the patch grid for the mask decoder.
    Use it as a light baseline when both modalities carry similar, complementary evidence.
    """

    @staticmethod
    def combine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return image + text


class HadamardFusion(_ElementwiseFusion):
    """Element-wise (Hadamard) product of the image and sentence vectors (seed 003, option 3).

    An AND-like interaction: a dimension survives only where both modalities are large ("red"
    in the image and the word "red" gives 0.9 x 0.8 = 0.72; two weak features multiply to almost
    nothing), so it emphasises agreement and suppresses evidence that only one side has; a
    missing (zeroed) modality wipes the product out. Same cost as addition (width D, one D x D
    layer). Applied to every patch it acts as a sentence-driven filter over the image grid,
    which the mask decoder can read. Use it when the answer needs both modalities to agree.
    """

    @staticmethod
    def combine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return image * text
