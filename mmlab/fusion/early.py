"""Early fusion (seed 003 §5.1, level 1): raw pixels and word embeddings in one joint MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.errors import InputError
from mmlab.fusion.base import Fusion
from mmlab.types import EncoderOutput, FusionOutput


class EarlyFusion(Fusion):
    """Raw-input concatenation: flattened pixel patches + word embeddings -> one joint MLP.

    The model has no image or text encoder at all (the model builds ``RawImage`` / ``RawText``
    for it): every pixel patch (linear-coded, on a ``grid`` x ``grid`` layout, 8 x 8 blocks of
    8 x 8 pixels at 64 px) and every word slot (``max_words``) is one block of a single long
    input vector, and a two-layer MLP must learn all of the structure from scratch (seed 003,
    level 1). In theory it can learn any interaction; in practice the input is huge ((64 + 32)
    x D values, so the first layer alone holds 96 x D x hidden weights), it ignores the spatial
    and sequential structure of the modalities, overfits small data, cannot use pre-trained
    encoders, and one noisy modality spoils the whole vector (each block is normalised to half
    of the input's variance so the many pixels do not drown the few words). Use it as the
    baseline seed 003 recommends it for, not in practice. No spatial tokens, no attention.
    """

    family = "early"
    raw_input = True

    def __init__(self, dim: int, *, num_classes: int | None = None, grid: int = 8, max_words: int = 32,
                 hidden: int | None = None, dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        if grid < 1 or max_words < 1:
            raise InputError(f"early fusion needs grid >= 1 and max_words >= 1, got {grid} and {max_words}")
        self.grid, self.max_words = grid, max_words
        hidden = hidden or dim
        n_image, n_text = grid * grid * dim, max_words * dim
        self.norm_image = nn.LayerNorm(n_image)
        self.norm_text = nn.LayerNorm(n_text)
        # each block carries half of the input's variance however long it is, so the many pixel
        # values (g*g*D) do not drown the few word values (L*D)
        total = n_image + n_text
        self.scales = ((total / (2 * n_image)) ** 0.5, (total / (2 * n_text)) ** 0.5)
        self.net = nn.Sequential(
            nn.Linear(total, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.ReLU(),
        )

    def _image_vector(self, image: EncoderOutput) -> torch.Tensor:
        tokens = image.tokens
        B, P, D = tokens.shape
        h, w = image.grid or (1, P)
        if (h, w) != (self.grid, self.grid):  # other image sizes: resample the patch grid to the fixed one
            x = tokens.transpose(1, 2).reshape(B, D, h, w)  # (B, D, h, w)
            tokens = F.adaptive_avg_pool2d(x, self.grid).flatten(2).transpose(1, 2)  # (B, g*g, D)
        return tokens.reshape(B, -1)  # (B, g*g*D)

    def _text_vector(self, text: EncoderOutput) -> torch.Tensor:
        tokens = text.tokens * text.mask.unsqueeze(-1)  # (B, T, D), padding zeroed
        B, T, D = tokens.shape
        tokens = F.pad(tokens[:, : self.max_words], (0, 0, 0, max(0, self.max_words - T)))  # (B, L, D)
        return tokens.reshape(B, -1)  # (B, L*D)

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        joint = torch.cat([
            self.norm_image(self._image_vector(inputs["image"])) * self.scales[0],
            self.norm_text(self._text_vector(inputs["text"])) * self.scales[1],
        ], dim=-1)  # (B, g*g*D + L*D)
        return FusionOutput(fused=self.net(joint))
