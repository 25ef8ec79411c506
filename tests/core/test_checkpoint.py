import json
import pickle

import numpy as np
import pytest
import torch

import mmlab
from mmlab import checkpoint
from mmlab.train import fit
from mmlab.config import TrainConfig


def test_round_trip_same_outputs(tmp_path, tiny_shapes, model_factory):
    train, test = tiny_shapes
    model = model_factory(train)
    fit(model, train.subset(range(64)), TrainConfig(epochs=1, batch_size=32), progress=False)
    model.eval()
    path = checkpoint.save(model, tmp_path / "ck", meta={"dataset": "shapes"})
    loaded = mmlab.load(path)
    img = test.images[0].transpose(1, 2, 0)
    a, b = model.predict(img, test.texts[0]), loaded.predict(img, test.texts[0])
    assert a.label == b.label
    assert a.probs == pytest.approx(b.probs, abs=1e-6)
    np.testing.assert_allclose(a.mask, b.mask, atol=1e-6)
    for k in a.attention:
        np.testing.assert_allclose(a.attention[k], b.attention[k], atol=1e-6)
    assert json.loads((path / "config.json").read_text())["format_version"] == checkpoint.FORMAT_VERSION


def test_float16_weights_halve_the_file_and_load_to_the_rounded_model(tmp_path, tiny_shapes, model_factory):
    """The zoo stores float16 weights: half the bytes, and the loaded model is exactly the
    training model with its weights rounded (so metrics measured after rounding are the file's)."""
    train, test = tiny_shapes
    model = model_factory(train)
    fit(model, train.subset(range(64)), TrainConfig(epochs=1, batch_size=32), progress=False)
    model.eval()
    full = checkpoint.save(model, tmp_path / "full")
    half = checkpoint.save(model, tmp_path / "half", weights="float16")
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    loaded = mmlab.load(half)
    assert loaded.meta["weights"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    checkpoint.round_weights(model, "float16")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    img = test.images[0].transpose(1, 2, 0)
    assert model.predict(img, test.texts[0]).probs == loaded.predict(img, test.texts[0]).probs
    with pytest.raises(mmlab.InputError, match="weights must be"):
        checkpoint.save(model, tmp_path / "bad", weights="int8")


def test_save_is_atomic_and_replaces(tmp_path, tiny_shapes, model_factory):
    train, _ = tiny_shapes
    model = model_factory(train)
    checkpoint.save(model, tmp_path / "ck")
    checkpoint.save(model, tmp_path / "ck", meta={"dataset": "again"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert mmlab.load(tmp_path / "ck").meta["dataset"] == "again"


def test_pickle_checkpoint_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(mmlab.InputError, match="pickle"):
        mmlab.load(bad)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["missing", "empty_dir", "bad_json", "foreign", "future", "shapes", "strategy"])
def test_foreign_or_broken_checkpoints(tmp_path, tiny_shapes, model_factory, case):
    train, _ = tiny_shapes
    path = tmp_path / "ck"
    if case == "missing":
        path = tmp_path / "nothing-here"
    elif case == "empty_dir":
        path.mkdir()
    else:
        checkpoint.save(model_factory(train), path)
        cfg = json.loads((path / "config.json").read_text())
        if case == "bad_json":
            (path / "config.json").write_text("{not json")
        elif case == "foreign":
            (path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
        elif case == "future":
            cfg["format_version"] = 99
            (path / "config.json").write_text(json.dumps(cfg))
        elif case == "shapes":
            cfg["model"]["dim"] = 48
            (path / "config.json").write_text(json.dumps(cfg))
        elif case == "strategy":
            cfg["model"]["fusion"] = "telepathy"
            (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(mmlab.InputError):
        mmlab.load(path)


def test_sizing_a_checkpoint_on_the_meta_device_stays_light():
    """The config is checked on the meta device with initialisers skipped: loading a checkpoint never pulls in
    torch._dynamo (its meta initialisers' first use imports it: 3 s of a page's first load here)."""
    import subprocess
    import sys

    code = ("import sys, mmlab; m = mmlab.load('shapes-mask-cross_attention'); "
            "m.predict(__import__('numpy').zeros((64, 64, 3), 'uint8'), 'the red circle'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
