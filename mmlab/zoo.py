"""The shipped checkpoints: ``checkpoints/manifest.json`` records each with the experiment that made it
and the metrics it reached; ``plan()`` is the recipe of the whole zoo, as experiments.

This module imports nothing heavy: listing the zoo (``mmlab zoo``) reads JSON only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mmlab.errors import InputError

MANIFEST = "manifest.json"


def default_root() -> Path:
    """The shipped zoo: ``$MMLAB_CHECKPOINTS`` if set, else ``checkpoints/`` beside the package."""
    env = os.environ.get("MMLAB_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


def root(path: str | os.PathLike | None = None) -> Path:
    return Path(path) if path is not None else default_root()


def read_manifest(path: str | os.PathLike | None = None) -> dict:
    """{"checkpoints": [entry, ...]}; each entry: name, path (relative to the root), experiment, config,
    metrics, train_seconds, parameters (and, once built, artifacts)."""
    file = root(path) / MANIFEST
    if not file.is_file():
        return {"checkpoints": []}
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{file}: not valid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{file}: JSON nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.setdefault("checkpoints", []), list):
        raise InputError(f"{file}: not a manifest (expected an object with a 'checkpoints' list)")
    return data


TASK_LABELS = {"mask": "referring masks", "multitask": "multi-task", "classify": "classification",
               "contrastive": "contrastive alignment", "generate": "generation"}


def describe(entry: dict) -> dict:
    """A manifest entry with its listing fields derived from the experiment: dataset, data_options,
    task, strategy, encoders, train (the train config), eval_drop, tested_with, command."""
    exp = entry.get("experiment") or {}
    model, train = exp.get("model") or {}, exp.get("train") or {}
    out = dict(entry)
    out.setdefault("dataset", exp.get("dataset"))
    out.setdefault("data_options", exp.get("data_options") or {})
    out.setdefault("task", exp.get("task"))
    out.setdefault("strategy", model.get("fusion") or (entry.get("config") or {}).get("fusion"))
    out.setdefault("encoders", {"image": model.get("image_encoder"), "text": model.get("text_encoder")})
    out.setdefault("train", train)
    drop = "text" if train.get("drop_text", 0) >= 1 else "image" if train.get("drop_image", 0) >= 1 else None
    out.setdefault("eval_drop", drop)
    if drop:
        out.setdefault("tested_with", f"{drop} dropped")
    if exp and "command" not in out:
        try:
            from mmlab.experiment import Experiment, command

            out["command"] = command(Experiment.from_json(exp), entry["name"])
        except (InputError, TypeError, ValueError):
            out["command"] = ""
    return out


def list_checkpoints(path: str | os.PathLike | None = None, *, dataset: str | None = None) -> list[dict]:
    """Manifest entries whose folder exists (``describe``d), each with ``dir``, its absolute folder."""
    base = root(path)
    out = []
    for e in read_manifest(base)["checkpoints"]:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            continue
        d = base / str(e.get("path", e["name"]))
        if d.is_dir() and (base.resolve() in d.resolve().parents):
            e = describe(e)
            if dataset is None or e.get("dataset") == dataset:
                out.append({**e, "dir": str(d)})
    return out


def find(name: str, path: str | os.PathLike | None = None) -> dict:
    entries = list_checkpoints(path)
    for e in entries:
        if e["name"] == name:
            return e
    raise InputError(f"no checkpoint named {name!r}; shipped: {', '.join(e['name'] for e in entries) or 'none'}")


def resolve(name_or_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder of a zoo name, or a folder (or file, which the loader will refuse) given as is."""
    d = Path(name_or_dir)
    if d.exists():
        return d
    return Path(find(str(name_or_dir), path)["dir"])


def update_manifest(entry: dict, path: str | os.PathLike | None = None) -> None:
    """Insert or replace the entry with the same name (written atomically, under a lock)."""
    import fcntl

    base = root(path)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / (MANIFEST + ".lock"), "w") as lock:  # zoo builds run several trainings at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read_manifest(base)
        data["checkpoints"] = [e for e in data["checkpoints"] if e["name"] != entry["name"]] + [entry]
        data["checkpoints"].sort(key=lambda e: e["name"])
        tmp = base / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
        tmp.replace(base / MANIFEST)


# ---- the plan: what the zoo holds and the experiment of each ---------------------------------
MASK_STRATEGIES = ("add", "hadamard", "cross_attention", "bidirectional_cross_attention", "grounded_cross_attention",
                   "transformer", "concat", "tensor")  # the spatial ones, and two pooled ones for seed 004's comparison
PLAN_DATASETS = ("shapes", "shapes_truth", "easyvqa", "digits")


def recipes() -> dict:
    """{recipe name: Experiment} of the zoo's families. Sized for a 2-core CPU (about a minute each,
    one thread)."""
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.experiment import Experiment

    def exp(dataset, *, epochs, image_size=None, threads=1, **kw):
        return Experiment(dataset=dataset, model=ModelConfig(image_size=image_size),
                          train=TrainConfig(epochs=epochs, threads=threads), **kw)

    return {
        # the named object's shape and colour: a two-target (multi-task) classifier
        "shapes": exp("shapes", task="multitask", targets=("shape", "colour"), image_size=32, epochs=6),
        # is the sentence true of the scene? needs both modalities together (seed 003)
        "shapes_truth": exp("shapes_truth", image_size=32, epochs=10),
        "easyvqa": exp("easyvqa", image_size=32, epochs=4),
        # informative but noisy captions (30 % name another digit) on noisy images: neither modality
        # is enough alone (seed 002). At noise 0.7 image-only reads ~0.83 and the captions are worth
        # ~6 points on every generated seed; at 0.5 (image-only ~0.92) the gain was within test noise
        "digits": exp("digits", data_options={"captions": "noisy", "p_wrong": 0.3, "image_noise": 0.7}, epochs=15),
        # referring masks at 64 px (seed 004)
        "shapes-mask": exp("shapes", task="mask", epochs=8),
    }


def plan() -> dict:
    """{checkpoint name: Experiment} for the whole zoo; variants by ``dataclasses.replace``."""
    from dataclasses import replace

    from mmlab.fusion import trainable

    r = recipes()

    def fusion(e, name, **options):
        return replace(e, model=replace(e.model, fusion=name, fusion_options=options))

    def train(e, **kw):
        return replace(e, train=replace(e.train, **kw))

    out = {}
    for dataset in PLAN_DATASETS:
        for s in trainable():
            if s in SPECIAL_STRATEGIES:
                continue
            out[f"{dataset}-{s}"] = fusion(r[dataset], s)
    for s in MASK_STRATEGIES:
        out[f"shapes-mask-{s}"] = fusion(r["shapes-mask"], s)
    mask_ca = fusion(r["shapes-mask"], "cross_attention")
    digits = r["digits"]
    out.update({
        # the flagship mask model, trained longer (this one ran on two threads)
        "shapes-mask-cross_attention": train(mask_ca, epochs=16, threads=2),
        # its attention on the decision path, and the head noun's row taught to cover the named object: the
        # grounded twin of the flagship (same 16 epochs), for the lesson that attention is not explanation
        "shapes-mask-grounded_cross_attention": train(fusion(r["shapes-mask"], "grounded_cross_attention"), epochs=16,
                                                      attention_supervision=1.0),
        # seed 002 / 001 baselines and robustness: image only; modality dropout in training
        "digits-image_only": train(fusion(digits, "concat"), drop_text=1.0),
        "digits-concat-textdrop": train(fusion(digits, "concat"), drop_text=0.5),
        "digits-cross_attention-textdrop": train(fusion(digits, "cross_attention"), drop_text=0.5),
        "digits-gated-dropout": train(fusion(digits, "gated"), drop_text=0.25, drop_image=0.25),
        # seed 004's losses compared on one schedule: BCE, BCE + Dice (the default), BCE + IoU
        **{f"shapes-mask-cross_attention-{loss}": train(mask_ca, mask_loss=loss) for loss in ("bce", "bce_dice", "bce_iou")},
        # contrastive alignment (CLIP-style) and cross-modal generation
        "shapes-contrastive": replace(fusion(r["shapes"], "concat"), task="contrastive", targets=(),
                                      train=replace(r["shapes"].train, epochs=8)),
        "digits-generate": replace(fusion(digits, "concat"), task="generate",
                                   data_options={"captions": "exact"}),
    })
    return out


SPECIAL_STRATEGIES: frozenset[str] = frozenset()  # strategies the per-dataset sweep leaves out
