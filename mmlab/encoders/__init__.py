"""Image and text encoders by name. Each returns ``EncoderOutput`` (tokens, mask, pooled, grid)."""
from __future__ import annotations

import torch

from mmlab.config import ModelConfig
from mmlab.data.tokenizer import WordTokenized, WordTokenizer
from mmlab.encoders.base import Encoder, ImageEncoder, TextEncoder  # noqa: F401 - Encoder re-exported
from mmlab.errors import InputError
from mmlab.types import EncoderOutput

IMAGE_ENCODERS = ["cnn", "cnn_cbam", "efficientnet_lite0", "efficientnet_lite0_patches", "timm:<name>"]
TEXT_ENCODERS = ["bigru", "minilm", "minilm_bigru", "minilm_concepts"]


class WordText(WordTokenized, TextEncoder):
    """Word tokenizer + BiGRU: ``tokenize(texts) -> dict``; ``forward(**batch) -> EncoderOutput``."""

    def __init__(self, tokenizer: WordTokenizer, dim: int):
        super().__init__()
        from mmlab.encoders.gru import BiGRUText

        self.tokenizer = tokenizer
        self.net = BiGRUText(len(tokenizer.vocab), dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> EncoderOutput:
        return self.net(ids, mask)


def available() -> dict[str, list[str]]:
    """The encoder names a config may use, per modality (``timm:<name>`` takes a model that is on disk)."""
    return {"image": list(IMAGE_ENCODERS), "text": list(TEXT_ENCODERS)}


def build_image_encoder(cfg: ModelConfig) -> ImageEncoder:
    name = cfg.image_encoder
    if name in ("cnn", "cnn_cbam"):
        from mmlab.encoders.cnn import SmallCNN

        return SmallCNN(cfg.dim, image_size=cfg.image_size, cbam=name == "cnn_cbam")
    if name == "efficientnet_lite0_patches":
        from mmlab.encoders.concepts import EfficientNetPatches

        sizes = cfg.image_encoder_options.get("sizes") or (cfg.image_size,)
        return EfficientNetPatches(sizes=tuple(sizes), pretrained=cfg.pretrained)
    if name == "efficientnet_lite0" or name.startswith("timm:"):
        try:
            from mmlab.encoders import pretrained
        except ImportError as e:  # pragma: no cover
            raise InputError(f"image encoder {name!r} is not available: {e}") from None
        return pretrained.build_image(cfg)
    raise InputError(f"unknown image encoder {name!r}; choose one of: {', '.join(IMAGE_ENCODERS)}")


def build_text_encoder(cfg: ModelConfig, tokenizer: dict | None) -> TextEncoder:
    name = cfg.text_encoder
    if name == "bigru":
        if not tokenizer or tokenizer.get("kind") != "word":
            raise InputError("the bigru text encoder needs a word vocabulary (fit on the training texts)")
        return WordText(WordTokenizer(tokenizer["vocab"], max_len=tokenizer.get("max_len", 32)), cfg.dim)
    if name == "minilm_concepts":
        from mmlab.encoders.concepts import MiniLMConcepts

        options = cfg.text_encoder_options
        return MiniLMConcepts(label_temp=float(options.get("label_temp", 0.1)),
                              word_temp=float(options.get("word_temp", 0.02)),
                              head_bonus=float(options.get("head_bonus", 0.05)), pretrained=cfg.pretrained)
    if name in ("minilm", "minilm_bigru"):
        try:
            from mmlab.encoders import pretrained
        except ImportError as e:  # pragma: no cover
            raise InputError(f"text encoder {name!r} is not available: {e}") from None
        return pretrained.build_text(cfg)
    raise InputError(f"unknown text encoder {name!r}; choose one of: {', '.join(TEXT_ENCODERS)}")
