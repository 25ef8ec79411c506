import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_to_home(tmp_path_factory):
    """Models and datasets a test makes go to its own folders, never the user's home."""
    base = tmp_path_factory.mktemp("home")
    for var, sub in (("MMLAB_USER_CHECKPOINTS", "models"), ("MMLAB_USER_DATA", "data")):
        os.environ.setdefault(var, str(base / sub))


@pytest.fixture(scope="session")
def tiny_shapes():
    """(train, test) of the shapes set, small enough to train on in seconds."""
    from mmlab.data import load_dataset

    return load_dataset("shapes", "train", n=512), load_dataset("shapes", "test", n=200)


def make_model(train, *, fusion="cross_attention", mask=True, dim=32, targets=("label",), **cfg):
    from mmlab.config import ModelConfig
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    return build_model(
        ModelConfig(fusion=fusion, targets={t: len(train.classes[t]) for t in targets}, mask=mask, dim=dim, **cfg),
        classes={t: train.classes[t] for t in targets},
        tokenizer=WordTokenizer.fit(train.texts).to_json(),
    )


@pytest.fixture
def model_factory():
    return make_model


# ---- UMAP's numba code, compiled beside the suite -------------------------------------------------------------
# The UMAP test needs umap's and pynndescent's numba code: about a minute of single-threaded compiling on a fresh
# machine. A background process (lower priority) compiles it into numba's on-disk cache in a folder of this session
# while the other tests run, mostly on the core they leave idle; the test then loads it, as a second app start does.
def pytest_collection_finish(session):
    if not any("umap" in item.nodeid for item in session.items):
        return
    folder = Path(tempfile.mkdtemp(prefix="mmlab-test-umap-"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"MMLAB_CACHE": str(folder)}
    with open(folder / "stderr.txt", "wb") as err:  # a file, not a pipe nobody reads until the test
        proc = subprocess.Popen([sys.executable, "-c", "import mmlab.project as P; P.warm_umap(approximate=False)"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=lambda: os.nice(10))
    session.config.stash[_UMAP_COMPILE] = (folder, proc)


def pytest_unconfigure(config):
    folder, proc = config.stash.get(_UMAP_COMPILE, (None, None))
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


_UMAP_COMPILE = pytest.StashKey[tuple]()


@pytest.fixture
def umap_compiled(request) -> Path | None:
    """numba's cache folder that the background compile filled, once it has finished; None when none was started
    or it failed (the test then compiles for itself)."""
    folder, proc = request.config.stash.get(_UMAP_COMPILE, (None, None))
    if proc is None:
        return None
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None
    if proc.returncode != 0:
        err = (folder / "stderr.txt").read_text(errors="replace")[-2000:]
        sys.stderr.write(f"the background UMAP compile failed:\n{err}\n")
        return None
    return folder / "numba"
