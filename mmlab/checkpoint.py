"""Checkpoints: a folder with ``model.safetensors`` + ``config.json``. Never pickle.

config.json holds the format name and version, the model and training configs, class names,
the word vocabulary, the dataset it was trained on and the metrics it reached. Weights of
frozen pretrained encoders are not copied: they come from the installed package on load.
Writes are atomic (a temporary folder, then a rename), so an interrupted save never leaves
a half-written checkpoint where a good one was.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmlab.config import ModelConfig, from_dict
from mmlab.errors import InputError
from mmlab.model import Model

FORMAT = "mmlab-checkpoint"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib")
MAX_CONFIG_BYTES = 5 * 1024 * 1024
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
FP16_MAX = 60000.0  # a tensor with larger values stays float32 (float16 tops out at 65504)


def state_to_save(model: Model) -> dict[str, torch.Tensor]:
    """Every tensor of the state dict. Frozen pretrained backbones live outside it (they are
    loaded from their installed package), so only their trainable projections are saved."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def _storable(v: torch.Tensor, dtype: torch.dtype) -> bool:
    return (v.dtype == torch.float32 and dtype != torch.float32 and v.numel() > 0
            and bool(torch.isfinite(v).all()) and float(v.abs().max()) <= FP16_MAX)


@torch.no_grad()
def round_weights(model: Model, weights: str = "float16") -> Model:
    """Round ``model``'s float weights in place to what ``save(..., weights=weights)`` stores, so
    that metrics measured afterwards are the metrics of the saved checkpoint, exactly."""
    dtype = WEIGHT_DTYPES[weights]
    for v in model.state_dict().values():
        if _storable(v, dtype):
            v.copy_(v.to(dtype).to(v.dtype))
    return model


def save(model: Model, path: str | os.PathLike, *, meta: dict | None = None,
         extra_tensors: dict[str, torch.Tensor] | None = None, weights: str = "float32") -> Path:
    """Write ``model`` to the folder ``path`` atomically. ``meta`` (JSON-able) is merged into config.json.
    ``weights="float16"`` stores float weights at half size (the shipped zoo does; loading casts them
    back to float32); a resumable training state keeps float32."""
    if weights not in WEIGHT_DTYPES:
        raise InputError(f"weights must be one of {', '.join(WEIGHT_DTYPES)}; got {weights!r}")
    dtype = WEIGHT_DTYPES[weights]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*"):  # temporary folders of an interrupted save
        if stale.is_dir() and not stale.name.endswith(".old"):
            shutil.rmtree(stale, ignore_errors=True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": asdict(model.cfg),
        "classes": model.classes,
        "tokenizer": model.tokenizer_json,
        "parameters": model.num_parameters(),
        "weights": weights,
        **(meta or {}),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.to(dtype) if _storable(v, dtype) else v for k, v in state_to_save(model).items()}
        if extra_tensors:
            tensors.update({f"__extra__.{k}": v.detach().contiguous().clone() for k, v in extra_tensors.items()})
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _recover(path: Path) -> Path:
    """If a save was killed between moving the old folder aside and renaming the new one in,
    put the old folder back, so nothing is lost."""
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        try:
            old.rename(path)
        except OSError:
            return old
    return path


def read_config(path: str | os.PathLike) -> dict:
    """Validate a checkpoint folder and return its config.json, or raise ``InputError``."""
    path = _recover(Path(path))
    if path.is_file() and path.name == CONFIG:
        path = path.parent
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise InputError(f"{path.name}: pickle checkpoints are refused (they can run code); "
                             "mmlab loads a folder with model.safetensors + config.json")
        raise InputError(f"{path}: not an mmlab checkpoint (expected a folder with {WEIGHTS} and {CONFIG})")
    if not path.is_dir():
        raise InputError(f"checkpoint not found: {path}")
    cfg_file, weights = path / CONFIG, path / WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise InputError(f"{path}: not an mmlab checkpoint (needs {WEIGHTS} and {CONFIG})")
    if cfg_file.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{cfg_file}: config too large")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{cfg_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path}: not an mmlab checkpoint (config.json has no format {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format version {version!r} is not supported "
                         f"(this mmlab reads up to {FORMAT_VERSION})")
    return config


def validate_config(cfg: ModelConfig) -> None:
    """Refuse configs that would build a broken or absurd model."""
    if not isinstance(cfg.dim, int) or not 4 <= cfg.dim <= 4096:
        raise InputError(f"model dim must be an integer in [4, 4096], got {cfg.dim!r}")
    if not isinstance(cfg.image_size, int) or not 8 <= cfg.image_size <= 1024:
        raise InputError(f"image_size must be an integer in [8, 1024], got {cfg.image_size!r}")
    if not isinstance(cfg.targets, dict) or not all(isinstance(n, int) and 1 <= n <= 100_000
                                                    for n in cfg.targets.values()):
        raise InputError("targets must map names to class counts >= 1")
    if not isinstance(cfg.fusion_options, dict):
        raise InputError("fusion_options must be an object")
    if cfg.missing not in ("zeros", "learned", "impute"):
        raise InputError(f"missing must be zeros, learned or impute; got {cfg.missing!r}")


def load(path: str | os.PathLike, *, with_extras: bool = False):
    """Load a checkpoint folder into a ready ``Model`` in eval mode (``InputError`` if it is not one)."""
    path = _recover(Path(path))
    config = read_config(path)
    if path.is_file():
        path = path.parent
    try:
        if not isinstance(config.get("model"), dict) or not isinstance(config.get("classes", {}), dict):
            raise InputError("config.json 'model' must be a ModelConfig object and 'classes' an object")
        cfg = from_dict(ModelConfig, config["model"])
        validate_config(cfg)
        classes = {str(k): [str(c) for c in v] for k, v in config.get("classes", {}).items()}
        for t, n in cfg.targets.items():
            if len(classes.get(t, [])) != n:
                raise InputError(f"target {t!r} has {n} classes but {len(classes.get(t, []))} class names")
        model = Model(cfg, classes=classes, tokenizer=config.get("tokenizer"))
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AssertionError, RuntimeError, AttributeError) as e:
        raise InputError(f"{path}: checkpoint config does not describe a model ({e})") from None
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path / WEIGHTS}: unreadable weights ({e})") from None
    extras = {k[len("__extra__."):]: v for k, v in tensors.items() if k.startswith("__extra__.")}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("__extra__.")}
    expected = state_to_save(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k, v in tensors.items() if v.shape != expected[k].shape]
    if bad:
        raise InputError(f"{path}: weight shapes do not match the config: {bad[0]} is "
                         f"{tuple(tensors[bad[0]].shape)}, expected {tuple(expected[bad[0]].shape)}")
    model.load_state_dict(tensors, strict=False)
    model.eval()
    model.meta = config
    return (model, extras) if with_extras else model
