"""Warm a fresh app server in the background, so nobody's first click pays for it.

``start()`` (called once per process by ``app.py``) runs in a daemon thread, at the lowest CPU priority
it can get: import torch and the model code, load the checkpoints the pages open on (the flagship, the
grounded twin, the photo model) with their stored results and run each once, and last, compile UMAP's numba code (its first
call in a process takes tens of seconds; the pages open on precomputed layouts, so only a user's own
UMAP request could ever wait for it, and by then it is compiled). Nothing here imports Streamlit.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

DEFAULTS = ("shapes-mask-cross_attention", "shapes-mask-grounded_cross_attention", "photo-imagenet_bridge")

_started = threading.Event()
done: dict[str, float] = {}  # step -> seconds, for the curious (and the journey benchmark)


def _nice() -> None:
    try:
        os.nice(10)  # on Linux this lowers only this thread's priority
    except (AttributeError, OSError):
        pass


def _run(names: tuple[str, ...], umap: bool) -> None:
    _nice()
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import mmlab
    from mmlab import artifacts, zoo
    from mmlab.errors import InputError

    done["imports"] = time.perf_counter() - t0
    for e in zoo.list_checkpoints():
        if e["name"] in names:
            t = time.perf_counter()
            try:
                model = mmlab.load(e["dir"])
                artifacts.load(e["dir"])
                # one pass on a grey picture loads what the model loads lazily (the photo model's pretrained
                # backbones, about 2 s) and warms torch's kernels
                model.predict(np.full((64, 64, 3), 128, np.uint8), "the cat")
            except InputError:
                continue
            done[e["name"]] = time.perf_counter() - t
    if umap:
        from mmlab.project import warm_umap

        done["umap"] = warm_umap()


def start(names: tuple[str, ...] = DEFAULTS, *, umap: bool = True) -> bool:
    """Start warming (once per process); False when it had started already. ``MMLAB_NO_WARM=1`` turns it off."""
    if _started.is_set() or os.environ.get("MMLAB_NO_WARM"):
        return False
    _started.set()
    threading.Thread(target=_run, args=(names, umap), name="mmlab-warm", daemon=True).start()
    return True
