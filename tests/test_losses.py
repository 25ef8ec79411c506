"""mmlab.losses on hand-worked values (seed 004's mask losses, seed 001's InfoNCE)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmlab import losses

BIG = 50.0  # a logit whose sigmoid is 1 to float precision


def _logits(mask: torch.Tensor) -> torch.Tensor:
    """Hard {0, 1} mask -> logits with sigmoid exactly ~0 / ~1."""
    return (mask.float() * 2 - 1) * BIG


def test_dice_of_perfect_mask_is_zero():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    assert losses.soft_dice_loss(_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.soft_iou_loss(_logits(target), target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_of_disjoint_masks_is_one_up_to_eps():
    target = torch.zeros(1, 8, 8)
    target[:, :4] = 1  # 32 pixels
    pred = 1 - target  # the other 32 pixels
    # 1 - (2*0 + eps) / (32 + 32 + eps) with eps = 1
    expected = 1 - 1 / 65
    assert losses.soft_dice_loss(_logits(pred), target).item() == pytest.approx(expected, abs=1e-6)
    assert losses.soft_dice_loss(_logits(pred), target, eps=1e-6).item() == pytest.approx(1.0, abs=1e-6)


def test_soft_iou_half_overlap_by_hand():
    # 4 pixels; prediction covers pixels 0, 1; target covers pixels 1, 2
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    pred = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # |P∩T| = 1, |P∪T| = 2 + 2 - 1 = 3 -> with eps = 1: 1 - (1 + 1) / (3 + 1) = 0.5
    assert losses.soft_iou_loss(_logits(pred), target).item() == pytest.approx(0.5, abs=1e-6)
    # with a tiny eps: 1 - 1/3
    assert losses.soft_iou_loss(_logits(pred), target, eps=1e-8).item() == pytest.approx(2 / 3, abs=1e-6)
    # soft probabilities: p = sigmoid(0) = 0.5 everywhere: inter = 1, union = 2 + 2 - 1 = 3
    zero = torch.zeros(1, 4)
    assert losses.soft_iou_loss(zero, target, eps=1e-8).item() == pytest.approx(2 / 3, abs=1e-6)
    # Dice of the same half overlap: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4
    assert losses.soft_dice_loss(_logits(pred), target).item() == pytest.approx(0.4, abs=1e-6)


def test_bce_dice_and_bce_iou_are_sums():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 6, generator=g)
    target = (torch.rand(3, 6, 6, generator=g) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert losses.bce(logits, target).item() == pytest.approx(bce.item(), rel=1e-6)
    assert losses.bce_dice(logits, target).item() == pytest.approx(
        bce.item() + losses.soft_dice_loss(logits, target).item(), rel=1e-6)
    assert losses.bce_iou(logits, target).item() == pytest.approx(
        bce.item() + losses.soft_iou_loss(logits, target).item(), rel=1e-6)
    # BCE at logit 0 is log 2 whatever the target
    assert losses.bce(torch.zeros(1, 2, 2), target[:1, :2, :2]).item() == pytest.approx(math.log(2), rel=1e-6)


def test_info_nce_aligned_vs_shuffled():
    eye = torch.eye(4, 8)  # 4 orthogonal unit vectors in 8-D
    scale = torch.tensor(math.log(100.0))  # temperature 0.01
    aligned = losses.info_nce(eye, eye.clone(), scale)
    assert aligned.item() == pytest.approx(0.0, abs=1e-6)
    shuffled = losses.info_nce(eye, eye[[1, 2, 3, 0]], scale)
    # every row's match has similarity 0 and one wrong column 1: loss ~ 100 (scale x 1)
    assert shuffled.item() > 50
    # with scale 1 (logit_scale 0) and aligned pairs: -log(e / (e + 3)) by hand
    assert losses.info_nce(eye, eye, torch.tensor(0.0)).item() == pytest.approx(
        -math.log(math.e / (math.e + 3)), rel=1e-5)


def test_cross_entropy_hand_value():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert losses.cross_entropy(logits, torch.tensor([2])).item() == pytest.approx(math.log(4), rel=1e-6)


@pytest.mark.parametrize("name", sorted(losses.MASK))
def test_mask_losses_have_gradients(name):
    logits = torch.randn(2, 8, 8, requires_grad=True)
    target = torch.zeros(2, 8, 8)
    target[:, 2:5, 3:7] = 1
    loss = losses.MASK[name](logits, target)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # a gradient step lowers the loss
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad / logits.grad.norm()
    assert losses.MASK[name](stepped, target) < loss


def test_info_nce_gradients_reach_both_sides_and_the_scale():
    image = torch.randn(5, 16, requires_grad=True)
    text = torch.randn(5, 16, requires_grad=True)
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    losses.info_nce(image, text, scale).backward()
    for t in (image, text, scale):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
