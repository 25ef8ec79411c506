"""Fixtures of the app tests: the tiny zoo, the app's folders pointed at it, a fresh AppTest."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tiny_zoo_module():
    spec = importlib.util.spec_from_file_location("mmlab_tests_tiny_zoo", Path(__file__).with_name("tiny_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    return _tiny_zoo_module().build_tiny_zoo(tmp_path_factory.getbasetemp() / "tiny-zoo")


@pytest.fixture
def app_env(tiny_zoo, tmp_path, monkeypatch):
    """Point the app at the tiny zoo and at an empty folder for models trained in the app."""
    monkeypatch.setenv("MMLAB_CHECKPOINTS", str(tiny_zoo))
    monkeypatch.setenv("MMLAB_USER_CHECKPOINTS", str(tmp_path / "user-checkpoints"))
    monkeypatch.setenv("MMLAB_USER_DATA", str(tmp_path / "user-data"))
    monkeypatch.setenv("MMLAB_CACHE", str(tmp_path / "cache"))
    # no background warm-up in the test process: its daemon thread (the shipped zoo's models, then UMAP's
    # compile) could still be inside torch or numba when pytest exits, which aborts the process (tests/test_warm.py
    # tests the warm-up itself)
    monkeypatch.setenv("MMLAB_NO_WARM", "1")
    return tiny_zoo


@pytest.fixture
def app(app_env):
    """A fresh AppTest of app.py (run it, then ``switch_page``)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
