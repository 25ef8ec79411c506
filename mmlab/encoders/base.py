"""The two encoder interfaces the model reads: ``ImageEncoder`` and ``TextEncoder``.

Everything ``Model``, the feature cache and the mask decoder need to know about an encoder is
declared here, so nothing reads it with ``getattr``:

- ``frozen``: a pretrained backbone that is never trained. It runs in two steps,
  ``extract(**inputs) -> dict`` (no gradient; cacheable per dataset by ``mmlab.features`` under
  ``cache_key``) and ``from_features(**features) -> EncoderOutput`` (the trainable projection).
  A trained-from-scratch encoder is just ``forward(**inputs) -> EncoderOutput``.
- image encoders: ``grid`` (the patch grid at the model's input size) and ``detail_channels``
  ({resolution: channels} of the finer maps the mask decoder's skips read; empty when none).
- text encoders: ``tokenize``, ``token_strings``, ``max_tokens`` (what the model reads at most)
  and ``known_words`` (the words it saw in training, or None when its tokenizer knows any word).
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import nn

from mmlab.types import EncoderOutput


class Encoder(nn.Module):
    """Shared by both modalities: the frozen / trained distinction and the feature-cache key."""

    frozen: ClassVar[bool] = False
    cache_key: str = ""  # frozen encoders: backbone + weights + input size (names the feature cache)

    def extract(self, **inputs) -> dict[str, torch.Tensor]:
        """Frozen encoders: the backbone's features (no gradient)."""
        raise NotImplementedError(f"{type(self).__name__} is trained end to end: it has no frozen features")

    def from_features(self, **features) -> EncoderOutput:
        raise NotImplementedError(f"{type(self).__name__} is trained end to end: it has no frozen features")

    def encode(self, inputs: dict[str, torch.Tensor], features: dict[str, torch.Tensor] | None = None) -> EncoderOutput:
        """The encoder on its inputs, or, for a frozen one, on already-extracted ``features``."""
        if not self.frozen:
            return self(**inputs)
        if features is None:
            with torch.no_grad():
                features = self.extract(**inputs)
        return self.from_features(**features)


class ImageEncoder(Encoder):
    """images (B, 3, S, S) float in [0, 1] -> ``EncoderOutput`` with tokens on ``grid``."""

    grid: tuple[int, int]
    # {resolution: channels} of the skip maps in ``EncoderOutput.detail`` (none by default)
    detail_channels: Mapping[int, int] = MappingProxyType({})


class TextEncoder(Encoder):
    """texts -> ``tokenize`` -> tensors -> ``EncoderOutput`` with one token per entry of ``token_strings``."""

    max_tokens: int

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def token_strings(self, text: str) -> list[str]:
        raise NotImplementedError

    def known_words(self) -> frozenset[str] | None:
        """The words this encoder learned (a word vocabulary), or None when its tokenizer reads any word."""
        return None
