"""folder: a user's images + metadata.csv / metadata.jsonl, validated row by row; zip uploads."""
import csv
import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from mmlab.data import load_dataset
from mmlab.data.archive import load_zip
from mmlab.data.folder import load_folder
from mmlab.errors import InputError

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220)}


def write_folder(root, n=10, *, fmt="csv", masks=False, split=None, extra_rows=(), labels=None):
    """n coloured squares named img{i}.png; label = colour name; optional masks and split column."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % 3]
        img = Image.new("RGB", (40, 30), (250, 250, 250))
        img.paste(COLOURS[colour], (10, 5, 30, 25))  # a 20x20 square
        img.save(root / "images" / f"img{i}.png")
        row = {"file_name": f"images/img{i}.png", "text": f"a {colour} square number {i}",
               "label": labels[i] if labels else colour}
        if masks:
            m = Image.new("L", (40, 30), 0)
            m.paste(7, (10, 5, 30, 25))  # any non-zero value is foreground
            m.save(root / "images" / f"mask{i}.png")
            row["mask_file"] = f"images/mask{i}.png"
        if split:
            row["split"] = split[i]
        rows.append(row)
    rows.extend(extra_rows)
    write_metadata(root, rows, fmt=fmt)
    return rows


def write_metadata(root, rows, *, fmt="csv", columns=None):
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "csv":
        with open(root / "metadata.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    else:
        with open(root / "metadata.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps({k: v for k, v in r.items() if k in columns}) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_good_folder_loads(tmp_path, fmt):
    rows = write_folder(tmp_path, 10, fmt=fmt)
    train = load_folder(tmp_path, split="train")
    test = load_folder(tmp_path, split="test")
    val = load_folder(tmp_path, split="val")
    assert (len(train), len(test)) == (8, 2)  # fixed 80/20 draw
    assert val.texts == test.texts  # no val rows: val is the test split
    assert set(train.info["file_names"]).isdisjoint(test.info["file_names"])
    assert train.classes["label"] == ["blue", "green", "red"]  # sorted
    assert train.images.shape == (8, 3, 64, 64) and train.images.dtype == np.uint8
    assert train.masks is None
    by_name = {r["file_name"]: r for r in rows}
    for i, name in enumerate(train.info["file_names"]):
        assert train.texts[i] == by_name[name]["text"]
        label = train.classes["label"][train.targets["label"][i]]
        assert label == by_name[name]["label"]
        centre = train.images[i, :, 32, 32]
        assert np.abs(centre.astype(int) - COLOURS[label]).max() < 20  # the picture matches its row
    again = load_folder(tmp_path, split="train")
    assert again.texts == train.texts  # deterministic
    assert len(load_folder(tmp_path, split="all")) == 10


def test_split_column_and_through_load_dataset(tmp_path):
    write_folder(tmp_path, 6, split=["train", "train", "validation", "test", "train", "TEST"])
    d = load_dataset("folder", "val", path=str(tmp_path), image_size=32)
    assert len(d) == 1 and d.images.shape == (1, 3, 32, 32)
    assert len(load_dataset("folder", "train", path=tmp_path)) == 3
    assert len(load_dataset("folder", "test", path=tmp_path)) == 2


def test_folder_needs_a_path():
    with pytest.raises(InputError, match="path="):
        load_dataset("folder", "train")


def test_masks_are_binary_and_letterboxed_like_their_images(tmp_path):
    write_folder(tmp_path, 5, masks=True, fmt="jsonl")
    d = load_folder(tmp_path, split="all", image_size=64)
    assert d.masks.shape == (5, 64, 64) and set(np.unique(d.masks)) == {0, 1}
    # 40 x 30 pictures keep their shape: scaled by 1.6 to 64 x 48, padded by 8 rows above and below;
    # the square (x 10..29, y 5..24) becomes 32 x 32 pixels at x 16..47, y 16..47
    frac = d.masks.mean(axis=(1, 2))
    assert np.allclose(frac, (32 * 32) / (64 * 64), atol=0.02)
    assert d.masks[0, 32, 32] == 1 and d.masks[0, 2, 2] == 0
    assert d.masks[:, :8].max() == 0 and d.masks[:, -8:].max() == 0  # the padding is background
    assert (d.images[:, :, :8] == d.images[:, :, :1]).all()  # the image is padded the same way


def test_integer_labels_sort_as_numbers(tmp_path):
    write_folder(tmp_path, 6, labels=["10", "2", "9", "2", "10", "1"])
    d = load_folder(tmp_path, split="all")
    assert d.classes["label"] == ["1", "2", "9", "10"]


# ---------------------------------------------------------------------------- malformed folders

def test_missing_metadata(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(InputError, match="metadata"):
        load_folder(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_folder(tmp_path / "nowhere")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_missing_column_is_named(tmp_path, fmt):
    rows = write_folder(tmp_path, 3, fmt=fmt)
    write_metadata(tmp_path, rows, fmt=fmt, columns=["file_name", "text"])
    with pytest.raises(InputError, match="label"):
        load_folder(tmp_path)


def bad_row(tmp_path, fmt, row):
    """Write 4 good rows and one bad one (row 3); return the error message."""
    rows = write_folder(tmp_path, 4, fmt=fmt)
    rows.insert(2, {"text": "bad", "label": "red", **row})
    write_metadata(tmp_path, rows, fmt=fmt)
    with pytest.raises(InputError) as e:
        load_folder(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "row 3" in msg and "1 bad row" in msg
    return msg


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_missing_file_reports_its_row(tmp_path, fmt):
    assert "not found" in bad_row(tmp_path, fmt, {"file_name": "images/ghost.png"})


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_unreadable_image_reports_its_row(tmp_path, fmt):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "junk.png").write_bytes(b"this is not a png at all")
    assert "junk.png" in bad_row(tmp_path, fmt, {"file_name": "images/junk.png"})


@pytest.mark.parametrize("name", ["../x.png", "images/../../x.png", "..\\x.png"])
def test_escaping_path_is_refused(tmp_path, name):
    outside = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(outside)
    root = tmp_path / "data"
    assert "leaves the folder" in bad_row(root, "csv", {"file_name": name})


def test_absolute_path_is_refused(tmp_path):
    outside = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(outside)
    msg = bad_row(tmp_path / "data", "jsonl", {"file_name": str(outside)})
    assert "absolute" in msg


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks here")
def test_symlink_pointing_outside_is_refused(tmp_path):
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "link.png").symlink_to(outside)
    assert "outside" in bad_row(root, "csv", {"file_name": "images/link.png"})


def test_bad_labels_masks_and_splits_report_rows(tmp_path):
    rows = write_folder(tmp_path, 4, masks=True, split=["train"] * 4)
    rows[0]["label"] = ""
    rows[1]["split"] = "holdout"
    rows[2]["mask_file"] = "images/img2.png"  # an RGB picture: fine as a mask
    Image.new("L", (10, 10)).save(tmp_path / "images" / "small_mask.png")
    rows[3]["mask_file"] = "images/small_mask.png"
    write_metadata(tmp_path, rows)
    with pytest.raises(InputError) as e:
        load_folder(tmp_path)
    msg = str(e.value)
    assert "3 bad row(s)" in msg
    assert "row 1: label is empty" in msg and "row 2: split" in msg and "row 4: mask_file" in msg


def test_many_problems_are_counted_not_all_listed(tmp_path):
    rows = write_folder(tmp_path, 2)
    rows += [{"file_name": f"gone{i}.png", "text": "t", "label": "red"} for i in range(12)]
    write_metadata(tmp_path, rows)
    with pytest.raises(InputError) as e:
        load_folder(tmp_path)
    msg = str(e.value)
    assert "12 bad row(s)" in msg and "row 3:" in msg and "and 7 more" in msg and "row 14" not in msg


def test_broken_jsonl_line_reports_its_row(tmp_path):
    write_folder(tmp_path, 3, fmt="jsonl")
    with open(tmp_path / "metadata.jsonl", "a") as f:
        f.write("{not json\n[1, 2]\n")
    with pytest.raises(InputError, match=r"row 4: not valid JSON.*row 5: not a JSON object"):
        load_folder(tmp_path)


def test_both_metadata_files_are_ambiguous(tmp_path):
    write_folder(tmp_path, 3, fmt="csv")
    (tmp_path / "metadata.jsonl").write_text("")
    with pytest.raises(InputError, match="keep one"):
        load_folder(tmp_path)


# ---------------------------------------------------------------------------- zip uploads

def zip_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def folder_files(tmp_path, prefix=""):
    src = tmp_path / "src"
    write_folder(src, 5)
    return {prefix + str(p.relative_to(src)).replace(os.sep, "/"): p.read_bytes() for p in src.rglob("*") if p.is_file()}


@pytest.mark.parametrize("prefix", ["", "mydata/"])
def test_a_good_zip_loads(tmp_path, prefix):
    data = zip_of(folder_files(tmp_path, prefix))
    d = load_zip(data, tmp_path / "out", split="all")
    assert len(d) == 5 and d.classes["label"] == ["blue", "green", "red"]
    zpath = tmp_path / "up.zip"
    zpath.write_bytes(data)
    assert len(load_dataset("folder", "train", path=zpath)) == 4


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path, evil):
    files = folder_files(tmp_path)
    files[evil] = b"gotcha"
    dest = tmp_path / "out" / "inner"
    with pytest.raises(InputError, match="refused"):
        load_zip(zip_of(files), dest)
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not dest.exists()  # checked before anything is unpacked


def test_oversized_and_crowded_zips_are_refused(tmp_path):
    files = folder_files(tmp_path)
    files["big.bin"] = b"\0" * 300_000  # compresses to almost nothing
    data = zip_of(files)
    assert len(data) < 100_000
    with pytest.raises(InputError, match="unpacks to"):
        load_zip(data, tmp_path / "a", max_bytes=200_000)
    with pytest.raises(InputError, match="members"):
        load_zip(data, tmp_path / "b", max_members=5)
    d = load_zip(data, tmp_path / "c", split="all")  # the default limits allow it
    assert len(d) == 5


def test_zip_bad_input(tmp_path):
    with pytest.raises(InputError, match="zip"):
        load_zip(b"PK but not really", tmp_path / "a")
    with pytest.raises(InputError, match="no metadata"):
        load_zip(zip_of({"a.txt": b"x", "b/c.txt": b"y"}), tmp_path / "b")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="empty"):
        load_zip(zip_of(folder_files(tmp_path)), busy)
    assert (busy / "keep.txt").read_text() == "mine"
