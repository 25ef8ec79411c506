"""Metrics as plain functions on arrays / tensors, tested on hand-worked cases."""
from __future__ import annotations

import numpy as np
import torch


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = np.asarray(pred), np.asarray(target)
    return float((pred == target).mean()) if len(target) else 0.0


def macro_f1(pred: np.ndarray, target: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in target or pred."""
    pred, target = np.asarray(pred), np.asarray(target)
    classes = np.union1d(np.unique(target), np.unique(pred)) if num_classes is None else np.arange(num_classes)
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c))
        fn = np.sum((pred != c) & (target == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def mask_iou(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-sample IoU of binary masks (N, H, W) -> (N,). Two empty masks score 1."""
    p, t = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    if p.ndim == 2:
        p, t = p[None], t[None]
    inter = (p & t).reshape(len(p), -1).sum(1)
    union = (p | t).reshape(len(p), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def mask_dice(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-sample Dice 2|P∩T| / (|P| + |T|) of binary masks (N, H, W) -> (N,)."""
    p, t = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    if p.ndim == 2:
        p, t = p[None], t[None]
    inter = (p & t).reshape(len(p), -1).sum(1)
    total = p.reshape(len(p), -1).sum(1) + t.reshape(len(t), -1).sum(1)
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


def recall_at_k(similarity: np.ndarray, k: int) -> float:
    """similarity (N, N), row i's match is column i: share of rows whose match is in the top k."""
    s = np.asarray(similarity)
    ranks = (s > s[np.arange(len(s)), np.arange(len(s))][:, None]).sum(1)
    return float((ranks < k).mean())


def bleu(references: list[list[str]], hypotheses: list[list[str]], *, max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002) with one reference per hypothesis: the geometric mean of
    clipped n-gram precisions (n = 1..max_n, add-one smoothing for n > 1) times the brevity penalty."""
    from collections import Counter
    import math

    matches, totals = [0] * max_n, [0] * max_n
    ref_len = hyp_len = 0
    for ref, hyp in zip(references, hypotheses):
        ref_len, hyp_len = ref_len + len(ref), hyp_len + len(hyp)
        for n in range(1, max_n + 1):
            r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    logp = 0.0
    for n in range(max_n):
        m, t = (matches[n], totals[n]) if n == 0 else (matches[n] + 1, totals[n] + 1)
        logp += math.log(m / t) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return float(bp * math.exp(logp))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004) of image batches (N, C, H, W) in [0, data_range],
    with a uniform window, averaged over images and channels."""
    x = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    if x.dim() == 3:
        x, y = x[None], y[None]
    N, C, H, W = x.shape
    x, y = x.reshape(N * C, 1, H, W), y.reshape(N * C, 1, H, W)
    k = min(window, H, W)
    pool = lambda t: torch.nn.functional.avg_pool2d(t, k, stride=1)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx ** 2, pool(y * y) - my ** 2, pool(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())
