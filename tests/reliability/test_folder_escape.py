"""Folder datasets: the escapes and bad files tests/data/test_folder.py does not cover."""
import io
import json
import os
import stat
import zipfile

import pytest
from PIL import Image
from reliability_helpers import png_declaring

import mmlab
from mmlab.data.archive import load_zip
from mmlab.data.folder import load_folder


def folder(root, rows, images=("a.png", "b.png", "c.png")):
    root.mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.new("RGB", (16, 16), (200, 30, 30)).save(root / name)
    with open(root / "metadata.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return root


def good(name="a.png"):
    return {"file_name": name, "text": "a red square", "label": "red"}


def message(root) -> str:
    with pytest.raises(mmlab.InputError) as e:
        load_folder(root)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks here")
def test_metadata_symlinked_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(json.dumps(good()) + "\n")
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (16, 16)).save(root / "a.png")
    (root / "metadata.jsonl").symlink_to(outside)
    assert "inside" in message(root)


def test_nul_byte_and_directory_names_report_their_rows(tmp_path):
    root = folder(tmp_path / "data", [good(), {**good(), "file_name": "a.png\x00.txt"}, good("b.png"),
                                      {**good(), "file_name": "."}, {**good(), "file_name": ["a.png"]}])
    msg = message(root)
    assert "3 bad row(s)" in msg and "row 2:" in msg and "NUL" in msg and "row 4:" in msg and "row 5:" in msg


def test_a_decompression_bomb_in_a_folder_reports_its_row(tmp_path):
    root = folder(tmp_path / "data", [good(), good("bomb.png"), good("b.png")])
    (root / "bomb.png").write_bytes(png_declaring(30000, 30000))
    msg = message(root)
    assert "row 2:" in msg and "bomb.png" in msg and "too large" in msg


def test_a_disallowed_format_in_a_folder_reports_its_row(tmp_path):
    root = folder(tmp_path / "data", [good(), good("c.png"), good("pic.eps")])
    Image.new("RGB", (16, 16)).save(root / "pic.eps", "EPS")
    msg = message(root)
    assert "row 3:" in msg and "EPS" in msg and "not allowed" in msg


def test_zip_symlink_and_encrypted_members_are_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.jsonl", json.dumps(good()) + "\n")
        link = zipfile.ZipInfo("a.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    with pytest.raises(mmlab.InputError, match="symlink"):
        load_zip(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.jsonl", "x")
    data = bytearray(buf.getvalue())
    # set the "encrypted" flag bit in the local and central headers
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = data.index(sig)
        off = i + (6 if sig == b"PK\x03\x04" else 8)
        data[off] |= 0x1
    with pytest.raises(mmlab.InputError, match="encrypted"):
        load_zip(bytes(data), tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
