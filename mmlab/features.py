"""The feature cache: a frozen encoder's backbone features, computed once per dataset.

``extract_cached(model, modality, data, prepared)`` runs ``encoder.extract`` over a prepared
dataset in batches and keeps the result in memory (a small LRU per process) and on disk as
safetensors under ``$MMLAB_CACHE/features/`` (default ``~/.cache/mmlab/features/``). The key
names the dataset (name, split, seed, size), the encoder's ``cache_key`` (backbone, weights,
input size), the image size, and a digest of the exact inputs, so a subset, another seed or
another resize never reads stale features.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmlab.errors import InputError

MEMORY_ENTRIES = 8  # feature sets kept in memory per process (least recently used dropped first)
BATCH_SIZE = 64

_lock = threading.Lock()
_memory: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()


def cache_root() -> Path:
    """``$MMLAB_CACHE`` or ``~/.cache/mmlab``: where mmlab keeps computed caches."""
    env = os.environ.get("MMLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmlab"


def cache_dir() -> Path:
    return cache_root() / "features"


def clear_memory() -> None:
    """Forget the in-memory feature sets (the files on disk stay)."""
    with _lock:
        _memory.clear()


def encoder_inputs(modality: str, prepared) -> dict[str, torch.Tensor]:
    """The encoder's inputs for the whole prepared dataset, first dim N (images still uint8)."""
    if modality == "image":
        return {"images": prepared.images}  # (N, 3, S, S) uint8
    if modality == "text":
        return dict(prepared.text)  # {name: (N, T)}
    raise InputError(f"modality must be image or text, got {modality!r}")


def digest(inputs: dict[str, torch.Tensor]) -> str:
    """A content hash of the inputs (names, dtypes, shapes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(inputs):
        v = inputs[k].detach().cpu().contiguous()
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)};".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value))[:60]


def _pad_cat(chunks: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0, zero-padding dim 1 to the longest (text features vary in length)."""
    if chunks[0].dim() >= 2:
        T = max(c.shape[1] for c in chunks)
        chunks = [F.pad(c, (0, 0) * (c.dim() - 2) + (0, T - c.shape[1])) if c.shape[1] < T else c for c in chunks]
    return torch.cat(chunks)


def _batch(inputs: dict[str, torch.Tensor], start: int, stop: int, device: torch.device) -> dict[str, torch.Tensor]:
    batch = {k: v[start:stop].to(device) for k, v in inputs.items()}
    if "images" in batch:
        batch["images"] = batch["images"].float() / 255.0  # (B, 3, S, S) in [0, 1]
    mask_key = "attention_mask" if "attention_mask" in batch else "mask" if "mask" in batch else None
    if mask_key:  # trim padding to the longest text of this batch
        T = int(batch[mask_key].sum(1).max().clamp_min(1))
        batch = {k: v[:, :T] if v.dim() == 2 else v for k, v in batch.items()}
    return batch


def compute(encoder, inputs: dict[str, torch.Tensor], *, batch_size: int = BATCH_SIZE,
            progress: bool | None = None) -> dict[str, torch.Tensor]:
    """Run ``encoder.extract`` over ``inputs`` (first dim N) in batches -> {name: (N, ...)} on the CPU."""
    from tqdm.auto import tqdm

    n = len(next(iter(inputs.values())))
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    chunks: dict[str, list[torch.Tensor]] = {}
    starts = range(0, n, batch_size)
    disable = (not progress) if progress is not None else (True if len(starts) < 4 else None)  # None: TTY only
    for start in tqdm(starts, desc="features", leave=False, disable=disable):
        with torch.inference_mode():
            out = encoder.extract(**_batch(inputs, start, start + batch_size, device))
            out = {k: v.cpu() for k, v in out.items()}
        for k, v in out.items():
            chunks.setdefault(k, []).append(v)
    return {k: _pad_cat(v) for k, v in chunks.items()}  # outside inference mode: normal tensors


def _read(path: Path, n: int) -> dict[str, torch.Tensor] | None:
    try:
        feats = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None
    if not feats or any(v.shape[0] != n for v in feats.values()):
        return None
    return feats


def _write(path: Path, feats: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Atomic write (temporary file, then rename); a cache that cannot be written is only a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in feats.items()}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        warnings.warn(f"feature cache not written to {path.parent} ({e}); set MMLAB_CACHE to a writable folder",
                      stacklevel=3)


def cache_path(model, modality: str, data, prepared) -> Path:
    """Where ``extract_cached`` keeps (or would keep) this feature set on disk."""
    return _key_and_path(model, modality, data, prepared)[1]


def _key_and_path(model, modality: str, data, prepared) -> tuple[tuple, Path]:
    enc = model.encoder(modality)
    inputs = encoder_inputs(modality, prepared)
    enc_key = getattr(enc, "cache_key", type(enc).__name__)
    size = int(prepared.images.shape[-1]) if modality == "image" else None
    seed = (data.info or {}).get("seed")
    h = digest(inputs)
    key = (data.name, data.split, seed, len(data), enc_key, size, h)
    parts = [data.name, data.split, f"seed{seed}", f"n{len(data)}", modality, enc_key]
    if size:
        parts.append(f"{size}px")
    name = "-".join(_slug(p) for p in parts) + f"-{h[:16]}.safetensors"
    return key, cache_dir() / name


def extract_cached(model, modality: str, data, prepared, *, batch_size: int = BATCH_SIZE,
                   disk: bool = True) -> dict[str, torch.Tensor]:
    """The frozen ``modality`` encoder's features for every sample of ``data``: {name: (N, ...)}.

    ``prepared`` holds the dataset as tensors (``mmlab.train.Prepared``: images (N, 3, S, S) uint8,
    text {name: (N, T)}). Computed once, then served from memory or from disk; text features are
    zero-padded to the dataset's longest text (their attention_mask says which are real).
    """
    enc = model.encoder(modality)
    if not getattr(enc, "frozen", False):
        raise InputError(f"the {modality} encoder is trained end to end; only frozen encoders have cached features")
    n = len(data)
    inputs = encoder_inputs(modality, prepared)
    if any(v.shape[0] != n for v in inputs.values()):
        raise InputError(f"prepared {modality} inputs have {len(next(iter(inputs.values())))} rows, dataset has {n}")
    key, path = _key_and_path(model, modality, data, prepared)
    with _lock:
        if key in _memory:
            _memory.move_to_end(key)
            return dict(_memory[key])
    feats = _read(path, n) if disk and path.is_file() else None
    if feats is None:
        feats = compute(enc, inputs, batch_size=batch_size)
        if disk:
            _write(path, feats, {"dataset": str(data.name), "split": str(data.split), "modality": modality,
                                 "encoder": str(key[4]), "n": str(n)})
    with _lock:
        _memory[key] = feats
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return dict(feats)
