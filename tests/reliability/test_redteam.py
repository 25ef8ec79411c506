"""Red team: every case of the security issue, replayed with small generated inputs.

Zips and folders (deep, long, clashing and special members; pixel bombs), server folders
outside the data root, zero-width text, the feature cache's disk bound and its key, and the demo
served on loopback (identical concurrent requests, uploads deleted). Limits are lowered through
parameters and environment variables so that each case runs in a second or two (the 90 requests,
served one at a time as the demo serves them, take 10 to 20 s on a shared 2-core machine).
"""
import io
import json
import os
import socket
import stat
import time
import unicodedata
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

import mmlab
from mmlab.data import archive, folder
from mmlab.data.archive import load_zip
from mmlab.data.folder import load_folder
from mmlab.data.text import clean_text
from mmlab.data.tokenizer import WordTokenizer, split_words

pytestmark = [  # Gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def png(w=8, h=8, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 0).save(buf, "PNG")
    return buf.getvalue()


META = json.dumps({"file_name": "a.png", "text": "a black square", "label": "black"}) + "\n"


def zipped(members) -> bytes:
    """A zip of (name or ZipInfo, bytes) pairs, in order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def refused(call, *args, **kwargs) -> str:
    """The one-line InputError message of ``call``; nothing else may escape."""
    with pytest.raises(mmlab.InputError) as e:
        call(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 800, msg
    return msg


# ---------------------------------------------------------------------------- zip members

def test_a_2000_level_member_path_is_refused_before_unpacking(tmp_path):
    data = zipped([("metadata.jsonl", META), ("a.png", png()), ("a/" * 2000 + "x.png", png())])
    assert len(data) < 10_000  # the 9 KB zip of the issue
    t0 = time.perf_counter()
    msg = refused(load_zip, data, tmp_path / "out")  # was RecursionError
    assert time.perf_counter() - t0 < 2.0
    assert "deep" in msg and "2001" in msg
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("name", ["x" * 300 + ".png", "x" * 300 + "/a.png", "d/" + "é" * 200 + ".png"])
def test_a_300_character_member_name_is_refused_before_unpacking(tmp_path, name):
    data = zipped([("metadata.jsonl", META), ("a.png", png()), (name, png())])
    msg = refused(load_zip, data, tmp_path / "out")  # was an uncaught OSError (file name too long)
    assert "long" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("order", ["file first", "folder first", "folder entry"])
def test_a_member_that_is_both_file_and_folder_is_refused(tmp_path, order):
    members = {"file first": [("a.png", png()), ("a.png/x", png())],
               "folder first": [("a.png/x", png()), ("a.png", png())],
               "folder entry": [("a.png/", b""), ("a.png", png())]}[order]
    msg = refused(load_zip, zipped([("metadata.jsonl", META), *members]), tmp_path / "out")  # was FileExistsError
    assert "a.png" in msg and "file and a folder" in msg
    assert not (tmp_path / "out").exists()


def test_duplicate_and_special_members_are_refused(tmp_path):
    twice = zipped([("metadata.jsonl", META), ("a.png", png()), ("./a.png", png(4, 4))])
    assert "twice" in refused(load_zip, twice, tmp_path / "a")
    for kind, mode in (("device", stat.S_IFCHR), ("device", stat.S_IFBLK), ("pipe", stat.S_IFIFO),
                       ("socket", stat.S_IFSOCK)):
        info = zipfile.ZipInfo("a.png")
        info.create_system = 3  # Unix: the mode sits in the high bits of external_attr
        info.external_attr = (mode | 0o644) << 16
        msg = refused(load_zip, zipped([("metadata.jsonl", META), (info, b"")]), tmp_path / kind)
        assert kind in msg and "a.png" in msg
        assert not (tmp_path / kind).exists()
    control = zipped([("metadata.jsonl", META), ("a.png", png()), ("b\nc.png", png())])
    assert "control character" in refused(load_zip, control, tmp_path / "c")


def test_folder_rows_naming_deep_or_long_paths_report_their_rows(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").write_bytes(png())
    rows = [{"file_name": "a.png", "text": "t", "label": "x"},
            {"file_name": "a/" * 2000 + "x.png", "text": "t", "label": "x"},  # was OSError / RecursionError
            {"file_name": "x" * 300 + ".png", "text": "t", "label": "x"},
            {"file_name": "y" * 300 + "/a.png", "text": "t", "label": "x"},
            {"file_name": "a.png/x", "text": "t", "label": "x"}]  # under a file: not found
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    msg = refused(load_folder, root)
    assert "4 bad row(s)" in msg and all(f"row {i}:" in msg for i in (2, 3, 4, 5))


# ---------------------------------------------------------------------------- pixel budget

def bomb(side: int) -> bytes:
    """A 1-bit PNG of side x side pixels: a few KB that decode to side**2 pixels."""
    return png(side, side, mode="1")


def test_a_zip_of_pixel_bombs_is_refused_before_any_decoding(tmp_path):
    n, side = 12, 2000  # 12 x 4 MP in ~8 KB of zip; the limit is lowered to 20 MP for the test
    rows = "".join(json.dumps({"file_name": f"{i}.png", "text": "t", "label": "x"}) + "\n" for i in range(n))
    data = zipped([("metadata.jsonl", rows), *[(f"{i}.png", bomb(side)) for i in range(n)]])
    assert len(data) < 40_000
    msg = refused(load_zip, data, tmp_path / "out", max_pixels=20_000_000)
    assert "48,000,000 pixels" in msg and "20,000,000" in msg
    # the same headers, their data cut: had the pictures been decoded first, the rows would be truncated
    cut = zipped([("metadata.jsonl", rows), *[(f"{i}.png", bomb(side)[:60]) for i in range(n)]])
    assert "pixels" in refused(load_zip, cut, tmp_path / "cut", max_pixels=20_000_000)


def load_image_cost(data: bytes) -> float:
    from mmlab.data.images import load_image, to_array

    t0 = time.perf_counter()
    to_array(load_image(data), 64)
    return time.perf_counter() - t0


def test_the_default_limits_bound_the_worst_zip_to_seconds(tmp_path):
    """Worst case = the member limit of tiny pictures + the pixel budget of bombs, from costs
    measured here (the issue: 20,000 bombs x 0.33 s = 6,600 s)."""
    per_mp = load_image_cost(bomb(2000)) / 4.0
    few = 200
    rows = "".join(json.dumps({"file_name": f"{i}.png", "text": "t", "label": "x"}) + "\n" for i in range(few))
    data = zipped([("metadata.jsonl", rows), *[(f"{i}.png", png(2, 2)) for i in range(few)]])
    t0 = time.perf_counter()
    load_zip(data, tmp_path / "few")
    per_member = (time.perf_counter() - t0) / few
    worst = archive.MAX_ZIP_MEMBERS * per_member + folder.MAX_TOTAL_PIXELS / 1e6 * per_mp
    assert worst < 60, f"worst zip ~{worst:.0f} s ({per_member * 1e3:.2f} ms/member, {per_mp * 1e3:.1f} ms/MP)"


def test_a_folder_of_bombs_and_the_zip_row_limit(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(bomb(1000))
    (root / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f"{i % 3}.png", "text": "t", "label": "x"}) + "\n" for i in range(30)))
    assert "30,000,000 pixels" in refused(load_folder, root, max_pixels=5_000_000)  # rows decode once each
    assert len(load_folder(root, split="all")) == 30  # the default budget allows it
    many = zipped([("metadata.jsonl", root.joinpath("metadata.jsonl").read_text()), ("0.png", png()),
                   ("1.png", png()), ("2.png", png())])
    assert "rows" in refused(load_zip, many, tmp_path / "rows", max_rows=20)


# ---------------------------------------------------------------------------- server folders

def dataset_folder(path):
    path.mkdir(parents=True)
    (path / "a.png").write_bytes(png())
    (path / "metadata.jsonl").write_text(META)
    return path


def test_server_folders_are_off_without_a_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MMLAB_DATA_ROOT", raising=False)
    dataset_folder(tmp_path / "mine")
    for typed in (str(tmp_path / "mine"), "mine", "/etc"):
        assert "turned off" in refused(folder.resolve_data_folder, typed)
    assert len(load_folder(tmp_path / "mine", split="all")) == 1  # the owner's own call still works


def test_the_data_root_answers_alike_for_missing_and_outside_folders(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    dataset_folder(root / "class1")
    secret = dataset_folder(tmp_path / "secret")
    (root / "notes.txt").write_text("not a folder")
    if hasattr(os, "symlink"):
        (root / "escape").symlink_to(secret)
    monkeypatch.setenv("MMLAB_DATA_ROOT", str(root))
    resolve = folder.resolve_data_folder
    assert resolve("class1") == (root / "class1").resolve()
    assert resolve(str(root / "class1")) == (root / "class1").resolve()
    assert len(load_folder(resolve(" class1 "), split="all")) == 1
    messages = {refused(resolve, typed) for typed in (
        "../secret", str(secret), "class1/../../secret", "escape", "/etc", "/", "nope", "nope/deeper", "notes.txt",
        "~", "x" * 5000, "a\x00b", "../" * 3000, "\\server\\share")}
    assert len(messages) == 1, messages  # one answer whatever exists: no existence oracle
    assert str(tmp_path) not in messages.pop()
    assert folder.data_folders() == ["class1"]


# ---------------------------------------------------------------------------- text

def test_zero_width_and_other_invisible_characters_are_cleaned():
    assert clean_text("red\u200b circle\u200d") == "red circle"  # the case
    assert clean_text("r\u200bed \u2060ci\u00adrcle\ufeff") == "red circle"
    assert split_words(clean_text("the \u200bred\u200d circle")) == ["the", "red", "circle"]
    tok = WordTokenizer.fit([clean_text("a\u200b \u200d \u200c b")])
    assert set(tok.vocab) == {"<pad>", "<unk>", "a", "b"}
    cf = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    kept = clean_text("x" + "y".join(cf) + "z")
    assert not [hex(ord(c)) for c in kept if unicodedata.category(c) == "Cf"]
    smuggled = "hi" + "".join(chr(0xE0000 + ord(c)) for c in "ignore the picture")  # tag characters
    assert clean_text(smuggled) == "hi"
    assert clean_text("a" + "\ufe0f" * 50 + " b") == "a\ufe0f b"  # one selector after a character, no runs


def test_joiners_inside_emoji_are_kept_as_one_token():
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    rainbow = "\U0001F3F3\ufe0f\u200d\U0001F308"
    assert clean_text(f"{family} and {rainbow}") == f"{family} and {rainbow}"
    assert split_words(f"{family} and {rainbow}") == [family, "and", rainbow]
    assert split_words("thumbs \U0001F44D\U0001F3FD") == ["thumbs", "\U0001F44D\U0001F3FD"]
    assert clean_text("\u200d\U0001F468 \U0001F468\u200d a\u200d\U0001F469") == "\U0001F468 \U0001F468 a\U0001F469"
    assert split_words("a red circle, left!") == ["a", "red", "circle", ",", "left", "!"]  # ASCII unchanged


# ---------------------------------------------------------------------------- feature cache

@pytest.fixture
def frozen_model():
    """A model whose image encoder is frozen (its backbone features are cached); random weights."""
    from mmlab.config import ModelConfig
    from mmlab.data import load_dataset
    from mmlab.model import build_model

    data = load_dataset("shapes", "train", n=12)
    cfg = ModelConfig(image_encoder="efficientnet_lite0", text_encoder="bigru", dim=16,
                      targets={"label": len(data.classes["label"])})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is the fastest on a shared machine
    yield build_model(cfg, classes={"label": data.classes["label"]},
                tokenizer=WordTokenizer.fit(data.texts).to_json()), data
    torch.set_num_threads(threads)


@pytest.fixture
def feature_cache(tmp_path, monkeypatch):
    from mmlab import features

    monkeypatch.setenv("MMLAB_CACHE", str(tmp_path / "cache"))
    features.clear_memory()
    yield tmp_path / "cache" / "features"
    features.clear_memory()


def cached_files(folder_path) -> dict:
    return {p.name: p.stat().st_size for p in folder_path.rglob("*.safetensors")}


def test_training_pairs_values_share_one_feature_set(frozen_model, feature_cache):
    """Each "Training pairs" value used to write a whole new feature set (~50 KB x n per value)."""
    from mmlab import features
    from mmlab.data import load_dataset
    from mmlab.train import Prepared

    model, full = frozen_model
    whole = Prepared(model, full).features["image"]["feats"]  # (12, 1280, h, w)
    size = sum(cached_files(feature_cache).values())
    for n in (4, 8, 12):
        features.clear_memory()
        part = load_dataset("shapes", "train", n=n)
        assert part.texts == full.texts[:n]
        feats = Prepared(model, part).features["image"]["feats"]
        assert torch.equal(feats, whole[:n])  # the full set's features, sliced
    features.clear_memory()
    odd = full.subset([1, 5, 7])
    assert torch.equal(Prepared(model, odd).features["image"]["feats"], whole[[1, 5, 7]])
    assert sum(cached_files(feature_cache).values()) == size  # nothing new on disk


def test_feature_cache_is_bounded_and_evicts_the_least_recently_used(frozen_model, feature_cache, monkeypatch):
    from mmlab import features
    from mmlab.train import Prepared

    model, full = frozen_model
    a, b, c = full.subset(range(0, 4)), full.subset(range(4, 8)), full.subset(range(8, 12))
    Prepared(model, a)
    per_file = max(cached_files(feature_cache).values())
    monkeypatch.setenv("MMLAB_CACHE_MAX_MB", str(8.5 * per_file / 2**20))  # room for 8 samples
    names_a = set(cached_files(feature_cache))
    time.sleep(0.05)
    Prepared(model, b)
    names_b = set(cached_files(feature_cache)) - names_a
    time.sleep(0.05)
    features.clear_memory()
    Prepared(model, a)  # read back from disk: a is now more recent than b
    time.sleep(0.05)
    Prepared(model, c)
    now = cached_files(feature_cache)
    assert sum(now.values()) <= 8.5 * per_file
    assert names_a <= set(now) and not names_b & set(now)  # b, least recently used, went first
    assert len(now) == 8
    monkeypatch.setenv("MMLAB_CACHE_MAX_MB", "0")  # no disk cache at all
    features.clear_memory()
    Prepared(model, b)
    assert cached_files(feature_cache) == {}


# ---------------------------------------------------------------------------- the served demo

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_zoo(tmp_path_factory):
    """A zoo of one tiny checkpoint ("tiny"), untrained: the answers only need to be repeatable."""
    from mmlab import checkpoint, zoo
    from mmlab.config import ModelConfig
    from mmlab.data import load_dataset
    from mmlab.model import build_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("zoo")
    data = load_dataset("shapes", "train", n=32)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, mask=True, dim=16),
                  classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    checkpoint.save(model, root / "tiny", meta={"name": "tiny", "dataset": "shapes"})
    zoo.update_manifest({"name": "tiny", "path": "tiny", "dataset": "shapes", "task": "mask",
                         "strategy": "cross_attention", "encoders": {"image": "cnn", "text": "bigru"},
                         "metrics": {}, "train_seconds": 0, "parameters": model.num_parameters(),
                         "command": ""}, root)
    picture = root / "scene.png"
    Image.fromarray(data.images[0].transpose(1, 2, 0)).save(picture)  # (3, S, S) -> (S, S, 3)
    return root, picture, data.texts[0]


@pytest.fixture
def one_thread():
    """Torch on one thread while the demo answers: faster for one small model on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def served(root, **kwargs):
    """The demo launched as ``mmlab demo`` launches it, on loopback; driven with plain HTTP below."""
    import mmlab.demo

    return mmlab.demo.launch(free_port(), root, block=False, server_name="127.0.0.1", **kwargs)


DOWNLOADS = 4  # times each client fetches its two pictures


def test_90_identical_requests_at_once_are_answered_alike(demo_zoo, one_thread):
    """Identical answers used to share one output file that Gradio rewrote in place while it was being
    served: some downloads ended early ("Too little data for declared Content-Length"). Now every
    request gets the same complete answer, or (beyond the queue's ``QUEUE_SIZE``) the one-line busy
    refusal; nothing else."""
    import httpx

    from mmlab.demo.app import QUEUE_SIZE

    root, picture, sentence = demo_zoo
    demo = served(root)
    try:
        call = f"{demo.local_url}gradio_api/call/predict"
        with httpx.Client(timeout=60) as http:  # one upload, as 90 browsers sending the same picture
            path = http.post(f"{demo.local_url}gradio_api/upload",
                             files={"files": ("scene.png", picture.read_bytes(), "image/png")}).json()[0]
        payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, sentence, "tiny", None]}

        def ask(_):
            with httpx.Client(timeout=120) as http:
                sent = http.post(call, json=payload)
                if sent.status_code != 200:
                    return "busy", sent.json()["detail"]
                reply = http.get(f"{call}/{sent.json()['event_id']}").text.strip().split("\n")
                assert reply[-2] == "event: complete", reply[-2:]
                label, attention, mask, details, _ = json.loads(reply[-1].removeprefix("data: "))
                pictures = set()
                for _ in range(DOWNLOADS):  # in full, as a browser does, while the next answers are written
                    for p in (attention, mask):
                        got = http.get(p["url"])
                        got.raise_for_status()
                        pictures.add(got.content)
                return label["label"], json.dumps(details, sort_keys=True), *sorted(pictures)

        with ThreadPoolExecutor(max_workers=90) as pool:
            replies = list(pool.map(ask, range(90)))  # a RemoteProtocolError would be raised here
    finally:
        demo.close()
    answers = [r for r in replies if r[0] != "busy"]
    busy = {r[1] for r in replies if r[0] == "busy"}
    assert len(answers) >= QUEUE_SIZE and len(set(answers)) == 1
    assert busy <= {f"Queue is full. Max size is {QUEUE_SIZE} and size is {QUEUE_SIZE}."}
    assert len(answers[0]) == 4 and Image.open(io.BytesIO(answers[0][2])).size == (384, 384)


def test_the_demo_deletes_uploads_and_answers_it_no_longer_needs(demo_zoo, one_thread):
    """Uploads used to stay until the server stopped. With a 1-second age for the test, the upload and
    the answer pictures go; a request naming the deleted upload gets one clear line; a new one works."""
    import httpx

    from mmlab.demo.app import DELETE_CACHE
    from mmlab.demo.handlers import EXPIRED

    root, picture, sentence = demo_zoo
    demo = served(root, delete_cache=(1, 1))
    try:
        call = f"{demo.local_url}gradio_api/call/predict"
        upload = io.BytesIO()
        Image.open(picture).rotate(90).save(upload, "PNG")  # content no other test uploads

        def ask(http, path):
            event = http.post(call, json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, sentence,
                                                   "tiny", None]}).json()["event_id"]
            kind, data = http.get(f"{call}/{event}").text.strip().split("\n")[-2:]
            return kind, json.loads(data.removeprefix("data: "))

        with httpx.Client(timeout=60) as http:
            path = http.post(f"{demo.local_url}gradio_api/upload",
                             files={"files": ("fresh.png", upload.getvalue(), "image/png")}).json()[0]
            kind, (label, attention, mask, *_) = ask(http, path)
            assert kind == "event: complete" and label["label"]
            files = [path, attention["path"], mask["path"]]
            for _ in range(100):  # bounded: 10 s
                if not any(os.path.exists(f) for f in files):
                    break
                time.sleep(0.1)
            assert not any(os.path.exists(f) for f in files)
            kind, message = ask(http, path)
            assert kind == "event: error" and message["error"] == EXPIRED
            again = http.post(f"{demo.local_url}gradio_api/upload",
                              files={"files": ("fresh.png", upload.getvalue(), "image/png")}).json()[0]
            assert ask(http, again)[0] == "event: complete"  # still serving
    finally:
        demo.close()
    assert DELETE_CACHE[1] <= 3600  # the shipped demo keeps an upload half an hour
