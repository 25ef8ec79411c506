"""The shipped checkpoints: ``checkpoints/manifest.json`` lists each with its metrics and the
command that rebuilds it."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from mmlab.errors import InputError

DEFAULT_ROOT = Path(os.environ.get("MMLAB_CHECKPOINTS", Path(__file__).resolve().parent.parent / "checkpoints"))
MANIFEST = "manifest.json"


def root(path: str | os.PathLike | None = None) -> Path:
    return Path(path) if path is not None else DEFAULT_ROOT


def read_manifest(path: str | os.PathLike | None = None) -> dict:
    """{"checkpoints": [entry, ...]}; each entry: name, path (relative to the root), dataset, task,
    strategy, encoders, metrics, train_seconds, parameters, command."""
    file = root(path) / MANIFEST
    if not file.is_file():
        return {"checkpoints": []}
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{file}: not valid JSON ({e})") from None
    data.setdefault("checkpoints", [])
    return data


def list_checkpoints(path: str | os.PathLike | None = None, *, dataset: str | None = None) -> list[dict]:
    """Manifest entries whose folder exists, each with ``dir`` set to its absolute folder."""
    base = root(path)
    out = []
    for e in read_manifest(base)["checkpoints"]:
        d = base / e.get("path", e["name"])
        if d.is_dir() and (dataset is None or e.get("dataset") == dataset):
            out.append({**e, "dir": str(d)})
    return out


def find(name: str, path: str | os.PathLike | None = None) -> dict:
    for e in list_checkpoints(path):
        if e["name"] == name:
            return e
    names = [e["name"] for e in list_checkpoints(path)]
    raise InputError(f"no checkpoint named {name!r}; shipped: {', '.join(names) or 'none'}")


@lru_cache(maxsize=32)
def _load_cached(directory: str, mtime: float):
    from mmlab.checkpoint import load

    return load(directory)


def load_model(name_or_dir: str, path: str | os.PathLike | None = None):
    """Load a shipped checkpoint by manifest name, or any checkpoint folder; cached per process."""
    d = Path(name_or_dir)
    if d.is_file():  # a file is never a checkpoint folder: let the loader refuse it clearly
        from mmlab.checkpoint import load

        return load(d)
    if not d.is_dir():
        d = Path(find(name_or_dir, path)["dir"])
    cfg = d / "config.json"
    return _load_cached(str(d.resolve()), cfg.stat().st_mtime if cfg.exists() else 0.0)


def update_manifest(entry: dict, path: str | os.PathLike | None = None) -> None:
    """Insert or replace the entry with the same name (written atomically)."""
    import fcntl

    base = root(path)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / (MANIFEST + ".lock"), "w") as lock:  # zoo builds run several trainings at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_manifest(base)
        data["checkpoints"] = [e for e in data["checkpoints"] if e["name"] != entry["name"]] + [entry]
        data["checkpoints"].sort(key=lambda e: e["name"])
        tmp = base / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(base / MANIFEST)


# ---- the plan: what the zoo holds and the recipe of each -----------------------------------
# Recipes are sized for a 2-core CPU (about a minute each, one thread, two at a time); the
# manifest records the exact command of every checkpoint, and ``mmlab zoo train`` reruns it.
RECIPES = {
    # the named object's shape and colour: a two-target (multi-task) classifier
    "shapes": "--dataset shapes --task multitask --targets shape,colour --image-size 32 --epochs 6",
    # is the sentence true of the scene? needs both modalities together (seed 003)
    "shapes_truth": "--dataset shapes_truth --image-size 32 --epochs 10",
    "easyvqa": "--dataset easyvqa --image-size 32 --epochs 4",
    # informative but noisy captions (30 % name another digit) on noisy images: neither modality
    # is enough alone (seed 002). At noise 0.7 image-only reads ~0.83 and the captions are worth
    # ~6 points on every generated seed; at 0.5 (image-only ~0.92) the gain was within test noise
    "digits": "--dataset digits --data-opt captions=noisy --data-opt p_wrong=0.3 --data-opt image_noise=0.7 "
              "--epochs 15",
    # referring masks at 64 px (seed 004)
    "shapes-mask": "--dataset shapes --task mask --epochs 8",
}
MASK_STRATEGIES = ("add", "hadamard", "cross_attention", "bidirectional_cross_attention", "transformer",
                   "concat", "tensor")  # the spatial ones, and two pooled ones for seed 004's comparison
EXTRAS = {
    # the best mask model, trained longer
    "shapes-mask-cross_attention": "--dataset shapes --task mask --fusion cross_attention --epochs 16",
    # seed 002 / 001 baselines and robustness: image only; modality dropout in training
    "digits-image_only": RECIPES["digits"] + " --fusion concat --drop-text 1",
    "digits-concat-textdrop": RECIPES["digits"] + " --fusion concat --drop-text 0.5",
    "digits-cross_attention-textdrop": RECIPES["digits"] + " --fusion cross_attention --drop-text 0.5",
    "digits-gated-dropout": RECIPES["digits"] + " --fusion gated --drop-text 0.25 --drop-image 0.25",
    # seed 004's losses compared on one schedule: BCE, BCE + Dice (the default), BCE + IoU
    **{f"shapes-mask-cross_attention-{loss}": f"--dataset shapes --task mask --fusion cross_attention --epochs 8 "
                                              f"--mask-loss {loss}" for loss in ("bce", "bce_dice", "bce_iou")},
    # contrastive alignment (CLIP-style) and cross-modal generation
    "shapes-contrastive": "--dataset shapes --task contrastive --fusion concat --image-size 32 --epochs 8",
    "digits-generate": "--dataset digits --data-opt captions=exact --task generate --fusion concat --epochs 15",
}


def plan() -> dict[str, str]:
    """{checkpoint name: ``mmlab train`` command} for the whole zoo."""
    from mmlab.fusion import available

    out = {}
    for dataset in ("shapes", "shapes_truth", "easyvqa", "digits"):
        for s in available():
            out[f"{dataset}-{s}"] = f"{RECIPES[dataset]} --fusion {s}"
    for s in MASK_STRATEGIES:
        out[f"shapes-mask-{s}"] = f"{RECIPES['shapes-mask']} --fusion {s}"
    out.update(EXTRAS)
    return {name: f"mmlab train {args} --threads 1 --out checkpoints/{name} --name {name} --manifest --quiet"
            for name, args in out.items()}
