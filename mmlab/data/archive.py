"""Zip uploads of a folder dataset: every member checked before a byte is written, then ``load_folder``.

A zip's members are checked for count, total size, name (length, depth, control characters, zip-slip),
kind (no links, devices, pipes, sockets, encrypted or unknown compression), a file named twice and a
name that is both a file and a folder, all before anything is unpacked; sizes the directory states are
checked again while writing, since they may lie. Measured on a shared 2-core machine, a member of a tiny
picture costs 0.4 ms (unpacked, checked, decoded), so the default limits bound the worst upload to about
7 s together with ``folder``'s pixel budget.
"""
from __future__ import annotations

import io
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Union

from mmlab.data.base import MMDataset
from mmlab.data.folder import (MAX_TOTAL_PIXELS, METADATA_NAMES, _inside, _parts, _shown, _unsafe_name,
                               load_folder)
from mmlab.errors import InputError

MAX_ZIP_BYTES = 200 * 1024 * 1024  # total uncompressed size of an upload
MAX_ZIP_MEMBERS = 10_000  # ~4 s of unpacking, checking and decoding tiny pictures at 0.4 ms each
MAX_ZIP_ROWS = 20_000  # rows of an uploaded zip's metadata (rows may share a picture)

_SPECIAL = ((stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"),
            (stat.S_ISFIFO, "pipe"), (stat.S_ISSOCK, "socket"))
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _check_members(members: list[zipfile.ZipInfo], *, max_bytes: int,
                   max_members: int) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """(member, its name's parts) to unpack, after every check that needs nothing written: the
    count, the total size, each name (``_unsafe_name``), each kind (links, devices, pipes,
    sockets and encrypted or unknown compression are refused), a file named twice, and a name
    that is a file in one member and a folder in another. Raises one InputError line."""
    if len(members) > max_members:
        raise InputError(f"zip has {len(members):,} members (limit {max_members:,})")
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise InputError(f"zip unpacks to {total:,} bytes (limit {max_bytes:,})")
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    out = []
    for m in members:
        why = _unsafe_name(m.filename)
        if why:
            raise InputError(f"zip member refused: {why}")
        shown = _shown(m.filename)
        mode = m.external_attr >> 16
        kind = next((what for test, what in _SPECIAL if test(mode)), None)
        if kind:
            raise InputError(f"zip member refused: {shown} is a {kind}, not a file")
        if m.flag_bits & 0x1:
            raise InputError(f"zip member refused: {shown} is encrypted")
        if m.compress_type not in _COMPRESSIONS:
            raise InputError(f"zip member refused: {shown} uses an unsupported compression ({m.compress_type})")
        parts = _parts(m.filename)
        if not parts:
            if m.is_dir():
                continue
            raise InputError(f"zip member refused: {shown} has no file name")
        if m.is_dir():
            folders.add(parts)
        elif parts in files:
            raise InputError(f"zip member refused: {_shown('/'.join(parts))} appears twice")
        else:
            files.add(parts)
            folders.update(parts[:i] for i in range(1, len(parts)))
        out.append((m, parts))
    clash = min(files & folders, default=None)
    if clash:
        raise InputError(f"zip member refused: {_shown('/'.join(clash))} is both a file and a folder")
    return out


def load_zip(source: Union[str, os.PathLike, bytes, BinaryIO], dest_dir: Union[str, os.PathLike], *,
             image_size: int = 64, split: str = "train", max_bytes: int = MAX_ZIP_BYTES,
             max_members: int = MAX_ZIP_MEMBERS, max_rows: int = MAX_ZIP_ROWS,
             max_pixels: int = MAX_TOTAL_PIXELS) -> MMDataset:
    """Unpack a zipped folder dataset into ``dest_dir`` (new or empty) and load it.

    Refused before anything is written: more than ``max_members`` members, more than
    ``max_bytes`` uncompressed in total, absolute or ``..`` member names (zip-slip), names too
    long or too deep, control characters, symlinks, devices, pipes, encrypted members, a file
    named twice, a name that is both a file and a folder. Refused before any picture is
    decoded: more than ``max_rows`` rows, pictures of more than ``max_pixels`` pixels (or more
    than ``max_bytes`` bytes) in all. The metadata may sit at the top or in one top-level folder.
    No other error escapes: a file system that refuses a name is one InputError line too.
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"unzip destination must be a new or empty folder: {dest}")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(f"not a readable zip file ({e})") from None
    with archive:
        entries = _check_members(archive.infolist(), max_bytes=max_bytes, max_members=max_members)
        try:
            _unpack(archive, entries, dest, max_bytes)
        except OSError as e:  # the checks above leave only the file system's own refusals
            raise InputError(f"the zip cannot be unpacked on this server ({e.strerror or type(e).__name__})") from None
    return load_folder(_dataset_root(dest), image_size=image_size, split=split, max_rows=max_rows,
                       max_pixels=max_pixels, max_bytes=max_bytes)


def _unpack(archive: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], dest: Path,
            max_bytes: int) -> None:
    """Write the checked members under ``dest``; a file is never written twice ("xb")."""
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for m, parts in entries:
        target = dest.joinpath(*parts)
        if not _inside(dest, target):
            raise InputError(f"zip member refused: {_shown(m.filename)} leaves the folder")
        if m.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            for chunk in _chunks(archive, m):
                written += len(chunk)
                if written > max_bytes:  # sizes in the directory may lie
                    raise InputError(f"zip unpacks to more than {max_bytes:,} bytes")
                out.write(chunk)


_UNREADABLE = (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, OSError, zlib.error)


def _chunks(archive: zipfile.ZipFile, member: zipfile.ZipInfo, size: int = 1 << 20):
    """A member's bytes in chunks; a broken member (bad CRC, cut data) is one InputError line."""
    try:
        with archive.open(member) as src:
            while chunk := src.read(size):
                yield chunk
    except _UNREADABLE as e:
        raise InputError(f"zip member {_shown(member.filename)} is unreadable ({e})") from None


def _dataset_root(dest: Path) -> Path:
    """``dest`` if it holds the metadata, else its single top-level folder that does."""
    if any((dest / n).exists() for n in METADATA_NAMES):
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(subdirs) == 1 and any((subdirs[0] / n).exists() for n in METADATA_NAMES):
        return subdirs[0]
    raise InputError("the zip holds no metadata.csv or metadata.jsonl (at the top or in one folder)")
