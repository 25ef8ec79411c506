"""mmlab.metrics on small hand-worked cases."""
import numpy as np
import pytest
import torch

from mmlab.metrics import accuracy, macro_f1, mask_dice, mask_iou, recall_at_k


def test_accuracy_hand_example():
    # 3 of 5 predictions right
    assert accuracy([0, 1, 2, 2, 1], [0, 1, 1, 2, 0]) == pytest.approx(3 / 5)
    assert accuracy(np.array([], dtype=int), np.array([], dtype=int)) == 0.0


def test_macro_f1_hand_example():
    pred = [0, 0, 1, 1, 2, 2]
    target = [0, 1, 1, 1, 2, 0]
    # class 0: tp=1 (i0), fp=1 (i1), fn=1 (i5) -> F1 = 2/(2+1+1) = 1/2
    # class 1: tp=2 (i2, i3), fp=0, fn=1 (i1)  -> F1 = 4/(4+0+1) = 4/5
    # class 2: tp=1 (i4), fp=1 (i5), fn=0      -> F1 = 2/(2+1+0) = 2/3
    expected = (1 / 2 + 4 / 5 + 2 / 3) / 3
    assert macro_f1(pred, target) == pytest.approx(expected)
    # a perfect prediction scores 1; a class never predicted nor present is skipped
    assert macro_f1(target, target, num_classes=5) == pytest.approx(1.0)


def test_macro_f1_differs_from_accuracy_on_imbalance():
    # always predicting the majority class: accuracy 0.8, macro F1 = (2*4/(8+1) + 0) / 2 = 4/9
    pred, target = [0] * 5, [0, 0, 0, 0, 1]
    assert accuracy(pred, target) == pytest.approx(0.8)
    assert macro_f1(pred, target) == pytest.approx(4 / 9)


def _grid(rows):
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)


def test_mask_iou_and_dice_hand_drawn():
    pred = _grid(["##..",
                  "##..",
                  "....",
                  "...."])
    target = _grid([".##.",
                    ".##.",
                    "....",
                    "...."])
    # |P| = 4, |T| = 4, |P∩T| = 2, |P∪T| = 6 -> IoU 1/3, Dice 2*2/8 = 1/2
    assert mask_iou(pred, target)[0] == pytest.approx(1 / 3)
    assert mask_dice(pred, target)[0] == pytest.approx(1 / 2)


def test_mask_metrics_batch_edge_cases():
    full = np.ones((4, 4), bool)
    empty = np.zeros((4, 4), bool)
    one = _grid(["#...", "....", "....", "...."])
    pred = np.stack([full, empty, empty, one])
    target = np.stack([full, empty, full, one])
    # identical -> 1; two empty masks -> 1; empty vs full -> 0; identical single pixel -> 1
    np.testing.assert_allclose(mask_iou(pred, target), [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(mask_dice(pred, target), [1.0, 1.0, 0.0, 1.0])
    # disjoint masks score 0; tensors are accepted too
    assert mask_iou(torch.from_numpy(one), torch.from_numpy(~one))[0] == 0.0
    assert mask_dice(one, ~one)[0] == 0.0


def test_recall_at_k_three_by_three():
    s = np.array([
        [0.9, 0.1, 0.0],  # row 0: its match (0.9) ranks 1st
        [0.8, 0.5, 0.2],  # row 1: its match (0.5) ranks 2nd
        [0.7, 0.6, 0.1],  # row 2: its match (0.1) ranks 3rd
    ])
    assert recall_at_k(s, 1) == pytest.approx(1 / 3)
    assert recall_at_k(s, 2) == pytest.approx(2 / 3)
    assert recall_at_k(s, 3) == pytest.approx(1.0)
    assert recall_at_k(np.eye(3), 1) == pytest.approx(1.0)
