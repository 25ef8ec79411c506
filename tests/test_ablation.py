"""The modality-drop ablation: every condition, curves that agree with the table, a decider
that is finite, and a behavioural check on a model whose image carries no information."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from mmlab.ablation import ablate, to_json
from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.errors import InputError
from mmlab.model import Model, build_model
from mmlab.train import fit

CONDITIONS = ["both", "image only", "text only", "image noise σ=0.5", "image noise σ=1",
              "text noise σ=0.5", "text noise σ=1"]


def train_small(data, *, mask: bool, drop_image: float = 0.0, epochs: int = 2) -> Model:
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, mask=mask, dim=32),
                  classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    fit(model, data, TrainConfig(epochs=epochs, batch_size=32, warmup_steps=10, drop_image=drop_image, threads=1),
        progress=False)
    return model


@pytest.fixture(scope="module")
def test_data():
    return load_dataset("shapes", "test", n=200)


@pytest.fixture(scope="module")
def trained():
    """cross-attention, dim 32, label + mask heads, 2 epochs on 400 shapes pairs."""
    return train_small(load_dataset("shapes", "train", n=400), mask=True)


@pytest.fixture(scope="module")
def result(trained, test_data):
    return ablate(trained, test_data)


@pytest.fixture(scope="module")
def classified(test_data):
    """The decider of a classifier (label head only): probability changes of the predicted class."""
    return ablate(train_small(load_dataset("shapes", "train", n=400), mask=False), test_data)


def test_every_condition_with_both_metrics(result, trained, test_data):
    assert [row["condition"] for row in result["table"]] == CONDITIONS
    assert result["metric"] == "iou" and result["metrics"] == ["iou", "accuracy"]  # a mask model: judged by masks
    for row in result["table"]:
        assert row["n"] == len(test_data)
    # the drop conditions are exactly the model's own test metrics with that modality dropped
    from mmlab.evaluate import evaluate

    table = {row["condition"]: row for row in result["table"]}
    for condition, drop in (("both", "none"), ("image only", "text"), ("text only", "image")):
        expected = evaluate(trained, test_data, drop=drop)
        assert table[condition]["iou"] == pytest.approx(expected["iou"], abs=1e-6)
        assert table[condition]["accuracy"] == expected["accuracy"]
    assert result["seconds"] > 0 and result["encode_seconds"] <= result["seconds"]
    assert result["decider"]["prob"] is None  # its decider compares masks, not the class head
    json.dumps(to_json(result))  # the CLI's --json


def test_curves_start_at_both_and_end_at_the_other_modality_alone(result):
    table = {row["condition"]: row for row in result["table"]}
    for m, alone in (("image", "text only"), ("text", "image only")):
        curve = result["curves"][m]
        assert [r for r, _ in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert curve[0][1] == table["both"]["iou"]
        assert curve[-1][1] == table[alone]["iou"]
    accs = [row["accuracy"] for row in result["curve_table"] if row["modality"] == "text"]
    assert accs[0] == table["both"]["accuracy"] and len(accs) == 5


def test_curves_assembled_per_sample_equal_running_the_model_with_the_drop_mask(trained, test_data):
    rates = (0.0, 0.3, 0.6)
    data = test_data.subset(np.arange(100))
    fast = ablate(trained, data, noise_levels=(), missing_rates=rates, seed=4)
    slow = ablate(trained, data, noise_levels=(), missing_rates=rates, seed=4, compose_curves=False)
    for m in ("image", "text"):
        for (r1, v1), (r2, v2) in zip(fast["curves"][m], slow["curves"][m]):
            assert r1 == r2 and abs(v1 - v2) <= 0.01
    assert [row["condition"] for row in fast["table"]] == ["both", "image only", "text only"]


def test_noise_of_zero_changes_nothing_and_noise_is_seeded(trained, test_data):
    data = test_data.subset(np.arange(100))
    a = ablate(trained, data, noise_levels=(0.0, 2.0), missing_rates=(0.5,), seed=1)
    rows = {row["condition"]: row for row in a["table"]}
    for m in ("image", "text"):
        assert rows[f"{m} noise σ=0"]["accuracy"] == rows["both"]["accuracy"]
        assert rows[f"{m} noise σ=0"]["iou"] == pytest.approx(rows["both"]["iou"], abs=1e-6)
    b = ablate(trained, data, noise_levels=(0.0, 2.0), missing_rates=(0.5,), seed=1)
    assert [r["accuracy"] for r in a["table"]] == [r["accuracy"] for r in b["table"]]
    assert a["curves"] == b["curves"]


def test_decider_is_finite_and_consistent(classified, test_data):
    d = classified["decider"]
    n = len(test_data)
    for m in ("image", "text"):
        assert d["delta"][m].shape == (n,) and np.isfinite(d["delta"][m]).all()
        assert np.all(np.abs(d["delta"][m]) <= 1.0)
        assert d["flip"][m].shape == (n,)
    assert set(d["decided"]) <= {"image", "text", "both", "either"}
    assert sum(d["counts"].values()) == n
    # "either" means neither removal flips the prediction or moves its probability by the threshold
    either = d["decided"] == "either"
    change = d["thresholds"]["change"]
    for m in ("image", "text"):
        assert np.all(np.abs(d["delta"][m][either]) < change) and not d["flip"][m][either].any()
    # a single decider is the modality whose removal moved the probability most
    img = d["decided"] == "image"
    assert np.all(np.abs(d["delta"]["image"][img]) >= np.abs(d["delta"]["text"][img]))
    # the predicted class's probability is the largest of 4, so at least 1/4
    assert np.all((d["prob"] >= 0.25 - 1e-6) & (d["prob"] <= 1 + 1e-6))
    np.testing.assert_array_equal(d["label"], test_data.targets["label"])


def test_a_model_whose_image_is_blank_is_decided_by_its_text(test_data):
    """Every image blank: with the text dropped all inputs are identical, so the "image only"
    accuracy cannot beat the largest class share; the text names the shape, so removing it
    must move the predictions more than removing the (uninformative) image."""
    train = load_dataset("shapes", "train", n=400).subset(np.arange(400))
    train.images[:] = 0
    test = test_data.subset(np.arange(len(test_data)))
    test.images[:] = 0
    model = train_small(train, mask=False, drop_image=0.5, epochs=3)
    r = ablate(model, test, noise_levels=(), missing_rates=(0.0, 1.0))
    rows = {row["condition"]: row for row in r["table"]}
    majority = np.bincount(test.targets["label"]).max() / len(test)
    assert rows["image only"]["accuracy"] <= majority + 1e-9
    assert rows["text only"]["accuracy"] >= rows["image only"]["accuracy"] + 0.2
    d = r["decider"]
    assert np.abs(d["delta"]["text"]).mean() > np.abs(d["delta"]["image"]).mean()
    assert d["counts"]["text"] > d["counts"]["image"]


def test_mask_only_model_uses_iou(test_data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="cross_attention", targets={}, mask=True, dim=32), classes={},
                  tokenizer=WordTokenizer.fit(test_data.texts).to_json())
    small = test_data.subset(np.arange(40))
    r = ablate(model, small, noise_levels=(1.0,), missing_rates=(0.0, 0.5))
    assert r["metric"] == "iou" and r["metrics"] == ["iou"]
    assert "accuracy" not in r["table"][0]
    assert r["curves"]["image"][0][1] == r["table"][0]["iou"]
    for m in ("image", "text"):
        delta = r["decider"]["delta"][m]
        assert np.isfinite(delta).all() and np.all((delta >= 0) & (delta <= 1))


def test_bad_input_raises_input_error(trained, test_data):
    with pytest.raises(InputError, match="missing rates"):
        ablate(trained, test_data, missing_rates=(0.0, 1.5))
    with pytest.raises(InputError, match="noise"):
        ablate(trained, test_data, noise_levels=(-1.0,))
    with pytest.raises(InputError, match="empty"):
        ablate(trained, test_data.subset(np.arange(0)))


def test_ablation_leaves_the_model_in_its_training_mode(trained, test_data):
    trained.train()
    ablate(trained, test_data.subset(np.arange(20)), noise_levels=(), missing_rates=(0.0,))
    assert trained.training
    trained.eval()


def test_summarize_re_reads_the_record_for_the_first_n_pairs(result, trained, test_data):
    """The per-sample record the zoo ships: the drop conditions, curves and decider counts for the first n pairs
    are exactly what an ablation of those n pairs gives."""
    from mmlab.ablation import summarize

    first = summarize(result["samples"], 80)
    live = ablate(trained, test_data.subset(range(80)))
    for a, b in zip(first["table"][:3], live["table"][:3]):
        assert a["iou"] == pytest.approx(b["iou"], abs=1e-6) and a["accuracy"] == b["accuracy"]
    assert first["curves"] == live["curves"]
    assert first["decider"]["counts"] == live["decider"]["counts"]


def test_noise_does_not_depend_on_the_batch_size(trained, test_data):
    """Each sample's noise comes from its own generator and the scale from the whole split, so the noisy
    conditions of a sample are the same whichever batch it is scored in."""
    data = test_data.subset(np.arange(60))
    a = ablate(trained, data, noise_levels=(1.0, 3.0), missing_rates=(0.0,), seed=2, batch_size=7)
    b = ablate(trained, data, noise_levels=(1.0, 3.0), missing_rates=(0.0,), seed=2, batch_size=64)
    for name in ("image noise σ=1", "image noise σ=3", "text noise σ=3"):
        ca, cb = a["samples"]["conditions"][name], b["samples"]["conditions"][name]
        # a noise drawn per batch moves IoUs by ~0.1; what is left is kernels summing in another order for
        # another batch shape, which flips a pixel now and then (up to 0.002 of an IoU on an AVX2 CPU)
        np.testing.assert_allclose(ca["iou"], cb["iou"], atol=0.01)
        assert np.abs(np.asarray(ca["iou"]) - np.asarray(cb["iou"])).mean() < 1e-3
        assert (ca["pred"]["label"] == cb["pred"]["label"]).mean() >= 0.98
    both = {row["condition"]: row for row in a["table"]}
    assert both["image noise σ=3"]["iou"] < both["both"]["iou"]  # loud noise on the image costs the mask


def test_fast_ablation_is_a_bfloat16_copy_that_moves_no_metric_far(trained, test_data):
    from mmlab.evaluate import bf16_supported, fast_model

    data = test_data.subset(np.arange(100))
    exact = {row["condition"]: row for row in ablate(trained, data)["table"]}
    fast = {row["condition"]: row for row in ablate(trained, data, fast=True)["table"]}
    for name, row in fast.items():
        assert row["iou"] == pytest.approx(exact[name]["iou"], abs=0.01)
        assert row["accuracy"] == pytest.approx(exact[name]["accuracy"], abs=0.03)
    copy = fast_model(trained)
    assert copy.float_dtype == (torch.bfloat16 if bf16_supported() else torch.float32)
    assert trained.float_dtype == torch.float32  # the model itself is untouched


def test_conditions_side_by_side_equal_one_after_another(trained, test_data, monkeypatch):
    """The runs share the model across worker threads (one intra-op thread each): the same numbers as in turn,
    and the caller's thread count is left as it was, also for threads started later (each of Streamlit's page
    runs is one: left at the workers' 1, every later page ran on one core)."""
    import mmlab.threads as workers

    data = test_data.subset(np.arange(80))
    before = torch.get_num_threads()  # the fixture's training may have set 1
    torch.set_num_threads(2)  # a 2-core machine's default
    try:
        side = ablate(trained, data, missing_rates=(0.0, 0.5), seed=3)
        later = []
        worker = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        worker.start()
        worker.join()
        assert torch.get_num_threads() == 2 and later == [2]
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr(workers, "threads_are_per_thread", lambda: False)
    turn = ablate(trained, data, missing_rates=(0.0, 0.5), seed=3)
    for a, b in zip(side["table"], turn["table"]):
        assert a["condition"] == b["condition"]
        assert a["iou"] == pytest.approx(b["iou"], abs=1e-4) and a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
