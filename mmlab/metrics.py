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
