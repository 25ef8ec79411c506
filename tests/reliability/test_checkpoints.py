"""Checkpoints from strangers: nothing in them runs code; every broken one is a clear InputError.

tests/core/test_checkpoint.py covers a pickle file by name, missing folders, bad JSON, foreign and
future configs, mismatched dim and an unknown strategy; these are the cases it does not.
"""
import json
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmlab
from mmlab import checkpoint
from mmlab.config import ModelConfig
from mmlab.data.tokenizer import WordTokenizer
from mmlab.model import build_model


@pytest.fixture
def ckpt(tmp_path):
    """A valid (untrained) concat checkpoint folder."""
    model = build_model(ModelConfig(fusion="concat", targets={"label": 3}, dim=16), classes={"label": ["a", "b", "c"]},
                  tokenizer=WordTokenizer.fit(["a red circle", "a blue square"]).to_json())
    return checkpoint.save(model, tmp_path / "ck", meta={"dataset": "shapes"})


def refused(path, *match: str) -> str:
    with pytest.raises(mmlab.InputError) as e:
        mmlab.load(path)
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


def edit_config(path, change):
    cfg = json.loads((path / "config.json").read_text())
    change(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


class Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_renamed_model_safetensors_is_refused_and_runs_nothing(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"weights": Evil(marker)}))
    refused(ckpt, "model.safetensors")
    assert not marker.exists()
    # torch's own (zip + pickle) format under the safetensors name: refused too, never unpickled
    torch.save({"x": Evil(marker)}, ckpt / "model.safetensors")
    assert zipfile.is_zipfile(ckpt / "model.safetensors")
    refused(ckpt, "model.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "pytorch_model.bin", "model.ckpt", "weights.pkl"])
def test_a_folder_holding_only_a_pickle_is_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / name).write_bytes(pickle.dumps(Evil(marker)))
    refused(folder, "not an mmlab checkpoint")
    refused(folder / name, "pickle checkpoints are refused")
    assert not marker.exists()


def test_weights_with_extra_or_missing_keys(ckpt):
    weights = load_file(str(ckpt / "model.safetensors"))
    save_file({**weights, "backdoor.weight": torch.zeros(2)}, str(ckpt / "model.safetensors"))
    refused(ckpt, "unexpected", "backdoor.weight")
    first = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != first}, str(ckpt / "model.safetensors"))
    refused(ckpt, "missing", first)
    name = next(k for k, v in weights.items() if v.dim() == 2)
    save_file({**weights, name: torch.zeros(3, 3)}, str(ckpt / "model.safetensors"))
    refused(ckpt, "shape", name)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"\xff" * 8 + b"{}",
                                     (10**12).to_bytes(8, "little") + b"{}"])  # header claims 1 TB
def test_broken_weight_files(ckpt, content):
    (ckpt / "model.safetensors").write_bytes(content)
    refused(ckpt, "weights")


def test_a_huge_config_is_refused_without_being_parsed(ckpt):
    with open(ckpt / "config.json", "w") as f:
        f.write('{"format": "mmlab-checkpoint", "pad": "')
        f.write("x" * (checkpoint.MAX_CONFIG_BYTES + 10))
        f.write('"}')
    refused(ckpt, "too large")


@pytest.mark.parametrize("change,match", [
    (lambda c: c.__setitem__("model", [1, 2]), "model"),
    (lambda c: c.__setitem__("model", "concat"), "ModelConfig"),
    (lambda c: c.__setitem__("model", None), "model"),
    (lambda c: c["model"].__setitem__("dim", "16"), "model"),
    (lambda c: c["model"].__setitem__("telepathy", True), "unknown ModelConfig keys"),
    (lambda c: c["model"].__setitem__("fusion_options", {"evil": 1}), "options"),
    (lambda c: c["model"].__setitem__("text_encoder", "gpt9"), "gpt9"),
    (lambda c: c["model"].__setitem__("image_encoder", "../../etc/passwd"), "image encoder"),
    (lambda c: c["model"].__setitem__("targets", {"label": 5}), "class names"),
    (lambda c: c.__setitem__("format_version", "1"), "format version"),
    (lambda c: c.__setitem__("format_version", None), "format version"),
    (lambda c: c.pop("format"), "not an mmlab checkpoint"),
    (lambda c: c.__setitem__("tokenizer", {"kind": "word", "vocab": 5}), "model"),
    (lambda c: c.__setitem__("tokenizer", None), "vocabulary"),
])
def test_configs_that_do_not_describe_a_model(ckpt, change, match):
    edit_config(ckpt, change)
    refused(ckpt, match)


@pytest.mark.parametrize("content", ['[1, 2, 3]', '"mmlab-checkpoint"', "null", "\ufeff{}"])
def test_configs_that_are_not_objects(ckpt, content):
    (ckpt / "config.json").write_text(content, encoding="utf-8")
    refused(ckpt)


def test_a_config_that_is_not_utf8(ckpt):
    (ckpt / "config.json").write_bytes(b'{"format": "\xff\xfe"}')
    refused(ckpt, "JSON")


def test_a_folder_without_weights_is_refused(ckpt):
    (ckpt / "model.safetensors").unlink()
    refused(ckpt, "model.safetensors")


# Refusals added to checkpoint.py / zoo.py after this corpus found them.

def test_negative_dim_is_an_input_error(ckpt):
    edit_config(ckpt, lambda c: c["model"].__setitem__("dim", -1))
    refused(ckpt)


def test_classes_not_a_dict_is_an_input_error(ckpt):
    edit_config(ckpt, lambda c: c.__setitem__("classes", ["a", "b", "c"]))
    refused(ckpt)


def test_class_names_must_match_the_heads(ckpt):
    edit_config(ckpt, lambda c: c.__setitem__("classes", {"label": ["a"]}))
    refused(ckpt, "class")


def test_the_zoo_names_a_pickle_file_as_such(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "model.pt").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(mmlab.InputError) as e:
        mmlab.load(str(tmp_path / "model.pt"))
    assert not marker.exists()
    assert "pickle checkpoints are refused" in str(e.value)  # (the tmp path itself holds "pickle")
