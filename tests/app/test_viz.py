"""mmlab.viz (pictures and figures the pages show) and mmlab.ui_state (the app's state helpers)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from mmlab import ui_state, viz
from mmlab.errors import InputError


# ---- pictures ------------------------------------------------------------------------------
def test_to_rgb_accepts_chw_hwc_grey_float_and_pil():
    chw = np.zeros((3, 8, 6), np.uint8)
    chw[0] = 200
    assert viz.to_rgb(chw).shape == (8, 6, 3) and viz.to_rgb(chw)[0, 0, 0] == 200
    assert viz.to_rgb(np.ones((5, 4))).tolist() == np.full((5, 4, 3), 255).tolist()  # floats in [0, 1]
    assert viz.to_rgb(Image.new("L", (3, 2), 7)).shape == (2, 3, 3)
    with pytest.raises(InputError):
        viz.to_rgb(np.zeros((2, 3, 4, 5)))


def test_overlay_leaves_cold_pixels_alone_and_colours_hot_ones():
    image = np.full((4, 4, 3), 100, np.uint8)  # grey: desaturating changes nothing
    heat = np.zeros((2, 2))
    heat[0, 0] = 1.0
    out = viz.overlay(image, heat, alpha=1.0, size=8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[7, 7].tolist() == [100, 100, 100]  # heat 0: the picture itself
    assert out[0, 0].tolist() == viz.colorize(np.ones((1, 1)))[0, 0].tolist()  # heat 1, alpha 1: the ramp's top
    assert viz.overlay(image, heat, alpha=0.0, size=8).tolist() == viz.resize(image, 8).tolist()
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    assert viz.overlay(red, heat, alpha=0.0, size=4)[3, 3].tolist() == [133, 33, 33]  # half desaturated
    with pytest.raises(InputError):
        viz.overlay(image, heat, alpha=1.5)


def test_colorize_ends_of_the_ramp():
    c = viz.colorize(np.array([[0.0, 1.0, -3.0, 9.0]]))
    assert c[0, 0].tolist() == [0, 0, 128] and c[0, 1].tolist() == [128, 0, 0]
    assert c[0, 2].tolist() == c[0, 0].tolist() and c[0, 3].tolist() == c[0, 1].tolist()  # clipped


def test_outline_of_a_square_is_its_border():
    m = np.zeros((6, 6), bool)
    m[1:5, 1:5] = True
    edge = viz.outline(m)
    assert edge.sum() == 12 and not edge[2:4, 2:4].any() and not edge[0].any()


def test_mask_overlay_outlines_prediction_and_truth():
    image = np.zeros((3, 8, 8), np.uint8)
    pred = np.zeros((8, 8), np.float32)
    pred[2:6, 2:6] = 1.0
    truth = np.zeros((8, 8), np.uint8)
    truth[0:3, 0:3] = 1
    out = viz.mask_overlay(image, pred, truth=truth, size=8)
    assert out[2, 5].tolist() == list(viz.MASK_RGB)  # predicted mask border
    assert out[0, 0].tolist() == list(viz.TRUTH_RGB)  # truth border
    assert out[7, 7].tolist() == [0, 0, 0]  # outside both


def test_noisy_image_is_deterministic_by_seed_and_zero_noise_is_identity():
    img = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    assert viz.noisy_image(img, 0.0).tolist() == img.tolist()
    a, b = viz.noisy_image(img, 0.3, seed=4), viz.noisy_image(img, 0.3, seed=4)
    assert a.tolist() == b.tolist() and a.tolist() != img.tolist()
    with pytest.raises(InputError):
        viz.noisy_image(img, -1)


def test_montage_tiles_row_by_row():
    pics = [np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = viz.montage(pics, columns=2, gap=1, background=0)
    assert sheet.shape == (5, 7, 3)
    assert sheet[0, 0, 0] == 10 and sheet[0, 4, 0] == 20 and sheet[3, 0, 0] == 30 and sheet[3, 4, 0] == 0


def test_png_bytes_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.asarray(Image.open(io.BytesIO(viz.png_bytes(img)))).tolist() == img.tolist()


def test_a_downloads_png_is_made_when_asked_for():
    """``png_later``: nothing encoded until the button's callable runs; then the picture, or the montage of the
    pictures, as a PNG."""
    from pages import _ui as ui

    pics = [np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)]
    one, sheet = ui.png_later(pics[0]), ui.png_later(iter(pics), columns=2)  # any iterable of pictures
    assert callable(one) and callable(sheet)
    assert np.asarray(Image.open(io.BytesIO(one()))).tolist() == pics[0].tolist()
    assert np.asarray(Image.open(io.BytesIO(sheet()))).tolist() == viz.montage(pics, columns=2).tolist()


# ---- figures --------------------------------------------------------------------------------
def test_probs_tables_sort_one_answer_and_line_up_several():
    one = viz.probs_table({"a": 0.2, "b": 0.7, "c": 0.1}, top=2)
    assert one == {"class": ["b", "a"], "probability": [0.7, 0.2]}  # largest first, the top two
    many = viz.probs_by_run_table({"m1": {"a": 0.9, "b": 0.1}, "m2": {"a": 0.3, "b": 0.6, "c": 0.1}}, top=2)
    # a row per run; the classes by their largest probability in any run; a class a run lacks is 0
    assert many == {"checkpoint": ["m1", "m2"], "a": [0.9, 0.3], "b": [0.1, 0.6]}
    assert viz.probs_by_run_table({"m1": {"a": 1.0}}) == {"checkpoint": ["m1"], "a": [1.0]}  # one run: still a row


def test_figure_html_opens_offline():
    fig = viz.bar_figure(["a", "b"], [0.2, 0.7])
    assert "<html>" in viz.figure_html(fig)[:200].lower() or "<!doctype" in viz.figure_html(fig)[:200].lower()


def test_latent_figure_groups_lines_and_highlight():
    xy = np.arange(12, dtype=float).reshape(6, 2)
    fig = viz.latent_figure(xy, colour=["x", "y", "x", "y", "x", "y"], symbol=["image"] * 3 + ["text"] * 3,
                            pairs=np.array([[0, 3], [1, 4]]), highlight=np.zeros((3, 2)))
    names = [t.name for t in fig.data]
    assert names == ["pair (image–text)", "x", "y", "your pair"]
    line = fig.data[0]
    assert len(line.x) == 6 and np.isnan(line.x[2])  # two segments separated by a gap
    assert sum(len(t.x) for t in fig.data[1:3]) == 6
    big = viz.latent_figure(np.zeros((4000, 2)), colour=["a"] * 4000)
    assert big.data[0].type == "scattergl"
    with pytest.raises(InputError):
        viz.latent_figure(np.zeros((3, 3)), colour=["a"] * 3)


def test_curves_and_grouped_bars_figures_serialise():
    fig = viz.curves_figure([0, 0.5, 1], {"image": [1, 0.8, 0.5], "text": [1, 0.9, None]})
    assert [t.name for t in fig.data] == ["image", "text"]
    fig = viz.grouped_bars_figure(["both", "image only"], {"m1": [0.9, 0.5], "m2": [0.9, 0.8]})
    assert json.loads(fig.to_json())["layout"]["barmode"] == "group"


# ---- ui_state -------------------------------------------------------------------------------------
def test_checkpoint_roots_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLAB_CHECKPOINTS", str(tmp_path / "zoo"))
    monkeypatch.setenv("MMLAB_USER_CHECKPOINTS", str(tmp_path / "mine"))
    assert ui_state.shipped_root() == tmp_path / "zoo" and ui_state.user_root() == tmp_path / "mine"
    assert ui_state.all_checkpoints() == ([], [])
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "manifest.json").write_text("{not json")
    entries, problems = ui_state.all_checkpoints()
    assert entries == [] and len(problems) == 1 and "JSON" in problems[0]


def test_all_checkpoints_merges_zoo_and_yours(tiny_zoo, tmp_path, monkeypatch):
    from mmlab import zoo

    monkeypatch.setenv("MMLAB_CHECKPOINTS", str(tiny_zoo))
    mine = tmp_path / "mine"
    monkeypatch.setenv("MMLAB_USER_CHECKPOINTS", str(mine))
    (mine / "tiny-cross").mkdir(parents=True)
    zoo.update_manifest({"name": "tiny-cross", "path": "tiny-cross", "dataset": "shapes", "strategy": "concat"}, mine)
    entries, _ = ui_state.all_checkpoints()
    names = [e["name"] for e in entries]
    assert "tiny-cross" in names and "tiny-cross (yours)" in names
    assert next(e for e in entries if e["name"] == "tiny-cross (yours)")["source"] == "yours"


def test_published_numbers_match_by_task_and_strategy():
    assert ui_state.published_for({"task": "mask", "strategy": "cross_attention"})["value"] == pytest.approx(0.9617)
    assert ui_state.published_for({"task": "mask", "strategy": "concat"}) is None


def test_zoo_groups_line_up_checkpoints_that_answer_the_same_question():
    entries = [{"name": "a", "dataset": "shapes", "task": "mask"}, {"name": "b", "dataset": "shapes", "task": "multitask"},
               {"name": "c", "dataset": "shapes", "task": "mask"}, {"name": "d", "dataset": "digits", "task": "classify"}]
    groups = ui_state.zoo_groups(entries)
    assert list(groups) == ["shapes · referring masks", "shapes · multi-task", "digits · classification"]
    assert [e["name"] for e in groups["shapes · referring masks"]] == ["a", "c"]


def test_an_image_only_baseline_is_matched_with_the_seeds_image_only_number():
    entry = {"task": "classify", "dataset": "digits", "strategy": "concat", "tested_with": "text dropped"}
    assert ui_state.published_for(entry)["value"] == pytest.approx(0.9037)
    assert ui_state.published_for({**entry, "tested_with": None})["value"] == pytest.approx(1.0)
