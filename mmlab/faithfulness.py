"""How far a checkpoint's maps can be trusted: a faithfulness scorecard, measured on its own test split
(or scenes of a generator seed it never saw), with a chance baseline beside every figure.

Each measure is a callable class in the manner of Quantus (Hedström et al. 2023): parameters in
``__init__``, the data in ``__call__``, one score per sample; ``chance(...)`` gives the score of a map
that knows nothing, on the same samples.

- ``PointingGame`` (Zhang et al. 2018, "Top-down neural attention by excitation backprop"): the map's
  peak lies on the referred object. Chance: the share of map cells that touch the object.
- ``EnergyInObject`` (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of the
  map's mass that lies on the object. Chance: the object's share of the picture.
- ``TopKIoU``: IoU of the map's k highest cells with the object's cells (k = the object's cell count).
  Chance: the same for random maps.
- ``PerturbationCurve`` (Petsiuk et al. 2018, RISE; the perturbation test of Chefer et al. 2021): delete
  (or, for insertion, reveal) the cells the map ranks highest, a step at a time, and watch the model's
  answer move: the probability of the class it first predicted and, for a mask model, its mask IoU.
  The area under the curve: a faithful map makes deletion fall fast (low AUC) and insertion rise fast
  (high AUC). Chance: the same with a random cell order.
- ``attention_intervention``: is the attention on the path that decides? Give every scene another scene's
  attention maps (or uniform ones) and measure the answer again (the mask IoU, or the accuracy): a model
  whose answer does not move does not use what its maps show.
- ``randomization`` (Adebayo et al. 2018, "Sanity checks for saliency maps"): the map must change when
  the model's weights are re-initialised, from the heads down to the encoders; the Spearman rank
  correlation between the maps before and after each stage, and a verdict when it stays high.

``scorecard(model)`` runs them all for every map method the checkpoint has (attention, the mean of
layers and heads as ``Model.predict`` returns it, and per layer and head; rollout; relevance; Grad-CAM)
for the sentence's head noun (the word that names the object) and for the whole sentence.
"""
from __future__ import annotations

import numpy as np
import torch

from mmlab.errors import InputError

STEPS = 9  # points of the deletion / insertion curves: 0, 1/8, ..., all of the cells


# ---- the measures ---------------------------------------------------------------------------------
def cell_masks(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, S, S) object masks -> (N, h, w) bool: the cells of a ``grid`` map that hold any object pixel."""
    m = torch.from_numpy(np.asarray(masks, dtype=np.float32))[:, None]
    return (torch.nn.functional.adaptive_max_pool2d(m, grid)[:, 0] > 0).numpy()


class PointingGame:
    """Hit (1.0) when the map's highest cell holds part of the object (Zhang et al. 2018)."""

    def __call__(self, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
        maps = np.asarray(maps, dtype=np.float64)
        N, h, w = maps.shape
        cells = cell_masks(masks, (h, w)).reshape(N, -1)
        peak = maps.reshape(N, -1).argmax(1)
        return cells[np.arange(N), peak].astype(np.float64)

    def chance(self, masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        return cell_masks(masks, grid).reshape(len(masks), -1).mean(1)


class EnergyInObject:
    """The share of the map's (non-negative) mass on the object's pixels (Wang et al. 2020)."""

    def __call__(self, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
        maps = np.clip(np.asarray(maps, dtype=np.float32), 0, None)
        S = masks.shape[-1]
        up = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(S, S), mode="bilinear",
                                             align_corners=False)[:, 0].clamp_min(0).numpy()
        total = up.reshape(len(up), -1).sum(1)
        inside = (up * (np.asarray(masks) > 0)).reshape(len(up), -1).sum(1)
        return np.where(total > 0, inside / np.maximum(total, 1e-12), 0.0)

    def chance(self, masks: np.ndarray, grid: tuple[int, int] | None = None) -> np.ndarray:
        return (np.asarray(masks) > 0).reshape(len(masks), -1).mean(1)


class TopKIoU:
    """IoU of the map's k highest cells with the object's cells, k = the object's cell count."""

    def __call__(self, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
        maps = np.asarray(maps, dtype=np.float64)
        N, h, w = maps.shape
        cells = cell_masks(masks, (h, w)).reshape(N, -1)
        out = np.zeros(N)
        for i in range(N):
            k = int(cells[i].sum())
            if k == 0:
                continue
            top = np.zeros(h * w, bool)
            top[np.argsort(-maps[i].reshape(-1), kind="stable")[:k]] = True
            out[i] = (top & cells[i]).sum() / (top | cells[i]).sum()
        return out

    def chance(self, masks: np.ndarray, grid: tuple[int, int], *, draws: int = 8, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.mean([self(rng.random((len(masks), *grid)), masks) for _ in range(draws)], axis=0)


def _auc(curve: np.ndarray) -> np.ndarray:
    """(N, STEPS) values at evenly spaced fractions 0..1 -> (N,) trapezoid area."""
    return ((curve[:, 1:] + curve[:, :-1]) / 2).mean(1)


class PerturbationCurve:
    """Deletion (``insert=False``) or insertion curves of a model under a map's cell ranking (Petsiuk et al.
    2018). Deleted cells take the picture's background colour (the median of its border pixels), so a
    deleted object is gone rather than blurred."""

    def __init__(self, *, insert: bool = False, steps: int = STEPS, batch_size: int = 256):
        self.insert, self.steps, self.batch_size = insert, steps, batch_size

    def __call__(self, model, images: torch.Tensor, text: dict, order: np.ndarray, masks: np.ndarray | None,
                 classes: np.ndarray | None) -> dict[str, np.ndarray]:
        """images (N, 3, S, S) in [0, 1]; text: the tokenizer's tensors (N, T); order: (N, P) cell indices, most
        important first; masks: the objects' (N, S, S) or None; classes: the class each answer is followed
        for (N,) or None. Returns {"prob": (N, steps), "iou": (N, steps)} (the keys the model can answer)."""
        N, _, S, _ = images.shape
        P = order.shape[1]
        h = w = int(round(P ** 0.5))
        fill = _background(images)  # (N, 3, 1, 1)
        curves: dict[str, list] = {"prob": [], "iou": []}
        for k in np.linspace(0, P, self.steps).round().astype(int):
            chosen = np.zeros((N, P), bool)
            np.put_along_axis(chosen, order[:, :k], True, axis=1)
            cells = torch.from_numpy(chosen.reshape(N, 1, h, w).astype(np.float32))
            gone = torch.nn.functional.interpolate(cells, size=(S, S), mode="nearest")  # (N, 1, S, S)
            if self.insert:
                gone = 1 - gone  # everything but the revealed cells is gone
            x = images * (1 - gone) + fill * gone
            probs, pred_masks = _run(model, x, text, self.batch_size)
            if classes is not None and probs is not None:
                curves["prob"].append(probs[np.arange(N), classes])
            if masks is not None and pred_masks is not None:
                from mmlab.metrics import mask_iou

                curves["iou"].append(mask_iou(pred_masks >= 0.5, masks > 0))
        return {k: np.stack(v, 1) for k, v in curves.items() if v}


def _background(images: torch.Tensor) -> torch.Tensor:
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    return border.median(dim=2).values[..., None, None]  # (N, 3, 1, 1)


@torch.inference_mode()
def _run(model, images: torch.Tensor, text: dict, batch_size: int, *, maps: bool = False):
    """(primary class probabilities (N, C) or None, mask probabilities (N, S, S) or None), batched."""
    import contextlib

    from mmlab.fusion.base import without_maps

    probs, masks = [], []
    with model.evaluating(), (contextlib.nullcontext() if maps else without_maps()):
        for s in range(0, len(images), batch_size):
            sl = slice(s, s + batch_size)
            out = model(images[sl], _trim({k: v[sl] for k, v in text.items()}), drop=model.eval_drop)
            if model.primary is not None:
                probs.append(out.logits[model.primary].float().softmax(-1))
            if out.mask is not None:
                masks.append(torch.sigmoid(out.mask.float()))
    return (torch.cat(probs).numpy() if probs else None), (torch.cat(masks).numpy() if masks else None)


def _trim(text: dict) -> dict:
    key = "mask" if "mask" in text else "attention_mask" if "attention_mask" in text else None
    if key is None:
        return text
    T = int(text[key].sum(1).max().clamp_min(1))
    return {k: v[:, :T] if v.dim() == 2 else v for k, v in text.items()}


# ---- maps of a split ------------------------------------------------------------------------------
class Maps:
    """Every map method's maps for a set of scenes: {method: {"head": (N, h, w), "sentence": (N, h, w)}},
    plus the raw attention per layer and head for the head noun, {"layer{l}": (N, H, h, w)}."""

    def __init__(self, by_method: dict, per_head: dict):
        self.by_method, self.per_head = by_method, per_head


def _attention_maps(model, images: torch.Tensor, text: dict, heads: np.ndarray, batch_size: int = 128):
    """Raw attention for the head noun and the whole sentence, batched: ((N, h, w), (N, h, w), per layer-head)."""
    head_maps, sentence_maps, per_head = [], [], {}
    with torch.inference_mode(), model.evaluating():
        for s in range(0, len(images), batch_size):
            sl = slice(s, s + batch_size)
            batch = _trim({k: v[sl] for k, v in text.items()})
            out = model(images[sl], batch, drop=model.eval_drop)
            att = out.fusion.attention or {}
            if not att:
                return None
            grid = out.encoded["image"].grid
            keys = sorted(att)
            stack = torch.stack([att[k].float() for k in keys])  # (L, B, H, T, P)
            B = stack.shape[1]
            idx = torch.as_tensor(heads[sl]).clamp_min(0)
            rows = stack.transpose(0, 1)[torch.arange(B), :, :, idx]  # (B, L, H, P): each scene's head noun
            for li, k in enumerate(keys):
                per_head.setdefault(k, []).append(rows[:, li].reshape(B, rows.shape[2], *grid).numpy())
            head_maps.append(rows.mean((1, 2)).reshape(B, *grid).numpy())
            real = out.encoded["text"].mask.float()  # (B, T)
            mean = (stack.mean((0, 2)) * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)  # (B, P)
            sentence_maps.append(mean.reshape(B, *grid).numpy())
    return (np.concatenate(head_maps), np.concatenate(sentence_maps),
            {k: np.concatenate(v) for k, v in per_head.items()})


def _batched_maps(method: str, model, images: torch.Tensor, text: dict, heads: np.ndarray, batch_size: int = 64):
    """Rollout, relevance or Grad-CAM of every scene, batched (``mmlab.explain``'s rules on a batch):
    ((N, h, w) of the head noun, (N, h, w) of the whole sentence)."""
    from mmlab import explain as E

    head_maps, sentence_maps = [], []
    with E._with_grad(model):
        for s in range(0, len(images), batch_size):
            sl = slice(s, s + batch_size)
            encoded = model.encode(images[sl], _trim({k: v[sl] for k, v in text.items()}))
            out = model.head_forward(encoded, model.eval_drop)
            grid = encoded["image"].grid
            if method == "gradcam":
                cam = E.grad_cam_rows(out, E._target_scores(model, out, None), encoded).detach()  # (B, P)
                head_maps.append(cam.reshape(-1, *grid).numpy())
                sentence_maps.append(cam.reshape(-1, *grid).numpy())
                continue
            if method == "rollout":
                rows = E.rollout_rows(model, out).detach()
            else:
                rows = E.relevance_rows(model, out, E._target_scores(model, out, None))  # (B, T, P)
            B = rows.shape[0]
            idx = torch.as_tensor(heads[sl]).clamp_min(0)
            head_maps.append(rows[torch.arange(B), idx].reshape(B, *grid).numpy())
            if method == "relevance":  # the whole sentence: the relevance of the decision (a second pass)
                out = model.head_forward(model.encode(images[sl], _trim({k: v[sl] for k, v in text.items()})),
                                         model.eval_drop)
                mean = E.decision_relevance(model, out, E._target_scores(model, out, None))
            else:
                real = out.encoded["text"].mask.float()  # (B, T)
                mean = (rows * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)
            sentence_maps.append(mean.reshape(B, *grid).numpy())
    return np.concatenate(head_maps), np.concatenate(sentence_maps)


def method_names(model) -> list[str]:
    """The map methods a checkpoint has: attention, rollout and relevance where it has text -> image
    attention, Grad-CAM always."""
    from mmlab.fusion import get

    return (["attention", "rollout", "relevance"] if get(model.cfg.fusion).attends else []) + ["gradcam"]


def compute_maps(model, data, methods: list[str]) -> Maps:
    """Every asked method's maps of the scenes of ``data`` (its head nouns from ``info["head_word"]``)."""
    from mmlab.train import Prepared

    prepared = Prepared(model, data)
    heads = prepared.head.numpy()
    images = prepared.images.float() / 255.0
    by_method, per_head = {}, {}
    for method in methods:
        if method == "attention":
            got = _attention_maps(model, images, prepared.text, heads)
            if got is None:
                continue
            by_method[method] = {"head": got[0], "sentence": got[1]}
            per_head = got[2]
        else:
            h, s = _batched_maps(method, model, images, prepared.text, heads)
            by_method[method] = {"head": h, "sentence": s}
    return Maps(by_method, per_head)


# ---- the scorecard ----------------------------------------------------------------------------------
def scenes(model, *, n: int = 200, seed: int | None = None):
    """The scenes a scorecard is measured on: the first ``n`` of the checkpoint's test split (``seed``: a
    generator seed it never saw) whose sentence names an object with a mask and a head noun it reads."""
    from mmlab.evaluate import split_of
    from mmlab.train import Prepared

    data = split_of(model, "test", seed=seed)
    if data.masks is None or data.info.get("head_word") is None:
        raise InputError(f"dataset {data.name!r} has no referred-object masks and head nouns: maps cannot be graded")
    heads = Prepared(model, data).head.numpy()
    keep = np.flatnonzero((heads >= 0) & (data.masks.reshape(len(data), -1).max(1) > 0))[:n]
    if len(keep) == 0:
        raise InputError("no test scene names an object this model can read")
    return data.subset(keep)


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def scorecard(model, *, n: int = 200, seed: int | None = None, methods: list[str] | None = None,
              curves_n: int = 100, randomization: bool = True, randomization_n: int = 24) -> dict:
    """The faithfulness of ``model``'s maps (see the module's docstring), JSON-able:

    {"n", "split", "seed", "methods": {method: {"pointing_head", "pointing_sentence", "energy_head",
    "topk_iou_head", "deletion_auc_prob", "insertion_auc_prob", "deletion_auc_iou", "insertion_auc_iou",
    "randomization_spearman": {stage: rho}, "randomization_verdict"}}, "chance": {same names},
    "per_head": {"layer{l}": [pointing per head]}, "intervention": ``attention_intervention``}. Figures are
    means over the scenes."""
    methods = methods or method_names(model)
    unknown = set(methods) - {"attention", "rollout", "relevance", "gradcam"}
    if unknown:
        raise InputError(f"unknown map method(s) {', '.join(sorted(unknown))}")
    data = scenes(model, n=n, seed=seed)
    maps = compute_maps(model, data, methods)
    pointing, energy, topk = PointingGame(), EnergyInObject(), TopKIoU()
    grid = next(iter(maps.by_method.values()))["head"].shape[1:]
    card = {"n": len(data), "split": data.split, "seed": (data.info or {}).get("seed"), "methods": {},
            "chance": {"pointing": _mean(pointing.chance(data.masks, grid)),
                       "energy": _mean(energy.chance(data.masks)),
                       "topk_iou": _mean(topk.chance(data.masks, grid))},
            "per_head": {k: [_mean(pointing(v[:, h], data.masks)) for h in range(v.shape[1])]
                         for k, v in maps.per_head.items()}}
    curve_data = data.subset(range(min(curves_n, len(data))))
    curve_args = _curve_inputs(model, curve_data)
    for name, m in maps.by_method.items():
        row = {"pointing_head": _mean(pointing(m["head"], data.masks)),
               "pointing_sentence": _mean(pointing(m["sentence"], data.masks)),
               "energy_head": _mean(energy(m["head"], data.masks)),
               "topk_iou_head": _mean(topk(m["head"], data.masks))}
        order = np.argsort(-m["head"][: len(curve_data)].reshape(len(curve_data), -1), axis=1, kind="stable")
        row.update(_curve_aucs(model, curve_args, order))
        card["methods"][name] = row
    rng = np.random.default_rng(0)
    random_order = np.argsort(rng.random((len(curve_data), int(np.prod(grid)))), axis=1)
    card["chance"].update(_curve_aucs(model, curve_args, random_order))
    card["intervention"] = attention_intervention(model, data)
    if randomization:
        sub = data.subset(range(min(randomization_n, len(data))))
        for name, stages in cascading_randomization(model, sub, list(maps.by_method)).items():
            card["methods"][name]["randomization_spearman"] = stages
            card["methods"][name]["randomization_verdict"] = verdict(stages)
    return card


def _curve_inputs(model, data):
    from mmlab.train import Prepared

    prepared = Prepared(model, data)
    images = prepared.images.float() / 255.0
    probs, _ = _run(model, images, prepared.text, 256)
    classes = probs.argmax(1) if probs is not None else None
    masks = prepared.masks.numpy() if prepared.masks is not None and model.cfg.mask else None
    return images, prepared.text, masks, classes


def _curve_aucs(model, args, order: np.ndarray) -> dict[str, float]:
    images, text, masks, classes = args
    out = {}
    for kind, insert in (("deletion", False), ("insertion", True)):
        curves = PerturbationCurve(insert=insert)(model, images, text, order, masks, classes)
        for key, curve in curves.items():
            out[f"{kind}_auc_{key}"] = _mean(_auc(curve))
    return out


# ---- intervention: does the answer use the attention? ---------------------------------------------------
def _swap(a: torch.Tensor) -> torch.Tensor:
    return a.roll(1, dims=0)  # each scene gets the next scene's maps


def _uniform(a: torch.Tensor) -> torch.Tensor:
    keep = (a > 0).to(a.dtype)  # masked keys stay masked
    return keep / keep.sum(-1, keepdim=True).clamp_min(1e-12)


def attention_intervention(model, data, *, batch_size: int = 128) -> dict[str, float] | None:
    """The model's test metric (mask IoU for a mask model, else accuracy) as it is, with every scene given
    another scene's attention maps, and with uniform maps: {"metric", "normal", "swapped", "uniform"}; None for
    a strategy without attention. A drop shows the answer depends on where the attention looked."""
    from mmlab import metrics
    from mmlab.fusion import get
    from mmlab.fusion.base import overriding_attention
    from mmlab.train import Prepared

    if not get(model.cfg.fusion).attends:
        return None
    prepared = Prepared(model, data)
    images = prepared.images.float() / 255.0
    out: dict[str, float] = {"metric": "iou" if model.mask_head is not None else "accuracy"}
    for name, fn in (("normal", None), ("swapped", _swap), ("uniform", _uniform)):
        with overriding_attention(fn):
            probs, masks = _run(model, images, prepared.text, batch_size, maps=True)
        if out["metric"] == "iou":
            out[name] = float(metrics.mask_iou(masks >= 0.5, prepared.masks.numpy()).mean())
        else:
            out[name] = metrics.accuracy(probs.argmax(1), data.targets[model.primary])
    return out


# ---- model randomization (Adebayo et al. 2018) -------------------------------------------------------
STAGES = ("heads", "fusion", "text_encoder", "image_encoder")


def _reinit(module: torch.nn.Module, seed: int) -> None:
    """New random weights for every layer of ``module`` (a fixed seed, so the check repeats): each layer's
    own initialiser, and a small normal draw for raw parameters (position embeddings, learned tokens)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        owned: set[int] = set()
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
                owned.update(id(p) for p in sub.parameters(recurse=False))
        with torch.no_grad():
            for p in module.parameters():
                if id(p) not in owned:
                    torch.nn.init.trunc_normal_(p, std=0.02)


def _stage_modules(model, stage: str) -> list[torch.nn.Module]:
    if stage == "heads":
        return [m for m in (model.heads, model.mask_head, model.contrastive) if m is not None]
    return [getattr(model, stage)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (flattened); 0 for a constant map."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def cascading_randomization(model, data, methods: list[str]) -> dict[str, dict[str, float]]:
    """{method: {stage: mean Spearman rho between the map before and after re-initialising the model from
    its heads down to that stage}}, on a private copy of the model."""
    before = compute_maps(model, data, methods).by_method
    copy_ = model.clone()
    out: dict[str, dict[str, float]] = {m: {} for m in before}
    for i, stage in enumerate(STAGES):
        for module in _stage_modules(copy_, stage):
            _reinit(module, seed=1000 + i)
        after = compute_maps(copy_, data, list(before)).by_method
        for m in before:
            rho = [spearman(x, y) for x, y in zip(before[m]["head"], after[m]["head"])]
            out[m][stage] = float(np.mean(rho))
    return out


def verdict(stages: dict[str, float], *, same: float = 0.5) -> str:
    """One line on a randomization result: which re-initialisations left the map (nearly) unchanged."""
    unchanged = [s for s, rho in stages.items() if abs(rho) >= same]
    if not unchanged:
        return "changes with the weights at every stage (passes the sanity check)"
    return ("does not change when " + ", ".join(f"the {s.replace('_', ' ')}" for s in unchanged) +
            f" are re-initialised (rank correlation >= {same}): it does not depend on "
            + ("them" if len(unchanged) > 1 else "it"))


# ---- what the pages say -------------------------------------------------------------------------------
METHOD_WORDS = {"attention": "attention", "rollout": "attention rollout", "relevance": "relevance",
                "gradcam": "Grad-CAM"}


def fidelity_line(meta: dict | None, method: str) -> str | None:
    """"On this model, the named word's attention peaks on the object in 14 % of test scenes (chance 6 %)":
    from the checkpoint's faithfulness record, or None when it has none for ``method``."""
    final = ((meta or {}).get("photo_pointing") or {}).get("final") or {}
    if final.get("photos") and method == "attention":
        p, c = final["photos"], final.get("composites")
        line = (f"on {p['n']} annotated photos it never saw, the sentence's map peaks on the named thing in "
                f"{p['pointing']:.0%} (the image centre: {p['centre']:.0%}, a random point: {p['chance']:.0%})")
        if c:
            line += (f"; on {c['n']} scenes tiling several of them, {c['pointing']:.0%} (centre {c['centre']:.0%}, "
                     f"random {c['chance']:.0%})")
        return line
    card = (meta or {}).get("faithfulness") or {}
    row = (card.get("methods") or {}).get(method)
    chance = (card.get("chance") or {}).get("pointing")
    if not row or row.get("pointing_head") is None or chance is None:
        return None
    return (f"on this model, the named word's {METHOD_WORDS.get(method, method)} peaks on the named object in "
            f"{row['pointing_head']:.0%} of {card.get('n', '?')} test scenes (chance {chance:.0%})")


def flat_metrics(card: dict) -> dict[str, float]:
    """The scorecard as flat manifest metrics: "attention_pointing_head", ..., "chance_pointing", ..."""
    out = {}
    for method, row in card.get("methods", {}).items():
        out.update({f"{method}_{k}": v for k, v in row.items() if isinstance(v, float)})
    out.update({f"chance_{k}": v for k, v in card.get("chance", {}).items() if isinstance(v, float)})
    return out
