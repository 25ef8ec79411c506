"""t-SNE / UMAP / PCA of unimodal and fused embeddings, for the Latent space page.

``project(X, method)`` maps (N, D) vectors to (N, 2), deterministic by ``seed``;
``project_cached`` adds a memory + disk cache (``~/.cache/mmlab/projections``, or
``$MMLAB_CACHE/projections``); ``embed_split`` runs a model over a sample of a split;
``joint_layout`` puts image, text and fused embeddings into one map; ``place_new`` and
``place_in_layout`` put a user's new pair into an existing map.

Speed measured on a 2-core CPU (docs/BENCHMARKS.md): PCA is instant at 100k points; scikit-learn's
t-SNE (Barnes-Hut, PCA to 50 first, 500 iterations) takes ~4 s at 1k and ~40 s at 10k;
UMAP after PCA to 50 with 200 epochs ~3.5 s at 10k warm, but its first call on a machine spends 40-60 s
compiling with numba (kept in numba's on-disk cache for the next process): call ``warm_umap()`` in a
background thread at start.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmlab.errors import InputError

METHODS = ("pca", "tsne", "umap")
MIN_POINTS = 5
PCA_DIMS = 50  # t-SNE and UMAP first reduce to this many dimensions when D is larger
_CACHE_VERSION = "1"
_MEMORY_SIZE = 16


# ---- the projection itself ----------------------------------------------------------------
@dataclass(frozen=True)
class _Fitted:
    """A projection's coordinates (N, 2) float32 and, when the method has one, a function
    mapping new (K, D) vectors into the same map (PCA, UMAP); None for t-SNE."""

    coords: np.ndarray
    transform: Callable[[np.ndarray], np.ndarray] | None


def _check(X, method: str) -> np.ndarray:
    if method not in METHODS:
        raise InputError(f"unknown projection {method!r}; choose one of: {', '.join(METHODS)}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"projection needs a 2-D array (points, dims); got shape {X.shape}")
    if X.shape[0] < MIN_POINTS:
        raise InputError(f"projection needs at least {MIN_POINTS} points; got {X.shape[0]}")
    if X.shape[1] < 1:
        raise InputError("projection needs at least one dimension per point")
    if not np.issubdtype(X.dtype, np.number):
        raise InputError(f"projection needs numbers; got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise InputError("projection input holds NaN or infinite values")
    return X


def _pad2(Y: np.ndarray) -> np.ndarray:
    """(N, k) with k <= 2 -> (N, 2) float32, zero-padded (1-D data lies on the x axis)."""
    Y = np.asarray(Y, dtype=np.float32)
    if Y.shape[1] < 2:
        Y = np.concatenate([Y, np.zeros((len(Y), 2 - Y.shape[1]), np.float32)], axis=1)
    return np.ascontiguousarray(Y[:, :2])


def _pca(X: np.ndarray, k: int, seed: int):
    from sklearn.decomposition import PCA

    k = max(1, min(k, X.shape[0], X.shape[1]))
    return PCA(n_components=k, random_state=seed).fit(X)


def _reduce(X: np.ndarray, seed: int, dims: int):
    """PCA to ``dims`` when D is larger (t-SNE / UMAP pre-step): (reduced X, fitted PCA or None)."""
    if X.shape[1] <= dims:
        return X, None
    pca = _pca(X, dims, seed)
    return pca.transform(X).astype(np.float32), pca


def _estimator_error(method: str, e: Exception) -> InputError:
    return InputError(f"bad options for {method}: {e}")


def _fit_pca(X: np.ndarray, seed: int, options: dict) -> _Fitted:
    from sklearn.decomposition import PCA

    try:
        pca = PCA(n_components=min(2, *X.shape), random_state=seed, **options).fit(X)
    except TypeError as e:
        raise _estimator_error("pca", e) from None
    return _Fitted(_pad2(pca.transform(X)), lambda Z: _pad2(pca.transform(np.asarray(Z, np.float32))))


def _fit_tsne(X: np.ndarray, seed: int, options: dict) -> _Fitted:
    from sklearn.manifold import TSNE

    options = dict(options)
    dims = int(options.pop("pca_dims", PCA_DIMS))
    Xr, _ = _reduce(X, seed, dims)
    n = X.shape[0]
    # perplexity must stay below the number of points; 30 is scikit-learn's default
    kw = {"perplexity": float(min(30.0, max(1.0, (n - 1) / 3))), "max_iter": 500, "init": "pca",
          "learning_rate": "auto"}
    kw.update(options)
    try:
        tsne = TSNE(n_components=2, random_state=seed, **kw)
    except TypeError as e:
        raise _estimator_error("tsne", e) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Y = tsne.fit_transform(Xr)
    return _Fitted(_pad2(Y), None)  # t-SNE has no transform (like scikit-learn): see place_new


# umap's and pynndescent's modules of numba functions. Most of those functions are compiled without numba's
# on-disk cache (only pynndescent's distances ask for it), so every process compiled them again: on machine B
# (docs/BENCHMARKS.md) 23 s for a fit with exact neighbours and another ~2 min for NN-descent, each app start.
_NUMBA_MODULES = ("umap.umap_", "umap.utils", "umap.layouts", "umap.distances", "umap.sparse", "umap.spectral",
                  "pynndescent.pynndescent_", "pynndescent.utils", "pynndescent.rp_trees", "pynndescent.distances",
                  "pynndescent.sparse", "pynndescent.sparse_nndescent", "pynndescent.graph_utils")
_NUMBA_CACHED = threading.Lock()
_numba_cached = False


def numba_cache_dir() -> str | None:
    """Where numba keeps compiled code: ``$NUMBA_CACHE_DIR``, else ``cache_root()/numba`` (set in the environment,
    so numba reads it when it is first imported). None when that folder cannot be made (numba then compiles in
    memory only)."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        path = cache_root() / "numba"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        os.environ["NUMBA_CACHE_DIR"] = str(path)
    return os.environ["NUMBA_CACHE_DIR"]


def _cache_compiled_code() -> int:
    """Turn numba's on-disk cache on for every module-level numba function of umap and pynndescent that has it
    off; returns how many. A process after the first then loads their machine code instead of compiling it
    (warm_umap, exact neighbours: 23 s -> 0.15 s on machine B). Safe: the cache is keyed by the function's source
    file, its types and the CPU; a function numba cannot cache is compiled as before."""
    global _numba_cached
    import importlib

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    with _NUMBA_CACHED:
        if _numba_cached:
            return 0
        count = 0
        for name in _NUMBA_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:  # another version without this module
                continue
            for value in list(vars(module).values()):
                if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                    value.enable_caching()
                    count += 1
        _numba_cached = True
        return count


def _umap_module():
    """Import umap with numba's on-disk cache under the mmlab cache root (unless set already), and on for umap's
    and pynndescent's own functions (``_cache_compiled_code``)."""
    cached = numba_cache_dir() is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        if cached:
            _cache_compiled_code()
    return umap


def _fit_umap(X: np.ndarray, seed: int, options: dict) -> _Fitted:
    umap = _umap_module()
    options = dict(options)
    dims = int(options.pop("pca_dims", PCA_DIMS))
    Xr, pca = _reduce(X, seed, dims)
    n = X.shape[0]
    # 200 epochs: UMAP's own choice above 10k points, and ~3x faster than its 500 below that
    kw = {"n_neighbors": int(min(15, n - 1)), "min_dist": 0.1, "n_epochs": 200}
    kw.update(options)
    try:
        reducer = umap.UMAP(n_components=2, random_state=seed, **kw)
    except TypeError as e:
        raise _estimator_error("umap", e) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Y = reducer.fit_transform(Xr)

    def transform(Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, np.float32)
        Zr = pca.transform(Z).astype(np.float32) if pca is not None else Z
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _pad2(reducer.transform(Zr))

    return _Fitted(_pad2(Y), transform)


_FITTERS = {"pca": _fit_pca, "tsne": _fit_tsne, "umap": _fit_umap}


def _fit(X, method: str, seed: int, options: dict) -> _Fitted:
    X = _check(X, method)
    return _FITTERS[method](X, int(seed), options)


def project(X: np.ndarray, method: str = "pca", *, seed: int = 0, **options) -> np.ndarray:
    """Project X (N, D) to (N, 2) float32 with "pca" | "tsne" | "umap", deterministic by ``seed``.

    t-SNE (scikit-learn, Barnes-Hut, 500 iterations, perplexity min(30, (N-1)/3)) and UMAP
    (umap-learn, 15 neighbours, 200 epochs) first reduce to 50 dimensions with PCA when D > 50
    (option ``pca_dims``). Other ``options`` go to the estimator (``perplexity``, ``max_iter``,
    ``n_neighbors``, ``min_dist``, ``n_epochs``, ...). Raises ``InputError`` for an unknown
    method, fewer than 5 points, non-finite values or bad options.
    """
    return _fit(X, method, seed, options).coords.copy()


# ---- caching --------------------------------------------------------------------------------
def cache_root() -> Path:
    """``$MMLAB_CACHE`` or ``~/.cache/mmlab``."""
    env = os.environ.get("MMLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmlab"


def _data_hash(X: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(X.shape).encode())
    h.update(X.tobytes())
    return h.hexdigest()


def cache_key(X: np.ndarray, method: str, seed: int = 0, **options) -> str:
    """The cache key of a projection: a hash of X's float32 bytes and shape, method, seed and options."""
    X = _check(X, method)
    spec = json.dumps({"v": _CACHE_VERSION, "method": method, "seed": int(seed), "options": options},
                      sort_keys=True, default=repr)
    return hashlib.sha256((_data_hash(X) + spec).encode()).hexdigest()[:40]


_MEMORY: OrderedDict[str, tuple[str, str, _Fitted]] = OrderedDict()  # key -> (data hash, method, fitted)
_LOCK = threading.Lock()


def _remember(key: str, data_hash: str, method: str, fitted: _Fitted) -> None:
    with _LOCK:
        _MEMORY[key] = (data_hash, method, fitted)
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > _MEMORY_SIZE:
            _MEMORY.popitem(last=False)


def clear_memory_cache() -> None:
    """Forget every projection and fitted reducer held in memory (the disk cache stays)."""
    with _LOCK:
        _MEMORY.clear()


def _disk_path(key: str) -> Path:
    return cache_root() / "projections" / f"{key}.npy"


def project_cached(X: np.ndarray, method: str = "pca", seed: int = 0, **options) -> np.ndarray:
    """``project`` with a cache in memory (which also keeps the fitted PCA / UMAP for ``place_new``)
    and on disk as ``<key>.npy`` under ``cache_root()/projections`` (saved and loaded with
    ``allow_pickle=False``). A hit returns the same (N, 2) float32 values as the first call."""
    X = _check(X, method)
    key = cache_key(X, method, seed, **options)
    with _LOCK:
        hit = _MEMORY.get(key)
        if hit is not None:
            _MEMORY.move_to_end(key)
            return hit[2].coords.copy()
    data_hash = _data_hash(X)
    path = _disk_path(key)
    if path.is_file():
        try:
            coords = np.load(path, allow_pickle=False)
            if coords.shape == (X.shape[0], 2) and coords.dtype == np.float32:
                _remember(key, data_hash, method, _Fitted(coords, None))
                return coords.copy()
        except (OSError, ValueError):
            pass  # unreadable cache file: compute again and overwrite it
    fitted = _fit(X, method, seed, options)
    coords = np.ascontiguousarray(fitted.coords, dtype=np.float32)
    coords.setflags(write=False)
    fitted = _Fitted(coords, fitted.transform)
    _remember(key, data_hash, method, fitted)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
        np.save(tmp, coords, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the recomputation next time
    return coords.copy()


# ---- placing new points into an existing map -------------------------------------------------
def _fitted_for(emb_ref: np.ndarray, coords_ref: np.ndarray, method: str) -> _Fitted | None:
    data_hash = _data_hash(emb_ref)
    with _LOCK:
        entries = list(_MEMORY.values())
    for h, m, fitted in reversed(entries):
        if h == data_hash and m == method and fitted.transform is not None and fitted.coords.shape == coords_ref.shape \
                and np.allclose(fitted.coords, coords_ref, atol=1e-4):
            return fitted
    return None


def knn_place(emb_ref: np.ndarray, coords_ref: np.ndarray, new: np.ndarray, *, k: int = 10) -> np.ndarray:
    """Coordinates of ``new`` (K, D) as the inverse-distance weighted mean of the map coordinates
    of their k nearest reference vectors (Euclidean, in the embedding space): (K, 2) float32.
    A new vector equal to a reference vector lands exactly on that point."""
    emb_ref, new = np.asarray(emb_ref, np.float64), np.asarray(new, np.float64)
    coords_ref = np.asarray(coords_ref, np.float64)
    d2 = (new ** 2).sum(1)[:, None] - 2 * new @ emb_ref.T + (emb_ref ** 2).sum(1)[None, :]  # (K, N)
    d = np.sqrt(np.maximum(d2, 0.0))
    k = min(k, emb_ref.shape[0])
    nearest = np.argsort(d, axis=1)[:, :k]  # (K, k)
    dn = np.take_along_axis(d, nearest, axis=1)
    scale = max(float(np.median(d)), 1e-12)
    exact = dn <= 1e-6 * scale
    w = np.where(exact.any(1, keepdims=True), exact.astype(np.float64), 1.0 / np.maximum(dn, 1e-12))
    w = w / w.sum(1, keepdims=True)
    return (w[..., None] * coords_ref[nearest]).sum(1).astype(np.float32)  # (K, 2)


def place_new(emb_ref: np.ndarray, coords_ref: np.ndarray, new: np.ndarray, method: str, *, k: int = 10,
              seed: int = 0) -> np.ndarray:
    """Place new vectors (K, D) (or one (D,)) into a map ``coords_ref`` (N, 2) made from ``emb_ref`` (N, D).

    - PCA: the fitted linear transform (from the memory cache, or PCA refitted on ``emb_ref``
      with ``seed`` when that reproduces ``coords_ref``).
    - UMAP: the fitted reducer's ``.transform`` when ``project_cached`` made this map in this
      process (fitted reducers live in the memory cache only, never on disk).
    - t-SNE has no transform (like scikit-learn's), so new points go to the inverse-distance
      weighted mean of the coordinates of their ``k`` nearest reference vectors (``knn_place``);
      PCA and UMAP maps without a fitted transform fall back to the same.
    Returns (K, 2) float32.
    """
    if method not in METHODS:
        raise InputError(f"unknown projection {method!r}; choose one of: {', '.join(METHODS)}")
    emb_ref = _check(emb_ref, method)
    coords_ref = np.asarray(coords_ref, np.float32)
    if coords_ref.shape != (emb_ref.shape[0], 2):
        raise InputError(f"coords_ref must be ({emb_ref.shape[0]}, 2) to match emb_ref; got {coords_ref.shape}")
    new = np.asarray(new, np.float32)
    if new.ndim == 1:
        new = new[None]
    if new.ndim != 2 or new.shape[1] != emb_ref.shape[1]:
        raise InputError(f"new points must be (K, {emb_ref.shape[1]}); got {new.shape}")
    if not np.isfinite(new).all():
        raise InputError("new points hold NaN or infinite values")
    if len(new) == 0:
        return np.zeros((0, 2), np.float32)
    fitted = _fitted_for(emb_ref, coords_ref, method)
    if fitted is None and method == "pca":
        refit = _fit_pca(emb_ref, seed, {})
        if np.allclose(refit.coords, coords_ref, atol=1e-4 * max(1.0, float(np.abs(coords_ref).max()))):
            fitted = refit
    if fitted is not None:
        return np.asarray(fitted.transform(new), np.float32)
    return knn_place(emb_ref, coords_ref, new, k=k)


def warm_umap(*, approximate: bool = True) -> float:
    """Compile UMAP's numba code on a tiny array (fit and transform), so that a later real call
    is fast; returns the seconds spent. UMAP finds neighbours exactly below 4,096 points and with
    NN-descent above: ``approximate=True`` warms both paths (NN-descent roughly doubles the cost).
    Meant for a background thread at app start; sets ``NUMBA_CACHE_DIR`` to
    ``cache_root()/numba`` when unset (before umap is first imported)."""
    t0 = time.perf_counter()
    umap = _umap_module()
    X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for approx in (False, True)[:1 + bool(approximate)]:
            r = umap.UMAP(n_neighbors=5, n_epochs=5, random_state=0, force_approximation_algorithm=approx).fit(X)
            r.transform(X[:3])
    return time.perf_counter() - t0


# ---- model embeddings of a split, and one joint map ------------------------------------------
def embed_split(model, data, *, max_points: int = 2000, seed: int = 0, drop=None) -> dict[str, Any]:
    """Embeddings of a deterministic sample (by ``seed``) of at most ``max_points`` of ``data``.

    Returns {"image", "text", "fused": (n, D) float32, "index": (n,) indices into data,
    "label": (n,) true primary label (-1 where the data has none), "pred": (n,) predicted
    primary class (-1 for mask-only models), "correct": (n,) bool (for mask-only models:
    IoU >= 0.5), "iou": (n,) per-sample mask IoU or None, "texts": n sentences,
    "classes": primary class names or None, "count": n, "total": len(data)}.
    """
    from mmlab import metrics
    from mmlab.evaluate import predict_dataset

    total = len(data)
    if total == 0:
        raise InputError("the dataset is empty: nothing to embed")
    if max_points < 1:
        raise InputError(f"max_points must be at least 1; got {max_points}")
    if total > max_points:
        index = np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))
    else:
        index = np.arange(total)
    sub = data.subset(index)
    out = predict_dataset(model, sub, drop=drop)
    n = len(index)
    primary = model.primary
    label_key = primary if primary is not None else ("label" if "label" in data.targets else None)
    label = sub.targets[label_key].astype(np.int64) if label_key else np.full(n, -1, np.int64)
    iou = None
    if out["mask"] is not None:
        iou = metrics.mask_iou(out["mask"] >= 0.5, out["prepared"].masks.numpy()).astype(np.float32)
    if primary is not None:
        pred = out["probs"][primary].argmax(1).astype(np.int64)
        correct = pred == label
    else:
        pred = np.full(n, -1, np.int64)
        correct = iou >= 0.5 if iou is not None else np.zeros(n, bool)
    emb = out["embeddings"]
    return {
        "image": emb["image"].astype(np.float32), "text": emb["text"].astype(np.float32),
        "fused": emb["fused"].astype(np.float32), "index": index, "label": label, "pred": pred,
        "correct": np.asarray(correct, bool), "iou": iou, "texts": list(sub.texts),
        "classes": list(data.classes[label_key]) if label_key and label_key in data.classes else None,
        "count": n, "total": total,
    }


def joint_layout(emb: dict, method: str = "pca", *, seed: int = 0, fused: str = "separate",
                 coords: dict[str, np.ndarray] | None = None, **options) -> dict[str, Any]:
    """One 2-D map of the image, text and fused embeddings of ``embed_split``'s output.

    Image and text vectors are stacked into one (2n, D) matrix and projected together, so the
    modality gap shows as two clouds and each pair's two points can be joined by a line.
    ``fused="separate"`` (default) projects the fused vectors on their own (they live in the
    space the heads read, not the encoders' space, and would otherwise distort the unimodal
    map), rescales that map to the unimodal map's height and puts it to its right: distances
    inside each panel mean something, distances between panels do not. ``fused="stacked"``
    projects all 3n vectors together instead. Projections go through ``project_cached``.

    Returns {"points": (3n, 2) float32, "modality": (3n,) "image"|"text"|"fused", "pair": (3n,)
    position in the sample (0..n-1), "index": (3n,) dataset index, "label", "pred", "correct",
    "iou": (3n,) (None where ``emb`` lacks them), "texts": 3n captions, "method", "fused", "count", "total", "parts": what
    ``place_in_layout`` needs}. ``coords``: the projections already made, {group: (rows, 2)} with the
    groups of ``layout_groups`` (a zoo checkpoint ships them), so nothing is projected here.
    """
    if fused not in ("separate", "stacked"):
        raise InputError(f"fused must be 'separate' or 'stacked'; got {fused!r}")
    for m in ("image", "text", "fused"):
        if m not in emb:
            raise InputError(f"embeddings lack {m!r}; pass the output of embed_split")
    n = len(emb["image"])
    parts, points = {}, {}
    for name, mods in layout_groups(fused).items():
        X = np.concatenate([np.asarray(emb[m], np.float32) for m in mods])  # (len(mods) * n, D)
        xy = project_cached(X, method, seed, **options) if coords is None else np.asarray(coords[name], np.float32)
        if xy.shape != (len(X), 2):
            raise InputError(f"coordinates of {name} must be ({len(X)}, 2); got {xy.shape}")
        parts[name] = {"modalities": mods, "X": X, "coords": xy, "scale": 1.0, "shift": np.zeros(2, np.float32)}
    if fused == "separate":
        base, side = parts["image+text"]["coords"], parts["fused"]["coords"]
        height = float(np.ptp(base[:, 1])) or 1.0
        scale = height / (float(np.ptp(side[:, 1])) or 1.0)
        gap = 0.15 * (float(np.ptp(base[:, 0])) or 1.0)
        shift = np.array([base[:, 0].max() + gap - scale * side[:, 0].min(),
                          base[:, 1].min() - scale * side[:, 1].min()], np.float32)
        parts["fused"].update(scale=scale, shift=shift)
    for name, part in parts.items():
        placed = part["coords"] * part["scale"] + part["shift"]
        for j, m in enumerate(part["modalities"]):
            points[m] = placed[j * n:(j + 1) * n]
    order = ("image", "text", "fused")

    def rep(key):
        return np.concatenate([np.asarray(emb[key])] * 3)

    return {
        "points": np.concatenate([points[m] for m in order]).astype(np.float32),
        "modality": np.repeat(np.array(order), n),
        "pair": np.tile(np.arange(n), 3),
        "index": rep("index") if "index" in emb else np.tile(np.arange(n), 3),
        "label": rep("label") if "label" in emb else None,
        "pred": rep("pred") if "pred" in emb else None,
        "correct": rep("correct") if "correct" in emb else None,
        "iou": rep("iou") if emb.get("iou") is not None else None,
        "texts": list(emb.get("texts", [""] * n)) * 3,
        "method": method, "fused": fused, "seed": seed, "count": n, "total": emb.get("total", n),
        "parts": parts,
    }


def layout_groups(fused: str) -> dict[str, tuple[str, ...]]:
    """The groups of embeddings projected together: image and text in one map (the modality gap), the fused
    vectors on their own ("separate"), or all three together ("stacked")."""
    if fused == "stacked":
        return {"all": ("image", "text", "fused")}
    return {"image+text": ("image", "text"), "fused": ("fused",)}


def place_in_layout(layout: dict, new: dict[str, np.ndarray]) -> dict[str, Any]:
    """Place a user's pair(s) into a ``joint_layout`` map. ``new``: {"image", "text", "fused":
    (K, D) or (D,)} (e.g. ``Prediction.embeddings``). Returns {"points": (3K, 2), "modality": (3K,),
    "pair": (3K,)} in the order image, text, fused; see ``place_new`` for how each method places."""
    rows = {m: np.atleast_2d(np.asarray(v, np.float32)) for m, v in new.items()}
    missing = [m for m in ("image", "text", "fused") if m not in rows]
    if missing:
        raise InputError(f"new embeddings lack {', '.join(missing)}")
    if len({len(v) for v in rows.values()}) != 1:
        raise InputError("new image, text and fused embeddings must hold the same number of pairs")
    placed = {}
    for part in layout["parts"].values():
        mods = part["modalities"]
        Z = np.concatenate([rows[m] for m in mods])  # (len(mods) * K, D)
        xy = place_new(part["X"], part["coords"], Z, layout["method"], seed=layout.get("seed", 0))
        xy = xy * part["scale"] + part["shift"]
        K = len(rows[mods[0]])
        for j, m in enumerate(mods):
            placed[m] = xy[j * K:(j + 1) * K]
    order = ("image", "text", "fused")
    K = len(placed["image"])
    return {"points": np.concatenate([placed[m] for m in order]).astype(np.float32),
            "modality": np.repeat(np.array(order), K), "pair": np.tile(np.arange(K), 3)}
