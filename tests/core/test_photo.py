"""The photo model (checkpoints/photo-imagenet_bridge): it finds what a sentence names in real photos, says
when a sentence names nothing it knows, keeps the photo's shape, and its shipped figures are what it does.

Only the "tune" photos of ``mmlab.data.photos`` are used here: the "final" and "heldout" ones are the photo
model's test sets (its figures in the manifest and docs/RESULTS.md), which no test reads."""
import json
import subprocess
import sys

import numpy as np
import pytest

import mmlab
from mmlab import photo
from mmlab.data import photos
from mmlab.encoders.concepts import candidates, class_names
from mmlab.errors import InputError
from mmlab.fusion import available, get, trainable


@pytest.fixture(scope="module")
def model():
    return mmlab.load(photo.NAME)


def referent(photo_name: str, text: str) -> photos.Referent:
    return next(r for r in photos.referents("tune") if r.photo == photo_name and r.text == text)


def test_tests_never_read_the_held_out_photos():
    held = {n for n, s in photos.SPLITS.items() if s != "tune"}
    assert held and not held & {r.photo for r in photos.referents("tune")}


def test_the_bridge_is_registered_but_never_trained():
    assert "concept_bridge" in available() and "concept_bridge" not in trainable()
    assert not get("concept_bridge").trainable
    assert len(class_names()) == 1000 and class_names()[281] == "tabby"


def test_candidates_find_the_head_noun():
    assert ("nose", True) in candidates("the cat's pink nose") and ("cat", False) in candidates("the cat's pink nose")
    assert ("space shuttle", False) in candidates("the model of the space shuttle")
    words = [w for w, _ in candidates("the red motorcycle on the left")]
    assert "motorcycle" in words and "red" not in words and "left" not in words  # attributes, positions: no concept


@pytest.mark.parametrize("photo_name, text", [("chelsea", "the cat"),
                                              ("astronaut", "the model of the space shuttle"),
                                              ("motorcycle", "the red motorcycle")])
def test_the_peak_lands_on_the_named_thing(model, photo_name, text):
    r = referent(photo_name, text)
    found = photo.locate(model, photos.photo(photo_name), text)
    assert photos.hit(found.peak, r.box), (found.peak, r.box)
    H, W = photos.photo(photo_name).shape[:2]
    assert found.map.shape == (H, W)  # drawn on the photo itself, its shape kept
    x0, y0, x1, y1 = found.box
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H and x0 <= found.peak[0] < x1 and y0 <= found.peak[1] < y1


def test_its_sizes_side_by_side_equal_one_after_another(model, monkeypatch):
    """The three input sizes run in two worker threads (a core each): the same per-patch logits as in turn."""
    import torch

    import mmlab.threads as workers

    images = torch.rand(2, 3, 96, 96)
    side = model.image_encoder.extract(images)["logits"]
    monkeypatch.setattr(workers, "threads_are_per_thread", lambda: False)
    turn = model.image_encoder.extract(images)["logits"]
    assert side.shape == (2, len(photo.SIZES), 1000) + model.image_encoder.grid and not side.requires_grad
    assert torch.allclose(side.float(), turn.float(), atol=1e-2)  # float16 features


def test_the_sentence_decides_where_it_points(model):
    """One scene, two sentences: the cat's photo beside the rocket's; each sentence's peak in its own tile."""
    scene, where = photos.compose(["chelsea", "rocket"], "1x2")
    cat = photo.locate(model, scene, "the cat")
    rocket = photo.locate(model, scene, "the rocket on the launch pad")
    assert cat.peak[0] < photos.TILE <= rocket.peak[0], (cat.peak, rocket.peak)
    assert next(iter(cat.looked_for)) in ("tabby", "tiger cat", "Egyptian cat")


def test_it_says_what_it_cannot_name(model):
    chelsea = photos.photo("chelsea")
    named = model.predict(chelsea, "the cat").domain
    assert named.in_distribution and "tabby" in named.reason
    woman = model.predict(photos.photo("astronaut"), "the woman").domain
    assert not woman.in_distribution and "no ImageNet concept matches 'woman'" in woman.reason
    assert woman.unknown_words == ["woman"] and woman.unknown_tokens == [True]
    rocket = model.predict(photos.photo("rocket"), "the rocket").domain
    assert not rocket.in_distribution and "closest" in rocket.reason  # near: said, not hidden


def test_bad_input_is_refused_with_input_error(model):
    with pytest.raises(InputError):
        model.predict(photos.photo("chelsea"), "   ")
    with pytest.raises(InputError):
        model.predict(b"not a picture", "the cat")
    with pytest.raises(InputError):
        photo.locate(mmlab.load("shapes-mask-cross_attention"), photos.photo("chelsea"), "the cat")


def test_shipped_figures_are_measured_on_photos_no_test_reads():
    from mmlab import zoo

    entry = next(e for e in zoo.list_checkpoints() if e["name"] == photo.NAME)
    config = json.loads((zoo.root() / photo.NAME / "config.json").read_text())
    record = config["photo_pointing"]
    assert set(record) == {"final", "heldout"}
    for split, by_kind in record.items():
        names = {n for n, s in photos.SPLITS.items() if s == split}
        for kind, r in by_kind.items():
            assert entry["metrics"][f"pointing_{split}_{kind}"] == round(r["pointing"], 4)
            assert r["hits"] == sum(c["hit"] for c in r["cases"]) and r["n"] == len(r["cases"])
            assert {c["case"].split(":")[0] for c in r["cases"]} <= names
        composites = by_kind["composites"]
        assert composites["pointing"] > 2 * max(composites["centre"], composites["chance"])


def test_explain_cli_gives_the_peak_in_the_photos_pixels(tmp_path):
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.fromarray(np.asarray(photos.photo("chelsea"))).save(path)
    out = subprocess.run([sys.executable, "-m", "mmlab.cli", "explain", photo.NAME, "--image", str(path),
                          "--text", "the cat", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["image_size"] == [451, 300] and got["in_distribution"] is True
    assert photos.hit(got["peak"], referent("chelsea", "the cat").box)
    assert "photos it never saw" in got["fidelity"]


def test_imagenet_names_read_without_importing_timm_are_timm_s():
    import timm.data

    from mmlab.encoders.concepts import imagenet_lemmas

    info = timm.data.ImageNetInfo()
    names = imagenet_lemmas()
    assert len(names) == info.num_classes() == 1000
    for i in (0, 281, 285, 999):  # tench, tabby, Egyptian cat, toilet tissue
        assert names[i] == [n.strip() for n in info.index_to_description(i).split(":", 1)[0].split(", ")]
