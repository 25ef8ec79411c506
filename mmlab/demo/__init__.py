"""``mmlab demo``: a one-screen Gradio demo for stakeholders, with an API (``/predict``).

Gradio is imported only when ``build_demo`` or ``launch`` is called, so nothing else in
mmlab depends on it. Start it with ``mmlab demo --port 7860``.
"""
from __future__ import annotations

import os


def build_demo(checkpoints_root: str | os.PathLike | None = None):
    """The demo as a ``gr.Blocks`` (not yet serving); see ``mmlab.demo.app.build_demo``."""
    from mmlab.demo.app import build_demo as _build

    return _build(checkpoints_root)


def launch(port: int = 7860, checkpoints_root: str | os.PathLike | None = None, **options):
    """Serve the demo on localhost:``port``; blocks until interrupted unless ``block=False``
    (then returns the running ``gr.Blocks``). See ``mmlab.demo.app.launch``."""
    from mmlab.demo.app import launch as _launch

    return _launch(port, checkpoints_root, **options)


__all__ = ["build_demo", "launch"]
