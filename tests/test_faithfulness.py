"""The faithfulness scorecard's measures on hand-built maps and a hand-built model whose scores are known."""
import types

import numpy as np
import pytest
import torch

from mmlab import faithfulness as F


def masks_and_grid():
    """Two 16 x 16 scenes: a 4 x 4 object at (rows 4-7, cols 8-11) and a 2 x 6 one at (rows 0-1, cols 0-5)."""
    m = np.zeros((2, 16, 16), np.uint8)
    m[0, 4:8, 8:12] = 1
    m[1, 0:2, 0:6] = 1
    return m, (16, 16)


def test_a_map_that_is_the_mask_scores_one_and_a_uniform_map_scores_chance():
    masks, grid = masks_and_grid()
    perfect = masks.astype(np.float32)
    uniform = np.ones((2, *grid), np.float32)
    p, e, k = F.PointingGame(), F.EnergyInObject(), F.TopKIoU()
    assert p(perfect, masks).tolist() == [1.0, 1.0]
    assert e(perfect, masks) == pytest.approx([1.0, 1.0])
    assert k(perfect, masks) == pytest.approx([1.0, 1.0])
    # chance: a random cell touches the object 16/256 and 12/256 of the time; the object is that share
    assert p.chance(masks, grid) == pytest.approx([16 / 256, 12 / 256])
    assert e(uniform, masks) == pytest.approx([16 / 256, 12 / 256], abs=1e-6)
    assert e.chance(masks) == pytest.approx([16 / 256, 12 / 256])
    wrong = np.zeros((2, *grid), np.float32)
    wrong[:, 15, 15] = 1  # the peak on an empty corner
    assert p(wrong, masks).tolist() == [0.0, 0.0] and e(wrong, masks).max() < 0.01
    assert 0 < k.chance(masks, grid).mean() < 0.2


def test_pointing_counts_any_object_pixel_in_the_peak_cell():
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[0, 7, 9] = 1  # one pixel inside cell (1, 2) of a 16 x 16 grid (4-px cells)
    peak = np.zeros((1, 16, 16))
    peak[0, 1, 2] = 1
    assert F.PointingGame()(peak, mask).tolist() == [1.0]
    peak = np.zeros((1, 16, 16))
    peak[0, 2, 2] = 1
    assert F.PointingGame()(peak, mask).tolist() == [0.0]


class RedModel:
    """A stand-in model whose answer is known: its mask is the red pixels, its class-0 probability the red
    share (so deleting the object, which is red, is what moves it)."""

    primary, eval_drop = "label", None

    def evaluating(self):
        import contextlib

        return contextlib.nullcontext()

    def __call__(self, images, text, drop=None):
        red = (images[:, 0] > 0.5) & (images[:, 1] < 0.5)  # (B, S, S)
        share = red.float().mean((1, 2))
        logits = torch.stack([share * 50, torch.zeros_like(share)], 1)
        return types.SimpleNamespace(logits={"label": logits}, mask=red.float() * 20 - 10)


def test_deletion_in_the_map_s_order_falls_faster_than_in_a_random_order():
    images = torch.ones(4, 3, 32, 32)  # white
    masks = np.zeros((4, 32, 32), np.uint8)
    for i in range(4):
        y, x = 4 + 5 * i, 6 + 4 * i
        images[i, 1:, y:y + 8, x:x + 8] = 0.0  # a red square
        masks[i, y:y + 8, x:x + 8] = 1
    cells = F.cell_masks(masks, (8, 8)).reshape(4, -1)
    order = np.argsort(-cells.astype(float), axis=1, kind="stable")  # the object's cells first
    rng = np.random.default_rng(0)
    random = np.argsort(rng.random((4, 64)), axis=1)
    text = {"ids": torch.zeros(4, 1, dtype=torch.long)}
    classes = np.zeros(4, int)
    deletion = F.PerturbationCurve()
    ordered = deletion(RedModel(), images, text, order, masks, classes)
    shuffled = deletion(RedModel(), images, text, random, masks, classes)
    assert ordered["iou"][:, 0] == pytest.approx(1.0) and ordered["iou"][:, -1] == pytest.approx(0.0)
    assert F._auc(ordered["iou"]).mean() < F._auc(shuffled["iou"]).mean()
    assert F._auc(ordered["prob"]).mean() < F._auc(shuffled["prob"]).mean()
    insertion = F.PerturbationCurve(insert=True)(RedModel(), images, text, order, masks, classes)
    assert F._auc(insertion["iou"]).mean() > F._auc(F.PerturbationCurve(insert=True)(
        RedModel(), images, text, random, masks, classes)["iou"]).mean()


def test_spearman_and_the_randomization_verdict():
    a = np.arange(16.0).reshape(4, 4)
    assert F.spearman(a, a) == pytest.approx(1.0) and F.spearman(a, -a) == pytest.approx(-1.0)
    assert F.spearman(a, np.ones((4, 4))) == 0.0
    assert "passes" in F.verdict({"heads": 0.1, "fusion": 0.0})
    said = F.verdict({"heads": 0.99, "fusion": 0.2})
    assert "does not change" in said and "heads" in said and "fusion" not in said


def test_fidelity_line_and_flat_metrics():
    card = {"n": 200, "methods": {"attention": {"pointing_head": 0.14, "deletion_auc_iou": 0.3}},
            "chance": {"pointing": 0.06}}
    line = F.fidelity_line({"faithfulness": card}, "attention")
    assert "14%" in line and "chance 6%" in line and "200" in line
    assert F.fidelity_line({}, "attention") is None
    assert F.flat_metrics(card) == {"attention_pointing_head": 0.14, "attention_deletion_auc_iou": 0.3,
                                    "chance_pointing": 0.06}


@pytest.mark.slow
def test_scorecard_of_a_small_trained_model(tmp_path):
    """End to end on a model trained for a few epochs: every figure is there, beside its chance, and the
    raw attention does not depend on the heads (re-initialising them leaves it as it was)."""
    import mmlab
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.experiment import Experiment, run

    exp = Experiment(dataset="shapes", task="mask", data_options={"n": 256},
                     model=ModelConfig(fusion="cross_attention", dim=32, image_size=None),
                     train=TrainConfig(epochs=2, batch_size=32, threads=1))
    run(exp, tmp_path / "small")
    model = mmlab.load(tmp_path / "small")
    card = F.scorecard(model, n=40, curves_n=20, randomization_n=6)
    assert set(card["methods"]) == {"attention", "rollout", "relevance", "gradcam"}
    for row in card["methods"].values():
        for key in ("pointing_head", "pointing_sentence", "energy_head", "topk_iou_head", "deletion_auc_iou",
                    "insertion_auc_iou", "deletion_auc_prob"):
            assert 0.0 <= row[key] <= 1.0, key
    for key in ("pointing", "energy", "topk_iou", "deletion_auc_iou", "insertion_auc_iou"):
        assert 0.0 <= card["chance"][key] <= 1.0
    assert card["methods"]["attention"]["randomization_spearman"]["heads"] == pytest.approx(1.0)
    assert card["methods"]["attention"]["randomization_spearman"]["fusion"] < 0.9
    assert "heads" in card["methods"]["attention"]["randomization_verdict"]
    assert len(card["per_head"]["layer0"]) == 4
