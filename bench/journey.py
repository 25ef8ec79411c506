"""The user journey: a fresh app server, every page opened in real Chromium, then each page's main interaction,
each timed until the page has settled (the script finished, the status widget gone, and the browser's main
thread free again).

A fresh ``mmlab app`` starts on a free localhost port over the shipped zoo; Debian's Chromium
(``/usr/bin/chromium`` or ``$MMLAB_CHROMIUM``) driven by Playwright opens the home page by its URL, then each
page as a visitor does (``--navigate link``, the default): by its link in the sidebar, in the same tab; or each
page by its URL in a new tab, as a shared link opens (``--navigate url``: the browser loads Streamlit's
front end and its chart code again for every page). A page with a query string (your photo on the
Playground) is always opened by its URL, in a new tab. Each page is timed to (1) its title (first paint) and
(2) the end of the run; then its main interaction (a new sentence, a toggle, a tab, the next page of a
gallery) is timed the same way. Targets (issue 18, a quiet 2-core machine): every first view <= 4 s from a
fresh server, median <= 2 s; every main interaction <= 2 s. The load average is recorded beside the figures.

    python bench/journey.py [--quick] [--timeout 120] [--navigate link|url]
"""
from __future__ import annotations

import functools
import os
import statistics
import time

import _common as C
from app_timing import CHROMIUM, CHROMIUM_ARGS, free_port, launch, stop, wait_healthy

# one sentence per page: in one tab the sentence box keeps what the last page was given, and the same
# sentence again would not rerun anything
SENTENCES = {"playground": "the small red triangle left of the blue circle", "compare": "the large blue circle",
             "attention": "the green square above the red triangle"}


def _fill(label: str, value: str):
    def act(page):
        box = page.get_by_label(label, exact=True).first
        box.fill(value)
        box.press("Enter")
    return act


def _click_label(label: str):
    def act(page):
        page.get_by_text(label, exact=True).first.click()
    return act


def _tab(name: str):
    def act(page):
        page.get_by_role("tab", name=name).first.click()
    return act


@functools.cache
def _photo_png() -> bytes:
    """The photo a visitor uploads (scikit-image's cat), as the PNG file they would have on disk: made before
    the clock starts (loading it imports scikit-image, 0.3-0.5 s, which is not the app's wait)."""
    import io

    from PIL import Image

    from mmlab.data import photos

    buf = io.BytesIO()
    Image.fromarray(photos.photo("chelsea")).save(buf, format="PNG")
    return buf.getvalue()


def _upload_photo(page):
    """Your own photo: it opens on the photo model."""
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": "cat.png", "mimeType": "image/png", "buffer": _photo_png()}])


# (url path, title shown, main interaction or None, what the interaction is); a page's sidebar link is its
# title in LINKS
PAGES = [
    ("", "mmlab · a lab for multimodal fusion", None, "-"),
    ("playground", "Playground", _fill("Sentence", SENTENCES["playground"]), "a new sentence"),
    ("playground?src=your+image&text=the+cat", "Playground", _upload_photo, "your photo, on the photo model"),
    ("compare", "Compare strategies", _fill("Sentence", SENTENCES["compare"]),
     "a new sentence through every checkpoint"),
    ("attention", "Attention inspector", _fill("Sentence", SENTENCES["attention"]), "a new sentence"),
    ("modality", "Modality lab", _click_label("Drop the text"), "drop the text"),
    ("latent", "Latent space", _click_label("Project fused with image + text"), "fused projected with the rest"),
    ("train", "Train", None, "-"),
    ("learn", "Learn: how to fuse two modalities", _tab("Attention ≠ explanation"), "the attention lesson's tab"),
    ("data", "Data", _fill("Page (1–84)", "2"), "the next page of the gallery"),
]
LINKS = {"playground": "Playground", "compare": "Compare strategies", "attention": "Attention inspector",
         "modality": "Modality lab", "latent": "Latent space", "train": "Train", "learn": "Learn", "data": "Data"}
# true once no element waits for its code or its picture: Streamlit shows grey skeletons (hidden ones too, in a
# collapsed expander) until a lazily loaded part of its front end (the chart library: seconds on this CPU) has
# arrived, and an image element loads its picture after the run has sent it
NOTHING_PENDING = ("() => !document.querySelector('[data-testid=\"stSkeleton\"]') "
                   "&& Array.from(document.images).every(i => i.complete)")
# resolves once the renderer's main thread has drawn a frame and run a task: charts still being laid out or a
# chart library still being compiled hold it, and a click waits for them as a visitor does
MAIN_THREAD_FREE = "() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)))"
QUIET_SECONDS = 0.3


# every change of the script state, recorded in the page as it happens (a run can be shorter than the polling)
RECORD_STATES = """
window.__mmlabStates = [];
new MutationObserver(changes => {
  for (const c of changes) window.__mmlabStates.push(c.target.getAttribute('data-test-script-state'));
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""
STATES_SEEN = "() => (window.__mmlabStates || []).length"
RUNS_SINCE = "n => (window.__mmlabStates || []).slice(n).filter(s => s === 'running').length"


def settle(page, timeout: float, *, mark: int | None = None) -> tuple[float, bool]:
    """Wait until the page has settled; return when it did (``time.perf_counter()``) and whether the script ran
    since ``mark`` (``STATES_SEEN`` read before the action; the page records each state change,
    ``RECORD_STATES``). Settled: the app's script has run to the end (the front end's own script state,
    ``data-test-script-state`` on the app's root, "notRunning", and its status widget gone) and the browser has
    drawn what it sent (``NOTHING_PENDING``, then ``MAIN_THREAD_FREE``). The page counts as settled at the first
    moment of a quiet period in which it was drawn, once the quiet has lasted ``QUIET_SECONDS`` (a page can
    rerun right after a run, as an upload does): the wait that confirms it is not counted. A run that began and
    ended between two polls starts the quiet period again. The status widget alone shows a run only after a
    delay, so a page whose title came fast could be taken as drawn while its run went on."""
    deadline = time.perf_counter() + timeout
    status = page.locator('[data-testid="stStatusWidget"]')
    root = page.locator('[data-testid="stApp"]')
    page.wait_for_timeout(100)  # give the rerun a moment to begin before looking for its end
    seen = page.evaluate(STATES_SEEN) if mark is None else mark
    quiet_since = drawn = None
    runs = 0
    while time.perf_counter() < deadline:
        state = root.first.get_attribute("data-test-script-state") if root.count() else None
        new_runs = page.evaluate(RUNS_SINCE, seen)
        seen = page.evaluate(STATES_SEEN)
        runs += new_runs
        running = state != "notRunning" or (status.count() > 0 and status.first.is_visible())
        now = time.perf_counter()
        if running:
            quiet_since = drawn = None
        else:
            if quiet_since is None or new_runs:
                quiet_since, drawn = now, None
            if drawn is None and page.evaluate(NOTHING_PENDING):
                page.evaluate(MAIN_THREAD_FREE)
                drawn = time.perf_counter()
            if now - quiet_since >= QUIET_SECONDS:
                if drawn is None:
                    page.wait_for_function(NOTHING_PENDING, timeout=max(deadline - now, 0.001) * 1000, polling=30)
                    page.evaluate(MAIN_THREAD_FREE)
                    drawn = time.perf_counter()
                return drawn, runs > 0
        page.wait_for_timeout(30)
    raise TimeoutError(f"the page did not settle within {timeout:g} s")


def journey(args) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    _photo_png()  # the visitor's file exists before the server starts, as on their disk
    t0 = time.perf_counter()
    proc = launch(port)  # `mmlab app`
    rows, outside = [], []
    try:
        wait_healthy(proc, url, t0 + args.timeout)
        server_seconds = time.perf_counter() - t0
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        local = (url, "data:", "blob:")
        context.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
        context.add_init_script(RECORD_STATES)
        pages = PAGES[: 3 if args.quick else None]
        if args.navigate == "link":  # shared links (a query string) last, each in a tab of its own
            pages = [p for p in pages if "?" not in p[0]] + [p for p in pages if "?" in p[0]]
        tab = None
        for path, title, act, what in pages:
            by_link = args.navigate == "link" and tab is not None and path in LINKS
            if not by_link:
                if tab is not None:
                    tab.close()
                tab = context.new_page()
            t = time.perf_counter()
            if by_link:
                nav = tab.locator('[data-testid="stSidebarNav"]')
                nav.get_by_role("link", name=LINKS[path], exact=True).click()
            else:
                tab.goto(f"{url}/{path}", wait_until="domcontentloaded")
            tab.get_by_role("heading", name=title).first.wait_for(state="visible", timeout=args.timeout * 1000)
            painted = time.perf_counter() - t
            settled, _ = settle(tab, args.timeout)
            row = {"page": path or "home", "opened_by": "sidebar link" if by_link else "url, new tab",
                   "first_paint_seconds": C.rounded(painted), "first_view_seconds": C.rounded(settled - t),
                   "interaction": what}
            errors = tab.locator('[data-testid="stException"]').count()
            if act is not None:
                mark = tab.evaluate(STATES_SEEN)
                t = time.perf_counter()
                act(tab)
                settled, reran = settle(tab, args.timeout, mark=mark)
                row["interaction_seconds"] = C.rounded(settled - t)
                row["interaction_reran"] = reran  # the script seen running after the action
                errors += tab.locator('[data-testid="stException"]').count()
            row["exceptions"] = errors
            rows.append(row)
    finally:
        stop(proc)
        browser.close()
        pw.stop()
    views = [r["first_view_seconds"] for r in rows]
    acts = [r["interaction_seconds"] for r in rows if "interaction_seconds" in r]
    return {"server_start_seconds": C.rounded(server_seconds), "navigate": args.navigate, "pages": rows,
            "first_view_max": max(views), "first_view_median": C.rounded(statistics.median(views)),
            "interaction_max": max(acts) if acts else None,
            "targets": {"first_view_max": 4.0, "first_view_median": 2.0, "interaction_max": 2.0},
            "meets_targets": max(views) <= 4.0 and statistics.median(views) <= 2.0 and (not acts or max(acts) <= 2.0),
            "requests_off_this_machine": sorted(set(outside))}


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a page to settle")
    p.add_argument("--navigate", choices=("link", "url"), default="link",
                   help="link: each page by its sidebar link in one tab (a visitor); url: each by its URL in a new tab")
    args = p.parse_args()
    device = C.setup(args)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    C.log("journey: fresh server, every page in Chromium")
    result = C.run_guarded(lambda: journey(args))
    C.emit("journey", args, device, {"what": __doc__.splitlines()[0], "zoo": C.zoo_root(),
                                     "load_average_before": load, **result})


if __name__ == "__main__":
    main()
