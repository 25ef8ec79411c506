"""Refreshing one part of a checkpoint's stored results (after a change to how it is measured) keeps the rest."""
from __future__ import annotations

import shutil

import numpy as np

from mmlab import artifacts


def test_refreshing_the_ablation_keeps_the_other_artifacts(tiny_zoo, tmp_path):
    folder = tmp_path / "tiny-cross"
    shutil.copytree(tiny_zoo / "tiny-cross", folder)
    before = artifacts.load(folder)
    record = artifacts.refresh_ablation(folder)
    after = artifacts.load(folder)
    assert record is not None and after is not None and after.meta["weights"] == before.meta["weights"]
    assert after.ablation_pairs == before.ablation_pairs
    # the drop conditions do not depend on the noise: the same per-sample results as before
    for n in (50, before.ablation_pairs):
        old, new = before.scores(n), after.scores(n)
        assert new["n"] == old["n"] and new["iou"] == old["iou"]
    # everything else is the stored tensors as they were
    ablation = ("abl.", "dec.")
    kept = {k for k in before._t if not k.startswith(ablation)}
    assert {k for k in after._t if not k.startswith(ablation)} == kept and "emb.fused" in kept
    for key in kept:
        np.testing.assert_array_equal(after._a(key), before._a(key))
    assert {k for k in after._t if k.startswith(ablation)} == {k for k in before._t if k.startswith(ablation)}


def test_refreshing_the_domain_keeps_the_other_artifacts(tiny_zoo, tmp_path):
    folder = tmp_path / "tiny-cross"
    shutil.copytree(tiny_zoo / "tiny-cross", folder)
    before = artifacts.load(folder)
    record = artifacts.refresh_domain(folder)
    after = artifacts.load(folder)
    assert record == after.meta["domain"] and 0.0 <= record["test_flagged"] <= 1.0
    assert len(after._a("dom.test_scores")) == record["n"]
    assert set(after._t) == set(before._t)
    for key in (k for k in before._t if not k.startswith("dom.")):
        np.testing.assert_array_equal(after._a(key), before._a(key))
