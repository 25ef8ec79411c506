"""Datasets a user uploads in the app (a zip of a folder with metadata.csv / metadata.jsonl).

An upload is validated by ``mmlab.data.archive.load_zip`` and kept under ``data_root()`` (outside the
repository), so it can be trained on and compared like a built-in dataset: it is the ``folder``
dataset with ``path=`` that folder (``options``). Nothing here imports Streamlit.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from mmlab.errors import InputError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_DATASETS = 50


def data_root() -> Path:
    """``$MMLAB_USER_DATA``, else ``$XDG_DATA_HOME/mmlab/data`` (``~/.local/share/mmlab/data``)."""
    env = os.environ.get("MMLAB_USER_DATA")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "mmlab" / "data"


def options(name: str) -> dict:
    """The ``folder`` dataset options of the uploaded dataset ``name`` (``InputError`` if there is none)."""
    if not NAME_RE.match(str(name)) or not (data_root() / name).is_dir():
        raise InputError(f"no uploaded dataset named {name!r}")
    return {"path": str(data_root() / name)}


def names() -> list[str]:
    """The uploaded datasets, oldest first."""
    root = data_root()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name) and not p.name.startswith(".")]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]


def save_zip(data: bytes, name: str):
    """Validate a zipped folder dataset and keep it as ``name`` (or ``name-2``, ... when taken).
    Returns (the name it was saved under, the whole dataset as one ``MMDataset``)."""
    from mmlab.data.archive import load_zip

    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")[:48] or "my-data"
    if not base[0].isalnum():
        base = "data-" + base
    root = data_root()
    root.mkdir(parents=True, exist_ok=True)
    if len(names()) >= MAX_DATASETS:
        raise InputError(f"{MAX_DATASETS} uploaded datasets are kept already; remove one first")
    tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        dataset = load_zip(data, tmp / "data", split="all")
        source = _dataset_folder(tmp / "data")
        final, k = base, 1
        while (root / final).exists():
            k += 1
            final = f"{base}-{k}"
        source.rename(root / final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, dataset


def _dataset_folder(unpacked: Path) -> Path:
    from mmlab.data.archive import _dataset_root

    return _dataset_root(unpacked)


def remove(name: str) -> None:
    shutil.rmtree(Path(options(name)["path"]), ignore_errors=True)
