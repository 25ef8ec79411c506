"""The background warm-up of a fresh app server: once per process, off the user's path, off when asked."""
import gc
import os
import time

import pytest


def test_warm_up_loads_the_named_checkpoints_once(tiny_zoo_dir, monkeypatch):
    from mmlab import warm

    monkeypatch.setenv("MMLAB_CHECKPOINTS", str(tiny_zoo_dir))
    monkeypatch.setattr(warm, "_started", type(warm._started)())
    warm.done.clear()
    assert warm.start(("tiny",), umap=False) is True
    assert warm.start(("tiny",), umap=False) is False  # once per process
    deadline = time.monotonic() + 60
    while "tiny" not in warm.done and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "imports" in warm.done and "tiny" in warm.done
    # what it loaded is out of the collector's view: a full collection no longer walks it
    assert gc.get_freeze_count() > 10_000
    gc.unfreeze()


def test_warm_up_draws_the_photo_models_answer_once(monkeypatch):
    """A first photo pays no import: the warm-up has located a picture once on the photo model (its box needs
    scipy.ndimage, 0.2-0.45 s to import, with the interpreter lock held)."""
    import sys
    import threading

    from mmlab import photo, warm

    calls, real = [], photo.located
    monkeypatch.setattr(photo, "located", lambda *a, **k: calls.append(a) or real(*a, **k))
    warm.done.pop("photo-imagenet_bridge", None)
    # in a thread of its own: the warm-up lowers its own thread's priority
    t = threading.Thread(target=warm._run, args=(("photo-imagenet_bridge",), False))
    t.start()
    t.join(120)
    gc.unfreeze()
    assert "photo-imagenet_bridge" in warm.done
    assert len(calls) == 1 and "scipy.ndimage" in sys.modules


def test_idle_time_work_waits_for_the_pages(monkeypatch):
    """UMAP's compile (idle-time work) starts only once no script run is active and none ended recently."""
    import threading

    from mmlab import warm

    monkeypatch.setattr(warm, "_last_end", 0.0)
    released = threading.Event()

    def waiter():
        warm.wait_until_idle(quiet=0.3)
        released.set()

    with warm.busy():
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        assert not released.wait(0.5)  # a page is running: the work waits
    ended = time.monotonic()
    assert released.wait(5)
    assert time.monotonic() - ended >= 0.25  # and then the quiet time too
    t.join(1)


def test_the_default_checkpoints_split_is_shared_with_the_pages():
    import mmlab
    from mmlab.evaluate import shared_split, split_of

    a = shared_split(mmlab.load("shapes-mask-cross_attention"))
    b = shared_split(mmlab.load("shapes-mask-grounded_cross_attention"))
    assert a is b  # one copy per dataset description, whichever checkpoint asks
    fresh = split_of(mmlab.load("shapes-mask-cross_attention"))
    assert a.texts == fresh.texts and (a.images == fresh.images).all()


def test_warm_up_can_be_turned_off(monkeypatch):
    from mmlab import warm

    monkeypatch.setattr(warm, "_started", type(warm._started)())
    monkeypatch.setenv("MMLAB_NO_WARM", "1")
    assert warm.start() is False


@pytest.fixture(scope="module")
def tiny_zoo_dir(tmp_path_factory):
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.experiment import Experiment, run

    root = tmp_path_factory.mktemp("warm-zoo")
    run(Experiment(dataset="shapes", task="mask", data_options={"n": 64},
                   model=ModelConfig(fusion="concat", dim=16, image_size=None),
                   train=TrainConfig(epochs=1, batch_size=32, threads=1)), root / "tiny", manifest=True)
    return root


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the server's memory map from /proc")
def test_mmlab_app_serves_and_starts_warming_before_anyone_visits():
    """``mmlab app`` runs Streamlit's server in its own process with the warm-up beside it: torch is loaded
    there before the first visit (``streamlit run app.py`` would wait for a visitor)."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mmlab.cli", "app", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, torch_loaded, healthy = time.monotonic() + 120, False, False
        while time.monotonic() < deadline and not (torch_loaded and healthy):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            with open(f"/proc/{proc.pid}/maps") as f:
                torch_loaded = "libtorch_cpu" in f.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                pass
            time.sleep(0.2)
        assert healthy and torch_loaded
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.terminate()
        proc.wait(30)
