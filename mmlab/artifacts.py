"""What the pages open on: every shipped checkpoint's results, computed once at zoo-build time and stored
beside it, so a page shows them at once and recomputes live only what a user changes.

``build(name)`` writes into the checkpoint's folder:

- ``artifacts.safetensors`` (numbers, float16 where they are measurements): the per-sample record of the
  modality ablation on its first ``N_ABLATION`` test pairs (``mmlab.ablation.summarize`` re-reads it for any
  first n), the embeddings of ``N_EMBED`` test pairs and their PCA / t-SNE / UMAP layouts (both ways of
  showing the fused vectors), and its own test pictures' domain scores;
- ``artifacts.json``: what those numbers mean, the faithfulness scorecard of its maps (for checkpoints whose
  data names a masked object), and the digest of the weights they were computed from: artifacts of other
  weights are never shown.

It also records, where the checkpoint has none yet, its domain (``mmlab.domain``) in its config, and the
faithfulness figures in its config and in the manifest. ``load(folder)`` reads them back (cached).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mmlab.errors import InputError

VERSION = 1
FILE, META = "artifacts.safetensors", "artifacts.json"
N_ABLATION = 1000
N_EMBED = 500
FUSED_MODES = ("separate", "stacked")
DECIDED = ("image", "text", "both", "either")


def weights_digest(folder: Path) -> str:
    h = hashlib.sha256()
    with open(Path(folder) / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


# ---- building -------------------------------------------------------------------------------------
def _ablation_tensors(samples: dict) -> tuple[dict, dict]:
    import torch

    t, meta = {}, {"rows": samples["rows"], "rates": samples["rates"], "metric": samples["metric"],
                   "metrics": samples["metrics"], "primary": samples["primary"],
                   "num_classes": samples["num_classes"], "conditions": [r["condition"] for r in samples["rows"]],
                   "decider": {k: v for k, v in samples["decider"].items()
                               if k in ("quantity", "thresholds")}}
    for i, name in enumerate(meta["conditions"]):
        oc = samples["conditions"][name]
        for target, pred in oc["pred"].items():
            t[f"abl.{i}.pred.{target}"] = torch.from_numpy(pred.astype(np.int16))
        for k in ("iou", "dice"):
            if oc[k] is not None:
                t[f"abl.{i}.{k}"] = torch.from_numpy(oc[k].astype(np.float16))
    for target, y in samples["labels"].items():
        t[f"abl.labels.{target}"] = torch.from_numpy(np.asarray(y, np.int16))
    for m, u in samples["u"].items():
        t[f"abl.u.{m}"] = torch.from_numpy(u.astype(np.float32))
    d = samples["decider"]
    for m in ("image", "text"):
        t[f"dec.delta.{m}"] = torch.from_numpy(d["delta"][m].astype(np.float16))
        t[f"dec.flip.{m}"] = torch.from_numpy(d["flip"][m].astype(np.uint8))
    t["dec.decided"] = torch.from_numpy(np.array([DECIDED.index(x) for x in d["decided"]], np.uint8))
    if d.get("pred") is not None:
        t["dec.pred"] = torch.from_numpy(np.asarray(d["pred"], np.int16))
        t["dec.prob"] = torch.from_numpy(np.asarray(d["prob"], np.float16))
    return t, meta


def _ablation_part(model, test, n_ablation: int) -> tuple[dict, dict | None]:
    """The stored ablation of ``model`` on the first ``n_ablation`` pairs of its test split: (tensors, meta), or
    ({}, None) for a model with neither a class nor a mask (alignment, generation): nothing to ablate."""
    from mmlab.ablation import ablate

    if model.primary is None and model.mask_head is None:
        return {}, None
    return _ablation_tensors(ablate(model, test.subset(range(min(n_ablation, len(test)))))["samples"])


def _embedding_tensors(emb: dict) -> tuple[dict, dict]:
    import torch

    t = {f"emb.{m}": torch.from_numpy(emb[m].astype(np.float16)) for m in ("image", "text", "fused")}
    t["emb.index"] = torch.from_numpy(np.asarray(emb["index"], np.int32))
    t["emb.label"] = torch.from_numpy(np.asarray(emb["label"], np.int16))
    t["emb.pred"] = torch.from_numpy(np.asarray(emb["pred"], np.int16))
    t["emb.correct"] = torch.from_numpy(np.asarray(emb["correct"], np.uint8))
    if emb.get("iou") is not None:
        t["emb.iou"] = torch.from_numpy(np.asarray(emb["iou"], np.float16))
    return t, {"texts": emb["texts"], "classes": emb["classes"], "count": emb["count"], "total": emb["total"]}


def build(name_or_dir: str | os.PathLike, *, root: str | os.PathLike | None = None, n_ablation: int = N_ABLATION,
          n_embed: int = N_EMBED, methods: tuple[str, ...] = ("pca", "tsne", "umap"),
          faithfulness: bool = True, scorecard_options: dict | None = None) -> Path:
    """Compute and store a checkpoint's artifacts (see the module's docstring); returns its folder.
    ``scorecard_options``: keyword options of ``mmlab.faithfulness.scorecard`` (smaller for tests)."""
    import torch

    import mmlab
    from mmlab import checkpoint, zoo
    from mmlab.domain import Domain, encode_images
    from mmlab.evaluate import experiment_of, split_of
    from mmlab.experiment import load_split
    from mmlab.project import embed_split, layout_groups, project_cached

    folder = zoo.resolve(name_or_dir, root)
    model = mmlab.load(folder, fresh=True)
    exp = experiment_of(model)
    config = json.loads((folder / checkpoint.CONFIG).read_text())
    if model.domain is None:  # a checkpoint trained before domains were recorded
        model.domain = Domain.fit(model, load_split(exp, "train"), load_split(exp, "val"))
        checkpoint.write_domain(model.domain, folder)
        config["domain"] = model.domain.to_json()
    test = split_of(model, "test")
    tensors: dict = {}
    meta: dict = {"version": VERSION, "weights": weights_digest(folder), "split": f"{test.name} test",
                  "data_options": exp.data_options}

    t, meta["ablation"] = _ablation_part(model, test, n_ablation)
    tensors.update(t)

    emb = embed_split(model, test, max_points=n_embed)
    for m in ("image", "text", "fused"):  # the layouts are made of exactly the stored (float16) vectors
        emb[m] = emb[m].astype(np.float16).astype(np.float32)
    t, meta["embeddings"] = _embedding_tensors(emb)
    meta["embeddings"]["max_points"] = n_embed
    tensors.update(t)
    meta["layouts"] = []
    for method in methods:
        for mode in FUSED_MODES:
            for group, mods in layout_groups(mode).items():
                X = np.concatenate([emb[m] for m in mods])
                tensors[f"lay.{method}.{mode}.{group}"] = torch.from_numpy(project_cached(X, method, 0))
            meta["layouts"].append([method, mode])

    pooled, sigs = encode_images(model, test)
    scores = model.domain.image_scores(pooled, sigs)
    tensors["dom.test_scores"] = torch.from_numpy(scores.astype(np.float16))
    meta["domain"] = {"test_flagged": float((scores > 1).mean()), "n": len(test)}

    gradable = model.primary is not None or model.mask_head is not None
    if faithfulness and gradable and test.masks is not None and test.info.get("head_word") is not None:
        from mmlab.faithfulness import flat_metrics, scorecard

        card = scorecard(model, **(scorecard_options or {}))
        meta["faithfulness"] = card
        config["faithfulness"] = card
    (folder / checkpoint.CONFIG).write_text(json.dumps(config, indent=2, allow_nan=False))
    _write(folder, tensors, meta)
    entry = next((e for e in zoo.read_manifest(folder.parent)["checkpoints"] if e.get("path") == folder.name), None)
    if entry is not None:
        entry = {k: v for k, v in entry.items() if k not in ("faithfulness", "artifacts")}
        if "faithfulness" in meta:
            entry["faithfulness"] = flat_metrics(meta["faithfulness"])
        entry["artifacts"] = {"version": VERSION, "weights": meta["weights"]}
        zoo.update_manifest(entry, folder.parent)
    return folder


def _to_refresh(name_or_dir: str | os.PathLike, root) -> tuple[Path, "Artifacts", object, dict]:
    """A checkpoint whose stored results are being partly recomputed: (folder, its artifacts, its model loaded
    afresh, its stored tensors); ``InputError`` when it has none yet."""
    from safetensors.torch import load_file

    import mmlab
    from mmlab import zoo

    folder = zoo.resolve(name_or_dir, root)
    stored = load(folder)
    if stored is None:
        raise InputError(f"{folder.name} has no artifacts to refresh: build them (mmlab zoo artifacts --only NAME)")
    return folder, stored, mmlab.load(folder, fresh=True), load_file(str(folder / FILE))


def refresh_domain(name_or_dir: str | os.PathLike, *, root: str | os.PathLike | None = None) -> dict:
    """Refit a checkpoint's domain record (its train and validation splits) and rescore its stored test
    pictures, leaving its other artifacts as they are; returns the new domain record of the artifacts."""
    import torch

    from mmlab import checkpoint
    from mmlab.domain import Domain, encode_images
    from mmlab.evaluate import experiment_of, split_of
    from mmlab.experiment import load_split

    folder, stored, model, tensors = _to_refresh(name_or_dir, root)
    exp = experiment_of(model)
    model.domain = Domain.fit(model, load_split(exp, "train"), load_split(exp, "val"))
    config = json.loads((folder / checkpoint.CONFIG).read_text())
    config["domain"] = model.domain.to_json()
    checkpoint.write_domain(model.domain, folder)
    (folder / checkpoint.CONFIG).write_text(json.dumps(config, indent=2, allow_nan=False))
    test = split_of(model, "test")
    scores = model.domain.image_scores(*encode_images(model, test))
    tensors["dom.test_scores"] = torch.from_numpy(scores.astype(np.float16))
    meta = dict(stored.meta, domain={"test_flagged": float((scores > 1).mean()), "n": len(test)})
    meta["weights"] = weights_digest(folder)
    _write(folder, tensors, meta)
    return meta["domain"]


def refresh_ablation(name_or_dir: str | os.PathLike, *, root: str | os.PathLike | None = None,
                     n_ablation: int = N_ABLATION) -> dict | None:
    """Recompute a checkpoint's stored ablation (after a change to how ``mmlab.ablation`` measures), leaving its
    other artifacts as they are; returns the new ablation record of the artifacts (None: nothing to ablate)."""
    from mmlab.evaluate import split_of

    folder, stored, model, tensors = _to_refresh(name_or_dir, root)
    tensors = {k: v for k, v in tensors.items() if not k.startswith(("abl.", "dec."))}
    t, ablation = _ablation_part(model, split_of(model, "test"), n_ablation)
    tensors.update(t)
    meta = dict(stored.meta, ablation=ablation)
    _write(folder, tensors, meta)
    return meta["ablation"]


def _write(folder: Path, tensors: dict, meta: dict) -> None:
    """Both files atomically (temporary names, then renames)."""
    from safetensors.torch import save_file

    tmp_t, tmp_j = folder / f".{FILE}.tmp", folder / f".{META}.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_t))
    tmp_j.write_text(json.dumps(meta, allow_nan=False, default=_plain))
    os.replace(tmp_t, folder / FILE)
    os.replace(tmp_j, folder / META)


def _plain(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON: {type(v).__name__}")


# ---- reading ----------------------------------------------------------------------------------------
class Artifacts:
    """A checkpoint's stored results (``load``)."""

    def __init__(self, folder: Path, meta: dict, tensors: dict):
        self.folder, self.meta, self._t = folder, meta, tensors

    def _a(self, key: str) -> np.ndarray:
        return self._t[key].numpy()

    # -- the ablation
    @property
    def ablation_pairs(self) -> int:
        """How many test pairs the stored ablation covers (0: it has none)."""
        return len(self._a("abl.u.image")) if self.meta.get("ablation") else 0

    def samples(self) -> dict:
        """The ablation's per-sample record, as ``ablate(...)["samples"]``."""
        a = self.meta.get("ablation")
        if not a:
            raise InputError("this checkpoint has neither a classifier nor a mask head: it has no ablation")
        conditions = {}
        for i, name in enumerate(a["conditions"]):
            conditions[name] = {
                "pred": {t: self._a(f"abl.{i}.pred.{t}").astype(np.int64) for t in a["num_classes"]},
                "iou": self._a(f"abl.{i}.iou").astype(np.float32) if f"abl.{i}.iou" in self._t else None,
                "dice": self._a(f"abl.{i}.dice").astype(np.float32) if f"abl.{i}.dice" in self._t else None}
        decided = np.array(DECIDED, dtype=object)[self._a("dec.decided")].astype(str)
        decider = {**a["decider"], "decided": decided,
                   "delta": {m: self._a(f"dec.delta.{m}").astype(np.float32) for m in ("image", "text")},
                   "flip": {m: self._a(f"dec.flip.{m}").astype(bool) for m in ("image", "text")},
                   "pred": self._a("dec.pred").astype(np.int64) if "dec.pred" in self._t else None,
                   "prob": self._a("dec.prob").astype(np.float32) if "dec.prob" in self._t else None}
        return {"labels": {t: self._a(f"abl.labels.{t}").astype(np.int64) for t in a["num_classes"]},
                "num_classes": a["num_classes"], "primary": a["primary"], "metric": a["metric"],
                "metrics": a["metrics"], "rows": a["rows"], "conditions": conditions,
                "u": {m: self._a(f"abl.u.{m}") for m in ("image", "text")}, "rates": a["rates"],
                "curve_runs": {}, "decider": decider}

    def ablation(self, n: int | None = None) -> dict:
        """The ablation over the first ``n`` test pairs (at most ``ablation_pairs``), as ``ablate`` returns it."""
        from mmlab.ablation import summarize

        return summarize(self.samples(), n)

    def scores(self, n: int | None = None) -> dict:
        """The test metrics over the first ``n`` pairs (the "both" condition of the ablation)."""
        return self.ablation(n)["table"][0]

    # -- the latent space
    def embeddings(self) -> dict:
        """``mmlab.project.embed_split``'s output for the stored sample of the test split."""
        e = self.meta["embeddings"]
        out = {m: self._a(f"emb.{m}").astype(np.float32) for m in ("image", "text", "fused")}
        out.update(index=self._a("emb.index").astype(np.int64), label=self._a("emb.label").astype(np.int64),
                   pred=self._a("emb.pred").astype(np.int64), correct=self._a("emb.correct").astype(bool),
                   iou=self._a("emb.iou").astype(np.float32) if "emb.iou" in self._t else None,
                   texts=list(e["texts"]), classes=e["classes"], count=e["count"], total=e["total"])
        return out

    def has_layout(self, method: str, fused: str) -> bool:
        return [method, fused] in self.meta["layouts"]

    def same_sample(self, max_points: int) -> bool:
        """Whether ``embed_split(..., max_points=max_points)`` of the test split draws the stored sample."""
        e = self.meta["embeddings"]
        return max_points == e["max_points"] or e["total"] <= min(max_points, e["max_points"])

    def layout(self, method: str, fused: str = "separate") -> dict:
        """``mmlab.project.joint_layout`` of the stored sample, from the stored projections."""
        from mmlab.project import joint_layout, layout_groups

        if not self.has_layout(method, fused):
            raise InputError(f"no stored {method} layout ({fused})")
        coords = {g: self._a(f"lay.{method}.{fused}.{g}") for g in layout_groups(fused)}
        return joint_layout(self.embeddings(), method, fused=fused, coords=coords)

    # -- the rest
    @property
    def faithfulness(self) -> dict | None:
        return self.meta.get("faithfulness")

    @property
    def domain(self) -> dict:
        return self.meta["domain"]


_lock = threading.Lock()
_cache: OrderedDict = OrderedDict()


def load(folder: str | os.PathLike) -> Artifacts | None:
    """A checkpoint folder's artifacts, or None when it has none, or has them for other weights."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_file, tensor_file = folder / META, folder / FILE
    if not meta_file.is_file() or not tensor_file.is_file():
        return None
    key = (str(folder.resolve()), meta_file.stat().st_mtime_ns, (folder / "model.safetensors").stat().st_mtime_ns)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("version") != VERSION or meta.get("weights") != weights_digest(folder):
            return None
        found = Artifacts(folder, meta, load_file(str(tensor_file)))
    except (OSError, ValueError, KeyError):
        return None
    with _lock:
        _cache[key] = found
        while len(_cache) > 96:
            _cache.popitem(last=False)
    return found
