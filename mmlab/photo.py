"""The photo model: where, in a real photo, is the thing a sentence names? Zero-shot, from the two offline
pretrained encoders the project carries, bridged by ImageNet's 1,000 concepts (``mmlab.fusion.concept_bridge``,
``mmlab.encoders.concepts``); no image-text pair was needed and nothing is trained. Its recipe (sizes,
temperatures, word weighting) was chosen on the "tune" photos of ``mmlab.data.photos``; one choice (class
activation maps) also saw the "heldout" ones, so the clean figures are those of the "final" photos.

- ``build()`` assembles it (embedding ImageNet's class names with MiniLM once, about half a minute);
  ``python -m mmlab.photo build`` writes ``checkpoints/photo-imagenet_bridge`` with its manifest entry and
  its pointing figures; the checkpoint keeps only the class-name embeddings (the backbones come from their
  installed packages);
- ``locate(model, image, text)``: the sentence's map on the photo, its peak and box in the photo's pixels,
  and what it looked for;
- ``pointing(model, cases)``: the pointing game on annotated photos (hit: the peak within 15 px of the box),
  with the image-centre and uniform-chance baselines; ``measure`` runs it on the "final" photos (annotated
  after the recipe was fixed: the clean figures) and the "heldout" ones (seen once while choosing the map,
  so optimistic), each alone and tiled into scenes (``mmlab.data.photos``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import NamedTuple

import numpy as np

from mmlab.errors import InputError

NAME = "photo-imagenet_bridge"
SIZES = (704, 800, 896)  # letterboxed input sizes; the first is the map's grid (22 x 22 patches)
BOX_FRACTION = 0.5  # the box: the connected region around the peak at or above half the map's range
TEXT_OPTIONS = {"label_temp": 0.1, "word_temp": 0.02, "head_bonus": 0.05}


def model_config():
    from mmlab.config import ModelConfig

    return ModelConfig(fusion="concept_bridge", image_encoder="efficientnet_lite0_patches",
                       image_encoder_options={"sizes": list(SIZES)}, text_encoder="minilm_concepts",
                       text_encoder_options=dict(TEXT_OPTIONS), dim=1000, image_size=SIZES[0],
                       targets={"label": 1000}, missing="zeros", pretrained=True)


def build():
    """The photo model, ready (class names embedded, its concept domain set)."""
    from mmlab.domain import ConceptDomain
    from mmlab.encoders.concepts import class_names
    from mmlab.model import build_model

    classes = class_names()
    model = build_model(model_config(), classes={"label": classes})
    model.text_encoder.embed_class_names()
    model.domain = ConceptDomain(classes)
    return model.eval()


def is_photo_model(model) -> bool:
    return model.cfg.fusion == "concept_bridge"


class Located(NamedTuple):
    """map: (H, W) in [0, 1] over the photo; peak: (x, y) and box: (x0, y0, x1, y1) in its pixels; looked_for:
    the ImageNet concepts the sentence named, with their weights; domain: ``mmlab.domain.DomainCheck``
    (does the sentence name a concept?)."""

    map: np.ndarray
    peak: tuple[int, int]
    box: tuple[int, int, int, int]
    looked_for: dict[str, float]
    domain: object


def box_around_peak(map_: np.ndarray, fraction: float = BOX_FRACTION) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end exclusive: the bounding box of the connected region of ``map_`` at or above
    ``fraction`` of its range that holds its maximum."""
    from scipy import ndimage

    m = np.nan_to_num(np.asarray(map_, dtype=np.float64))
    lo, hi = float(m.min()), float(m.max())
    labels, _ = ndimage.label((m - lo) >= fraction * (hi - lo))
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    ys, xs = np.nonzero(labels == labels[r, c])
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def locate(model, image, text: str, *, top: int = 3) -> Located:
    """Where the photo model finds what ``text`` names in ``image`` (any picture ``load_image`` reads): one
    forward pass; the map is the one ``explain(model, image, text)`` shows for the whole sentence."""
    if not is_photo_model(model):
        raise InputError(f"{model.cfg.fusion} is not the photo model's bridge")
    return located(model.predict(image, text), model.image_encoder.grid, top=top)


def located(pred, grid: tuple[int, int], *, top: int = 3) -> Located:
    """``Located`` from the photo model's ``Prediction`` of a pair (no model call)."""
    from mmlab.viz import normalize

    square = normalize(np.asarray(pred.extras["sentence_attention"], np.float32).reshape(grid))
    on_photo = pred.view.to_original(square)
    looked_for = dict(sorted(pred.probs.items(), key=lambda kv: -kv[1])[:top])
    return Located(on_photo, pred.view.peak(square), box_around_peak(on_photo), looked_for, pred.domain)


def pointing(model, cases, *, tolerance: float | None = None) -> dict:
    """The pointing game over ``cases`` (``mmlab.data.photos.Case``): hit rate of the model's peak, of the
    image centre and the expected rate of a uniformly random point (the boxes' grown area over the picture's),
    with a 95 % Wilson interval; the mean IoU of its box with the true one; and per case (key, hit, peak,
    box_iou)."""
    from mmlab.data import photos

    tol = photos.TOLERANCE if tolerance is None else tolerance
    rows, centre, chance = [], 0, 0.0
    for case in cases:
        H, W = case.image.shape[:2]
        found = locate(model, case.image, case.text)
        good = photos.hit(found.peak, case.box, tol)
        rows.append({"case": case.key, "vocab": case.vocab, "hit": bool(good), "peak": list(found.peak),
                     "box_iou": round(box_iou(found.box, case.box), 4), "in_domain": bool(found.domain.in_distribution)})
        centre += photos.hit((W / 2, H / 2), case.box, tol)
        x0, y0, x1, y1 = case.box
        chance += (min(W, x1 + tol) - max(0, x0 - tol)) * (min(H, y1 + tol) - max(0, y0 - tol)) / (W * H)
    n = len(rows)
    hits = sum(r["hit"] for r in rows)
    return {"n": n, "hits": hits, "pointing": hits / max(n, 1), "interval": wilson(hits, n),
            "centre": centre / max(n, 1), "chance": chance / max(n, 1), "tolerance": tol,
            "box_iou": float(np.mean([r["box_iou"] for r in rows])) if rows else 0.0, "cases": rows}


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(float(mid - half), 4), round(float(mid + half), 4)]


SEEDS = {"tune": 0, "heldout": 1, "final": 0}  # composite arrangements (the tuning and first test used 0 and 1)


def measure(model, splits: tuple[str, ...] = ("final", "heldout")) -> dict:
    """Pointing on each split's photos and on composites of them: {split: {"photos": ..., "composites": ...}}."""
    from mmlab.data import photos

    return {split: {"photos": pointing(model, photos.photo_cases(split)),
                    "composites": pointing(model, photos.composite_cases(split, SEEDS[split]))} for split in splits}


def save(root=None) -> dict:
    """Build the photo model, measure it, write it into the zoo; returns its manifest entry."""
    from mmlab import checkpoint, zoo

    t0 = time.perf_counter()
    model = build()
    seconds = time.perf_counter() - t0
    figures = measure(model)
    metrics = {f"{stat}_{split}_{kind}": round(r[key], 4) for split, by_kind in figures.items()
               for kind, r in by_kind.items() for stat, key in (("pointing", "pointing"), ("centre", "centre"),
                                                                ("chance", "chance"))}
    folder = zoo.root(root) / NAME
    checkpoint.save(model, folder, weights="float16", meta={
        "metrics": metrics, "photo_pointing": figures, "built_by": "python -m mmlab.photo build"})
    entry = {"name": NAME, "path": NAME, "experiment": None, "config": json.loads(json.dumps(model.cfg.__dict__)),
             "metrics": metrics, "train_seconds": 0.0, "build_seconds": round(seconds, 1),
             "parameters": model.num_parameters(), "task": "grounding", "dataset": None,
             "strategy": "concept_bridge", "command": "python -m mmlab.photo build"}
    zoo.update_manifest(entry, root)
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmlab.photo", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("build", "measure"),
                   help="build: write checkpoints/photo-imagenet_bridge with its figures and manifest entry; "
                        "measure: print the shipped model's pointing figures as JSON")
    p.add_argument("--split", action="append", choices=("tune", "heldout", "final"),
                   help="measure: the photos to measure on (repeatable; default final and heldout)")
    args = p.parse_args(argv)
    try:
        if args.action == "build":
            print(json.dumps(save()["metrics"], indent=1))
        else:
            import mmlab

            figures = measure(mmlab.load(NAME), tuple(args.split or ("final", "heldout")))
            print(json.dumps({split: {kind: {k: v for k, v in r.items() if k != "cases"} for kind, r in by.items()}
                              for split, by in figures.items()}))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
