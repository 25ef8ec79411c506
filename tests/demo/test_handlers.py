"""The demo's handlers called directly, no server: good input -> outputs of the right shapes,
bad input -> gr.Error with the loader's one-line message."""
import json
import subprocess
import sys

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from mmlab.demo import handlers
from mmlab.demo.handlers import DISPLAY_SIDE, REFUSED_PATH, WHOLE_SENTENCE, token_choices

_ALLOWED: list = []


@pytest.fixture(autouse=True, scope="module")
def _uploads_live_in_pytest_temp(tmp_path_factory):
    """The examples and the bad files of these tests live under pytest's temporary folder: the
    handler may open files there (in a server, only Gradio's upload folder and the examples)."""
    _ALLOWED[:] = [tmp_path_factory.getbasetemp()]


def predict(image, *args, **kw):
    kw.setdefault("allowed", tuple(_ALLOWED))
    return handlers.predict(image, *args, **kw)


def _check_answer(out, classes, shown_hw):
    probs, att_img, mask_img, details, summary = out
    assert details["in_distribution"] is True
    assert set(probs) == set(classes) and abs(sum(probs.values()) - 1) < 1e-4
    assert details["label"] in classes and details["label"] == max(probs, key=probs.get)
    assert att_img.shape == mask_img.shape == (*shown_hw, 3) and att_img.dtype == np.uint8
    assert np.asarray(details["attention"]).shape == (16, 16)  # the CNN's patch grid at 64 px
    assert np.asarray(details["mask"]).shape == (64, 64)  # the model's input size
    assert 0.0 <= np.min(details["mask"]) and np.max(details["mask"]) <= 1.0
    assert 0.0 <= np.min(details["attention"]) and np.max(details["attention"]) <= 1.0
    json.dumps(details)  # the API returns it as JSON
    assert "Tokens" in summary and "mean of layers and heads" in summary
    assert len(details["peak"]) == 2


def test_predict_on_an_example(zoo_root, classes, examples, scenes):
    path, sentence = scenes[0]
    out = predict(path, sentence, "tiny", WHOLE_SENTENCE, root=zoo_root)
    _check_answer(out, classes, (DISPLAY_SIDE, DISPLAY_SIDE))
    assert out[3]["tokens"] == sentence.split()


def test_predict_accepts_every_widget_payload(zoo_root, classes, examples, scenes):
    path, sentence = scenes[1]
    picture = Image.open(path)
    for value in ({"path": path, "meta": {"_type": "gradio.FileData"}}, picture, np.asarray(picture),
                  open(path, "rb").read()):
        _check_answer(predict(value, sentence, "tiny", None, root=zoo_root), classes, (DISPLAY_SIDE, DISPLAY_SIDE))


def test_a_photo_on_a_shapes_model_is_named_as_such_and_keeps_its_shape(zoo_root, examples):
    """A photo on a model trained on generated shapes: the first thing said is that it is not its kind of
    picture, and no confident answer stands in its place; the map is drawn on the photo's own shape."""
    rocket = next(p for p, _ in examples if p.endswith("rocket.png"))  # 640 x 427
    probs, att_img, mask_img, details, summary = predict(rocket, "the rocket on the launch pad", "tiny", "rocket",
                                                         root=zoo_root)
    assert details["in_distribution"] is False and "unlike" in details["reason"]
    assert probs == {} and summary.startswith("**Not this model's kind of picture.**")
    assert att_img.shape == mask_img.shape == (256, 384, 3)  # 640 x 427 kept, longer side 384
    assert details["token"] == "rocket" and set(details["unknown_words"]) >= {"rocket", "launch"}
    x, y = details["peak"]
    assert 0 <= x < 640 and 0 <= y < 427  # in the photo's own pixels


def test_checkpoint_labels_show_the_headline_metric_not_a_count(zoo_root):
    (label, name), = handlers.checkpoint_choices(zoo_root)
    assert name == "tiny" and " · iou " in label and "n 1" not in label and " n " not in label


def test_chosen_token_must_be_in_the_sentence(zoo_root, examples, scenes):
    path, _ = scenes[0]
    with pytest.raises(gr.Error, match="not among the sentence"):
        predict(path, "the red circle", "tiny", "banana", root=zoo_root)


@pytest.mark.parametrize("make,message", [
    (lambda d: (d / "junk.png").write_bytes(b"this is not a picture") and d / "junk.png", "not a readable image"),
    (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "empty"),
    (lambda d: Image.new("1", (7000, 6000)).save(d / "bomb.png") or d / "bomb.png", "too large"),
    (lambda d: (d / "cut.png").write_bytes(_png_bytes()[:60]) and d / "cut.png", "truncated|not a readable"),
    (lambda d: None, "no image"),
])
def test_bad_uploads_raise_gr_error(zoo_root, tmp_path, make, message):
    with pytest.raises(gr.Error, match=message) as err:
        predict(make(tmp_path), "the red circle", "tiny", None, root=zoo_root)
    assert "Traceback" not in err.value.message and "\n" not in err.value.message


def _png_bytes():
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("text", ["", "   \n\t ", None])
def test_empty_sentence_is_refused(zoo_root, examples, scenes, text):
    with pytest.raises(gr.Error, match="text is empty"):
        predict(scenes[0][0], text, "tiny", None, root=zoo_root)


def test_unknown_checkpoint_names_the_choices(zoo_root, examples, scenes, tmp_path):
    with pytest.raises(gr.Error, match="tiny"):
        predict(scenes[0][0], "the red circle", "nope", None, root=zoo_root)
    with pytest.raises(gr.Error, match="no checkpoint named"):  # a folder path is not a zoo name
        predict(scenes[0][0], "the red circle", str(zoo_root / "tiny"), None, root=zoo_root)


def test_empty_zoo_gives_a_clear_message(tmp_path, examples, scenes):
    assert handlers.checkpoint_names(tmp_path) == []
    message = handlers.no_checkpoint_message(tmp_path)
    assert "No trained checkpoint" in message and "mmlab train" in message
    with pytest.raises(gr.Error, match="No trained checkpoint"):
        predict(scenes[0][0], "the red circle", None, None, root=tmp_path)
    assert token_choices("the red circle", None, root=tmp_path) == [WHOLE_SENTENCE]


def test_token_choices(zoo_root):
    assert token_choices("the red circle left of the square", "tiny", root=zoo_root) == [
        WHOLE_SENTENCE, "the", "red", "circle", "left", "of", "square"]
    assert token_choices("  ", "tiny", root=zoo_root) == [WHOLE_SENTENCE]
    assert handlers.no_checkpoint_message(zoo_root) is None


def test_examples_are_local_readable_pictures(examples):
    from mmlab.data.images import load_image

    names = [p.rsplit("/", 1)[-1] for p, _ in examples]
    assert sum(n.startswith("shapes_") for n in names) == 6
    assert {"astronaut.png", "chelsea.png", "rocket.png"} <= set(names)
    for path, sentence in examples:
        assert load_image(path).size[0] >= 64 and sentence.strip()


def test_build_demo_offline_with_one_public_endpoint(zoo_root, tmp_path):
    from mmlab.demo import build_demo

    demo = build_demo(zoo_root)
    assert demo.analytics_enabled is False
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert public == ["predict"]
    empty = build_demo(tmp_path)  # no checkpoint: the warning is shown, the app still builds
    warning = next(b for b in empty.blocks.values() if getattr(b, "elem_id", None) == "no-checkpoint")
    assert warning.visible and "mmlab train" in warning.value


def test_importing_mmlab_demo_does_not_import_gradio():
    code = "import sys, mmlab.demo, mmlab.cli; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_ui_event_runs_through_gradio(zoo_root, classes):
    """Each event of the page (example click -> answer, token menu, page load) through Gradio's
    own pre- and post-processing, as the browser would call it."""
    import asyncio

    from mmlab.demo import build_demo

    demo = build_demo(zoo_root)
    fns = {fn.name: fn for fn in demo.fns.values()}

    async def run(name, inputs):
        return (await demo.process_api(fns[name], inputs, explicit_call=True))["data"]

    def value(update):
        return update.get("value", update) if isinstance(update, dict) and "__type__" in update else update

    first_scene = len(handlers.PHOTOS)  # after the photos
    image, text = (value(v) for v in asyncio.run(run("load_example", [first_scene])))
    assert text and image["path"].endswith("shapes_0.png")
    label, attention, mask, details, _ = asyncio.run(run("answer_sentence", [image, text, "tiny"]))
    details = details.model_dump()  # gr.JSON's payload model -> dict
    assert label["label"] in classes and Image.open(attention["path"]).size == (DISPLAY_SIDE, DISPLAY_SIDE)
    assert Image.open(mask["path"]).size == (DISPLAY_SIDE, DISPLAY_SIDE) and details["token"] == WHOLE_SENTENCE
    (menu,) = asyncio.run(run("tokens", ["the red circle", "tiny"]))
    assert [v for _, v in menu["choices"]] == [WHOLE_SENTENCE, "the", "red", "circle"]
    checkpoint, warning = asyncio.run(run("refresh", []))
    assert checkpoint["value"] == "tiny" and warning["visible"] is False
    assert checkpoint["choices"][0][0].startswith("tiny · cross_attention · mask")


def test_paths_outside_the_upload_folders_are_refused_alike(zoo_root, examples, scenes, tmp_path, monkeypatch):
    """A path the caller names is opened only inside the allowed folders; every other path, existing or
    not, a file or a folder, relative or through a symbolic link, gets the same one message."""
    outside = tmp_path / "private.png"
    Image.open(scenes[0][0]).save(outside)
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "link.png").symlink_to(outside)
    monkeypatch.chdir(tmp_path)
    for path in (str(outside), "private.png", "allowed/../private.png", str(tmp_path / "allowed" / "link.png"),
                 "/root/.ssh/id_rsa", "/root", "/etc/shadow", "/nonexistent/x.png", "/etc/passwd\x00.png"):
        for value in (path, {"path": path}, {"path": path, "meta": {"_type": "gradio.FileData"}}):
            with pytest.raises(gr.Error) as err:
                handlers.predict(value, "the red circle", "tiny", None, root=zoo_root,
                                 allowed=(tmp_path / "allowed",))
            assert err.value.message == REFUSED_PATH
    with pytest.raises(gr.Error) as err:  # a remote URL is never fetched
        handlers.predict({"url": "http://10.255.255.1/x.png"}, "the red circle", "tiny", None, root=zoo_root)
    assert err.value.message == REFUSED_PATH
    inside = tmp_path / "allowed" / "mine.png"
    Image.open(scenes[0][0]).save(inside)  # an uploaded file is answered
    assert handlers.predict({"path": str(inside)}, "the red circle", "tiny", None, root=zoo_root,
                            allowed=(tmp_path / "allowed",))[3]["label"]


def test_default_folder_is_gradios_upload_folder(examples, scenes):
    from gradio.utils import get_upload_folder

    assert handlers.upload_folders() == (__import__("pathlib").Path(get_upload_folder()),)
    with pytest.raises(Exception, match="must be uploaded"):
        handlers.image_source(scenes[0][0])  # pytest's temporary folder is not an upload folder


def test_data_url_is_held_to_the_upload_limit():
    import base64

    big = "data:image/png;base64," + base64.b64encode(b"\0" * (handlers.MAX_DATA_URL_BYTES + 10)).decode()
    with pytest.raises(Exception, match="too large"):
        handlers.image_source({"url": big})
