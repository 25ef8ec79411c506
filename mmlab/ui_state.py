"""What the app lists, as plain functions: the checkpoints of the shipped zoo and the user's own
(``mmlab.jobs.user_root``), read at call time so a test can point the app at its own folders; how a
checkpoint is labelled and grouped; the numbers the seeds published, shown beside ours.

Nothing here imports Streamlit: the pages are thin over these functions. (Training runs started
from the app are ``mmlab.jobs.TrainJob``.)
"""
from __future__ import annotations

from pathlib import Path

from mmlab.errors import InputError
from mmlab.zoo import TASK_LABELS


def shipped_root() -> Path:
    """The shipped zoo: ``$MMLAB_CHECKPOINTS`` if set, else ``checkpoints/`` beside the package."""
    from mmlab.zoo import default_root

    return default_root()


def user_root() -> Path:
    from mmlab.jobs import user_root as root

    return root()


_LISTED: dict[str, tuple] = {}  # root -> (stamp, entries): every page run lists the checkpoints, several times


def _listed(root) -> list[dict]:
    """``zoo.list_checkpoints(root)``, read again only when the manifest or the folder has changed (a
    checkpoint trained, rebuilt or removed); copies, so a caller's change stays its own."""
    from mmlab import zoo

    base = zoo.root(root)
    stamp = tuple((s.st_ino, s.st_mtime_ns, s.st_size) if (s := _stat(p)) else None
                  for p in (base, base / zoo.MANIFEST))
    kept = _LISTED.get(str(base))
    if kept is None or kept[0] != stamp:
        kept = _LISTED[str(base)] = (stamp, zoo.list_checkpoints(base))
    return [dict(e) for e in kept[1]]


def _stat(path):
    try:
        return path.stat()
    except OSError:
        return None


def all_checkpoints() -> tuple[list[dict], list[str]]:
    """(entries, problems): manifest entries of the shipped zoo and of the user's own models.

    Each entry is a manifest entry (name, dataset, task, strategy, encoders, metrics, ...) with
    ``dir`` (absolute folder) and ``source`` ("zoo" or "yours"). A user's model whose name is
    also in the zoo is listed as ``"<name> (yours)"``. A broken manifest is reported in
    ``problems`` (one line each) and skipped, so one bad file never hides the others.
    """
    entries: list[dict] = []
    problems: list[str] = []
    seen: set[str] = set()
    for source, root in (("zoo", shipped_root()), ("yours", user_root())):
        try:
            found = _listed(root)
        except (InputError, OSError, KeyError, TypeError) as e:
            problems.append(f"{root}: {e}")
            continue
        for e in found:
            name = e["name"] if e["name"] not in seen else f"{e['name']} ({source})"
            seen.add(name)
            entries.append({**e, "name": name, "source": source})
    return entries, problems


def checkpoint_label(entry: dict) -> str:
    """One line naming a checkpoint for a picker: name, strategy, its headline metric."""
    metrics = entry.get("metrics") or {}
    best = next((f"{k} {metrics[k]:.2f}" for k in ("iou", "accuracy") if isinstance(metrics.get(k), float)), "")
    mine = " · yours" if entry.get("source") == "yours" else ""
    return f"{entry['name']} — {entry.get('strategy', '?')}{', ' + best if best else ''}{mine}"


def zoo_groups(entries: list[dict]) -> dict[str, list[dict]]:
    """Checkpoints grouped by what they were trained for, "dataset · task", in first-seen order:
    the Compare page lines up strategies that answer the same question."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        task = e.get("task") or "classify"
        groups.setdefault(f"{e.get('dataset') or '?'} · {TASK_LABELS.get(task, task)}", []).append(e)
    return groups


# ---- the seeds' published numbers (each on the seed's own data, not ours) -------------------
PUBLISHED: list[dict] = [
    {"task": "mask", "strategy": "cross_attention", "metric": "iou", "value": 0.9617,
     "source": "seed 004: cross-attention + BCE, 200 epochs (their referring-mask data)"},
    {"task": "mask", "strategy": "tensor", "metric": "iou", "value": 0.1991,
     "source": "seed 004: cross (outer) product, ResNet-50 + BERT (their data)"},
    {"task": "classify", "dataset": "digits", "strategy": "image_only", "metric": "accuracy", "value": 0.9037,
     "source": "seed 002: image-only model on digits + captions"},
    {"task": "classify", "dataset": "digits", "strategy": "concat", "metric": "accuracy", "value": 1.0,
     "source": "seed 002: multimodal model on digits + captions"},
]


def published_for(entry: dict) -> dict | None:
    """The seed's published number for a checkpoint's (task, strategy[, dataset]), or None."""
    strategy = "image_only" if entry.get("tested_with") == "text dropped" else entry.get("strategy")
    for p in PUBLISHED:
        if p["strategy"] != strategy or p["task"] != entry.get("task"):
            continue
        if "dataset" in p and p["dataset"] != entry.get("dataset"):
            continue
        return p
    return None
