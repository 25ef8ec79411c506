"""Data-parallel training on PyTorch DDP, launched by ``torchrun`` (issue 7, "Beyond one machine").

The same command runs on one process or many: ``torchrun --nproc_per_node=N -m mmlab.cli train ...``
starts N copies of ``mmlab train``; each reads the variables torchrun sets (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), and ``fit`` then

- joins the process group (``nccl`` when CUDA is available, each rank on ``cuda:LOCAL_RANK``;
  ``gloo`` on CPU; ``MMLAB_DDP_BACKEND`` overrides the choice),
- wraps the model in ``DistributedDataParallel`` for the training steps (BatchNorm becomes
  ``SyncBatchNorm`` on CUDA, so its statistics are those of the global batch; on CPU, where
  PyTorch has no SyncBatchNorm, each rank normalises by its own share of the batch),
- draws the same permutation on every rank (same seed) and gives rank r the samples
  ``batch[r::world]`` of each global batch, so the global batch stays ``batch_size``,
- averages the logged loss over ranks, lets only rank 0 write checkpoints and show progress,
- and leaves the process group (when it created it) with the plain model back on its device.

Without those variables (or with ``WORLD_SIZE=1``) nothing here does anything: ``fit`` runs as a
single process exactly as before. All of this is plain ``torch.distributed``; nothing is
home-made but the bookkeeping.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from mmlab.errors import InputError

BACKEND_ENV = "MMLAB_DDP_BACKEND"


@dataclass(frozen=True)
class Context:
    """Where this process stands in a data-parallel run.

    rank / world: this process's index and the number of processes (0 / 1 when single);
    local_rank: its index on this machine (its GPU); device: where its model copy lives
    (None: leave the model where it is); backend: the process group's backend, None when
    there is no process group (single process).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    backend: str | None = None

    @property
    def active(self) -> bool:
        """True when a process group is in use (DDP wraps the model)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and shows progress."""
        return self.rank == 0

    def shard(self, idx: torch.Tensor, drop: dict[str, torch.Tensor] | None = None):
        """This rank's share of one global batch.

        idx: (B,) sample indices of the global batch (the same on every rank);
        drop: {modality: (B,) bool} drawn for the global batch (the same on every rank) or None.
        Returns (idx[rank::world] (b,), drop sliced the same way, loss scale): DDP averages the
        ranks' gradients, so a rank whose share is b of B scales its mean loss by b * world / B
        and the average is the gradient of the global batch mean even when B % world != 0.
        """
        local = idx[self.rank::self.world]
        if drop is not None:
            drop = {m: v[self.rank::self.world] for m, v in drop.items()}
        return local, drop, len(local) * self.world / len(idx)

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum of ``values`` over every rank (the values themselves when single)."""
        if not self.active:
            return list(values)
        device = self.device if "nccl" in (self.backend or "") and self.device is not None else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().tolist()

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP does so before
        each forward; after an epoch's last step each rank still holds its own update, so this
        makes every rank's model the same again before validation and saving."""
        if self.active:
            for buf in model.buffers():
                dist.broadcast(buf.data, src=0)

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is True on any rank (a callback's stop request stops every rank)."""
        return bool(self.all_sum([float(bool(flag))])[0] > 0) if self.active else bool(flag)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name} must be an integer; got {value!r}") from None


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables torchrun sets; (0, 1, 0) without them."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def launched() -> bool:
    """True when a launcher (torchrun) started this process as one of several."""
    return env_world()[1] > 1


def is_main() -> bool:
    """True on rank 0, or in a single process: the process that saves, writes the manifest and
    prints (``mmlab train`` checks it after ``fit``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_world()[0] == 0


def default_backend() -> str:
    """``$MMLAB_DDP_BACKEND``, else ``nccl`` with CUDA, else ``gloo``."""
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("nccl", "gloo"):
        raise InputError(f"{BACKEND_ENV} must be nccl or gloo; got {backend!r}")
    return backend


def _context_of_group() -> Context:
    rank, world = dist.get_rank(), dist.get_world_size()
    local = _env_int("LOCAL_RANK", rank)
    backend = str(dist.get_backend())  # "gloo", "nccl", or e.g. "cpu:gloo,cuda:nccl"
    device = torch.device("cuda", local) if "nccl" in backend else None
    return Context(rank=rank, world=world, local_rank=local, device=device, backend=backend)


def setup() -> tuple[Context, bool]:
    """The data-parallel context of this process, and whether this call created the process group.

    A process group someone already made (``init_process_group`` before ``fit``) is used as it
    is. Otherwise, when torchrun launched several processes, this joins one (env:// rendezvous)
    with ``default_backend()``; on ``nccl`` it pins this process to ``cuda:LOCAL_RANK``.
    Single process: ``Context()`` and no group.
    """
    if dist.is_available() and dist.is_initialized():
        return _context_of_group(), False
    if not launched():
        return Context(), False
    if not dist.is_available():
        raise InputError("this PyTorch build has no torch.distributed: run without torchrun")
    rank, world, local = env_world()
    backend = default_backend()
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s): "
                             "use --nproc_per_node=<number of GPUs>")
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    except ValueError as e:  # e.g. MASTER_ADDR missing: not started by torchrun
        raise InputError(f"cannot join the process group ({e}); launch with torchrun") from None
    return _context_of_group(), True


def teardown(*, barrier: bool = True) -> None:
    """Leave the process group; ``barrier`` first, so that no rank quits while another still talks
    (skipped after an error, when the other ranks may never reach it)."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def session() -> Iterator[Context]:
    """``setup()`` on entry; on exit, destroy the process group if this session created it."""
    ctx, created = setup()
    ok = False
    try:
        yield ctx
        ok = True
    finally:
        if created:
            teardown(barrier=ok)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def move(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples, named tuples) moved to ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple (EncoderOutput, ...)
        return type(obj)(*(move(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move(v, device) for v in obj)
    return obj


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """The module to run the training steps through: ``model`` itself when single; else the model
    moved to ``ctx.device`` (BatchNorm -> SyncBatchNorm on CUDA) inside ``DistributedDataParallel``.
    The parameters stay the same objects, so an optimizer over ``model.parameters()`` made after
    this call trains the DDP model. ``find_unused_parameters``: the stand-ins for a dropped
    modality and the late-fusion branches are used only by some batches."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device is not None:
        model.to(ctx.device)
    if ctx.device is not None and ctx.device.type == "cuda":
        _to_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[ctx.device.index], output_device=ctx.device.index,
                                       find_unused_parameters=True)
    return DistributedDataParallel(model, find_unused_parameters=True)


def unwrap(model: nn.Module, ctx: Context, device: torch.device) -> None:
    """Undo ``wrap`` on ``model`` in place: plain BatchNorm again, back on ``device``."""
    if not ctx.active:
        return
    _from_sync_batchnorm(model)
    model.to(device)


def _to_sync_batchnorm(model: nn.Module) -> None:
    """Replace every BatchNorm child by a SyncBatchNorm sharing its parameters and buffers (the
    running statistics are updated in place, so the original module sees them)."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
            sync = nn.SyncBatchNorm.convert_sync_batchnorm(child)
            object.__setattr__(sync, "_mmlab_plain", child)  # kept outside the module tree
            setattr(model, name, sync)
        else:
            _to_sync_batchnorm(child)


def _from_sync_batchnorm(model: nn.Module) -> None:
    """Put back every BatchNorm that ``_to_sync_batchnorm`` replaced."""
    for name, child in model.named_children():
        plain = getattr(child, "_mmlab_plain", None) if isinstance(child, nn.SyncBatchNorm) else None
        if plain is not None:
            plain.train(child.training)
            setattr(model, name, plain)
        else:
            _from_sync_batchnorm(child)
