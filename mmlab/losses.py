"""Losses of the seeds: CE, BCE, Dice, IoU (Jaccard), BCE+Dice, BCE+IoU (seed 004), InfoNCE (seed 001)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (B, C), target (B,) long."""
    return F.cross_entropy(logits, target)


def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mask logits (B, H, W) against a {0, 1} target (B, H, W)."""
    return F.binary_cross_entropy_with_logits(logits, target.float())


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice = 1 - 2|P∩T| / (|P| + |T|), on probabilities, averaged over the batch."""
    p, t = torch.sigmoid(logits).flatten(1), target.float().flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Jaccard distance 1 - |P∩T| / |P∪T| on probabilities (seed 004's BCE+IoU)."""
    p, t = torch.sigmoid(logits).flatten(1), target.float().flatten(1)
    inter = (p * t).sum(1)
    union = p.sum(1) + t.sum(1) - inter
    return (1 - (inter + eps) / (union + eps)).mean()


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return bce(logits, target) + soft_dice_loss(logits, target)


def bce_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return bce(logits, target) + soft_iou_loss(logits, target)


def info_nce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: image (B, D), text (B, D), logit_scale = log(1 / temperature)."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = logit_scale.exp().clamp(max=100) * image @ text.t()  # (B, B)
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def attention_supervision(rows: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int],
                          eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy -sum_p t_p log a_p between attention rows over the patches a (B, P) (each a
    distribution) and the referred object's mask (B, S, S) average-pooled to the patch grid (h, w)
    and normalised to a distribution t: per sample (B,). Lowest when a row spreads over the
    object's patches as the object does; 0 for an empty mask (nothing to point at). The grounding
    loss of ``grounded_cross_attention`` (the pointing game of Zhang et al. 2016, "Top-down neural
    attention by excitation backprop", turned into a training signal)."""
    target = F.adaptive_avg_pool2d(masks.float()[:, None], grid).flatten(1)  # (B, P)
    target = target / target.sum(1, keepdim=True).clamp_min(eps)
    return -(target * rows.float().clamp_min(eps).log()).sum(1)  # (B,)


CLASSIFICATION = {"ce": cross_entropy}
MASK = {"bce": bce, "dice": soft_dice_loss, "iou": soft_iou_loss, "bce_dice": bce_dice, "bce_iou": bce_iou}
