"""Screenshots of the app's main pages for the README (not a test).

    python tests/e2e/screenshots.py [--checkpoints checkpoints] [--out docs/screenshots]

Starts `streamlit run app.py` on a free port with the given zoo, opens each page in Debian
Chromium (Playwright, never `playwright install`) and saves one PNG per page.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = [  # sample 10 of the shapes test split: "the large red diamond left of the red circle"
    ("playground", "playground?sample=10&token=%233+diamond"),
    ("photo", "playground?src=your+image&text=the+cat"),  # then uploads scikit-image's cat photo
    ("compare", "compare?sample=10&method=attention"),
    ("attention", "attention?sample=10&token=%233+diamond&thr=0.5&msrc=relevance"),
    ("modality", "modality?sample=10&notxt=true&abl_n=200"),
    ("latent", "latent?points=500&colour=label"),
    ("train", "train?t_n=256&t_epochs=3&t_dim=32"),  # trains a small model first (a few minutes)
    ("learn", "learn?tab=Attention&sample=10"),
    ("data", "data"),
    ("home", ""),
]


def settle(page, timeout: float = 180.0) -> None:
    deadline, quiet = time.monotonic() + timeout, 0
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    while time.monotonic() < deadline and quiet < 4:
        busy = sum(page.locator(f'[data-testid="{t}"]').count()
                   for t in ("stStatusWidget", "stSpinner", "stSkeleton", "stProgress"))
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--only", nargs="*", help="page names to shoot")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import tempfile

    scratch = tempfile.mkdtemp(prefix="mmlab-screenshots-")  # the model the Train shot trains goes here
    env = {**os.environ, "MMLAB_CHECKPOINTS": str(Path(args.checkpoints).resolve()),
           "MMLAB_USER_CHECKPOINTS": scratch}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                               str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            for name, path in SHOTS:
                if args.only and name not in args.only:
                    continue
                page.set_viewport_size({"width": args.width, "height": 900})
                page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                page.wait_for_selector("h1", timeout=180_000)  # the script ran (before: the bare pages/ list)
                settle(page)
                if name == "photo":  # your own photo: it opens on the photo model
                    import io

                    from PIL import Image

                    from mmlab.data import photos

                    buf = io.BytesIO()
                    Image.fromarray(np.asarray(photos.photo("chelsea"))).save(buf, format="PNG")
                    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                        files=[{"name": "cat.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
                    page.get_by_text("Looking for", exact=True).first.wait_for(timeout=180_000)
                    settle(page)
                if name == "train":  # show a finished run: curves, metrics, the saved checkpoint
                    page.get_by_role("button", name="Train").click()
                    page.get_by_text("Saved checkpoint").wait_for(timeout=900_000)
                height = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]')"
                                       " || document.body).scrollHeight")
                page.set_viewport_size({"width": args.width, "height": min(int(height) + 20, 4000)})
                time.sleep(1.0)
                settle(page)
                if page.locator('[data-testid="stException"]').count():
                    print(f"{name}: the page shows an exception", file=sys.stderr)
                page.screenshot(path=str(out / f"{name}.png"))
                print(out / f"{name}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
