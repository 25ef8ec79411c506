"""Warm a fresh app server in the background, so nobody's first click pays for it.

``start()`` runs in a daemon thread, at the lowest CPU priority it can get: ``mmlab app`` calls it as its
server starts, before anyone visits; ``app.py`` calls it with the first visit otherwise (``streamlit run``).
It imports torch and the model code, loads the checkpoints the pages open on (the flagship, the grounded twin,
the photo model) with their stored results and test splits and runs each once (the photo model's answer
located too), then the rest of the flagship's group (Compare opens on it) with their stored results, and last,
compiles UMAP's numba code (minutes on a machine's first start; later starts load most of it from numba's
on-disk cache, ``mmlab.project``, and compile ~20 s of it again; the pages open on precomputed layouts, so only
a user's own UMAP request could ever wait for it).

Pages come first: ``app.py`` wraps each script run in ``busy()``, and each step starts only when no run is
active (sharing the interpreter lock with a step, importing torch, a split, a model, made a page's wait up to
twice as long). The compile holds the lock while it runs, so each of its two steps also waits until no run
has ended for ``QUIET`` seconds.

After each step the objects loaded so far (modules, models, results: hundreds of thousands) are moved out of
the garbage collector's view (``gc.freeze``): they live as long as the server, and a full collection that walks
them all takes 0.15-0.5 s with the interpreter lock held, a stall in whatever page runs meanwhile. Nothing here
imports Streamlit.
"""
from __future__ import annotations

import contextlib
import gc
import os
import threading
import time

import numpy as np

DEFAULTS = ("shapes-mask-cross_attention", "shapes-mask-grounded_cross_attention", "photo-imagenet_bridge")

QUIET = 5.0  # seconds without a script run before the UMAP compile may start

_started = threading.Event()
done: dict[str, float] = {}  # step -> seconds, for the curious (and the journey benchmark)
_activity = threading.Condition()
_active = 0
_last_end = 0.0


@contextlib.contextmanager
def busy():
    """Mark a script run (``app.py`` wraps every run in it): idle-time work waits until runs have stopped."""
    global _active, _last_end
    with _activity:
        _active += 1
    try:
        yield
    finally:
        with _activity:
            _active -= 1
            _last_end = time.monotonic()
            _activity.notify_all()


def wait_until_idle(quiet: float = QUIET) -> None:
    """Return once no script run is active and the last one ended ``quiet`` seconds ago."""
    with _activity:
        while True:
            wait = quiet - (time.monotonic() - _last_end)
            if _active == 0 and wait <= 0:
                return
            _activity.wait(timeout=max(wait, 0.05) if _active == 0 else None)


def _nice() -> None:
    try:
        os.nice(10)  # on Linux this lowers only this thread's priority
    except (AttributeError, OSError):
        pass


def _run(names: tuple[str, ...], umap: bool) -> None:
    _nice()
    wait_until_idle(quiet=0.0)  # each step after the page running now, if any
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import mmlab
    from mmlab import artifacts, zoo
    from mmlab.errors import InputError
    from mmlab.evaluate import shared_split
    from mmlab.photo import is_photo_model, located
    from mmlab.ui_state import zoo_groups

    done["imports"] = time.perf_counter() - t0
    gc.freeze()
    entries = {e["name"]: e for e in zoo.list_checkpoints()}
    for e in (entries[n] for n in names if n in entries):  # in the order asked: the first page's model first
        wait_until_idle(quiet=0.0)
        t = time.perf_counter()
        try:
            model = mmlab.load(e["dir"])
            artifacts.load(e["dir"])
            if (model.meta or {}).get("experiment"):  # the sample pickers' split (the photo model has none)
                shared_split(model, "test")
            # one pass on a grey picture loads what the model loads lazily (the photo model's pretrained
            # backbones, about 2 s) and warms torch's kernels
            pred = model.predict(np.full((64, 64, 3), 128, np.uint8), "the cat")
            if is_photo_model(model):  # its answer's box: scipy.ndimage's import, 0.2-0.45 s of a first photo
                located(pred, model.image_encoder.grid)
        except InputError:
            continue
        done[e["name"]] = time.perf_counter() - t
        gc.freeze()
    # the rest of the first model's group (the Compare page opens on it): loaded with their stored results
    group = next((g for g in zoo_groups(list(entries.values())).values()
                  if names and any(e["name"] == names[0] for e in g)), [])
    t = time.perf_counter()
    for e in group:
        if e["name"] not in names:
            wait_until_idle(quiet=0.0)
            try:
                mmlab.load(e["dir"])
                artifacts.load(e["dir"])
            except InputError:
                continue
    done["group"] = time.perf_counter() - t
    gc.freeze()
    if umap:
        from mmlab.project import warm_umap

        for approximate in (False, True):  # exact neighbours (< 4,096 points), then NN-descent
            wait_until_idle()
            done["umap" + ("_approximate" if approximate else "")] = warm_umap(approximate=approximate)


def start(names: tuple[str, ...] = DEFAULTS, *, umap: bool = True) -> bool:
    """Start warming (once per process); False when it had started already. ``MMLAB_NO_WARM=1`` turns it off."""
    if _started.is_set() or os.environ.get("MMLAB_NO_WARM"):
        return False
    _started.set()
    threading.Thread(target=_run, args=(names, umap), name="mmlab-warm", daemon=True).start()
    return True
