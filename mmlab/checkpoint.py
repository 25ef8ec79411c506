"""Checkpoints: a folder with ``model.safetensors`` + ``config.json``. Never pickle.

config.json holds the format name and version, the model config, class names, the word
vocabulary, the experiment that made it, the metrics it reached and the record of its domain
(``mmlab.domain``; its matrices in ``domain.safetensors``). Weights of frozen pretrained encoders are not copied: they come from the
installed package on load. Writes are atomic (a temporary folder, then a rename), so an
interrupted save never leaves a half-written checkpoint where a good one was.

A checkpoint comes from anywhere, so ``load`` trusts nothing in it: the JSON's size and depth,
every config value (types, bounds, encoder names that would need a download), the model's size
(measured on the ``meta`` device, allocating nothing) and the weights' shapes (read from the
file's header) are checked before any memory is allocated, and weights with NaN or infinity are
refused. Every refusal is one ``InputError`` line.

Format versions: 1 built the stand-ins for a missing modality whatever ``missing`` said; 2 keeps
only the one used. Version 1 checkpoints load (their unused stand-in weights are dropped).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mmlab.config import ModelConfig, check_bounds, from_dict
from mmlab.errors import InputError
from mmlab.model import Model, build_model

FORMAT = "mmlab-checkpoint"
FORMAT_VERSION = 2
WEIGHTS, CONFIG, DOMAIN = "model.safetensors", "config.json", "domain.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib")
MAX_CONFIG_BYTES = 5 * 1024 * 1024
MAX_PARAMETERS = 200_000_000  # a model this size is no mmlab model (the zoo's largest has ~1.3 M)
MAX_CLASSES = 10_000
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
FP16_MAX = 60000.0  # a tensor with larger values stays float32 (float16 tops out at 65504)
EXTRA = "__extra__."


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
        "eval_drop": model.eval_drop,
        **({"domain": model.domain.to_json()} if model.domain is not None else {}),
        **(meta or {}),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.to(dtype) if _storable(v, dtype) else v for k, v in state_to_save(model).items()}
        if model.domain is not None and model.domain.tensors():
            write_domain(model.domain, tmp)
        if extra_tensors:
            tensors.update({f"{EXTRA}{k}": v.detach().contiguous().clone() for k, v in extra_tensors.items()})
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False, allow_nan=False))
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


def _folder(path: str | os.PathLike) -> Path:
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
    return path


def read_config(path: str | os.PathLike) -> dict:
    """Validate a checkpoint folder and return its config.json, or raise ``InputError``."""
    path = _folder(path)
    cfg_file, weights = path / CONFIG, path / WEIGHTS
    if not cfg_file.is_file() or not weights.is_file():
        raise InputError(f"{path}: not an mmlab checkpoint (needs {WEIGHTS} and {CONFIG})")
    if cfg_file.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{cfg_file}: config too large")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{cfg_file}: not valid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{cfg_file}: JSON nested too deeply") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path}: not an mmlab checkpoint (config.json has no format {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format version {version!r} is not supported "
                         f"(this mmlab reads up to {FORMAT_VERSION})")
    return config


def _no_constant(name: str):
    raise InputError(f"config.json holds {name}, which is not a number")


def validate_config(cfg: ModelConfig) -> None:
    """Refuse configs that would build a broken or absurd model, or reach for the network."""
    check_bounds(cfg)
    if not isinstance(cfg.image_size, int):
        raise InputError("image_size must be an integer")
    if not all(isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CLASSES
               for k, n in cfg.targets.items()):
        raise InputError(f"targets must map names to class counts in [1, {MAX_CLASSES}]")
    if cfg.image_encoder.startswith("timm:") and cfg.pretrained:
        from mmlab.encoders.pretrained import TIMM_WEIGHTS_ENV

        if not os.environ.get(TIMM_WEIGHTS_ENV):
            raise InputError(f"image encoder {cfg.image_encoder!r} needs pretrained weights on this machine "
                             f"(set {TIMM_WEIGHTS_ENV}); mmlab never downloads them")
    from mmlab.fusion import check_options, get

    get(cfg.fusion)
    check_options(cfg.fusion, cfg.dim, cfg.fusion_options)


def _migrate(version: int, cfg: ModelConfig, tensors: dict) -> dict:
    """Weights (or their shapes) of an older format, as this format names them."""
    if version < 2:  # version 1 kept both stand-ins for a missing modality
        unused = [p for p, used in (("missing_token.", cfg.missing == "learned"), ("impute.", cfg.missing == "impute"))
                  if not used]
        tensors = {k: v for k, v in tensors.items() if not any(k.startswith(p) for p in unused)}
    return tensors


def _header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a safetensors file, from its header only."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{weights}: unreadable weights ({e})") from None


class _ShapesOnly(torch.overrides.TorchFunctionMode):
    """Initialisers do nothing (only shapes matter on the meta device). Pushed under ``torch.device("meta")``
    so it sees ``torch.nn.init``'s calls: their meta implementations live in ``torch._refs``, whose first use
    imports ``torch._dynamo`` (3 s of a page's first checkpoint load on this machine)."""

    INPLACE = frozenset({"normal_", "uniform_", "fill_", "zero_", "random_", "exponential_", "bernoulli_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if getattr(func, "__module__", "") == "torch.nn.init" or name in self.INPLACE:
            target = args[0] if args else kwargs.get("tensor")
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _build(path: Path, config: dict) -> tuple[Model, int]:
    """The model config.json describes, checked on the ``meta`` device (nothing allocated) against the
    weights file's header before it is built for real."""
    version = config["format_version"]
    try:
        if not isinstance(config.get("model"), dict) or not isinstance(config.get("classes", {}), dict):
            raise InputError("config.json 'model' must be a ModelConfig object and 'classes' an object")
        cfg = from_dict(ModelConfig, config["model"])
        validate_config(cfg)
        classes = {str(k): [str(c) for c in v] for k, v in config.get("classes", {}).items() if isinstance(v, list)}
        for t, n in cfg.targets.items():
            if len(classes.get(t, [])) != n:
                raise InputError(f"target {t!r} has {n} classes but {len(classes.get(t, []))} class names")
        tokenizer = config.get("tokenizer")
        if tokenizer is not None and not (isinstance(tokenizer, dict) and isinstance(tokenizer.get("vocab"), list)
                                          and len(tokenizer["vocab"]) <= 1_000_000):
            raise InputError("config.json 'tokenizer' must hold a vocabulary list")
        eval_drop = config.get("eval_drop")
        if eval_drop not in (None, "image", "text"):
            raise InputError(f"eval_drop must be image, text or null; got {eval_drop!r}")
        with _ShapesOnly(), torch.device("meta"):
            probe = build_model(cfg, classes=classes, tokenizer=tokenizer)
        size = probe.num_parameters()
        if size > MAX_PARAMETERS:
            raise InputError(f"the config describes a model of {size:,} parameters (limit {MAX_PARAMETERS:,})")
        expected = {k: tuple(v.shape) for k, v in state_to_save(probe).items()}
        del probe
    except (InputError, KeyError, TypeError, ValueError, AssertionError, RuntimeError, AttributeError,
            NotImplementedError) as e:
        raise InputError(f"{path}: checkpoint config does not describe a model ({e})") from None
    stored = _migrate(version, cfg, {k: s for k, s in _header_shapes(path / WEIGHTS).items()
                                     if not k.startswith(EXTRA)})
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k, s in stored.items() if s != expected[k]]
    if bad:
        raise InputError(f"{path}: weight shapes do not match the config: {bad[0]} is {stored[bad[0]]}, "
                         f"expected {expected[bad[0]]}")
    try:
        model = build_model(cfg, classes=classes, tokenizer=tokenizer, eval_drop=eval_drop)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    return model, version


def _read_weights(path: Path, version: int, model: Model) -> tuple[dict, dict]:
    """(weights, extra tensors) of the file, migrated to this format; non-finite weights are refused."""
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path / WEIGHTS}: unreadable weights ({e})") from None
    extras = {k[len(EXTRA):]: v for k, v in tensors.items() if k.startswith(EXTRA)}
    tensors = _migrate(version, model.cfg, {k: v for k, v in tensors.items() if not k.startswith(EXTRA)})
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise InputError(f"{path}: weight {k} holds NaN or infinity")
    return tensors, extras


def _load(path: str | os.PathLike) -> tuple[Model, dict]:
    path = _folder(path)
    config = read_config(path)
    model, version = _build(path, config)
    tensors, extras = _read_weights(path, version, model)
    model.load_state_dict(tensors, strict=False)
    model.eval()
    model.meta = config
    model.domain = read_domain(path, config)
    return model, extras


def write_domain(domain, folder: Path) -> None:
    """The domain record's matrices, beside the weights (its numbers go into config.json)."""
    save_file({k: v.contiguous() for k, v in domain.tensors().items()}, str(Path(folder) / DOMAIN))


def read_domain(path: Path, config: dict):
    """The checkpoint's ``mmlab.domain.Domain``, or None when it keeps none."""
    if not isinstance(config.get("domain"), dict):
        return None
    from mmlab.domain import VERSION, from_json

    if config["domain"].get("version") != VERSION:  # an older record: the model loads without one (refitted by
        return None                                # ``mmlab zoo artifacts``, or ``mmlab.artifacts.refresh_domain``)
    try:
        tensors = load_file(str(path / DOMAIN)) if (path / DOMAIN).is_file() else {}
        return from_json(config["domain"], tensors, (config.get("classes") or {}).get("label"))
    except (KeyError, TypeError, ValueError, SafetensorError, OSError) as e:
        raise InputError(f"{path}: its domain record is malformed ({e})") from None


def load(path: str | os.PathLike) -> Model:
    """Load a checkpoint folder into a ready ``Model`` in eval mode (``InputError`` if it is not one)."""
    return _load(path)[0]


def load_with_state(path: str | os.PathLike) -> tuple[Model, dict[str, torch.Tensor]]:
    """A resumable training state: the model and the extra tensors saved beside it (optimizer moments)."""
    return _load(path)
