"""Raw-input "encoders" for early fusion (seed 003 §5.1, level 1): no feature extraction.

``RawImage`` cuts the image into flat pixel patches and embeds each with one linear map (no conv
stack, no position embedding); ``RawText`` is a word-embedding lookup (no RNN, no position
embedding). Everything else is left to the joint model of the ``early`` fusion strategy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.config import ModelConfig
from mmlab.data.tokenizer import WordTokenized, WordTokenizer
from mmlab.encoders.base import ImageEncoder, TextEncoder
from mmlab.errors import InputError
from mmlab.fusion.base import masked_mean
from mmlab.types import EncoderOutput


class RawImage(ImageEncoder):
    """Image (B, 3, S, S) in [0, 1] -> flat pixel patches (B, (S/p)^2, D), linear-embedded.

    Each token is one p x p x 3 patch of normalised pixels times a (3 p^2 x D) matrix: a linear
    re-coding of the raw pixels, so flattening the tokens keeps all of the pixel information.
    """

    def __init__(self, dim: int, *, image_size: int = 64, patch: int = 4):
        super().__init__()
        if patch < 1 or image_size % patch:
            raise InputError(f"image_size {image_size} is not a multiple of the raw patch size {patch}")
        self.dim, self.image_size, self.patch = dim, image_size, patch
        self.grid = (image_size // patch, image_size // patch)
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        B, _, H, W = images.shape
        p = self.patch
        x = (images - self.mean) / self.std
        patches = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (B, h*w, 3*p*p)
        tokens = self.embed(patches)  # (B, h*w, D)
        mask = torch.ones(B, tokens.shape[1], dtype=torch.bool, device=images.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(1), grid=(H // p, W // p))


class RawText(WordTokenized, TextEncoder):
    """Word ids (B, T) + mask (B, T) -> word embeddings (B, T, D): a lookup table and nothing else.

    Same tokenizer interface as ``mmlab.encoders.WordText``: ``tokenize(texts)`` and
    ``token_strings(text)``; padding positions embed to zeros.
    """

    def __init__(self, cfg: ModelConfig, tokenizer: dict | None):
        super().__init__()
        if not tokenizer or tokenizer.get("kind") != "word":
            raise InputError("early fusion reads raw word embeddings and needs a word vocabulary "
                             "(fit on the training texts)")
        self.tokenizer = WordTokenizer(tokenizer["vocab"], max_len=tokenizer.get("max_len", 32))
        self.dim = cfg.dim
        self.embed = nn.Embedding(len(self.tokenizer.vocab), cfg.dim, padding_idx=0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> EncoderOutput:
        tokens = self.embed(ids) * mask.unsqueeze(-1)  # (B, T, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))
