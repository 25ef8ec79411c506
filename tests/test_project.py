"""Projections: shapes, determinism, refusal of bad input, clusters kept apart, the cache,
placing new points, and the model-facing helpers (embed_split, joint_layout)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mmlab import project as P
from mmlab.errors import InputError


def two_clusters(n: int = 60, dim: int = 16, gap: float = 10.0, seed: int = 0):
    """Two Gaussian clusters (unit spread) whose centres are ``gap`` apart: X (2n, dim), y (2n,)."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0.0, 1.0, (n, dim)), rng.normal(gap / np.sqrt(dim), 1.0, (n, dim))])
    return X.astype(np.float32), np.repeat([0, 1], n)


def knn_agreement(Y: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Share of points whose k nearest neighbours in the map all carry their own label."""
    d = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, 1)[:, :k]
    return float((y[nn] == y[:, None]).all(1).mean())


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLAB_CACHE", str(tmp_path))
    P.clear_memory_cache()
    yield tmp_path
    P.clear_memory_cache()


def test_pca_shape_dtype_and_determinism():
    X, _ = two_clusters()
    Y = P.project(X, "pca", seed=3)
    assert Y.shape == (len(X), 2) and Y.dtype == np.float32
    np.testing.assert_array_equal(Y, P.project(X, "pca", seed=3))


def test_pca_of_one_dimensional_data_lies_on_the_x_axis():
    X = np.arange(10, dtype=np.float64)[:, None]
    Y = P.project(X, "pca")
    assert Y.shape == (10, 2)
    assert np.all(Y[:, 1] == 0)
    assert np.allclose(np.abs(np.diff(Y[:, 0])), 1.0, atol=1e-5)


def test_pca_keeps_two_separated_clusters_apart():
    X, y = two_clusters(gap=12.0)
    Y = P.project(X, "pca")
    a, b = Y[y == 0], Y[y == 1]
    between = np.linalg.norm(a.mean(0) - b.mean(0))
    within = max(np.linalg.norm(a - a.mean(0), axis=1).max(), np.linalg.norm(b - b.mean(0), axis=1).max())
    assert between > 2 * within


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 3)), "at least 5 points"),
    (np.zeros(10), "2-D"),
    (np.full((10, 3), np.nan), "NaN"),
])
def test_bad_input_raises_input_error(bad, message):
    with pytest.raises(InputError, match=message):
        P.project(bad, "pca")


def test_unknown_method_raises_input_error():
    X, _ = two_clusters()
    with pytest.raises(InputError, match="unknown projection"):
        P.project(X, "isomap")
    with pytest.raises(InputError, match="unknown projection"):
        P.project_cached(X, "mds")


def test_bad_option_raises_input_error():
    X, _ = two_clusters()
    with pytest.raises(InputError, match="bad options for pca"):
        P.project(X, "pca", not_an_option=1)


def test_tsne_runs_is_deterministic_and_keeps_neighbourhoods():
    X, y = two_clusters(n=100, dim=64)  # D > 50: PCA to 50 first
    Y = P.project(X, "tsne", seed=1)  # the app's schedule (500 iterations; scikit-learn 1.9 needs more than 250)
    assert Y.shape == (200, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    np.testing.assert_array_equal(Y, P.project(X, "tsne", seed=1))
    assert knn_agreement(Y, y) > 0.95


def test_tsne_on_few_points_adapts_its_perplexity():
    X, _ = two_clusters(n=4)  # 8 points: far below the default perplexity of 30
    assert P.project(X, "tsne", max_iter=250).shape == (8, 2)


def test_cache_hit_returns_identical_arrays_from_memory_and_disk(cache_dir):
    X, _ = two_clusters()
    first = P.project_cached(X, "pca", 0)
    files = list((cache_dir / "projections").glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(np.load(files[0], allow_pickle=False), first)
    np.testing.assert_array_equal(P.project_cached(X, "pca", 0), first)  # memory
    P.clear_memory_cache()
    np.testing.assert_array_equal(P.project_cached(X, "pca", 0), first)  # disk
    # the key covers the data, the method, the seed and the options
    keys = {P.cache_key(X, "pca", 0), P.cache_key(X, "pca", 1), P.cache_key(X, "tsne", 0),
            P.cache_key(X, "tsne", 0, perplexity=5), P.cache_key(X + 1, "pca", 0)}
    assert len(keys) == 5


def test_cached_array_can_be_modified_without_touching_the_cache():
    X, _ = two_clusters()
    a = P.project_cached(X, "pca")
    a[:] = 0
    assert np.abs(P.project_cached(X, "pca")).sum() > 0


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_place_new_puts_a_copy_of_a_reference_point_on_it(method):
    X, _ = two_clusters(n=50, dim=8)
    opts = {"max_iter": 250} if method == "tsne" else {}
    coords = P.project_cached(X, method, 0, **opts)
    placed = P.place_new(X, coords, X[[3, 70]], method)
    assert placed.shape == (2, 2)
    np.testing.assert_allclose(placed, coords[[3, 70]], atol=1e-3)
    # one vector (D,) is accepted too
    np.testing.assert_allclose(P.place_new(X, coords, X[5], method)[0], coords[5], atol=1e-3)


def test_place_new_pca_refits_when_the_map_is_not_in_memory():
    X, y = two_clusters(n=50, dim=8)
    coords = P.project(X, "pca")  # not cached: place_new refits PCA
    new = np.stack([X[y == 0].mean(0), X[y == 1].mean(0)])
    placed = P.place_new(X, coords, new, "pca")
    np.testing.assert_allclose(placed, [coords[y == 0].mean(0), coords[y == 1].mean(0)], atol=1e-3)


def test_knn_place_lands_between_neighbours():
    ref = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    placed = P.knn_place(ref, coords, np.array([[1.0, 0.0]]), k=2)  # equidistant to the first two
    np.testing.assert_allclose(placed, [[0.5, 0.0]], atol=1e-6)


def test_place_new_refuses_mismatched_shapes():
    X, _ = two_clusters()
    coords = P.project(X, "pca")
    with pytest.raises(InputError, match="new points"):
        P.place_new(X, coords, np.zeros((1, X.shape[1] + 1)), "pca")
    with pytest.raises(InputError, match="coords_ref"):
        P.place_new(X, coords[:-1], X[:1], "pca")


def test_numba_keeps_its_code_under_the_mmlab_cache(monkeypatch, cache_dir):
    import os

    monkeypatch.setenv("NUMBA_CACHE_DIR", "unset below")  # so that monkeypatch restores the variable after
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert P.numba_cache_dir() == str(cache_dir / "numba") == os.environ["NUMBA_CACHE_DIR"]
    assert (cache_dir / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache_dir / "elsewhere"))
    assert P.numba_cache_dir() == str(cache_dir / "elsewhere")  # a user's own choice stands


@pytest.mark.slow
def test_umap_warms_runs_is_deterministic_and_transforms(monkeypatch, cache_dir, umap_compiled):
    """The one UMAP test. Its numba code comes from the on-disk cache another process filled (conftest compiles it
    beside the suite): umap's own functions, which umap compiles without that cache, are loaded, not compiled."""
    fresh = "umap" not in sys.modules  # else umap keeps the cache folder it was given when an earlier test imported it
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(umap_compiled or cache_dir / "numba"))
    if "numba" in sys.modules:  # numba reads the variable when imported, or when asked to read it again
        import numba.core.config

        numba.core.config.reload_config()
    assert P.warm_umap(approximate=False) > 0
    from umap.umap_ import smooth_knn_dist

    stats = smooth_knn_dist.stats
    assert stats.cache_path is not None and any(Path(stats.cache_path).glob("umap_.smooth_knn_dist-*.nbi"))
    if umap_compiled is not None and fresh:
        assert sum(stats.cache_hits.values()) > 0 and not sum(stats.cache_misses.values())
    X, y = two_clusters(n=100, dim=64)
    Y = P.project_cached(X, "umap", 0, n_epochs=50)
    assert Y.shape == (200, 2) and Y.dtype == np.float32 and np.isfinite(Y).all()
    np.testing.assert_array_equal(Y, P.project(X, "umap", seed=0, n_epochs=50))
    assert knn_agreement(Y, y) > 0.95
    # a new point from cluster 1 goes to cluster 1's region through the fitted reducer
    placed = P.place_new(X, Y, X[y == 1][:3] + 0.01, "umap")
    c0, c1 = Y[y == 0].mean(0), Y[y == 1].mean(0)
    assert all(np.linalg.norm(p - c1) < np.linalg.norm(p - c0) for p in placed)


# ---- with a model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model_and_data():
    import torch

    from mmlab.config import ModelConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    torch.manual_seed(0)
    data = load_dataset("shapes", "test", n=60)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, dim=32),
                  classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    return model.eval(), data


def test_embed_split_samples_deterministically(small_model_and_data):
    model, data = small_model_and_data
    e = P.embed_split(model, data, max_points=40, seed=2)
    assert e["count"] == 40 and e["total"] == 60
    assert all(e[m].shape == (40, 32) for m in ("image", "text", "fused"))
    assert len(set(e["index"].tolist())) == 40 and np.all(np.diff(e["index"]) > 0)
    np.testing.assert_array_equal(e["label"], data.targets["label"][e["index"]])
    np.testing.assert_array_equal(e["correct"], e["pred"] == e["label"])
    assert e["texts"] == [data.texts[i] for i in e["index"]]
    np.testing.assert_array_equal(P.embed_split(model, data, max_points=40, seed=2)["index"], e["index"])
    assert P.embed_split(model, data, max_points=100)["count"] == 60  # fewer points than the cap: all
    with pytest.raises(InputError):
        P.embed_split(model, data, max_points=0)


@pytest.mark.parametrize("fused", ["separate", "stacked"])
def test_joint_layout_and_placing_a_pair(small_model_and_data, fused):
    model, data = small_model_and_data
    e = P.embed_split(model, data, max_points=30)
    L = P.joint_layout(e, "pca", fused=fused)
    n = 30
    assert L["points"].shape == (3 * n, 2) and np.isfinite(L["points"]).all()
    assert [int((L["modality"] == m).sum()) for m in ("image", "text", "fused")] == [n, n, n]
    np.testing.assert_array_equal(L["pair"], np.tile(np.arange(n), 3))
    np.testing.assert_array_equal(L["index"][:n], e["index"])
    assert len(L["texts"]) == 3 * n
    if fused == "separate":  # the fused panel sits right of the image/text map
        uni = L["points"][L["modality"] != "fused"]
        assert L["points"][L["modality"] == "fused"][:, 0].min() > uni[:, 0].max()
    # the embeddings of pair 4, placed again, land on pair 4's three points
    placed = P.place_in_layout(L, {m: e[m][4] for m in ("image", "text", "fused")})
    assert placed["points"].shape == (3, 2)
    expected = L["points"][L["pair"] == 4]
    np.testing.assert_allclose(placed["points"], expected, atol=1e-3 * max(1.0, np.abs(expected).max()))
    # a user's new pair from Model.predict
    pred = model.predict(data.images[0].transpose(1, 2, 0), "the red circle")
    new = P.place_in_layout(L, pred.embeddings)
    assert new["points"].shape == (3, 2) and np.isfinite(new["points"]).all()
    assert list(new["modality"]) == ["image", "text", "fused"]


def test_joint_layout_refuses_bad_input(small_model_and_data):
    model, data = small_model_and_data
    e = P.embed_split(model, data, max_points=10)
    with pytest.raises(InputError):
        P.joint_layout(e, "pca", fused="sideways")
    with pytest.raises(InputError):
        P.joint_layout({"image": e["image"]}, "pca")
