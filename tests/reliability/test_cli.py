"""The CLI: every refused input prints exactly one line ``error: ...`` on stderr and exits 2.

Each process imports torch (seconds), so most cases run through ``mmlab.cli.main`` inside one
driver process; two run as their own ``python -m mmlab.cli`` processes end to end.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest
from PIL import Image
from reliability_helpers import png_declaring

DRIVER = r"""
import contextlib, io, json, sys, traceback
from mmlab.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except BaseException:  # a crash is a failed case, reported with its traceback
            traceback.print_exc(file=err)
            code = "crash"
    results.append({"argv": argv, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue()})
print(json.dumps(results))
"""


class Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _env(tmp_path):
    env = dict(os.environ, MMLAB_CHECKPOINTS=str(tmp_path / "zoo"), OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _one_error_line(stderr: str, code) -> str:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, stderr)
    return lines[0]


@pytest.fixture
def files(tmp_path, saved_checkpoint):
    (tmp_path / "zoo").mkdir()
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (250, 250, 250)).save(good)
    junk = tmp_path / "junk.png"
    junk.write_text("this is not a picture")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30000, 30000))
    marker = tmp_path / "pwned"
    evil_file = tmp_path / "evil.pt"
    evil_file.write_bytes(pickle.dumps(Evil(marker)))
    evil_dir = tmp_path / "evil_ck"
    evil_dir.mkdir()
    (evil_dir / "config.json").write_text((saved_checkpoint / "config.json").read_text())
    (evil_dir / "model.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    return {"ck": str(saved_checkpoint), "good": str(good), "junk": str(junk), "bomb": str(bomb),
            "evil_file": str(evil_file), "evil_dir": str(evil_dir), "marker": marker, "missing": str(tmp_path / "nope.png")}


def test_refused_inputs_print_one_error_line(files, tmp_path):
    f = files
    predict = ["predict", f["ck"], "--image"]
    cases = {  # name: (argv, words the message must hold)
        "missing image": ([*predict, f["missing"], "--text", "a red circle"], ["not found", "nope.png"]),
        "not an image": ([*predict, f["junk"], "--text", "a red circle"], ["not a readable image"]),
        "bomb": ([*predict, f["bomb"], "--text", "a red circle"], ["too large"]),
        "empty text": ([*predict, f["good"], "--text", "  \t "], ["text is empty"]),
        "control-only text": ([*predict, f["good"], "--text", "\x00\x1b\u202e"], ["text is empty"]),
        "pickle file": (["predict", f["evil_file"], "--image", f["good"], "--text", "x"], ["evil.pt"]),
        "pickle as safetensors": (["predict", f["evil_dir"], "--image", f["good"], "--text", "x"], ["model.safetensors"]),
        "unknown checkpoint": (["predict", "no-such-model", "--image", f["good"], "--text", "x"], ["no-such-model"]),
        "unknown dataset (eval)": (["eval", f["ck"], "--dataset", "imagenet-9000"], ["unknown dataset"]),
        "unknown dataset (train)": (["train", "--dataset", "imagenet-9000", "--epochs", "1", "--out",
                                     str(tmp_path / "never")], ["unknown dataset"]),
        "bad data option": (["eval", f["ck"], "--data-opt", "n"], ["key=value"]),
        "unknown strategy": (["train", "--fusion", "telepathy", "--epochs", "1", "--data-opt", "n=8",
                              "--out", str(tmp_path / "never")], ["telepathy"]),
    }
    argvs = [argv for argv, _ in cases.values()]
    argvs.append(["predict", f["ck"], "--image", f["good"], "--text", "the small red circle", "--json"])
    argvs.append(["predict", f["ck"], "--image", f["good"], "--text", "x", "--drop", "both"])  # argparse
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=300, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, (_, words)), res in zip(cases.items(), results):
        line = _one_error_line(res["stderr"], res["code"])
        for w in words:
            assert w in line, (name, line)
        assert res["stdout"] == "", name
    ok, argparse_error = results[-2], results[-1]
    assert ok["code"] == 0 and ok["stderr"] == "" and json.loads(ok["stdout"])["label"]  # good input still works
    assert argparse_error["code"] == 2 and "invalid choice" in argparse_error["stderr"]
    assert not f["marker"].exists()  # no pickle ran
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("case", ["missing image", "argparse"])
def test_the_process_itself_exits_2(files, tmp_path, case):
    if case == "missing image":
        argv = ["predict", files["ck"], "--image", files["missing"], "--text", "a red circle"]
    else:
        argv = ["predict", files["ck"], "--image", files["good"], "--text", "x", "--drop", "both"]
    proc = subprocess.run([sys.executable, "-m", "mmlab.cli", *argv], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=180, encoding="utf-8")
    assert proc.stdout == ""
    if case == "missing image":
        assert "not found" in _one_error_line(proc.stderr, proc.returncode)
    else:  # argparse prints its usage, then its own "error:" line, and exits 2
        assert proc.returncode == 2 and "error: argument --drop" in proc.stderr and "Traceback" not in proc.stderr
