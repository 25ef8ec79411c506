"""End to end in a real browser: `streamlit run app.py` driven by Debian Chromium through Playwright.

Opens every page, uploads an image (and a broken one) on the Playground, saves a screenshot of
each into test-artifacts/, and fails on any Streamlit exception shown on a page.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
pytestmark = pytest.mark.browser

# (url path with query, title shown on the page, an element the page must show)
PAGES = [
    ("", "mmlab · a lab for multimodal fusion", '[data-testid="stPageLink"]'),
    ("playground?ckpt=tiny-cross&sample=3", "Playground", '[data-testid="stMetric"]'),
    ("compare?method=attention", "Compare strategies", '[data-testid="stImage"]'),
    ("attention?ckpt=tiny-cross&token=%231+small", "Attention inspector", '[data-testid="stImage"]'),
    ("modality?notxt=true&abl_n=100", "Modality lab", '[data-testid="stDataFrame"]'),
    ("latent?points=100", "Latent space", ".js-plotly-plot"),
    ("train", "Train", '[data-testid="stForm"]'),
    ("learn?tab=Attention", "Learn", '[data-testid="stImage"]'),
    ("data", "Data", '[data-testid="stImage"]'),
]
EXCEPTION = '[data-testid="stException"]'


def settle(page, timeout: float = 90.0) -> None:
    """Wait until the script has finished: no 'running' status widget and no spinner for ~1.5 s."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        busy = (page.locator('[data-testid="stStatusWidget"]').count()
                + page.locator('[data-testid="stSpinner"]').count()
                + page.locator('[data-testid="stSkeleton"]').count()
                + page.locator('[data-testid="stProgress"]').count())
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return
        time.sleep(0.5)
    raise AssertionError(f"{page.url} was still running after {timeout:.0f} s")


def assert_no_exception(page, name: str) -> None:
    errors = page.locator(EXCEPTION)
    if errors.count():
        pytest.fail(f"{name}: Streamlit shows an exception:\n{errors.first.inner_text()[:2000]}")


def shoot(page, name: str) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]') || document.body;
        return Math.max(main.scrollHeight, window.innerHeight);
    }""")
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 8000)})
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / f"e2e-{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


@pytest.fixture
def page(browser, server):
    """A page in a fresh context; ``page.outside`` collects every request that leaves this machine."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    p = context.new_page()
    p.outside = []
    context.on("request", lambda r: p.outside.append(r.url)
               if not r.url.startswith((server, "data:", "blob:")) else None)
    yield p
    context.close()


@pytest.mark.parametrize("path, title, element", PAGES, ids=[p[0].split("?")[0] or "home" for p in PAGES])
def test_every_page_renders_without_exception(server, page, path, title, element):
    name = path.split("?")[0] or "home"
    page.goto(f"{server}/{path}", wait_until="domcontentloaded")
    page.get_by_role("heading", name=title).first.wait_for(timeout=90_000)
    page.wait_for_selector(element, timeout=90_000)
    settle(page)
    shoot(page, name)
    assert_no_exception(page, name)
    assert page.outside == [], f"{name} asked for something off this machine: {page.outside[:3]}"


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_playground_upload(server, page):
    """Upload a picture: a prediction and a mask appear; then a broken file: a message, and the page keeps working."""
    from mmlab.data import load_dataset

    scene = load_dataset("shapes", "test", n=8).images[5].transpose(1, 2, 0)  # (64, 64, 3)
    big = np.asarray(Image.fromarray(scene).resize((256, 256), Image.NEAREST))
    page.goto(f"{server}/playground?ckpt=tiny-cross&src=your+image&text=the+large+red+circle",
              wait_until="domcontentloaded")
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploader.wait_for(state="attached", timeout=90_000)
    settle(page)
    uploader.set_input_files(files=[{"name": "scene.png", "mimeType": "image/png", "buffer": _png(big)}])
    page.get_by_text("Prediction", exact=True).first.wait_for(timeout=90_000)
    settle(page)
    assert page.locator('[data-testid="stImage"]').count() >= 3  # input, attention overlay, mask
    shoot(page, "playground-upload")
    assert_no_exception(page, "playground upload")

    # the same picture on Compare, reached by the sidebar in this session, without uploading it again
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Compare strategies", exact=True).click()
    page.get_by_role("heading", name="Compare strategies").first.wait_for(timeout=90_000)
    settle(page)
    source = page.locator('[data-testid="stSidebar"]').get_by_role("radio", name="your image", exact=True)
    if source.get_attribute("aria-checked") != "true":  # the source, should the page open on its default
        source.click()
        settle(page)
    page.get_by_text("Your picture from earlier in this session: scene.png").first.wait_for(timeout=90_000)
    settle(page)
    shoot(page, "compare-carried-upload")
    assert page.locator('[data-testid="stImage"]').count() >= 2  # the picture's maps, one per strategy
    assert_no_exception(page, "compare with the playground's upload")
    page.goto(f"{server}/playground?ckpt=tiny-cross&src=your+image&text=the+large+red+circle",
              wait_until="domcontentloaded")

    settle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"this is not a picture"}])
    page.get_by_text("This upload cannot be used").first.wait_for(timeout=60_000)
    settle(page)
    shoot(page, "playground-bad-upload")
    assert_no_exception(page, "playground bad upload")
    # the page keeps working: back to a built-in sample, the prediction is there again
    page.goto(f"{server}/playground?ckpt=tiny-cross&sample=1", wait_until="domcontentloaded")
    page.get_by_text("Prediction", exact=True).first.wait_for(timeout=90_000)
    settle(page)
    assert_no_exception(page, "playground after a bad upload")


def test_a_photo_on_the_photo_model(server, page):
    """Your own photo opens on the photo model: it says what it looks for and marks where it finds it."""
    from mmlab.data import photos

    page.goto(f"{server}/playground?src=your+image&text=the+cat", wait_until="domcontentloaded")
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploader.wait_for(state="attached", timeout=90_000)
    settle(page)
    uploader.set_input_files(files=[{"name": "cat.png", "mimeType": "image/png",
                                     "buffer": _png(np.asarray(photos.photo("chelsea")))}])
    page.get_by_text("Looking for", exact=True).first.wait_for(timeout=120_000)
    settle(page)
    assert page.get_by_text("names the ImageNet concept").count() >= 1
    assert page.locator('[data-testid="stImage"]').count() >= 3  # input, where it finds it, the word map
    shoot(page, "playground-photo")
    assert_no_exception(page, "playground photo")
    # a picture's PNG is made when its button is clicked (not on every run): a PNG of the photo's shape
    with page.expect_download(timeout=60_000) as got:
        page.locator('[data-testid="stDownloadButton"]').filter(has_text="PNG").first.locator("button").click()
    picture = Image.open(got.value.path())
    (w, h), (H, W) = picture.size, photos.photo("chelsea").shape[:2]
    assert picture.format == "PNG" and w >= 128 and abs(h - w * H / W) <= 1, (picture.size, (W, H))
    # another photo in its place keeps the sentence: the page runs once without a file in between, and a
    # sentence box left out of that run was emptied ("text is empty: type a sentence")
    uploader.set_input_files(files=[{"name": "rocket.png", "mimeType": "image/png",
                                     "buffer": _png(np.asarray(photos.photo("rocket")))}])
    page.get_by_text("rocket.png", exact=True).first.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_label("Sentence", exact=True).first.input_value() == "the cat"
    assert page.get_by_text("text is empty").count() == 0
    assert page.get_by_text("Looking for", exact=True).count() >= 1
    assert_no_exception(page, "playground, a second photo")
