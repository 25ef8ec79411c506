"""Independent jobs side by side on the CPU's cores, each worker thread with its own share of PyTorch's intra-op
threads (PyTorch's OpenMP backend lets a thread set its own count): for runs of many small kernels, which two
cores share better across jobs than within one."""
from __future__ import annotations

import concurrent.futures
import functools

import torch


@functools.lru_cache(maxsize=1)
def threads_are_per_thread() -> bool:
    """Whether ``torch.set_num_threads`` in a thread changes that thread only (PyTorch's OpenMP backend)."""
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


def side_by_side(jobs: dict) -> dict:
    """{name: job()} for independent jobs (a whole-split run, a photo at one size), started in the order given:
    side by side in ``W`` worker threads with ``threads // W`` intra-op threads each, where PyTorch lets a thread
    set its own count; else one after another. The runs are many small kernels, which two cores share better
    across jobs than within one (a bfloat16 mask model's ablation: 14 % faster on this project's 2-core CPU; the
    photo model's three input sizes, 0.88 -> 0.75 s on machine B)."""
    threads = torch.get_num_threads()
    workers = min(len(jobs), threads) if threads_are_per_thread() else 1
    if workers < 2:
        return {name: job() for name, job in jobs.items()}
    # per thread, like the thread count: carried over
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def call(job):
        torch.set_num_threads(max(1, threads // workers))  # this worker thread's own count
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return job()

    try:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="mmlab-side-by-side") as pool:
            futures = {name: pool.submit(call, job) for name, job in jobs.items()}
            return {name: f.result() for name, f in futures.items()}
    finally:
        # a thread's count is its own, but PyTorch also keeps the last count set as the one every thread started
        # later begins with: left at the workers' 1, each later page run (a new thread) ran on one core
        torch.set_num_threads(threads)
