"""The modality-drop ablation (issue 4; seed 001 and seed 003 §5.4): one function that drops and
corrupts modalities the same way for every strategy.

The split is encoded ONCE (frozen encoders read ``Prepared``'s cached features); every
condition then reruns only the model's stand-in for a missing modality, the fusion and the
heads (``Model.head_forward``) on the stored encoder outputs. A dropped modality is replaced
by the model's own stand-in (``cfg.missing``: zeros / learned token / imputation) exactly as in
training with modality dropout, with ``EncoderOutput.present`` False for the dropped samples.
"""
from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import numpy as np
import torch

from mmlab import metrics
from mmlab.data.base import MMDataset
from mmlab.errors import InputError
from mmlab.evaluate import BATCH, batches
from mmlab.fusion.base import without_maps
from mmlab.model import MODALITIES, Model
from mmlab.threads import side_by_side
from mmlab.types import EncoderOutput

CHANGE_THRESHOLD = 0.10  # a removal "changes" the prediction when the probability moves this much
TIE_THRESHOLD = 0.10  # two changes closer than this (and both real) count as "both"


def _encode(model: Model, prepared, batch_size: int) -> list[tuple[torch.Tensor, dict[str, EncoderOutput]]]:
    """The split's encoder outputs, batch by batch: [(indices (b,), {"image", "text": EncoderOutput})].
    Batches keep their own text length (padding trimmed per batch, as in ``Prepared.inputs``)."""
    out = []
    for idx in batches(prepared.n, batch_size):
        inp = prepared.inputs(idx)
        out.append((idx, model.encode(inp["images"], inp["text"], features=inp["features"])))
    return out


class Spread(NamedTuple):
    """How much a modality's encoder outputs vary over the split: the scale of the ablation's noise."""
    tokens: torch.Tensor  # (D,) per-dimension std of the real tokens
    pooled: torch.Tensor  # (D,) per-dimension std of the pooled vectors
    detail: tuple[torch.Tensor, ...] | None  # per skip map, (1, C, 1, 1) per-channel std; None without skips


def _column_std(blocks) -> torch.Tensor:
    """Per-column std (C,) float32 of the rows of several (rows, C) blocks, as if stacked: sums of squares by a
    matrix product, accumulated in float64 (6x faster than ``torch.std`` down the columns of a tall matrix)."""
    n, s1, s2 = 0, 0.0, 0.0
    for x in blocks:
        x = x.float()
        s1 = s1 + x.sum(0).double()
        s2 = s2 + (x.T @ x).diagonal().double()
        n += x.shape[0]
    mean = s1 / n
    return ((s2 - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt().float()


def _spread(encoded: list, modality: str) -> Spread:
    """A modality's ``Spread`` over the whole split (float32)."""
    outs = [e[modality] for _, e in encoded]
    detail = None
    if outs[0].detail is not None:  # per channel, over every sample and position (channels-last: views)
        detail = tuple(_column_std(o.detail[j].permute(0, 2, 3, 1).reshape(-1, o.detail[j].shape[1]) for o in outs)
                       .view(1, -1, 1, 1) for j in range(len(outs[0].detail)))
    return Spread(_column_std(o.tokens[o.mask] for o in outs), _column_std(o.pooled for o in outs), detail)


def _draws(enc: EncoderOutput, idx: torch.Tensor, seed: int) -> EncoderOutput:
    """Standard normal draws shaped like ``enc`` (tokens, pooled, skip maps), float32. Each sample's come from a
    generator of its own, seeded by (``seed``, its index in the split), so its noise does not depend on the batch
    it is in or on the batch size; the tokens are drawn last, so a sentence's real tokens get the same draws
    whatever the batch's padding."""
    B, T, D = enc.tokens.shape
    pooled, tokens = torch.empty(B, D), torch.empty(B, T, D)
    detail = tuple(torch.empty(d.shape) for d in enc.detail) if enc.detail is not None else None
    for b, i in enumerate(idx.tolist()):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
        torch.randn(D, generator=g, out=pooled[b])
        for d in detail or ():
            torch.randn(d.shape[1:], generator=g, out=d[b])
        torch.randn(T, D, generator=g, out=tokens[b])
    return enc._replace(tokens=tokens, pooled=pooled, detail=detail)


def _scaled(enc: EncoderOutput, spread: Spread, z: EncoderOutput) -> EncoderOutput:
    """The noise at sigma 1 in ``enc``'s dtype: std_tokens * z on real tokens (padding stays padding),
    std_pooled * z, and per channel std * z on the image's skip maps, where the encoder has them; ``z``: the
    samples' ``_draws``."""
    detail = None
    if enc.detail is not None:
        detail = tuple((n * s).to(d.dtype) for d, n, s in zip(enc.detail, z.detail, spread.detail))
    return enc._replace(tokens=(z.tokens * spread.tokens * enc.mask.unsqueeze(-1)).to(enc.tokens.dtype),
                        pooled=(z.pooled * spread.pooled).to(enc.pooled.dtype), detail=detail)


def _noisy(enc: EncoderOutput, sigma: float, noise: EncoderOutput) -> EncoderOutput:
    """``enc`` + sigma * ``noise`` (``_scaled``), field by field."""
    detail = None if enc.detail is None else tuple(d.add(n, alpha=sigma) for d, n in zip(enc.detail, noise.detail))
    return enc._replace(tokens=enc.tokens.add(noise.tokens, alpha=sigma),
                        pooled=enc.pooled.add(noise.pooled, alpha=sigma), detail=detail)


@without_maps()  # a whole split: no attention maps built only to be thrown away
def _runs(model: Model, encoded: list, conditions) -> list[dict]:
    """Fusion + heads over the stored encoder outputs under several conditions, batch by batch:
    ``conditions(idx, enc)`` -> [(encoder outputs, drop)], one per condition. Returns per condition
    {"probs": {target: (N, C)}, "mask": (N, S, S) probs or None}."""
    probs: list[dict[str, list]] = []
    masks: list[list] = []
    for idx, enc in encoded:
        for c, (e, drop) in enumerate(conditions(idx, enc)):
            if c == len(probs):
                probs.append({})
                masks.append([])
            out = model.head_forward(e, drop)
            for t, logit in out.logits.items():
                probs[c].setdefault(t, []).append(logit.float().softmax(-1))
            if out.mask is not None:
                masks[c].append(torch.sigmoid(out.mask.float()))
    return [{"probs": {t: torch.cat(v).numpy() for t, v in p.items()},
             "mask": torch.cat(m).numpy() if m else None} for p, m in zip(probs, masks)]


def _run(model: Model, encoded: list, *, drop=None) -> dict:
    """``_runs`` under one condition: ``drop`` None, a modality name, or {modality: (N,) bool} over the split."""
    def condition(idx, enc):
        return [(enc, {k: v[idx] for k, v in drop.items()} if isinstance(drop, dict) else drop)]

    return _runs(model, encoded, condition)[0]


def _run_noise(model: Model, encoded: list, modality: str, sigmas: list[float], spread: Spread, seed: int) -> list:
    """``_runs`` with ``modality`` noisy at each of ``sigmas``: one draw per sample, scaled by each sigma (common
    random numbers, so the levels differ only in how loud the noise is)."""
    def conditions(idx, enc):
        noise = _scaled(enc[modality], spread, _draws(enc[modality], idx, seed))
        return [({**enc, modality: _noisy(enc[modality], sigma, noise)}, None) for sigma in sigmas]

    return _runs(model, encoded, conditions)


def _rows(enc: EncoderOutput, sel: torch.Tensor) -> EncoderOutput:
    """The samples ``sel`` (a (B,) bool) of a batch's encoder output."""
    return enc._replace(tokens=enc.tokens[sel], mask=enc.mask[sel], pooled=enc.pooled[sel],
                        present=None if enc.present is None else enc.present[sel],
                        detail=None if enc.detail is None else tuple(d[sel] for d in enc.detail))


def _run_without_image(model: Model, encoded: list, texts: list[str]) -> dict:
    """``_run(drop="image")`` with each distinct sentence run once: with the image gone (every sample gets the
    same stand-in), a sample's outputs are a function of its text alone. The split's sentences repeat (shapes:
    about half of 1,000 are distinct), so this is the cheapest of the runs."""
    _, first, inverse = np.unique(np.asarray(texts, dtype=str), return_index=True, return_inverse=True)
    keep = np.zeros(len(texts), dtype=bool)
    keep[first] = True
    reduced = []
    for idx, enc in encoded:
        sel = torch.from_numpy(keep[idx.numpy()])
        if bool(sel.any()):
            reduced.append((idx[sel], {m: _rows(e, sel) for m, e in enc.items()}))
    out = _run(model, reduced, drop="image")  # rows: the kept samples, in split order
    row_of = np.zeros(len(texts), dtype=np.int64)
    row_of[keep] = np.arange(int(keep.sum()))
    rows = row_of[first[inverse.reshape(-1)]]  # each sample's row: its sentence's first sample
    return {"probs": {t: p[rows] for t, p in out["probs"].items()},
            "mask": None if out["mask"] is None else out["mask"][rows]}


def outcomes(model: Model, data: MMDataset, prepared, outputs: dict, *, threshold: float = 0.5) -> dict:
    """Per-sample outcomes of one run: {"pred": {target: (N,) int}, "iou": (N,) or None, "dice": (N,) or None}.
    Everything the ablation reports is a mean over these, so it can be re-read for any first n pairs."""
    out = {"pred": {t: p.argmax(1).astype(np.int16) for t, p in outputs["probs"].items()}, "iou": None, "dice": None}
    if outputs["mask"] is not None:
        pred, target = outputs["mask"] >= threshold, prepared.masks.numpy()
        out["iou"] = metrics.mask_iou(pred, target).astype(np.float32)
        out["dice"] = metrics.mask_dice(pred, target).astype(np.float32)
    return out


def _pick(both: dict, alone: dict, gone: np.ndarray) -> dict:
    """Per-sample outcomes with a modality missing where ``gone``: from the run with both and the run with it
    dropped everywhere. Exact, because the model treats the samples of a batch independently in eval mode
    (``apply_drop`` is a per-sample ``torch.where``; ``tests/test_ablation.py`` checks it)."""
    def pick(a, b):
        return None if a is None else np.where(gone, b, a)

    return {"pred": {t: pick(p, alone["pred"][t]) for t, p in both["pred"].items()},
            "iou": pick(both["iou"], alone["iou"]), "dice": pick(both["dice"], alone["dice"])}


def scores(samples: dict, oc: dict, n: int) -> dict:
    """``mmlab.evaluate.score``'s numbers from per-sample outcomes, over the first ``n`` samples."""
    result: dict[str, float | int] = {"n": n}
    for t, pred in oc["pred"].items():
        y = samples["labels"][t][:n]
        prefix = "" if t == samples["primary"] else f"{t}_"
        result[f"{prefix}accuracy"] = metrics.accuracy(pred[:n], y)
        result[f"{prefix}macro_f1"] = metrics.macro_f1(pred[:n], y, num_classes=samples["num_classes"][t])
    if oc["iou"] is not None:
        result["iou"] = float(np.mean(oc["iou"][:n], dtype=np.float64))
        result["dice"] = float(np.mean(oc["dice"][:n], dtype=np.float64))
    return result


def summarize(samples: dict, n: int | None = None) -> dict[str, Any]:
    """The ablation's table, curves and decider counts over the first ``n`` pairs (default: all) of a run's
    per-sample record (``ablate(...)["samples"]``, or the one a zoo checkpoint ships)."""
    total = len(next(iter(samples["u"].values())))
    n = total if n is None else max(1, min(int(n), total))
    conditions = samples["conditions"]
    table = [{**row, **scores(samples, conditions[row["condition"]], n)} for row in samples["rows"]]
    metric = samples["metric"]
    curves: dict[str, list] = {}
    curve_table = []
    for m in MODALITIES:
        alone = conditions["text only" if m == "image" else "image only"]  # m missing for every sample
        curves[m] = []
        for rate in samples["rates"]:
            oc = samples.get("curve_runs", {}).get(f"{m}:{rate:g}")
            if oc is None:
                oc = _pick(conditions["both"], alone, samples["u"][m] < rate)
            row = scores(samples, oc, n)
            curves[m].append((float(rate), row[metric]))
            curve_table.append({"modality": m, "rate": float(rate), **row})
    d = samples["decider"]
    decided = d["decided"][:n]
    decider = {**{k: (v[:n] if isinstance(v, np.ndarray) else {m: x[:n] for m, x in v.items()}
                      if isinstance(v, dict) and k in ("delta", "flip") else v)
                  for k, v in d.items() if k not in ("counts",)},
               "index": np.arange(n), "decided": decided,
               "counts": {k: int((decided == k).sum()) for k in ("image", "text", "both", "either")}}
    return {"table": table, "curves": curves, "curve_table": curve_table, "metric": metric,
            "metrics": samples["metrics"], "decider": decider, "n": n}


def _decider(model: Model, data: MMDataset, runs: dict, change: float, tie: float) -> dict[str, Any]:
    """Per sample: how much removing each modality changes the prediction, and which decided.

    Classifiers: c = the class predicted with both modalities; delta[m] = p(c | both) -
    p(c | m removed) (positive: m supported the prediction). Mask models (judged by their masks,
    whatever class head they also carry): delta[m] = 1 - IoU(mask with both, mask with m removed). A removal "changes" the prediction when |delta| >=
    ``change`` or the predicted class flips (the mask IoU falls below 0.5). Decided: "either" when
    neither removal changes it (each modality alone suffices); "both" when both do and either
    both flip or their |delta| are within ``tie`` (it needs the two together); else the modality
    whose removal changes it most.
    """
    both, gone = runs["both"], {"image": runs["text only"], "text": runs["image only"]}
    primary = model.primary
    delta, flip = {}, {}
    if not model.cfg.mask:
        p = both["probs"][primary]  # (N, C)
        pred = p.argmax(1)
        rows = np.arange(len(pred))
        prob = p[rows, pred]
        for m in MODALITIES:
            q = gone[m]["probs"][primary]
            delta[m] = (prob - q[rows, pred]).astype(np.float32)
            flip[m] = q.argmax(1) != pred
        quantity = "drop in the probability of the class predicted with both modalities"
        label = data.targets[primary]
    else:
        mb = both["mask"] >= 0.5
        pred, prob = None, None
        for m in MODALITIES:
            iou = metrics.mask_iou(mb, gone[m]["mask"] >= 0.5)
            delta[m] = (1.0 - iou).astype(np.float32)
            flip[m] = iou < 0.5
        quantity = "1 - IoU between the masks predicted with and without the modality"
        label = None
    a = {m: np.abs(delta[m]) for m in MODALITIES}
    changed = {m: (a[m] >= change) | flip[m] for m in MODALITIES}
    decided = np.where(a["image"] >= a["text"], "image", "text").astype(object)
    neither = ~changed["image"] & ~changed["text"]
    together = changed["image"] & changed["text"] & ((flip["image"] & flip["text"]) |
                                                     (np.abs(a["image"] - a["text"]) < tie))
    decided[together] = "both"
    decided[neither] = "either"
    decided = decided.astype(str)
    return {
        "index": np.arange(len(decided)), "label": label, "pred": pred, "prob": prob,
        "delta": delta, "flip": flip, "decided": decided,
        "counts": {k: int((decided == k).sum()) for k in ("image", "text", "both", "either")},
        "quantity": quantity, "thresholds": {"change": change, "tie": tie},
    }


def _check(model: Model, data: MMDataset, noise_levels, missing_rates, batch_size: int) -> None:
    if len(data) == 0:
        raise InputError("the dataset is empty: nothing to ablate")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1; got {batch_size}")
    if any(not (0.0 <= float(r) <= 1.0) for r in missing_rates):
        raise InputError(f"missing rates must lie in [0, 1]; got {list(missing_rates)}")
    if any(float(s) < 0 for s in noise_levels):
        raise InputError(f"noise levels must be >= 0; got {list(noise_levels)}")
    if model.primary is None and not model.cfg.mask:
        raise InputError("the model has neither a classifier nor a mask head: nothing to score")


@torch.inference_mode()
def ablate(model: Model, data: MMDataset, *, noise_levels=(0.5, 1.0), missing_rates=(0, .25, .5, .75, 1.0),
           seed: int = 0, batch_size: int = BATCH, change_threshold: float = CHANGE_THRESHOLD,
           tie_threshold: float = TIE_THRESHOLD, compose_curves: bool = True, prepared=None,
           fast: bool = False) -> dict[str, Any]:
    """Ablate the modalities of ``model`` on ``data``; deterministic by ``seed``.

    Returns:
      "table": rows {"condition": "both" | "image only" | "text only" | "image noise σ=0.5" | ...,
               "dropped", "noisy", "sigma", **score(...)}; "image only" drops the text, "text only" the image;
               noise adds σ · std · z to the encoder's tokens and pooled vector (std per dimension over the
               split's real tokens / pooled vectors) and to the image's skip maps (std per channel); z is standard
               normal, drawn per sample from its own generator (``seed``, its index), the same z at every σ.
      "curves": {"image": [(rate, metric)], "text": [...]}: the primary metric when that modality is
               missing for a Bernoulli(rate) share of samples (per-sample mask as ``drop``). The
               masks of one modality share their uniform draws across rates, so a sample missing at
               25 % is missing at 50 % too (smoother curves); rate 0 equals "both" exactly.
               ``compose_curves`` (default) assembles each curve point per sample from the "both"
               and the fully-dropped runs, which equals running the model with the mask as
               ``drop`` (samples are independent in eval mode) at no extra cost; False runs it.
      "curve_table": rows {"modality", "rate", **score(...)} of the same runs (every metric).
      "metric": the primary metric ("iou" for mask models, else "accuracy"); "metrics": all reported
               (["iou", "accuracy"] for a mask model with a class head).
      "decider": per sample, which modality decided (see ``_decider``).
      "samples": the per-sample record every figure above is a mean of (``summarize`` re-reads it for the
               first n pairs: the zoo ships it, so a page opens on it at once).
      "seconds": wall time; "encode_seconds": of which the one encoding pass.
    ``prepared``: a ``train.Prepared`` of ``data`` for this model, to reuse cached features.
    ``fast``: ``mmlab.evaluate.fast_model`` (a mask model's bfloat16 copy where the machine runs it natively),
    for a page waiting on a live ablation; the zoo's stored ablations are float32.
    """
    from mmlab.train import Prepared

    _check(model, data, noise_levels, missing_rates, batch_size)
    t0 = time.perf_counter()
    prepared = prepared or Prepared(model, data)  # from the model as given: cached features are its own
    if fast:
        from mmlab.evaluate import fast_model

        model = fast_model(model)
    was_training = model.training
    model.eval()
    try:
        encoded = _encode(model, prepared, batch_size)
        t_enc = time.perf_counter() - t0
        sigmas = [float(x) for x in noise_levels]
        def noisy(m: str, seed: int) -> list:
            return _run_noise(model, encoded, m, sigmas, _spread(encoded, m), seed)

        jobs = {}  # the longest first: they run side by side on the machine's cores
        for k, m in enumerate(MODALITIES if sigmas else ()):
            jobs[m] = functools.partial(noisy, m, int(seed) * 1000 + 10 * k)
        jobs.update({"both": lambda: _run(model, encoded), "image only": lambda: _run(model, encoded, drop="text"),
                     "text only": lambda: _run_without_image(model, encoded, list(data.texts))})
        done = side_by_side(jobs)
        runs = {c: done[c] for c in ("both", "image only", "text only")}
        rows = [{"condition": "both", "dropped": None, "noisy": None, "sigma": None},
                {"condition": "image only", "dropped": "text", "noisy": None, "sigma": None},
                {"condition": "text only", "dropped": "image", "noisy": None, "sigma": None}]
        conditions = {c: outcomes(model, data, prepared, runs[c]) for c in runs}
        for m in MODALITIES if sigmas else ():
            for sigma, out in zip(sigmas, done[m]):
                name = f"{m} noise σ={sigma:g}"
                conditions[name] = outcomes(model, data, prepared, out)
                rows.append({"condition": name, "dropped": None, "noisy": m, "sigma": sigma})
        u = {m: torch.rand(len(data), generator=torch.Generator().manual_seed(int(seed) * 1000 + 100 + k)).numpy()
             for k, m in enumerate(MODALITIES)}  # a sample missing at 25 % is missing at 50 % too
        curve_runs = {}
        if not compose_curves:
            for m in MODALITIES:
                for rate in missing_rates:
                    gone = torch.from_numpy(u[m] < float(rate))
                    curve_runs[f"{m}:{float(rate):g}"] = outcomes(model, data, prepared,
                                                                  _run(model, encoded, drop={m: gone}))
        # a mask model is judged by its masks (its class head, if any, is reported beside)
        metric = "iou" if model.cfg.mask else "accuracy"
        samples = {"labels": {t: np.asarray(data.targets[t]) for t in model.cfg.targets},
                   "num_classes": dict(model.cfg.targets), "primary": model.primary, "metric": metric,
                   "metrics": [metric] + (["accuracy"] if metric == "iou" and model.primary is not None else []),
                   "rows": rows, "conditions": conditions, "u": u, "rates": [float(r) for r in missing_rates],
                   "curve_runs": curve_runs, "decider": _decider(model, data, runs, change_threshold, tie_threshold)}
        summary = summarize(samples)
    finally:
        model.train(was_training)
    return {**summary, "samples": samples, "seconds": time.perf_counter() - t0, "encode_seconds": t_enc}


def to_json(result: dict) -> dict:
    """``ablate``'s result with numpy arrays turned into lists (for ``mmlab ablate --json``)."""
    def conv(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return conv(result)
