"""Serve app.py with Streamlit's server in this process and mmlab's warm-up beside it (``mmlab app`` runs this).

    python serve.py PORT HOST

torch and the model code are imported first, before the server answers (about 2 s more to start on machine B):
imported beside the first visitor's page, they held the interpreter lock through most of its first view. The
rest of the warm-up (``mmlab.warm``: the models, their results and splits, UMAP's code) starts once the server
answers its health check, before anyone visits (``streamlit run app.py`` starts it with the first visit
instead). Kept beside app.py because the core (``mmlab/``) never imports Streamlit.
"""
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py sets it; before torch is imported

import pandas  # noqa: E402,F401 - before the warm-up's thread, as app.py explains
from streamlit.web import cli as streamlit_cli  # noqa: E402

APP = Path(__file__).resolve().parent / "app.py"


def warm_once_serving(health: str, timeout: float = 120.0) -> None:
    """Start ``mmlab.warm`` once ``health`` answers (or after ``timeout`` seconds)."""
    from mmlab import warm

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    warm.start()


def import_models() -> None:
    """torch and the model code, before the server answers: imported beside the first visitor's page (the
    warm-up's first step), they held the interpreter for about 2 s of the home page's first view on machine B."""
    import torch  # noqa: F401

    import mmlab  # noqa: F401
    from mmlab import artifacts, evaluate, model  # noqa: F401


def main(port: int, host: str) -> None:
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    import_models()
    threading.Thread(target=warm_once_serving, args=(f"http://{local}:{port}/_stcore/health",),
                     name="mmlab-warm-start", daemon=True).start()
    streamlit_cli.main.main(args=["run", str(APP), "--server.port", str(port), "--server.address", host,
                                  "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            prog_name="streamlit", standalone_mode=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
