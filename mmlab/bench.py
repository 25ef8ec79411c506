"""Run the benchmarks in ``bench/`` (issue 7) and merge their figures: ``mmlab bench --json``.

Each ``bench/<name>.py`` prints one JSON object on stdout; ``run_all`` runs every one in its own
subprocess (so that one benchmark's imports, caches and threads do not colour another's) and
returns {"machine": ..., "quick": bool, "benchmarks": {name: that object}, "failed": {name:
reason}, "seconds": wall time}. The figures live in docs/BENCHMARKS.md with the machine they
were taken on; nothing here asserts a speed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mmlab.errors import InputError

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def available(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the benchmark scripts (``bench/<name>.py``, helpers starting with ``_`` left out)."""
    d = Path(directory) if directory is not None else BENCH_DIR
    if not d.is_dir():
        raise InputError(f"no benchmark folder at {d}: the benchmarks ship with a checkout of mmlab, not the wheel")
    return sorted(p.stem for p in d.glob("*.py") if not p.name.startswith("_"))


def _last_json(stdout: str) -> dict | None:
    """The last line of ``stdout`` that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_one(name: str, *, quick: bool = False, args: tuple[str, ...] = (), timeout: float | None = None,
            directory: str | os.PathLike | None = None) -> dict:
    """Run ``bench/<name>.py`` [--quick] [args] in a subprocess and return its JSON object.
    Raises ``InputError`` for an unknown name, ``RuntimeError`` when the script fails or prints no JSON."""
    d = Path(directory) if directory is not None else BENCH_DIR
    names = available(d)
    if name not in names:
        raise InputError(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}")
    cmd = [sys.executable, str(d / f"{name}.py"), *(["--quick"] if quick else []), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, cwd=d.parent, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name}: still running after {timeout:g} s; stopped") from None
    result = _last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{name}: exit status {proc.returncode}, {'no JSON' if result is None else 'JSON'} "
                           f"on stdout; {' | '.join(tail)}"[:1000])
    return result


def run_all(quick: bool = False, *, only: list[str] | None = None, timeout: float | None = None,
            directory: str | os.PathLike | None = None, on_start=None) -> dict:
    """Run every benchmark (or those named in ``only``), each in its own subprocess, and merge them.

    ``quick``: tiny sizes (checks the scripts work; numbers meaningless). ``timeout``: seconds
    per script (None: no limit). ``on_start(name)``: called before each (progress for the CLI).
    A script that fails is listed under "failed" with the reason; the others still run.
    """
    names = available(directory)
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise InputError(f"unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(names)}")
        names = [n for n in names if n in only]
    t0 = time.perf_counter()
    results, failed = {}, {}
    for name in names:
        if on_start is not None:
            on_start(name)
        try:
            results[name] = run_one(name, quick=quick, timeout=timeout, directory=directory)
        except RuntimeError as e:
            failed[name] = str(e)
    machine = next((r.get("machine") for r in results.values() if r.get("machine")), None)
    return {"machine": machine, "quick": quick, "benchmarks": results, "failed": failed,
            "seconds": round(time.perf_counter() - t0, 1)}
