"""What inputs a model knows: is a picture like the pictures it was trained on, and which words did
it learn? (Every answer knows its domain.)

``Domain.fit(model, train, held_out)`` records, from the model's training split:

- the distribution of its image encoder's pooled features, and of nine statistics of the picture itself
  (``signature``: colour variety, texture, brightness, saturation, spread): means and shrunk inverse
  covariances (Ledoit & Wolf 2004), so a picture is scored by two Mahalanobis distances;
- a threshold per score at the ``QUANTILE`` of the model's own held-out pictures (never its
  training ones), so that about 99.5 % of its own inputs pass; a picture over either threshold is
  out of its domain;
- the words of its training sentences.

``Domain.check`` then says, for one pair, whether it is in the domain and why not, in one line for
a person, with the words the model never saw (per token). The record travels with the checkpoint
(numbers in config.json, the matrices beside the weights).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from mmlab.data.tokenizer import split_words

QUANTILE = 0.995
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "<pad>", "<unk>", "<cls>"})
VERSION = 2  # 1 kept a 6 x 6 downsampled picture as the pixel record; it is refitted, not read


class DomainCheck(NamedTuple):
    """in_distribution: the picture is like the training pictures and every word was seen in training;
    reason: one line for a person; image_ok: the picture passed (None when the model keeps no picture
    record); image_score: the larger of the two distances over its threshold (> 1: out of domain);
    unknown_words: words the model never saw; unknown_tokens: per entry of ``Prediction.tokens``."""

    in_distribution: bool
    reason: str
    image_ok: bool | None
    image_score: float | None
    unknown_words: list[str]
    unknown_tokens: list[bool]


def signature(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) pictures in [0, 1] -> (N, 9) statistics of how a picture looks that no model had to
    learn: the share of its most common colour (16 levels per channel) and the entropy of its colours, its
    mean horizontal and vertical pixel differences (texture), brightness, saturation and each channel's
    spread. A generated scene (flat background, a few solid shapes) and a photo differ in all of them; a
    low-dimensional record keeps one strongly violated statistic from being diluted, as it is among the
    hundred dimensions of a downsampled picture."""
    x = images.float().clamp(0, 1)
    q = (x * 15.999).long()
    codes = (q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]).flatten(1)  # (N, S * S) colour bins
    counts = torch.zeros(len(x), 4096).scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float32))
    p = counts / counts.sum(1, keepdim=True)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1)
    gx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))
    gy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
    saturation = (x.max(1).values - x.min(1).values).mean((1, 2))
    stats = [p.max(1).values, entropy, gx, gy, x.mean((1, 2, 3)), saturation, *x.flatten(2).std(-1).T]
    return torch.stack(stats, 1).numpy().astype(np.float64)


class Gaussian(NamedTuple):
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    threshold: float

    def distance(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) Mahalanobis distances."""
        d = np.asarray(x, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self.precision, d), 0.0))


def _fit_gaussian(train: np.ndarray, held_out: np.ndarray, quantile: float) -> Gaussian:
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(train)
    as_stored = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731 - thresholds of the stored values
    g = Gaussian(as_stored(lw.location_), as_stored(lw.precision_), 0.0)
    threshold = float(np.quantile(g.distance(held_out), quantile))
    if not np.isfinite(threshold):
        raise ValueError("the held-out distances are not finite")
    return g._replace(threshold=threshold)


@torch.inference_mode()
def encode_images(model, data, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(pooled image features (N, D), picture signatures (N, 195)) of a split, in eval mode."""
    from mmlab.train import Prepared

    prepared = Prepared(model, data)
    pooled, sigs = [], []
    with model.evaluating():
        for s in range(0, prepared.n, batch_size):
            idx = torch.arange(s, min(s + batch_size, prepared.n))
            inp = prepared.inputs(idx)
            images = prepared.images[idx].float() / 255.0
            feats = (inp["features"] or {}).get("image")
            enc = model.image_encoder.encode({"images": images}, feats)
            pooled.append(enc.pooled.float().numpy())
            sigs.append(signature(images))
    return np.concatenate(pooled).astype(np.float64), np.concatenate(sigs)


class Domain:
    """A model's record of its domain (see the module's docstring)."""

    def __init__(self, *, features: Gaussian | None, pixels: Gaussian | None, words: frozenset[str],
                 calibration: dict | None = None):
        self.features, self.pixels, self.words = features, pixels, frozenset(words)
        self.calibration = dict(calibration or {})

    # ---- building and storing
    @classmethod
    def fit(cls, model, train, held_out, *, quantile: float = QUANTILE) -> "Domain":
        """Fit on ``train`` (the model's training split), set the thresholds on ``held_out`` (its own
        held-out split: validation, never the training pictures)."""
        tr_feat, tr_sig = encode_images(model, train)
        ho_feat, ho_sig = encode_images(model, held_out)
        features = _fit_gaussian(tr_feat, ho_feat, quantile)
        pixels = _fit_gaussian(tr_sig, ho_sig, quantile)
        known = model.text_encoder.known_words()
        words = known if known is not None else frozenset(w for t in train.texts for w in split_words(t))
        return cls(features=features, pixels=pixels, words=words,
                   calibration={"quantile": quantile, "held_out": f"{held_out.name} {held_out.split}",
                                "n": len(held_out)})

    def to_json(self) -> dict:
        return {"version": VERSION, "words": sorted(self.words), "calibration": self.calibration,
                "thresholds": {"features": None if self.features is None else self.features.threshold,
                               "pixels": None if self.pixels is None else self.pixels.threshold}}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, g in (("features", self.features), ("pixels", self.pixels)):
            if g is not None:
                out[f"{name}.mean"] = torch.from_numpy(g.mean.astype(np.float32))
                out[f"{name}.precision"] = torch.from_numpy(g.precision.astype(np.float32))
        return out

    @classmethod
    def from_json(cls, data: dict, tensors: dict[str, torch.Tensor]) -> "Domain":
        if data.get("version") != VERSION:
            raise ValueError(f"domain record version {data.get('version')!r}")
        parts = {}
        for name in ("features", "pixels"):
            threshold = data["thresholds"][name]
            if threshold is None:
                parts[name] = None
                continue
            mean, precision = tensors[f"{name}.mean"].double().numpy(), tensors[f"{name}.precision"].double().numpy()
            if precision.shape != (len(mean), len(mean)) or not np.isfinite(precision).all():
                raise ValueError(f"{name} statistics are malformed")
            parts[name] = Gaussian(mean, precision, float(threshold))
        words = data["words"]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("words must be a list of strings")
        return cls(features=parts["features"], pixels=parts["pixels"], words=frozenset(words),
                   calibration=data.get("calibration"))

    # ---- using
    def image_scores(self, pooled: np.ndarray, signatures: np.ndarray) -> np.ndarray:
        """(N,) the larger of the two distances, each over its threshold: > 1 means out of the domain."""
        scores = []
        for g, x in ((self.features, pooled), (self.pixels, signatures)):
            if g is not None:
                scores.append(g.distance(np.atleast_2d(x)) / max(g.threshold, 1e-12))
        return np.max(scores, axis=0) if scores else np.zeros(len(np.atleast_2d(pooled)))

    def known(self, token: str) -> bool:
        t = token.lower().removeprefix("##")
        return token in SPECIAL_TOKENS or not any(c.isalnum() for c in t) or t in self.words \
            or (token.startswith("##") and any(t in w for w in self.words))

    def check(self, run) -> DomainCheck:
        """One pair, from its forward pass (``mmlab.model.PairRun``)."""
        return self.check_parts(run.encoded["image"].pooled[0].float().numpy(), run.tokens, run.images, run.text)

    def check_parts(self, pooled: np.ndarray, tokens: list[str], images: torch.Tensor,
                    text: str | None = None) -> DomainCheck:
        """One pair: ``pooled`` (D,) its image features, ``tokens`` its text tokens, ``images`` (1, 3, S, S)."""
        image_ok, score = None, None
        if self.features is not None or self.pixels is not None:
            score = float(self.image_scores(pooled[None], signature(images))[0])
            image_ok = score <= 1.0
        words = split_words(text) if text is not None else [t for t in tokens if t not in SPECIAL_TOKENS]
        unknown = list(dict.fromkeys(w for w in words if any(c.isalnum() for c in w) and not self.known(w)))
        flags = [not self.known(t) for t in tokens]
        reasons = []
        if image_ok is False:
            reasons.append(f"the picture is unlike this model's training pictures ({score:.1f}x the largest "
                           f"distance of 99.5 % of its own held-out pictures)")
        if unknown:
            reasons.append(f"it never saw the word{'s' if len(unknown) > 1 else ''} "
                           + ", ".join(f"'{w}'" for w in unknown[:8]))
        ok = image_ok is not False and not unknown
        return DomainCheck(ok, "; ".join(reasons) if reasons else "like its training data", image_ok, score,
                           unknown, flags)


class ConceptDomain:
    """The photo model's domain: any photo, and sentences that name one of the 1,000 ImageNet concepts.

    A candidate word names a concept when its best MiniLM similarity to a class name is at least
    ``name_threshold``; between ``related_threshold`` and that, it only comes close ("rocket" ->
    "projectile"); below, no concept matches ("woman", "sky", "tree"). The thresholds were chosen on the
    photo model's tuning sentences (75 nouns ImageNet has a class for, 31 it has not; docs/RESULTS.md):
    0.85 keeps 92 % of the first and 10 % of the second. The pair is in the domain when the sentence's
    weightiest word names a concept."""

    kind = "concepts"

    def __init__(self, classes: list[str], *, name_threshold: float = 0.85, related_threshold: float = 0.75):
        if not 0 < related_threshold <= name_threshold <= 1:
            raise ValueError("thresholds must satisfy 0 < related <= name <= 1")
        self.classes = list(classes)
        self.name_threshold, self.related_threshold = float(name_threshold), float(related_threshold)
        self.calibration = {"name_threshold": self.name_threshold, "related_threshold": self.related_threshold}

    def to_json(self) -> dict:
        return {"version": VERSION, "kind": self.kind, "name_threshold": self.name_threshold,
                "related_threshold": self.related_threshold}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def check(self, run) -> DomainCheck:
        tokens = run.encoded["text"].tokens[0].float()  # (K, 1002): class distribution, weight, similarity
        classes = len(self.classes)
        dist, weight, sim = tokens[:, :classes], tokens[:, classes], tokens[:, classes + 1]
        k = int(weight.argmax())
        best, word = float(sim[k]), run.tokens[k]
        shown = math.floor(best * 100 + 1e-4) / 100  # printed rounded down, so a word under a threshold never reads as on it
        concept = self.classes[int(dist[k].argmax())]
        flags = [float(s) < self.related_threshold for s in sim[: len(run.tokens)]]
        unknown = [t for t, f in zip(run.tokens, flags) if f]
        if best >= self.name_threshold:
            reason = f"'{word}' names the ImageNet concept '{concept}' (similarity {shown:.2f})"
        elif best >= self.related_threshold:
            reason = (f"'{word}' is not one of the 1,000 ImageNet concepts; the closest is '{concept}' "
                      f"(similarity {shown:.2f}), so the map shows where a {concept} would be")
        else:
            reason = (f"no ImageNet concept matches '{word}' (the closest, '{concept}', has similarity {best:.2f}): "
                      f"this model cannot find it, and its map is not meaningful")
        return DomainCheck(best >= self.name_threshold, reason, None, None, unknown, flags)


def from_json(data: dict, tensors: dict[str, torch.Tensor], classes: list[str] | None = None):
    """The domain record a checkpoint keeps (``Domain`` or ``ConceptDomain``)."""
    if data.get("version") != VERSION:
        raise ValueError(f"domain record version {data.get('version')!r}")
    if data.get("kind", "features") == ConceptDomain.kind:
        if not classes:
            raise ValueError("a concept domain needs the model's class names")
        return ConceptDomain(classes, name_threshold=float(data["name_threshold"]),
                             related_threshold=float(data["related_threshold"]))
    return Domain.from_json(data, tensors)
