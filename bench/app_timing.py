"""App: cold start to the first rendered page, and the Playground's response to a new sentence.

cold_start: ``mmlab app`` on a free localhost port, timed from the launch to
(1) ``/_stcore/health`` answering 200, (2) the page HTML served at ``/``, and, when Debian's
Chromium (``/usr/bin/chromium``, or ``$MMLAB_CHROMIUM``) and Playwright are installed, (3) the
home page's title heading visible in a headless browser (the browser is started before the
server, so its own start is not counted). The server process's peak RSS is read from
``/proc/<pid>/status`` after that first page. Target (issue 7): cold start <= 5 s.

playground: ``streamlit.testing.v1.AppTest`` of ``app.py``: the Playground page opened on test
sample 2 (first render, model load included), then a new sentence typed in (the response), then
another (warm). Needs a checkpoint in the zoo (``$MMLAB_CHECKPOINTS``); skipped with the reason
when there is none.

    python bench/app_timing.py [--quick] [--no-browser] [--timeout 120]
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import _common as C

CHROMIUM = os.environ.get("MMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SENTENCES = ("the large blue circle", "the small red triangle left of the blue circle")


def home_title() -> str:
    """The home page's title text, read from pages/home.py (``st.title`` or ``ui.page_header``);
    "mmlab" when neither is found (Playwright matches a heading name by substring)."""
    text = (C.ROOT / "pages" / "home.py").read_text()
    m = re.search(r'(?:st\.title|page_header)\(\s*"([^"]+)"', text)
    return m.group(1) if m else "mmlab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> dict:
    """VmHWM (peak) and VmRSS (now) of a process, MB (Linux /proc)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out["peak_rss_mb" if key == "VmHWM" else "rss_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def launch(port: int) -> subprocess.Popen:
    """``mmlab app`` on ``port`` (localhost): Streamlit's server in that process, its warm-up started beside it;
    stderr kept for errors."""
    cmd = [sys.executable, "-c", "import sys; from mmlab.cli import main; sys.exit(main())", "app",
           "--port", str(port), "--host", "127.0.0.1"]
    return subprocess.Popen(cmd, cwd=C.ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_healthy(proc: subprocess.Popen, url: str, deadline: float) -> None:
    """Return once ``/_stcore/health`` answers 200; RuntimeError when the server exits or ``deadline``
    (``time.perf_counter()``) passes first."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stderr.read()[-400:]}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no health answer from {url}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _browser():
    """(playwright context manager, browser) or (None, reason)."""
    if not Path(CHROMIUM).exists():
        return None, f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        return None, f"playwright not installed ({e})"
    pw = sync_playwright().start()
    return (pw, pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)), None


def cold_start(args) -> dict:
    browser, why = (None, "--no-browser") if not args.browser else _browser()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict = {"url_port": port}
    t0 = time.perf_counter()
    proc = launch(port)
    try:
        wait_healthy(proc, url, t0 + args.timeout)
        out["health_seconds"] = C.rounded(time.perf_counter() - t0)
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            html = r.read().decode("utf-8", "replace")
        out["html_seconds"] = C.rounded(time.perf_counter() - t0)
        out["html_bytes"] = len(html)
        if browser is not None:
            pw, b = browser
            page = b.new_page()
            t_goto = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            title = home_title()
            page.get_by_role("heading", name=title).first.wait_for(state="visible", timeout=args.timeout * 1000)
            now = time.perf_counter()
            out.update({"first_render_seconds": C.rounded(now - t0), "page_render_seconds": C.rounded(now - t_goto),
                        "rendered_title": title})
            page.close()
        else:
            out["first_render_seconds"] = None
            out["browser_skipped"] = why
        out["server_after_first_page"] = rss_mb(proc.pid)
    finally:
        stop(proc)
        if browser is not None:
            browser[1].close()
            browser[0].stop()
    first = out.get("first_render_seconds") or out.get("html_seconds")
    out["target_seconds"] = 5.0
    out["meets_target"] = first is not None and first <= 5.0
    return out


def playground(args) -> dict:
    from streamlit.testing.v1 import AppTest

    if not C.zoo_entries():
        return {"skipped": f"no checkpoint in the zoo at {C.zoo_root()}: the Playground has nothing to run"}
    at = AppTest.from_file(str(C.ROOT / "app.py"), default_timeout=args.timeout)
    t_home, _ = C.timed(at.run)
    _raise(at)
    at.query_params = {"sample": "2"}
    t_open, _ = C.timed(lambda: at.switch_page("pages/playground.py").run())
    _raise(at)
    times = []
    for sentence in SENTENCES:
        t, _ = C.timed(lambda: at.text_input(key="text").set_value(sentence).run())
        _raise(at)
        times.append(t)
    return {"checkpoint": at.selectbox(key="ckpt").value, "home_seconds": C.rounded(t_home),
            "open_seconds": C.rounded(t_open), "new_sentence_seconds": C.rounded(times[0]),
            "another_sentence_seconds": C.rounded(times[1]), "sentences": list(SENTENCES),
            "metrics_shown": sorted(m.label for m in at.metric)}


def _raise(at) -> None:
    if at.exception:
        raise RuntimeError("the app raised: " + " | ".join(e.message for e in at.exception)[:400])


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--no-browser", dest="browser", action="store_false", help="skip the Chromium render timing")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server and the page")
    args = p.parse_args()
    if args.quick:
        args.browser = False
    device = C.setup(args)
    C.log("app: cold start")
    cold = C.run_guarded(lambda: cold_start(args))
    C.log("app: playground (AppTest)")
    play = C.run_guarded(lambda: playground(args))
    C.emit("app_timing", args, device, {
        "what": "mmlab app to the first rendered home page; AppTest Playground response to a new sentence",
        "zoo": C.zoo_root(), "cold_start": cold, "playground": play,
    })


if __name__ == "__main__":
    main()
