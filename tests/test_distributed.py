"""Data-parallel training (mmlab.distributed; issue 7 "Beyond one machine").

The main test trains the same tiny model twice: once in this process, once as two CPU processes
with the gloo backend launched by ``torchrun`` (the launcher a user puts in front of
``mmlab train``), and checks that both end at the same weights.

Why they should, and the tolerance: with the same seed every rank draws the same permutation and
takes ``batch[rank::2]`` of each global batch of 32; DDP averages the two ranks' gradients, which
is the gradient of the global batch mean, so each AdamW step is the single-process step up to the
order of float additions (two half-batch sums all-reduced instead of one sum). Two things would
differ for real and are switched off in *both* runs: dropout (each rank draws its own masks) and
BatchNorm (each rank normalises by the statistics of its 16 samples, not of the 32; PyTorch has
no SyncBatchNorm on CPU; on CUDA ``mmlab.distributed`` converts to SyncBatchNorm). What remains is
round-off, which Adam can amplify on parameters whose gradient is ~0 (m / sqrt(v) is then ~ +/-1
whatever the size): measured here, the weights differ by ~4e-6 of the training update's norm
(1.5e-4 for cross-attention with modality dropout and uneven shards), while merely changing the
shuffle seed moves them by ~0.6 of it. The test allows 1e-3.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmlab import distributed
from mmlab.errors import InputError
from mmlab.types import EncoderOutput

ROOT = Path(__file__).resolve().parents[1]

# One file, run by torchrun as two ranks and imported here for the single-process run.
SCRIPT = '''
import json
import sys

import torch
from torch import nn


def without_batch_statistics(module):
    """BatchNorm -> Identity and dropout off: the two sources of per-rank randomness (see the test)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        elif isinstance(child, nn.Dropout):
            child.p = 0.0
        else:
            without_batch_statistics(child)


def train(out, rank_files):
    from mmlab import distributed
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model
    from mmlab.train import fit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_dataset("shapes", "train", n=256)
    model = build_model(ModelConfig(fusion="concat", targets={"label": 4}, dim=32),
                  classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    without_batch_statistics(model)
    init = {k: v.clone() for k, v in model.state_dict().items()}

    def on_epoch_checkpoint(m, state):  # must run on rank 0 only
        rank = distributed.env_world()[0]
        open(f"{rank_files}/epoch{state.epoch}-rank{rank}", "w").close()

    result = fit(model, data, TrainConfig(epochs=2, batch_size=32, warmup_steps=4), progress=False,
                 on_epoch_checkpoint=on_epoch_checkpoint)
    if distributed.is_main():
        torch.save({"init": init, "final": model.state_dict(), "loss": [h["loss"] for h in result.history],
                    "steps": result.steps, "group_left": not torch.distributed.is_initialized()}, out)


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2])
'''


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([v.float().flatten() for k, v in sorted(state.items()) if v.dtype.is_floating_point])


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location("mmlab_ddp_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_gloo_processes_train_to_the_same_weights_as_one(tmp_path, monkeypatch):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MMLAB_DDP_BACKEND="gloo", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path / "ddp.pt"), str(ranks)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    single_ranks = tmp_path / "single"
    single_ranks.mkdir()
    _load_script(script).train(str(tmp_path / "single.pt"), str(single_ranks))

    one, two = torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt")
    init = _flat(one["init"])
    assert torch.equal(init, _flat(two["init"]))  # same seed, same start
    update = _flat(one["final"]) - init
    assert update.norm() > 0.1  # it trained
    gap = (_flat(one["final"]) - _flat(two["final"])).norm() / update.norm()
    assert gap < 1e-3, f"DDP weights differ from single-process by {gap:.2e} of the update"
    assert one["steps"] == two["steps"] == 16  # 256 / 32 global batches x 2 epochs, on each rank
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)  # logged loss: the global batch mean
    assert two["group_left"]  # fit destroyed the process group it created
    assert sorted(p.name for p in ranks.iterdir()) == ["epoch1-rank0", "epoch2-rank0"]  # rank 0 only
    assert sorted(p.name for p in single_ranks.iterdir()) == ["epoch1-rank0", "epoch2-rank0"]


def test_shards_cover_the_global_batch_and_scaled_losses_average_to_its_mean():
    idx = torch.arange(10, 21)  # a global batch of 11 over 3 ranks: shares of 4, 4, 3
    drop = {"text": torch.arange(11) % 2 == 0}
    values = torch.linspace(-1.0, 2.0, 11)  # a per-sample loss, indexed by position in the batch
    shares, grads = [], []
    for rank in range(3):
        local, local_drop, scale = distributed.Context(rank=rank, world=3, backend="gloo").shard(idx, drop)
        shares.append(local)
        assert torch.equal(local_drop["text"], drop["text"][rank::3])
        grads.append(scale * values[local - 10].mean())  # what this rank backpropagates
    assert sorted(torch.cat(shares).tolist()) == idx.tolist()
    assert [len(s) for s in shares] == [4, 4, 3]
    # DDP averages the ranks' gradients: the average of the scaled means is the global mean
    assert float(sum(grads) / 3) == pytest.approx(float(values.mean()), abs=1e-6)


def test_without_a_launcher_nothing_changes(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx, created = distributed.setup()
    assert ctx == distributed.Context() and not ctx.active and ctx.is_main and not created
    assert distributed.is_main() and not distributed.launched()
    assert ctx.all_sum([1.5, 2.0]) == [1.5, 2.0] and ctx.any(True) and not ctx.any(False)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, ctx) is model  # no DDP wrapper in a single process
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: still a single process
    assert distributed.setup() == (distributed.Context(), False)


def test_rank_and_world_come_from_the_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.env_world() == (2, 4, 0)
    assert distributed.launched() and not distributed.is_main()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InputError, match="RANK=4"):
        distributed.env_world()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="WORLD_SIZE"):
        distributed.env_world()


def test_launched_without_a_rendezvous_address_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MMLAB_DDP_BACKEND", "gloo")
    for k in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(InputError, match="torchrun"):
        distributed.setup()
    monkeypatch.setenv("MMLAB_DDP_BACKEND", "mpi")
    with pytest.raises(InputError, match="nccl or gloo"):
        distributed.setup()


def test_move_keeps_named_tuples_and_plain_values():
    enc = EncoderOutput(tokens=torch.zeros(2, 3, 4), mask=torch.ones(2, 3, dtype=torch.bool),
                        pooled=torch.zeros(2, 4), grid=(1, 3))
    out = distributed.move({"image": enc, "drop": None, "ids": [torch.arange(3)]}, torch.device("meta"))
    assert isinstance(out["image"], EncoderOutput) and out["image"].grid == (1, 3)
    assert out["image"].tokens.device.type == "meta" and out["ids"][0].device.type == "meta"
    assert out["drop"] is None


def test_sync_batchnorm_swap_shares_parameters_and_restores_the_plain_modules():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    bn = net[1]
    keys = list(net.state_dict())
    distributed._to_sync_batchnorm(net)
    assert isinstance(net[1], torch.nn.SyncBatchNorm) and net[1].weight is bn.weight
    assert list(net.state_dict()) == keys  # the original is kept outside the module tree
    net[1].running_mean.add_(1.0)  # in-place, as batch_norm updates it
    distributed._from_sync_batchnorm(net)
    assert net[1] is bn and float(bn.running_mean.sum()) == 4.0
