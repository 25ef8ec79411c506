"""folder: a user's own data in the Hugging Face ImageFolder convention.

A folder holds images and one ``metadata.csv`` or ``metadata.jsonl`` with the columns
``file_name`` (relative to the folder), ``text``, ``label`` and optionally ``mask_file``
(a mask image the size of the picture; any non-zero pixel is foreground) and ``split``
(train / val / test). These are files from strangers, so every row is checked before anything
is used: a ``file_name`` that leaves the folder (absolute, ``..``, a symlink pointing outside)
is refused, missing and unreadable files are reported with their row numbers (rows counted
from 1, the header not counted), all problems at once. ``load_zip`` unpacks an upload under
size and member-count limits and refuses zip-slip names.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from mmlab.data.base import MMDataset
from mmlab.data.images import load_image, to_array
from mmlab.data.text import clean_text
from mmlab.errors import InputError

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
REQUIRED_COLUMNS = ("file_name", "text", "label")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MAX_ROWS = 50_000
MAX_METADATA_BYTES = 64 * 1024 * 1024
MAX_ZIP_BYTES = 200 * 1024 * 1024  # total uncompressed size of an upload
MAX_ZIP_MEMBERS = 20_000
SHOW_PROBLEMS = 5
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # the fixed 80/20 draw when the metadata has no split column


# ---------------------------------------------------------------------------- metadata

def _find_metadata(root: Path) -> Path:
    found = [root / n for n in METADATA_NAMES if (root / n).exists()]
    if not found:
        raise InputError(f"no metadata.csv or metadata.jsonl in {root}")
    if len(found) > 1:
        raise InputError(f"both metadata.csv and metadata.jsonl in {root}: keep one")
    meta = found[0]
    if not _inside(root, meta) or not meta.is_file():
        raise InputError(f"{meta.name} must be a regular file inside {root}")
    if meta.stat().st_size > MAX_METADATA_BYTES:
        raise InputError(f"{meta.name} is too large ({meta.stat().st_size} bytes, limit {MAX_METADATA_BYTES})")
    return meta


def _read_rows(meta: Path) -> tuple[list[str], list[dict | str]]:
    """(columns, rows): a row is a dict of strings, or a string saying why it is unreadable."""
    try:
        raw = meta.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{meta.name} is not UTF-8 text") from None
    if meta.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(raw, newline=""))
        columns = [c.strip() for c in (reader.fieldnames or []) if c is not None]
        rows: list[dict | str] = []
        for rec in reader:
            if len(rows) >= MAX_ROWS:
                raise InputError(f"{meta.name} has more than {MAX_ROWS} rows")
            if None in rec:
                rows.append("more fields than the header has columns")
                continue
            rows.append({(k or "").strip(): ("" if v is None else v) for k, v in rec.items()})
        return columns, rows
    columns_seen: dict[str, None] = {}
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        if len(rows) >= MAX_ROWS:
            raise InputError(f"{meta.name} has more than {MAX_ROWS} rows")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append(f"not valid JSON ({e.msg})")
            continue
        if not isinstance(rec, dict):
            rows.append("not a JSON object")
            continue
        rec = {str(k): ("" if v is None else v) for k, v in rec.items()}
        columns_seen.update(dict.fromkeys(rec))
        rows.append(rec)
    return list(columns_seen), rows


# ---------------------------------------------------------------------------- paths

def _inside(root: Path, path: Path) -> bool:
    """True when ``path``, with every symlink followed, lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _unsafe_name(name: str) -> str | None:
    """Why a member or file name may not be used (absolute, drive, ``..``), or None."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return f"absolute path {name!r} not allowed"
    if ".." in PurePosixPath(posix).parts:
        return f"path {name!r} leaves the folder ('..')"
    if "\x00" in name:
        return f"path {name!r} contains a NUL byte"
    return None


def _resolve_file(root: Path, name: object, column: str) -> Path:
    """The file a row names, inside ``root``; InputError (one line) otherwise."""
    if not isinstance(name, str):
        raise InputError(f"{column} must be a string, got {name!r}")
    if not name.strip():
        raise InputError(f"{column} is empty")
    name = name.strip()
    why = _unsafe_name(name)
    if why:
        raise InputError(f"{column}: {why}")
    path = root / name.replace("\\", "/")
    if not _inside(root, path):
        raise InputError(f"{column}: {name!r} points outside the folder (symlink)")
    if not path.is_file():
        raise InputError(f"{column}: file not found: {name}")
    return path


# ---------------------------------------------------------------------------- images and masks

def _mask_array(path: Path, size: int, image_wh: tuple[int, int]) -> np.ndarray:
    """A mask file as (size, size) uint8 in {0, 1}: any non-zero pixel -> 1, resized nearest.

    Palette masks use the palette index (0 = background); masks with alpha count transparent
    pixels as background.
    """
    load_image(path)  # validation: format allow-list, pixel limit, truncation
    with Image.open(path) as img:
        img.seek(0)
        if img.size != image_wh:
            raise InputError(f"mask size {img.size[0]}x{img.size[1]} differs from the image's "
                             f"{image_wh[0]}x{image_wh[1]}")
        if img.mode == "P":
            fg = np.asarray(img) != 0
        elif img.mode in ("RGBA", "LA", "PA"):
            arr = np.asarray(img.convert("RGBA"))
            fg = (arr[..., 3] > 0) & (arr[..., :3].max(axis=-1) > 0)
        elif img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            fg = np.nan_to_num(np.asarray(img, dtype=np.float64)) != 0
        else:
            fg = np.asarray(img.convert("RGB")).max(axis=-1) > 0
    from mmlab.data.letterbox import letterbox

    small, _ = letterbox(Image.fromarray(fg.astype(np.uint8) * 255), size, fill=0, resample=Image.NEAREST)
    return (np.asarray(small) > 0).astype(np.uint8)  # letterboxed like its image


def _sort_classes(labels: list[str]) -> list[str]:
    """Sorted class names; numerically when every label is an integer ("2" before "10")."""
    names = set(labels)
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


# ---------------------------------------------------------------------------- the loader

def _problem_message(meta: Path, problems: list[tuple[int, str]]) -> str:
    shown = "; ".join(f"row {r}: {msg}" for r, msg in problems[:SHOW_PROBLEMS])
    more = f"; and {len(problems) - SHOW_PROBLEMS} more row(s)" if len(problems) > SHOW_PROBLEMS else ""
    where = " (row 1 is the line after the header)" if meta.suffix == ".csv" else ""
    return f"{meta.name}: {len(problems)} bad row(s){where}: {shown}{more}"


def _assign_splits(records: list[dict], has_split: bool) -> np.ndarray:
    """Split name per row: the split column, else a fixed 80/20 train/test draw."""
    n = len(records)
    if has_split:
        return np.array([r["split"] for r in records])
    out = np.full(n, "train", dtype=object)
    if n >= 2:
        n_test = min(n - 1, max(1, int(np.ceil(TEST_FRACTION * n))))
        out[np.random.default_rng(SPLIT_SEED).permutation(n)[:n_test]] = "test"
    return out.astype(str)


def load_folder(path: Union[str, os.PathLike], *, image_size: int = 64, split: str = "train") -> MMDataset:
    """Load a folder dataset (ImageFolder convention) as one split.

    images (N, 3, S, S) uint8 (S = image_size), texts (N,), targets {"label": (N,) int64} with
    classes {"label": sorted class names}, masks (N, S, S) uint8 in {0, 1} when the metadata
    has ``mask_file``. ``split``: "train", "val", "test" or "all"; from the ``split`` column when
    there is one (val falls back to test when no row is val), else a fixed 80/20 train/test
    draw (val = test). Every row is validated; problems raise one InputError naming the rows.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    if split not in ("train", "val", "test", "all"):
        raise InputError(f"folder datasets have splits train, val, test, all; not {split!r}")
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 1024:
        raise InputError(f"image_size must be an integer in 8..1024, got {image_size!r}")
    meta = _find_metadata(root)
    columns, rows = _read_rows(meta)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{meta.name} lacks column(s) {', '.join(missing)} "
                         f"(needs {', '.join(REQUIRED_COLUMNS)}; has {', '.join(columns) or 'none'})")
    if not rows:
        raise InputError(f"{meta.name} has no rows")
    has_mask, has_split = "mask_file" in columns, "split" in columns

    problems: list[tuple[int, str]] = []
    records: list[dict] = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, str):
            problems.append((number, row))
            continue
        try:
            rec = _load_row(root, row, image_size=image_size, has_mask=has_mask, has_split=has_split)
        except InputError as e:
            problems.append((number, str(e)))
            continue
        records.append(rec)
    if problems:
        raise InputError(_problem_message(meta, problems))

    splits = _assign_splits(records, has_split)
    if split == "all":
        keep = np.arange(len(records))
    else:
        want = "test" if split == "val" and not (splits == "val").any() else split
        keep = np.flatnonzero(splits == want)
        if len(keep) == 0:
            raise InputError(f"{meta.name}: no rows in split {split!r}")
    classes = _sort_classes([r["label"] for r in records])
    index = {c: i for i, c in enumerate(classes)}
    chosen = [records[i] for i in keep]
    return MMDataset(
        name="folder", split=split,
        images=np.stack([r["image"] for r in chosen]),
        texts=[r["text"] for r in chosen],
        targets={"label": np.array([index[r["label"]] for r in chosen], np.int64)},
        classes={"label": classes},
        masks=np.stack([r["mask"] for r in chosen]) if has_mask else None,
        info={"path": str(root), "file_names": [r["file_name"] for r in chosen], "rows": (keep + 1).tolist()},
    )


def _load_row(root: Path, row: dict, *, image_size: int, has_mask: bool, has_split: bool) -> dict:
    """One validated row: {"file_name", "image" (3, S, S), "text", "label", "mask" (S, S)|None, "split"}."""
    image_path = _resolve_file(root, row.get("file_name"), "file_name")
    try:
        img = load_image(image_path)
    except InputError as e:
        raise InputError(f"file_name {row['file_name'].strip()}: {e}") from None
    text = row.get("text", "")
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    text = clean_text(text, allow_empty=True)
    label = row.get("label", "")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise InputError(f"label must be a string or an integer, got {label!r}")
    label = str(label).strip()
    if not label:
        raise InputError("label is empty")
    rec = {"file_name": row["file_name"].strip(), "image": to_array(img, image_size), "text": text,
           "label": label, "mask": None, "split": "train"}
    if has_mask:
        mask_path = _resolve_file(root, row.get("mask_file"), "mask_file")
        try:
            rec["mask"] = _mask_array(mask_path, image_size, img.size)
        except InputError as e:
            raise InputError(f"mask_file {row['mask_file'].strip()}: {e}") from None
    if has_split:
        name = str(row.get("split", "")).strip().lower()
        if name not in SPLIT_NAMES:
            raise InputError(f"split {row.get('split')!r} is not one of train, val, test")
        rec["split"] = SPLIT_NAMES[name]
    return rec


# ---------------------------------------------------------------------------- zip uploads

def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def load_zip(source: Union[str, os.PathLike, bytes, BinaryIO], dest_dir: Union[str, os.PathLike], *,
             image_size: int = 64, split: str = "train", max_bytes: int = MAX_ZIP_BYTES,
             max_members: int = MAX_ZIP_MEMBERS) -> MMDataset:
    """Unpack a zipped folder dataset into ``dest_dir`` (new or empty) and load it.

    Refused before anything is written: more than ``max_members`` members, more than
    ``max_bytes`` uncompressed in total, absolute or ``..`` member names (zip-slip), symlinks,
    encrypted members. The metadata may sit at the top or in one top-level folder.
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"unzip destination must be a new or empty folder: {dest}")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"not a readable zip file ({e})") from None
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise InputError(f"zip has {len(members)} members (limit {max_members})")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputError(f"zip unpacks to {total:,} bytes (limit {max_bytes:,})")
        for m in members:
            why = _unsafe_name(m.filename)
            if why:
                raise InputError(f"zip member refused: {why}")
            if _is_symlink(m):
                raise InputError(f"zip member refused: {m.filename!r} is a symlink")
            if m.flag_bits & 0x1:
                raise InputError(f"zip member refused: {m.filename!r} is encrypted")
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for m in members:
            target = dest / m.filename.replace("\\", "/")
            if not _inside(dest, target):
                raise InputError(f"zip member refused: {m.filename!r} leaves the folder")
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(m) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:  # sizes in the directory may lie
                            raise InputError(f"zip unpacks to more than {max_bytes:,} bytes")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
                raise InputError(f"zip member {m.filename!r} is unreadable ({e})") from None
    return load_folder(_dataset_root(dest), image_size=image_size, split=split)


def _dataset_root(dest: Path) -> Path:
    """``dest`` if it holds the metadata, else its single top-level folder that does."""
    if any((dest / n).exists() for n in METADATA_NAMES):
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(subdirs) == 1 and any((subdirs[0] / n).exists() for n in METADATA_NAMES):
        return subdirs[0]
    raise InputError("the zip holds no metadata.csv or metadata.jsonl (at the top or in one folder)")


def load(split: str = "train", *, seed: int = 0, path: Union[str, os.PathLike, None] = None,
         image_size: int = 64) -> MMDataset:
    """``load_dataset("folder", split, path=...)``: a folder, or a .zip unpacked to a temporary folder.

    The seed changes nothing (the split is fixed by the metadata or a fixed draw).
    """
    if path is None or str(path).strip() == "":
        raise InputError("dataset 'folder' needs path=: a folder with metadata.csv or metadata.jsonl, or a .zip of one")
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".zip":
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="mmlab-zip-"))
        try:
            return load_zip(p, tmp / "data", image_size=image_size, split=split)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_folder(p, image_size=image_size, split=split)
