"""The feature cache: a frozen encoder's backbone features, computed once per sample.

``extract_cached(model, modality, data, prepared)`` runs ``encoder.extract`` over a prepared
dataset in batches and keeps the result in memory (a small LRU per process, one entry per feature
set) and on disk as one safetensors file per sample under ``$MMLAB_CACHE/features/`` (default
``~/.cache/mmlab/features/``). A sample's file is named by the encoder's ``cache_key`` (backbone,
weights, input size) and a digest of that sample's exact inputs (its pixels at the prepared size,
or its token ids up to its last real token): never stale, and shared by every feature set that
holds the sample. A subset, a prefix (each "Training pairs" value), another seed that draws the
same pictures, or easy-VQA questions on one picture reuse what was computed; only samples never
seen are computed. (Keying per sample rather than computing the whole split and slicing: a
64-pair run never pays for a 38,000-question split, and random subsets are no prefixes.)

The folder is bounded: after features are written, the least recently used files (by modification
time, which a read from disk refreshes) are deleted until it holds at most ``$MMLAB_CACHE_MAX_MB``
megabytes (default ``DEFAULT_MAX_MB``, 2 GB: ~50,000 pictures' EfficientNet features at ~41 KB
each); ``0`` keeps nothing on disk. Hits served from memory do not refresh the files.
"""
from __future__ import annotations

import hashlib
import math
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
MAX_MB_ENV = "MMLAB_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048  # the disk bound when $MMLAB_CACHE_MAX_MB is unset
SUFFIX = ".safetensors"

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


def _mask_key(inputs: dict[str, torch.Tensor]) -> str | None:
    return "attention_mask" if "attention_mask" in inputs else "mask" if "mask" in inputs else None


def _lengths(modality: str, inputs: dict[str, torch.Tensor]) -> list[int] | None:
    """Per sample of a text: the position after its last real token (at least 1); None for images."""
    key = _mask_key(inputs)
    if modality != "text" or key is None:
        return None
    mask = inputs[key].detach().cpu() != 0  # (N, T)
    T = mask.shape[1]
    last = torch.where(mask.any(1), T - mask.flip(1).int().argmax(1), torch.ones(len(mask), dtype=torch.long))
    return last.clamp_min(1).tolist()


def _sample_digests(inputs: dict[str, torch.Tensor], lengths: list[int] | None) -> list[str]:
    """One content digest per sample: its inputs, a text's cut after its last real token."""
    n = len(next(iter(inputs.values())))
    if lengths is None:
        return [digest({k: v[i] for k, v in inputs.items()}) for i in range(n)]
    return [digest({k: v[i, :lengths[i]] if v.dim() >= 2 else v[i] for k, v in inputs.items()}) for i in range(n)]


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


def max_bytes() -> int:
    """The disk bound in bytes: ``$MMLAB_CACHE_MAX_MB`` megabytes (default ``DEFAULT_MAX_MB``)."""
    value = os.environ.get(MAX_MB_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_MB * 2**20
    try:
        mb = float(value)
    except ValueError:
        mb = math.nan
    if not math.isfinite(mb) or mb < 0:
        warnings.warn(f"{MAX_MB_ENV}={value!r} is not a number of megabytes; using {DEFAULT_MAX_MB}", stacklevel=2)
        return DEFAULT_MAX_MB * 2**20
    return int(mb * 2**20)


def evict(limit: int | None = None) -> int:
    """Delete the least recently used files of the feature folder until it holds at most ``limit``
    bytes (default ``max_bytes()``); returns the bytes it holds afterwards. Files other processes
    delete meanwhile are skipped."""
    limit = max_bytes() if limit is None else limit
    files, total = [], 0
    try:
        with os.scandir(cache_dir()) as entries:
            for e in entries:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        files.append((st.st_mtime, e.path, st.st_size))
                        total += st.st_size
                except OSError:
                    continue
    except OSError:
        return 0
    files.sort()
    for _, path, size in files:
        if total <= limit:
            break
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        total -= size
    return total


def _sample_path(prefix: str, sample_digest: str) -> Path:
    return cache_dir() / f"{prefix}-{sample_digest}{SUFFIX}"


def _read(path: Path) -> dict[str, torch.Tensor] | None:
    """One sample's features, its file marked as just used; None when missing or unreadable."""
    try:
        feats = load_file(str(path))
        os.utime(path)
    except (SafetensorError, OSError, ValueError):
        return None
    return feats or None


def _write(path: Path, feats: dict[str, torch.Tensor], meta: dict[str, str]) -> int:
    """Atomic write (temporary file, then rename); returns the bytes written. A cache that cannot
    be written is only a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in feats.items()}, tmp, metadata=meta)
            size = os.path.getsize(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return size
    except OSError as e:
        warnings.warn(f"feature cache not written to {path.parent} ({e}); set MMLAB_CACHE to a writable folder",
                      stacklevel=3)
        return 0


def _plan(model, modality: str, data, prepared) -> tuple[tuple, str, list[str], list[int] | None]:
    """(memory key, file prefix, per-sample digests, per-sample text lengths or None)."""
    enc = model.encoder(modality)
    inputs = encoder_inputs(modality, prepared)
    enc_key = enc.cache_key or type(enc).__name__
    lengths = _lengths(modality, inputs)
    digests = _sample_digests(inputs, lengths)
    whole = hashlib.blake2b("".join(digests).encode(), digest_size=16).hexdigest()
    return (modality, enc_key, whole), f"{modality}-{_slug(enc_key)}", digests, lengths


def cache_paths(model, modality: str, data, prepared) -> list[Path]:
    """Where ``extract_cached`` keeps (or would keep) each sample's features on disk, in order."""
    _, prefix, digests, _ = _plan(model, modality, data, prepared)
    return [_sample_path(prefix, d) for d in digests]


def cache_path(model, modality: str, data, prepared) -> Path:
    """The first sample's file of ``cache_paths`` (each sample has its own file)."""
    return cache_paths(model, modality, data, prepared)[0]


def _split(feats: dict[str, torch.Tensor], lengths: list[int] | None) -> list[dict[str, torch.Tensor]]:
    """Features of a batch (first dim n) -> one dict per sample, a text's cut after its last real token."""
    n = len(next(iter(feats.values())))
    out = []
    for i in range(n):
        cut = lengths[i] if lengths is not None else None
        out.append({k: (v[i, :cut] if cut is not None and v.dim() >= 2 else v[i]).clone() for k, v in feats.items()})
    return out


def extract_cached(model, modality: str, data, prepared, *, batch_size: int = BATCH_SIZE,
                   disk: bool = True) -> dict[str, torch.Tensor]:
    """The frozen ``modality`` encoder's features for every sample of ``data``: {name: (N, ...)}.

    ``prepared`` holds the dataset as tensors (``mmlab.train.Prepared``: images (N, 3, S, S) uint8,
    text {name: (N, T)}). Each sample is computed once, then served from memory or from its file
    on disk; text features are zero-padded to the dataset's longest text (their attention_mask
    says which are real). The disk folder is then held to ``max_bytes()`` (least recently used out).
    """
    enc = model.encoder(modality)
    if not enc.frozen:
        raise InputError(f"the {modality} encoder is trained end to end; only frozen encoders have cached features")
    n = len(data)
    inputs = encoder_inputs(modality, prepared)
    if any(v.shape[0] != n for v in inputs.values()):
        raise InputError(f"prepared {modality} inputs have {len(next(iter(inputs.values())))} rows, dataset has {n}")
    key, prefix, digests, lengths = _plan(model, modality, data, prepared)
    with _lock:
        if key in _memory:
            _memory.move_to_end(key)
            return dict(_memory[key])
    limit = max_bytes() if disk else 0
    samples: list[dict[str, torch.Tensor] | None] = [None] * n
    if limit > 0:
        samples = [_read(_sample_path(prefix, d)) for d in digests]
    missing = [i for i, s in enumerate(samples) if s is None]
    if missing:
        index = torch.tensor(missing)
        new = _split(compute(enc, {k: v[index] for k, v in inputs.items()}, batch_size=batch_size),
                     None if lengths is None else [lengths[i] for i in missing])
        room = limit
        for i, feats in zip(missing, new):
            samples[i] = feats
            if room > 0:  # a set larger than the bound is not written past it
                room -= _write(_sample_path(prefix, digests[i]), feats, {"modality": modality, "encoder": key[1]})
        if disk:
            evict(limit)
    names = samples[0].keys() if samples else ()
    feats = {k: _pad_cat([s[k][None] for s in samples]) for k in names}  # (N, ...), texts padded to the longest
    with _lock:
        _memory[key] = feats
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return dict(feats)
