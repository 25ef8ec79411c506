"""folder: a user's own data in the Hugging Face ImageFolder convention.

A folder holds images and one ``metadata.csv`` or ``metadata.jsonl`` with the columns
``file_name`` (relative to the folder), ``text``, ``label`` and optionally ``mask_file``
(a mask image the size of the picture; any non-zero pixel is foreground) and ``split``
(train / val / test). These are files from strangers, so every row is checked before anything
is used: a ``file_name`` that leaves the folder (absolute, ``..``, a symlink pointing outside)
is refused, missing and unreadable files are reported with their row numbers (rows counted
from 1, the header not counted), all problems at once. ``load_zip`` unpacks an upload under
size and member-count limits and refuses zip-slip names.

Every limit that bounds the work is checked before the work: the pixels every row will decode
(read from the pictures' headers) before a picture is decoded (and, in ``archive``, a zip's members
before a byte is written). Measured on a shared 2-core machine, decoding costs 6 to 11
ms per megapixel and a zip member of a tiny picture 0.4 ms (unpacked, checked, decoded), so the
default limits bound the worst upload to about 7 s (it was 20,000 bombs x 0.33 s = 6,600 s).

``resolve_data_folder`` is what a visitor's typed folder goes through: only folders under
``$MMLAB_DATA_ROOT`` are found, with one answer for "missing" and "outside"; unset, it is off.
``load_folder`` itself is for the machine's owner (Python, ``mmlab train``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from mmlab.data.base import MMDataset
from mmlab.data.images import MAX_BYTES as IMAGE_MAX_BYTES
from mmlab.data.images import MAX_PIXELS, header_size, load_image, to_array
from mmlab.data.text import clean_text
from mmlab.errors import InputError

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
REQUIRED_COLUMNS = ("file_name", "text", "label")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MAX_ROWS = 50_000  # rows of a folder's metadata
MAX_METADATA_BYTES = 64 * 1024 * 1024
MAX_TOTAL_PIXELS = 250_000_000  # decoded per dataset, from the headers (<= 2.8 s at 11 ms per megapixel)
MAX_FOLDER_BYTES = 2 * 1024**3  # picture bytes read per dataset (rows counted apart)
MAX_DEPTH = 32  # folder levels in a member or file name
MAX_NAME_BYTES = 255  # one part of a name, UTF-8 (the usual file-system limit)
MAX_PATH_BYTES = 1024  # a whole member or file name, UTF-8
DATA_ROOT_ENV = "MMLAB_DATA_ROOT"  # the one server folder whose subfolders visitors may load
SHOW_NAME = 40  # characters of a refused name shown in a message
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


def _read_rows(meta: Path, max_rows: int = MAX_ROWS) -> tuple[list[str], list[dict | str]]:
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
            if len(rows) >= max_rows:
                raise InputError(f"{meta.name} has more than {max_rows:,} rows")
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
        if len(rows) >= max_rows:
            raise InputError(f"{meta.name} has more than {max_rows:,} rows")
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


def _shown(name: str) -> str:
    """A name as it appears in a message: quoted, on one line, at most ``SHOW_NAME`` characters."""
    if len(name) <= SHOW_NAME:
        return repr(name)
    return f"{name[:SHOW_NAME]!r}... ({len(name):,} characters)"


def _parts(name: str) -> tuple[str, ...]:
    """The parts of a relative name, backslashes read as slashes, empty and ``.`` parts dropped."""
    return tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _unsafe_name(name: str) -> str | None:
    """Why a member or file name may not be used, or None: absolute, a drive, ``..``, a NUL or
    other control character, longer than ``MAX_PATH_BYTES`` or a part longer than ``MAX_NAME_BYTES``
    (UTF-8), deeper than ``MAX_DEPTH`` folders. Pure string checks: nothing on disk is touched."""
    posix = name.replace("\\", "/")
    if "\x00" in name:
        return f"path {_shown(name)} contains a NUL byte"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return f"path {_shown(name)} contains a control character"
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return f"absolute path {_shown(name)} not allowed"
    parts = _parts(name)
    if ".." in parts:
        return f"path {_shown(name)} leaves the folder ('..')"
    if len(parts) > MAX_DEPTH + 1:
        return f"path {_shown(name)} is too deep ({len(parts)} levels, limit {MAX_DEPTH + 1})"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"path {_shown(name)} is too long (limit {MAX_PATH_BYTES} bytes)"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        return f"path {_shown(name)} has a name too long (limit {MAX_NAME_BYTES} bytes per name)"
    return None


def _resolve_file(root: Path, name: object, column: str) -> Path:
    """The file a row names, inside ``root``; InputError (one line) otherwise."""
    if not isinstance(name, str):
        raise InputError(f"{column} must be a string, got {type(name).__name__}")
    if not name.strip():
        raise InputError(f"{column} is empty")
    name = name.strip()
    why = _unsafe_name(name)
    if why:
        raise InputError(f"{column}: {why}")
    path = root.joinpath(*_parts(name))
    try:
        inside = _inside(root, path)
        found = inside and path.is_file()
    except (OSError, ValueError, RecursionError):  # a link loop, a name the file system refuses
        inside, found = True, False
    if not inside:
        raise InputError(f"{column}: {_shown(name)} points outside the folder (symlink)")
    if not found:
        raise InputError(f"{column}: file not found: {_shown(name)}")
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


def _check_budget(root: Path, meta: Path, rows: list[dict | str], *, has_mask: bool, max_pixels: int,
                  max_bytes: int) -> None:
    """Refuse, before any picture is decoded, rows that would decode more than ``max_pixels`` pixels
    or read more than ``max_bytes`` bytes of pictures in all. Sizes come from the files' headers
    (nothing is decoded); a row counts its picture each time (rows sharing a picture decode it
    again), a mask twice (checked, then read). Files that a row may not use (missing, refused,
    over the per-picture limits) count nothing: the row pass reports them without decoding them."""
    pixels = nbytes = 0
    seen: dict[Path, tuple[int, int]] = {}
    columns = (("file_name", 1), ("mask_file", 2)) if has_mask else (("file_name", 1),)
    for row in rows:
        if not isinstance(row, dict):
            continue
        for column, times in columns:
            try:
                path = _resolve_file(root, row.get(column), column)
            except InputError:
                continue
            if path not in seen:
                try:
                    size = path.stat().st_size
                except OSError:
                    size = IMAGE_MAX_BYTES + 1
                wh = header_size(path) if size <= IMAGE_MAX_BYTES else None
                area = wh[0] * wh[1] if wh else 0
                seen[path] = (area if area <= MAX_PIXELS else 0, size if size <= IMAGE_MAX_BYTES else 0)
            pixels += times * seen[path][0]
            nbytes += times * seen[path][1]
    if pixels > max_pixels:
        raise InputError(f"{meta.name}: the pictures hold {pixels:,} pixels in all (limit {max_pixels:,}); "
                         "use smaller pictures (the models see them at 64x64) or fewer rows")
    if nbytes > max_bytes:
        raise InputError(f"{meta.name}: the pictures take {nbytes:,} bytes in all (limit {max_bytes:,}); "
                         "use smaller picture files or fewer rows")


def load_folder(path: Union[str, os.PathLike], *, image_size: int = 64, split: str = "train",
                max_rows: int = MAX_ROWS, max_pixels: int = MAX_TOTAL_PIXELS,
                max_bytes: int = MAX_FOLDER_BYTES) -> MMDataset:
    """Load a folder dataset (ImageFolder convention) as one split.

    images (N, 3, S, S) uint8 (S = image_size), texts (N,), targets {"label": (N,) int64} with
    classes {"label": sorted class names}, masks (N, S, S) uint8 in {0, 1} when the metadata
    has ``mask_file``. ``split``: "train", "val", "test" or "all"; from the ``split`` column when
    there is one (val falls back to test when no row is val), else a fixed 80/20 train/test
    draw (val = test). Every row is validated; problems raise one InputError naming the rows.
    Before any picture is decoded, the rows' pictures are held to ``max_pixels`` decoded pixels
    and ``max_bytes`` bytes in all (read from their headers); the metadata to ``max_rows`` rows.

    For the machine's owner: ``path`` may be any folder. A folder a visitor typed goes through
    ``resolve_data_folder`` first.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    if split not in ("train", "val", "test", "all"):
        raise InputError(f"folder datasets have splits train, val, test, all; not {split!r}")
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 1024:
        raise InputError(f"image_size must be an integer in 8..1024, got {image_size!r}")
    meta = _find_metadata(root)
    columns, rows = _read_rows(meta, max_rows)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{meta.name} lacks column(s) {', '.join(missing)} "
                         f"(needs {', '.join(REQUIRED_COLUMNS)}; has {', '.join(columns) or 'none'})")
    if not rows:
        raise InputError(f"{meta.name} has no rows")
    has_mask, has_split = "mask_file" in columns, "split" in columns
    _check_budget(root, meta, rows, has_mask=has_mask, max_pixels=max_pixels, max_bytes=max_bytes)

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


# ---------------------------------------------------------------------------- server folders

NOT_FOUND = "no dataset folder of that name in the shared data folder (names are relative to it)"


def data_root() -> Path | None:
    """``$MMLAB_DATA_ROOT`` (the one server folder whose subfolders visitors may load), or None."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _off() -> InputError:
    return InputError("loading a folder on the server is turned off here: upload a zip of the folder instead")


def resolve_data_folder(typed: object) -> Path:
    """The folder a visitor typed, resolved inside ``$MMLAB_DATA_ROOT``; for ``load_folder``.

    ``typed`` is relative to the root (an absolute path is accepted only when it lies inside it).
    Links and ``..`` are followed first, then the result must be a folder inside the root (or the
    root). A folder that does not exist, lies outside, is a file or cannot be named at all gets the
    same one-line ``InputError`` (``NOT_FOUND``), so nothing about the rest of the server can be
    learnt from the answers. Unset, no folder is found at all: the error says server folders are off.
    """
    root = data_root()
    if root is None:
        raise _off()
    if not isinstance(typed, str) or not typed.strip():
        raise InputError("type the name of a dataset folder in the shared data folder")
    try:
        base = Path(os.path.realpath(root))
        found = Path(os.path.realpath(base / typed.strip()))
        ok = base.is_dir() and (found == base or found.is_relative_to(base)) and found.is_dir()
    except (OSError, ValueError, RecursionError):  # a NUL byte, a name too long, a link loop
        ok = False
    if not ok:
        raise InputError(NOT_FOUND)
    return found


def data_folders(limit: int = 500) -> list[str]:
    """Names of the folders right under ``$MMLAB_DATA_ROOT`` that hold a metadata file (sorted, at
    most ``limit``): what a visitor may choose from. InputError when server folders are off."""
    root = data_root()
    if root is None:
        raise _off()
    try:
        with os.scandir(root) as entries:
            candidates = sorted(e.name for e in entries)
    except OSError:
        return []
    names = []
    for name in candidates:
        try:
            path = resolve_data_folder(name)
            if any((path / n).is_file() for n in METADATA_NAMES):
                names.append(name)
        except (InputError, OSError):
            continue
        if len(names) >= limit:
            break
    return names


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

        from mmlab.data.archive import load_zip

        tmp = Path(tempfile.mkdtemp(prefix="mmlab-zip-"))
        try:
            return load_zip(p, tmp / "data", image_size=image_size, split=split)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_folder(p, image_size=image_size, split=split)
