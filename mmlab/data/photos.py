"""Real photos that installed packages carry (scikit-image, scikit-learn), with hand-written boxes around things
sentences name: what the photo model is measured on (``mmlab.photo.pointing``), never trained on.

Boxes are [x0, y0, x1, y1] in the photo's own pixels (x right, y down, end exclusive). ``vocab`` says how
ImageNet's 1,000 classes cover the thing: "in" (a class names it), "near" (only a close class: motorcycle ->
moped), "out" (none: people, flags, trees) or "part" (a part of a named thing: the cat's nose).

Splits: the recipe of the photo model was chosen on the "tune" photos (and composites of them). The "heldout"
photos were its test set, but one choice (the map: class activation maps rather than per-patch class
probabilities) was made after seeing their results, so their figures are optimistic. The "final" photos
(those gradio and matplotlib carry) were annotated after the recipe was fixed and used for nothing else:
they give its clean figures. The project's tests read only the "tune" photos.
``composites`` builds scenes of several photos, tiled on a grey background, with the sentence's box mapped
into the scene: more cases, with distractors, from the same photos.
"""
from __future__ import annotations

import random
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from mmlab.errors import InputError

TOLERANCE = 15  # pixels: a peak this close to the box counts as a hit (the pointing game, Zhang et al. 2016)
TILE = 320
PAD_GREY = 114
PER_REFERENT = 4  # composites per sentence


class Referent(NamedTuple):
    photo: str
    text: str
    box: tuple[float, float, float, float]
    vocab: str
    conflicts: tuple[str, ...] = ()  # photos that also hold something the sentence could name


SPLITS = {
    'astronaut': 'tune',
    'chelsea': 'tune',
    'rocket': 'tune',
    'motorcycle': 'tune',
    'flower': 'tune',
    'coffee': 'heldout',
    'camera': 'heldout',
    'clock': 'heldout',
    'china': 'heldout',
    'grace_hopper': 'final',
    'cheetah': 'final',
    'cheetah1': 'final',
    'cheetah2': 'final',
    'lion': 'final',
    'tower': 'final',
    'groot': 'final',
}
PACKAGE_PHOTOS = {  # photos other installed packages carry: (package, path inside it)
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "cheetah": ("gradio", "media_assets/images/cheetah.jpg"),
    "cheetah1": ("gradio", "media_assets/images/cheetah1.jpg"),
    "cheetah2": ("gradio", "test_data/cheetah2.jpg"),
    "lion": ("gradio", "media_assets/images/lion.jpg"),
    "tower": ("gradio", "media_assets/images/tower.jpg"),
    "groot": ("gradio", "media_assets/images/groot.jpeg"),
}

REFERENTS = (
    Referent('astronaut', 'the model of the space shuttle', (350, 15, 475, 292), 'in', ('rocket',)),
    Referent('astronaut', 'the black helmet', (276, 340, 512, 512), 'in', ()),
    Referent('astronaut', 'the American flag', (0, 0, 98, 512), 'out', ()),
    Referent('astronaut', 'the woman', (15, 15, 365, 512), 'out', ('camera',)),
    Referent('chelsea', 'the cat', (0, 0, 375, 300), 'in', ()),
    Referent('chelsea', "the cat's pink nose", (232, 212, 295, 268), 'part', ()),
    Referent('rocket', 'the rocket on the launch pad', (304, 124, 342, 406), 'near', ('astronaut',)),
    Referent('rocket', 'the steel lattice tower on the right', (555, 0, 640, 427), 'out', ()),
    Referent('motorcycle', 'the red motorcycle', (92, 75, 685, 450), 'near', ()),
    Referent('motorcycle', 'the wooden bench', (40, 105, 285, 310), 'in', ()),
    Referent('motorcycle', 'the front wheel', (505, 262, 685, 450), 'part', ()),
    Referent('motorcycle', 'the cardboard box on the bottom shelf', (614, 180, 683, 277), 'in', ()),
    Referent('flower', 'the orange flower', (168, 83, 447, 360), 'near', ()),
    Referent('flower', 'the flower at the bottom edge', (285, 372, 470, 427), 'part', ()),
    Referent('coffee', 'the cup of coffee', (172, 15, 411, 310), 'in', ()),
    Referent('coffee', 'the espresso', (203, 95, 370, 195), 'in', ()),
    Referent('coffee', 'the spoon', (318, 65, 425, 326), 'in', ()),
    Referent('coffee', 'the saucer', (75, 68, 480, 390), 'near', ()),
    Referent('camera', 'the video camera', (255, 135, 335, 195), 'in', ()),
    Referent('camera', 'the tripod', (228, 185, 405, 512), 'in', ()),
    Referent('camera', 'the man', (0, 60, 335, 512), 'out', ('astronaut',)),
    Referent('clock', 'the wall clock', (140, 90, 285, 216), 'in', ()),
    Referent('china', 'the pagoda', (62, 28, 372, 396), 'near', ()),
    Referent('china', 'the lake', (0, 200, 552, 330), 'near', ()),
    Referent('china', 'the tree on the right', (545, 135, 640, 427), 'out', ('flower',)),
    # the final photos: annotated after the recipe was fixed
    Referent('grace_hopper', 'the military uniform', (10, 310, 512, 600), 'in'),
    Referent('grace_hopper', 'the glasses', (175, 165, 358, 235), 'near'),
    Referent('cheetah', 'the cheetah', (82, 118, 380, 238), 'in', ('cheetah1', 'cheetah2', 'lion')),
    Referent('cheetah1', 'the cheetah', (18, 28, 252, 256), 'in', ('cheetah', 'cheetah2', 'lion')),
    Referent('cheetah2', 'the cheetah cub', (30, 75, 725, 787), 'in', ('cheetah', 'cheetah1', 'lion')),
    Referent('lion', 'the lion', (5, 20, 256, 235), 'in', ('cheetah', 'cheetah1', 'cheetah2')),
)


class Case(NamedTuple):
    """One pointing case: a picture (H, W, 3) uint8, a sentence and the box of what it names."""

    key: str
    image: np.ndarray
    text: str
    box: tuple[float, float, float, float]
    vocab: str
    kind: str  # "photo" | "composite"


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A photo an installed package carries, (H, W, 3) uint8 (grey ones copied to three channels)."""
    import skimage.data as d

    if name in PACKAGE_PHOTOS:
        import importlib.util
        from pathlib import Path

        from PIL import Image

        package, inside = PACKAGE_PHOTOS[name]
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / inside if spec and spec.origin else None
        if path is None or not path.is_file():
            raise InputError(f"the photo {name!r} comes with {package}, which is not installed (or lacks it)")
        img = np.asarray(Image.open(path).convert("RGB"))
    elif name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        loaders = {"astronaut": d.astronaut, "chelsea": d.chelsea, "coffee": d.coffee, "rocket": d.rocket,
                    "camera": d.camera, "clock": d.clock, "motorcycle": lambda: d.stereo_motorcycle()[0]}
        if name not in loaders:
            raise InputError(f"no shipped photo named {name!r}; choose one of: {', '.join(SPLITS)}")
        img = loaders[name]()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    out = np.ascontiguousarray(img[..., :3])
    out.flags.writeable = False
    return out


def referents(split: str) -> list[Referent]:
    if split not in ("tune", "heldout", "final"):
        raise InputError(f"split must be tune, heldout or final, got {split!r}")
    return [r for r in REFERENTS if SPLITS[r.photo] == split]


def photo_cases(split: str) -> list[Case]:
    return [Case(f"{r.photo}: {r.text}", photo(r.photo), r.text, r.box, r.vocab, "photo") for r in referents(split)]


def _fit_tile(img: np.ndarray) -> tuple[np.ndarray, float, int, int]:
    from PIL import Image

    H, W = img.shape[:2]
    s = TILE / max(H, W)
    h, w = round(H * s), round(W * s)
    small = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    out = np.full((TILE, TILE, 3), PAD_GREY, np.uint8)
    oy, ox = (TILE - h) // 2, (TILE - w) // 2
    out[oy:oy + h, ox:ox + w] = small
    return out, s, ox, oy


def compose(names: list[str], layout: str) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """Tile photos ("2x2", "1x2" side by side, "2x1" stacked), each fitted to 320 px keeping its shape:
    (scene, per tile (scale, x0, y0))."""
    rows, cols = {"2x2": (2, 2), "1x2": (1, 2), "2x1": (2, 1)}[layout]
    canvas = np.full((rows * TILE, cols * TILE, 3), PAD_GREY, np.uint8)
    where = []
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        tile, s, ox, oy = _fit_tile(photo(name))
        canvas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile
        where.append((s, c * TILE + ox, r * TILE + oy))
    return canvas, where


def composite_cases(split: str, seed: int, per_referent: int = PER_REFERENT) -> list[Case]:
    """Scenes of one referent's photo among other photos of the same split that hold nothing the sentence
    could also name; ``seed`` draws the arrangements (the tuning used seed 0, the held-out figures seed 1)."""
    rng = random.Random(seed)
    pool = sorted(n for n, s in SPLITS.items() if s == split)
    out = []
    for i, r in enumerate(referents(split)):
        others = [n for n in pool if n != r.photo and n not in r.conflicts]
        for k in range(per_referent):
            layout = rng.choice(["2x2", "2x2", "2x2", "1x2", "2x1"]) if len(others) >= 3 else rng.choice(["1x2", "2x1"])
            names = rng.sample(others, (4 if layout == "2x2" else 2) - 1)
            slot = rng.randrange(len(names) + 1)
            names.insert(slot, r.photo)
            scene, where = compose(names, layout)
            s, ox, oy = where[slot]
            x0, y0, x1, y1 = r.box
            out.append(Case(f"{r.photo}: {r.text} ({layout} {'+'.join(names)})", scene, r.text,
                            (x0 * s + ox, y0 * s + oy, x1 * s + ox, y1 * s + oy), r.vocab, "composite"))
    return out


def hit(point: tuple[float, float], box, tolerance: float = TOLERANCE) -> bool:
    """The pointing game: is the point inside the box grown by ``tolerance`` pixels?"""
    x, y = point
    x0, y0, x1, y1 = box
    return x0 - tolerance <= x <= x1 + tolerance and y0 - tolerance <= y <= y1 + tolerance
