"""The benchmark scripts run and print one JSON object with the expected keys (``--quick``), and
``mmlab.bench`` merges them. Speed is measured by the scripts, never asserted here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlab import bench
from mmlab.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MACHINE_KEYS = {"platform", "cpu_count", "torch", "torch_threads", "cuda_available", "cuda_device", "device"}


def run_script(name: str, *args: str, env_extra: dict | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}: {proc.stdout[:500]}"
    return json.loads(lines[0])


def test_predict_quick_prints_latency_per_strategy_with_its_source(tmp_path):
    empty_zoo = tmp_path / "zoo"
    empty_zoo.mkdir()
    out = run_script("predict", "--strategies", "concat,cross_attention", "--reps", "3", "--warmup", "1",
                     env_extra={"MMLAB_CHECKPOINTS": str(empty_zoo), "MMLAB_CACHE": str(tmp_path / "cache")})
    assert out["benchmark"] == "predict" and out["quick"] is True
    assert MACHINE_KEYS <= set(out["machine"])
    rows = {r["strategy"]: r for r in out["strategies"]}
    assert set(rows) == {"concat", "cross_attention"}
    for r in rows.values():
        assert "error" not in r, r
        assert {"p50_ms", "p95_ms", "source", "trained", "n"} <= set(r)
        assert r["n"] == 3 and 0 < r["p50_ms"] <= r["p95_ms"]
        assert r["trained"] is False and r["source"].startswith("untrained")  # the zoo is empty
    assert rows["cross_attention"]["attention"]["layer0"][-2:] == [16, 16]  # maps on the 16x16 patch grid
    assert rows["concat"]["attention"] is None


def test_projections_quick_reports_first_and_warm_calls_from_a_fresh_process():
    out = run_script("projections", "--methods", "pca", "--sizes", "200")
    assert out["benchmark"] == "projections" and MACHINE_KEYS <= set(out["machine"])
    rows = out["methods"]["pca"]
    assert [r["n"] for r in rows] == [200]
    for r in rows:
        assert {"import_seconds", "first_seconds", "warm_seconds"} <= set(r), r


def _fake_bench(tmp_path: Path) -> Path:
    d = tmp_path / "bench"
    d.mkdir()
    (d / "_common.py").write_text("")  # helpers are not benchmarks
    (d / "good.py").write_text(
        "import json, sys\nprint('chatter')\nprint(json.dumps({'benchmark': 'good', 'quick': '--quick' in sys.argv,"
        " 'machine': {'cpu_count': 2}}))\n")
    (d / "broken.py").write_text("raise SystemExit('no luck')\n")
    return d


def test_run_all_merges_the_scripts_and_lists_failures(tmp_path):
    d = _fake_bench(tmp_path)
    assert bench.available(d) == ["broken", "good"]
    started = []
    out = bench.run_all(quick=True, directory=d, on_start=started.append)
    assert started == ["broken", "good"]
    assert out["benchmarks"]["good"] == {"benchmark": "good", "quick": True, "machine": {"cpu_count": 2}}
    assert out["machine"] == {"cpu_count": 2} and out["quick"] is True
    assert "no luck" in out["failed"]["broken"]
    only = bench.run_all(directory=d, only=["good"])
    assert list(only["benchmarks"]) == ["good"] and only["benchmarks"]["good"]["quick"] is False


def test_unknown_benchmark_names_are_refused(tmp_path):
    d = _fake_bench(tmp_path)
    with pytest.raises(InputError, match="unknown benchmark"):
        bench.run_all(directory=d, only=["nope"])
    with pytest.raises(InputError, match="unknown benchmark"):
        bench.run_one("nope", directory=d)
    with pytest.raises(InputError, match="no benchmark folder"):
        bench.available(tmp_path / "missing")


def test_every_shipped_benchmark_is_listed():
    assert set(bench.available()) == {"ablation", "app_timing", "compare_all", "journey", "memory", "photo", "predict",
                                      "projections", "training"}
