"""shapes: generated referring scenes (seed 004's teaching point made visible).

A canvas holds 2-5 coloured shapes; the sentence names exactly one of them by attributes
and, where attributes do not single it out, by a relation to another object ("the small
red triangle left of the blue circle"). Distractors are drawn to share attributes with the
target, so neither the image alone (which object?) nor the text alone (where?) gives the
mask. Deterministic by (seed, split).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mmlab.data.base import MMDataset

SHAPES = ["circle", "square", "triangle", "diamond"]
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 190),
}
COLOUR_NAMES = list(COLOURS)
SIZES = {"small": 6, "large": 11}  # radius in pixels on a 64-pixel canvas
SPLITS = {"train": (0, 4000), "val": (1, 500), "test": (2, 1000)}
RELATIONS = ["left of", "right of", "above", "below"]


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def _relation_holds(rel: str, a: dict, b: dict) -> bool:
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if rel == "left of":
        return dx < -4 and abs(dx) >= abs(dy)
    if rel == "right of":
        return dx > 4 and abs(dx) >= abs(dy)
    if rel == "above":
        return dy < -4 and abs(dy) > abs(dx)
    return dy > 4 and abs(dy) > abs(dx)


def _phrase(obj: dict, attrs: tuple[str, ...]) -> str:
    words = [obj[a] for a in ("size", "colour") if a in attrs]
    return " ".join(words + [obj["shape"]])


def _matches(obj: dict, other: dict, attrs: tuple[str, ...]) -> bool:
    return all(obj[a] == other[a] for a in attrs)


ATTR_SETS = [("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")]


def _describe(objs: list[dict], t: int, rng: np.random.Generator) -> str | None:
    """A referring expression true of objs[t] and of no other object, or None."""
    target = objs[t]
    others = [o for i, o in enumerate(objs) if i != t]
    unique = [a for a in ATTR_SETS if not any(_matches(target, o, a) for o in others)]
    use_relation = not unique or rng.random() < 0.25
    if not use_relation:
        return "the " + _phrase(target, unique[rng.integers(len(unique))])
    attrs = ATTR_SETS[-1] if not unique else unique[rng.integers(len(unique))]
    candidates = []
    for rel in RELATIONS:
        for j, anchor in enumerate(objs):
            if j == t or not _relation_holds(rel, target, anchor):
                continue
            anchor_attrs = [a for a in ATTR_SETS[1:] if sum(_matches(anchor, o, a) for o in objs) == 1]
            if not anchor_attrs:
                continue
            a_attrs = anchor_attrs[0]
            # the whole expression must pick out the target alone
            fits = [
                i for i, o in enumerate(objs)
                if i != j and _matches(o, target, attrs) and _relation_holds(rel, o, anchor)
            ]
            if fits == [t]:
                candidates.append(f"the {_phrase(target, attrs)} {rel} the {_phrase(anchor, a_attrs)}")
    if candidates:
        return candidates[rng.integers(len(candidates))]
    return None if not unique else "the " + _phrase(target, unique[0])


def _scene(rng: np.random.Generator, size: int) -> tuple[list[dict], int]:
    n = int(rng.integers(2, 6))
    target = {
        "shape": SHAPES[rng.integers(4)],
        "colour": COLOUR_NAMES[rng.integers(5)],
        "size": ["small", "large"][rng.integers(2)],
    }
    objs = [target]
    for _ in range(n - 1):
        o = {"shape": SHAPES[rng.integers(4)], "colour": COLOUR_NAMES[rng.integers(5)],
             "size": ["small", "large"][rng.integers(2)]}
        # distractors share attributes with the target: keep one or two of them
        for a in ("shape", "colour", "size"):
            if rng.random() < 0.45:
                o[a] = target[a]
        objs.append(o)
    placed = []
    for o in objs:
        r = SIZES[o["size"]] * size / 64
        for _ in range(200):
            x, y = rng.uniform(r + 1, size - r - 1, size=2)
            if all((x - p["x"]) ** 2 + (y - p["y"]) ** 2 > (r + p["r"] + 2) ** 2 for p in placed):
                placed.append({**o, "x": float(x), "y": float(y), "r": float(r)})
                break
    order = rng.permutation(len(placed))
    placed = [placed[i] for i in order]
    return placed, int(np.argmax(order == 0))  # the target was placed first


def _render(objs: list[dict], target: int, size: int, rng: np.random.Generator):
    bg = tuple(int(v) for v in rng.integers(225, 256, size=3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    mask = Image.new("L", (size, size), 0)
    mdraw = ImageDraw.Draw(mask)
    for i, o in enumerate(objs):
        _draw(draw, o["shape"], o["x"], o["y"], o["r"], COLOURS[o["colour"]])
        if i == target:
            _draw(mdraw, o["shape"], o["x"], o["y"], o["r"], 1)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1), np.asarray(mask, dtype=np.uint8)


def _false_sentence(objs: list[dict], rng: np.random.Generator) -> str:
    """A sentence naming an object that is not in the scene (same grammar as true ones)."""
    for _ in range(100):
        o = {"shape": SHAPES[rng.integers(4)], "colour": COLOUR_NAMES[rng.integers(5)],
             "size": ["small", "large"][rng.integers(2)]}
        attrs = ATTR_SETS[1 + rng.integers(3)]
        if not any(_matches(o, p, attrs) for p in objs):
            return "the " + _phrase(o, attrs)
    return "the large purple diamond"


def generate(n: int, *, seed: int = 0, split: str = "train", size: int = 64, variant: str = "refer") -> MMDataset:
    """Generate ``n`` scenes. variant "refer": true sentences with masks; "truth": half of the
    sentences name an object that is not there (target "truth"; masks empty for those).
    ``info["head_word"]``: per sentence, its head noun (the referred object's shape word, the first
    shape word of the sentence), None for a false sentence; explanations are graded on it."""
    stream, _ = SPLITS.get(split, (3, 0))
    rng = np.random.default_rng([seed, stream, 0 if variant == "refer" else 1])
    images = np.zeros((n, 3, size, size), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    texts, shape_t, colour_t, size_t, truth, head = [], [], [], [], [], []
    i = 0
    while i < n:
        objs, t = _scene(rng, size)
        if len(objs) < 2:
            continue
        sentence = _describe(objs, t, rng)
        if sentence is None:
            continue
        img, mask = _render(objs, t, size, rng)
        is_true = True
        if variant == "truth" and rng.random() < 0.5:
            sentence, is_true, mask = _false_sentence(objs, rng), False, np.zeros_like(mask)
        images[i], masks[i] = img, mask
        texts.append(sentence)
        shape_t.append(SHAPES.index(objs[t]["shape"]))
        colour_t.append(COLOUR_NAMES.index(objs[t]["colour"]))
        size_t.append(["small", "large"].index(objs[t]["size"]))
        truth.append(int(is_true))
        head.append(objs[t]["shape"] if is_true else None)  # the head noun names the referred object
        i += 1
    targets = {
        "shape": np.array(shape_t, np.int64),
        "colour": np.array(colour_t, np.int64),
        "size": np.array(size_t, np.int64),
        "truth": np.array(truth, np.int64),
    }
    targets["label"] = targets["truth"] if variant == "truth" else targets["shape"]
    classes = {"shape": SHAPES, "colour": COLOUR_NAMES, "size": ["small", "large"], "truth": ["false", "true"]}
    classes["label"] = classes["truth"] if variant == "truth" else classes["shape"]
    return MMDataset(name="shapes" if variant == "refer" else "shapes_truth", split=split, images=images,
                     texts=texts, targets=targets, classes=classes, masks=masks,
                     info={"seed": seed, "variant": variant, "head_word": head})


def load(split: str = "train", *, seed: int = 0, n: int | None = None, variant: str = "refer") -> MMDataset:
    return generate(n if n is not None else SPLITS.get(split, (3, 1000))[1], seed=seed, split=split, variant=variant)
