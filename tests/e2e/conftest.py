"""Fixtures of the browser test: the tiny zoo, a `streamlit run app.py` server, Debian Chromium."""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


def _tiny_zoo_module():
    path = ROOT / "tests" / "app" / "tiny_zoo.py"
    spec = importlib.util.spec_from_file_location("mmlab_tests_tiny_zoo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium. Missing: the test skips on a laptop, and fails in CI (env CI set)."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found: apt-get install chromium (never `playwright install`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"playwright is not installed: {e}")
        pytest.skip(f"playwright is not installed: {e}")
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory, chromium_path):
    """`streamlit run app.py` on a free localhost port, pointed at the tiny zoo; yields its base URL."""
    zoo = _tiny_zoo_module().build_tiny_zoo(tmp_path_factory.getbasetemp() / "tiny-zoo")
    port = _free_port()
    logs = tmp_path_factory.mktemp("streamlit-server")
    env = {**os.environ, "MMLAB_CHECKPOINTS": str(zoo), "MMLAB_USER_CHECKPOINTS": str(logs / "user"),
           "MMLAB_USER_DATA": str(logs / "data"), "MMLAB_CACHE": str(logs / "cache"), "PYTHONUNBUFFERED": "1",
           "MMLAB_NO_WARM": "1"}  # the background warm-up (tested on its own) would only slow the suite here
    out = open(logs / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out.flush()
                pytest.fail(f"streamlit did not start:\n{(logs / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(logs / "server.log", ARTIFACTS / "e2e-server.log")


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()
