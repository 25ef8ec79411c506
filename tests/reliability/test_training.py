"""Interrupted training: kill-and-resume from the per-epoch checkpoint; cancelled and failed saves
leave the earlier checkpoint intact."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import mmlab
from mmlab import checkpoint
from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.model import build_model
from mmlab.train import Callback, fit

# the brief's command; --data-opt n=512 keeps generating and scoring the shapes splits cheap
TRAIN = [sys.executable, "-m", "mmlab.cli", "train", "--dataset", "shapes", "--task", "classify", "--fusion", "concat",
         "--epochs", "3", "--max-train", "256", "--dim", "32", "--threads", "1", "--data-opt", "n=512", "--quiet"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _start(out, tmp_path, *extra):
    log = open(tmp_path / f"{out.name}{'-'.join(extra)}.log", "w+")
    proc = subprocess.Popen([*TRAIN, "--out", str(out), *extra], cwd=tmp_path, env=_env(),
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    return proc, log


def _finish(proc, log, timeout=180):
    proc.wait(timeout=timeout)
    log.seek(0)
    text = log.read()
    log.close()
    assert proc.returncode == 0, text
    return text, json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_kill_and_resume_finishes_like_an_uninterrupted_run(tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    resume = tmp_path / "run.resume"
    victim, victim_log = _start(run, tmp_path)
    reference, reference_log = _start(ref, tmp_path)  # the same command, never interrupted
    try:
        deadline = time.monotonic() + 150
        while not (resume / "config.json").exists():
            assert victim.poll() is None, "the run ended before writing its first resume checkpoint"
            assert time.monotonic() < deadline, "no resume checkpoint after 150 s"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    victim_log.close()
    assert victim.returncode == -signal.SIGKILL
    # killed mid-training: the final checkpoint was never started, so it is absent (or, at worst, whole)
    if run.exists():
        mmlab.load(run)
    state, _ = checkpoint.load_with_state(resume)  # the resume checkpoint is whole
    epoch = state.meta["epoch"]
    assert epoch in (1, 2)
    assert "optimizer" in state.meta and "rng" in state.meta

    resumed, resumed_log = _start(run, tmp_path, "--resume")
    text, metrics = _finish(resumed, resumed_log)
    assert re.search(rf"resuming run from epoch {epoch}\b", text), text
    _, expected = _finish(reference, reference_log)
    assert not resume.exists()  # removed once the run is saved
    final = mmlab.load(run)
    assert final.meta["metrics"] == metrics["metrics"]
    # exact: the same batches, dropout draws and optimizer moments as the run never interrupted
    assert metrics["metrics"] == expected["metrics"]
    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()


# ---------------------------------------------------------------------------- cancel and failed saves

@pytest.fixture(scope="module")
def small():
    data = load_dataset("shapes", "train", n=96)
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="concat", targets={"label": len(data.classes["label"])}, dim=16),
                  classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    return model, data


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class CancelAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step(self, step, total_steps, logs):
        return step >= self.step  # the app's cancel button


def test_a_cancelled_run_leaves_the_earlier_checkpoint_intact(small, tmp_path):
    model, data = small
    ck = checkpoint.save(model, tmp_path / "ck", meta={"note": "before training"})
    before = _state(model)
    saved = []

    def on_epoch(m, state):  # what a caller saving every epoch would do
        checkpoint.save(m, ck, meta={"epoch": state.epoch})
        saved.append((state.epoch, _state(m)))

    cfg = TrainConfig(epochs=3, batch_size=16, threads=1)  # 6 steps per epoch
    result = fit(model, data, cfg, callbacks=(CancelAt(2),), progress=False, on_epoch_checkpoint=on_epoch)
    assert result.stopped and result.steps == 2 and saved == []
    assert not _equal(_state(model), before)  # the cancelled steps did change the live model...
    loaded = mmlab.load(ck)
    assert loaded.meta["note"] == "before training" and _equal(_state(loaded), before)  # ...not the checkpoint

    result = fit(model, data, cfg, callbacks=(CancelAt(9),), progress=False, on_epoch_checkpoint=on_epoch)
    assert result.stopped and [e for e, _ in saved] == [1]  # cancelled half-way through epoch 2
    loaded = mmlab.load(ck)
    assert loaded.meta["epoch"] == 1 and _equal(_state(loaded), saved[0][1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folders left


def test_a_save_that_fails_half_way_leaves_the_old_checkpoint(small, tmp_path, monkeypatch):
    model, _ = small
    ck = checkpoint.save(model, tmp_path / "ck", meta={"note": "good"})
    before = _state(model)
    real = checkpoint.save_file

    def disk_full(tensors, filename, *a, **k):
        real(dict(list(tensors.items())[:2]), filename)  # a partial file, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError):
        checkpoint.save(model, ck, meta={"note": "bad"})
    monkeypatch.undo()
    loaded = mmlab.load(ck)
    assert loaded.meta["note"] == "good" and _equal(_state(loaded), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    with torch.no_grad():
        next(model.parameters()).sub_(1.0)
