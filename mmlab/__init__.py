"""mmlab: an interactive lab for multimodal (image + text) fusion.

    >>> import mmlab
    >>> model = mmlab.load("shapes-mask-cross_attention")       # a shipped checkpoint, by name
    >>> pred = model.predict("scene.png", "the small red triangle left of the blue circle")

Importing mmlab is light: torch and the rest load when a model does.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from mmlab.errors import InputError

if TYPE_CHECKING:
    from mmlab.model import Model

__version__ = "0.2.0"
__all__ = ["InputError", "load", "__version__"]

_lock = threading.Lock()
_models: OrderedDict = OrderedDict()  # (folder, mtime) -> Model, least recently used first
_MAX_MODELS = 32


def load(name_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None, fresh: bool = False) -> "Model":
    """The one loader: a shipped checkpoint by its zoo name (``mmlab zoo``) or any checkpoint folder, as a
    ready ``Model`` in eval mode. Raises ``InputError`` for anything that is not a valid checkpoint.

    Loaded models are cached per process (one per folder and modification time) and shared: they are
    safe to use from several threads (``predict`` holds the model's lock) but must not be changed;
    ``fresh=True`` loads a private copy. ``root``: the zoo folder names are looked up in.
    """
    from mmlab import zoo

    folder = zoo.resolve(name_or_path, root)
    if fresh or not folder.is_dir():
        from mmlab.checkpoint import load as load_checkpoint

        return load_checkpoint(folder)
    cfg = folder / "config.json"
    return _cached(str(folder.resolve()), cfg.stat().st_mtime_ns if cfg.exists() else 0)


def _cached(directory: str, mtime: int) -> "Model":
    from mmlab.checkpoint import load as load_checkpoint

    with _lock:
        key = (directory, mtime)
        if key not in _models:
            _models[key] = load_checkpoint(directory)
            while len(_models) > _MAX_MODELS:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return _models[key]
