"""Late (decision-level) fusion (seed 003 §5.1, level 3): one classifier per modality, then a rule.

The rules are pure functions ``probs (B, M, C), present (B, M) bool | None -> probs (B, C)``
over M voters (here image and text), tested on the seed's worked numbers. A voter that is not
present for a sample is skipped ("just skip that classifier"); a sample with no voter present
uses them all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mmlab.errors import InputError
from mmlab.fusion.base import Fusion, LossTargets
from mmlab.fusion.gated import presence
from mmlab.heads.classifier import ClassifierHead
from mmlab.types import EncoderOutput, FusionOutput

MODALITIES = ("image", "text")


# ---- combination rules: pure tensor functions -------------------------------------------------
def _voters(probs: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """(B, M) float 0/1 weights of the voters that count; all of them where none is present."""
    B, M, _ = probs.shape
    if present is None:
        return probs.new_ones(B, M)
    present = present.bool()
    present = present | ~present.any(dim=1, keepdim=True)
    return present.to(probs.dtype)


def average(probs: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the voters' distributions. [0.7,0.2,0.1] and [0.3,0.5,0.2] -> [0.5,0.35,0.15]."""
    return weighted(probs, probs.new_ones(probs.shape[1]), present)


def weighted(probs: torch.Tensor, weights: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean with weights (M,) or (B, M) >= 0, renormalised over the voters present.
    Weights 0.7 / 0.3 on the seed's example -> [0.58, 0.29, 0.13]."""
    w = weights.expand(probs.shape[0], -1) * _voters(probs, present)  # (B, M)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return (w.unsqueeze(-1) * probs).sum(1)  # (B, C)


def product(probs: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised product (Bayesian, voters independent given the class), computed in log space.
    Seed example: [0.21, 0.10, 0.02] / 0.33 -> [0.636, 0.303, 0.061] (the seed prints [0.66, 0.31,
    0.03], a rounding slip)."""
    logp = probs.clamp_min(1e-12).log() * _voters(probs, present).unsqueeze(-1)  # (B, M, C)
    return logp.sum(1).softmax(dim=-1)  # (B, C)


def maximum(probs: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Per-class maximum over the voters, renormalised ("optimistic").
    Seed example: [0.7, 0.5, 0.2] / 1.4 -> [0.5, 0.357, 0.143] (the seed prints [0.538, 0.385,
    0.154], which divides by 1.3 instead of the sum 1.4)."""
    p = (probs * _voters(probs, present).unsqueeze(-1)).amax(dim=1)  # (B, C)
    return p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def vote(probs: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Majority vote of the voters' top classes; ties go to the class with the most confident voter.

    Returns the mean distribution of the voters that voted for the winning class, so its argmax
    is the vote. Two voters: agreement -> that class; disagreement -> the more confident one
    (seed: image says class 0 at 0.7, text class 1 at 0.5 -> class 0).
    """
    B, M, C = probs.shape
    counts = _voters(probs, present)  # (B, M)
    conf, top = probs.max(dim=-1)  # (B, M) each
    ballots = nn.functional.one_hot(top, C).to(probs.dtype) * counts.unsqueeze(-1)  # (B, M, C)
    votes = ballots.sum(1)  # (B, C)
    best_conf = (ballots * conf.unsqueeze(-1)).amax(dim=1)  # (B, C), confidence <= 1 < one vote (x2)
    winner = (2 * votes + best_conf).argmax(dim=-1)  # (B,)
    chosen = (top == winner.unsqueeze(1)).to(probs.dtype) * counts  # (B, M) voters of the winner
    return (chosen.unsqueeze(-1) * probs).sum(1) / chosen.sum(1, keepdim=True)  # (B, C)


# ---- the strategies ---------------------------------------------------------------------------
class LateFusion(Fusion):
    """Shared body: an image classifier and a text classifier over the pooled vectors, then ``rule``."""

    family = "late"
    decides = True

    def __init__(self, dim: int, *, num_classes: int | None = None, dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes)
        if not num_classes:
            raise InputError("late fusion decides the class itself and needs a classification target")
        self.classifiers = nn.ModuleDict({m: ClassifierHead(dim, num_classes, dropout=dropout) for m in MODALITIES})

    def rule(self, probs: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, dict]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        logits = {m: self.classifiers[m](inputs[m].pooled) for m in MODALITIES}  # (B, C) each
        probs = torch.stack([logits[m].softmax(dim=-1) for m in MODALITIES], dim=1)  # (B, 2, C)
        present = torch.stack([presence(inputs[m]) for m in MODALITIES], dim=1)  # (B, 2)
        combined, extras = self.rule(probs, present)  # (B, C)
        w = _voters(probs, present)  # (B, 2)
        pooled = torch.stack([inputs[m].pooled for m in MODALITIES], dim=1)  # (B, 2, D)
        fused = (w.unsqueeze(-1) * pooled).sum(1) / w.sum(1, keepdim=True)  # mean of the present modalities
        for i, m in enumerate(MODALITIES):
            extras[f"probs:{m}"] = probs[:, i]
        return FusionOutput(fused=fused, logits=combined.clamp_min(1e-8).log(), extras=extras, branch_logits=logits)

    def loss(self, out: FusionOutput, inputs: dict[str, EncoderOutput], batch: LossTargets) -> torch.Tensor | None:
        """Each branch's own cross-entropy on the primary target, over the samples where its modality is
        present (a branch never learns from the stand-in features of a dropped modality)."""
        total = super().loss(out, inputs, batch)
        if batch.primary is None or not out.branch_logits:
            return total
        y = batch.labels[batch.primary]
        for m, logits in out.branch_logits.items():
            ce = nn.functional.cross_entropy(logits, y.to(logits.device), reduction="none")  # (B,)
            present = inputs[m].present
            term = ce.mean() if present is None else (ce * present.to(ce.dtype)).sum() / present.sum().clamp_min(1)
            total = term if total is None else total + term
        return total


class LateAverageFusion(LateFusion):
    """Late fusion by averaging the two classifiers' probabilities (seed 003, strategy 2).

    An image classifier and a text classifier each predict on their own; their class
    probabilities are averaged ([0.7, 0.2, 0.1] and [0.3, 0.5, 0.2] give [0.5, 0.35, 0.15]).
    Highly modular and robust: a missing modality is simply skipped, each branch can be
    debugged on its own, and the cost is two small classifiers. But no cross-modal interaction
    is ever learned: a weak modality cannot be helped by a strong one, and questions whose answer
    needs both (which object does the sentence name, and where?) are out of reach. Use it when
    the modalities are independent or often missing.
    """

    def rule(self, probs, present):
        return average(probs, present), {}


class LateWeightedFusion(LateFusion):
    """Late fusion by a weighted average of the two classifiers' probabilities (seed 003, strategy 3).

    Like averaging, but one modality can be trusted more: with ``weights=(0.7, 0.3)`` (image,
    text) the seed's example gives [0.58, 0.29, 0.13]; without ``weights`` the two weights are
    learned (a softmax over two parameters, trained through the combined prediction). The
    effective per-sample weights, renormalised when a modality is missing, are returned in
    ``extras["weights"]``. Same cost and limits as averaging (no cross-modal interaction). Use it
    when one modality is known, or can be learned, to be more reliable.
    """

    def __init__(self, dim: int, *, num_classes: int | None = None, weights: Sequence[float] | None = None,
                 dropout: float = 0.1):
        super().__init__(dim, num_classes=num_classes, dropout=dropout)
        self.weight_logits = None
        if weights is None:
            self.weight_logits = nn.Parameter(torch.zeros(len(MODALITIES)))
            self.register_buffer("fixed", None)
        else:
            try:
                values = [float(x) for x in weights]
            except (TypeError, ValueError):
                values = []
            if len(values) != len(MODALITIES) or not all(math.isfinite(v) and v >= 0 for v in values) \
                    or sum(values) <= 0:
                raise InputError(f"late_weighted weights must be two non-negative numbers (image, text), "
                                 f"got {weights!r}")
            self.register_buffer("fixed", torch.tensor([v / sum(values) for v in values]))

    def modality_weights(self) -> torch.Tensor:
        """(2,) image and text weights summing to 1."""
        return self.weight_logits.softmax(0) if self.weight_logits is not None else self.fixed

    def rule(self, probs, present):
        w = self.modality_weights().to(probs.dtype)
        eff = w.expand(probs.shape[0], -1) * _voters(probs, present)  # (B, 2)
        return weighted(probs, w, present), {"weights": eff / eff.sum(1, keepdim=True).clamp_min(1e-12)}


class LateProductFusion(LateFusion):
    """Late fusion by the normalised product of the two classifiers' probabilities (seed 003, strategy 4).

    Bayesian combination under the assumption that the modalities are independent given the
    class: multiply the distributions and renormalise ([0.7, 0.2, 0.1] x [0.3, 0.5, 0.2] =
    [0.21, 0.10, 0.02] -> [0.636, 0.303, 0.061]). Agreement sharpens the result and a class
    either branch rules out is vetoed, which also makes it brittle when one branch is confidently
    wrong. Cost: two small classifiers. Use it when both modalities are individually reliable.
    """

    def rule(self, probs, present):
        return product(probs, present), {}


class LateMaxFusion(LateFusion):
    """Late fusion by the per-class maximum of the two classifiers' probabilities, renormalised (seed 003, strategy 5).

    Optimistic: each class keeps the highest probability any branch gives it ([0.7, 0.5, 0.2]
    -> [0.5, 0.357, 0.143] after renormalising), so one confident branch is enough to carry a
    class. Robust when a modality is often uninformative, but prone to false positives from an
    over-confident branch. Cost: two small classifiers. Use it when either modality alone may
    hold the decisive evidence.
    """

    def rule(self, probs, present):
        return maximum(probs, present), {}


class LateVoteFusion(LateFusion):
    """Late fusion by majority vote with a confidence tie-break (seed 003, strategy 1).

    Each branch votes for its top class; the class with most votes wins and a tie goes to the
    more confident voter (image says class 0 at 0.7, text class 1 at 0.5 -> class 0). With two
    voters: agreement gives that class, disagreement the more confident branch. The returned
    distribution is the mean of the winning voters' distributions. The most interpretable rule
    and cheap (two small classifiers), but it throws away how sure the losing voter was. Use it
    with several independent classifiers or when a hard, explainable decision is wanted.
    """

    def rule(self, probs, present):
        return vote(probs, present), {}
