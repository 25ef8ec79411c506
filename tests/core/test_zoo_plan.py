"""The zoo plan: every registry strategy on every built-in dataset, each an experiment whose derived
``mmlab train`` line parses back to the same experiment."""
import shlex

from mmlab import zoo
from mmlab.cli import parser
from mmlab.experiment import command, from_args
from mmlab.fusion import get as get_fusion, trainable as available


def test_plan_covers_every_strategy_on_every_dataset():
    names = zoo.plan()
    for dataset in zoo.PLAN_DATASETS:
        for s in available():
            if s not in zoo.SPECIAL_STRATEGIES:
                assert names[f"{dataset}-{s}"].model.fusion == s
    for s in zoo.MASK_STRATEGIES:
        assert names[f"shapes-mask-{s}"].task == "mask"
    # the mask set: every spatial strategy, plus the pooled ones seed 004 compares against
    assert {s for s in available() if get_fusion(s).spatial} - zoo.SPECIAL_STRATEGIES <= set(zoo.MASK_STRATEGIES)
    assert {"multitask", "mask", "contrastive", "generate", "classify"} <= {e.task for e in names.values()}


def test_every_plan_command_parses_back_to_its_experiment():
    """The shell line is derived from the experiment; parsing it gives the experiment back."""
    p = parser()
    for name, exp in zoo.plan().items():
        argv = shlex.split(command(exp, name))
        assert argv[:2] == ["mmlab", "train"]
        args = p.parse_args(argv[1:])
        assert args.name == name and args.out == f"checkpoints/{name}" and args.manifest
        assert from_args(args) == exp


def test_the_shipped_manifest_is_the_plan():
    """Every shipped trained checkpoint records the experiment that made it, and it is the plan's recipe; the
    one built checkpoint (the zero-shot photo model) records the command that built it, and the plan has every
    trained one."""
    from mmlab import photo
    from mmlab.experiment import Experiment

    plan = zoo.plan()
    shipped = zoo.list_checkpoints()
    for e in shipped:
        if e["name"] == photo.NAME:
            assert e["experiment"] is None and e["command"] == "python -m mmlab.photo build"
            continue
        assert Experiment.from_json(e["experiment"]) == plan[e["name"]], e["name"]
    assert set(plan) == {e["name"] for e in shipped} - {photo.NAME}


def _write_entries(args):
    base, k = args
    for i in range(10):
        zoo.update_manifest({"name": f"m{k}-{i}", "path": f"m{k}-{i}"}, base)


def test_concurrent_manifest_updates_lose_nothing(tmp_path):
    """The zoo is built by several trainings at once; each records itself in the one manifest."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_write_entries, [(str(tmp_path), k) for k in range(4)])
    names = {e["name"] for e in zoo.read_manifest(tmp_path)["checkpoints"]}
    assert names == {f"m{k}-{i}" for k in range(4) for i in range(10)}


def test_a_unimodal_baseline_is_scored_with_that_modality_dropped(tmp_path):
    """--drop-text 1 trains an image-only model; its manifest metrics are taken with the text
    dropped at test time too, as the seeds' image-only baselines are."""

    import mmlab
    from mmlab.cli import main
    from mmlab.data import load_dataset
    from mmlab.evaluate import evaluate

    out = tmp_path / "image_only"
    assert main(["train", "--dataset", "digits", "--epochs", "4", "--max-train", "400", "--drop-text", "1",
                 "--threads", "1", "--out", str(out), "--manifest", "--quiet"]) == 0
    entry, = zoo.list_checkpoints(tmp_path)
    assert entry["tested_with"] == "text dropped"
    model = mmlab.load(out)
    test = load_dataset("digits", "test")
    assert entry["metrics"]["accuracy"] == evaluate(model, test, drop="text")["accuracy"]
    assert entry["metrics"]["accuracy"] > 0.3  # ten digits: chance is 0.1
    # predict, as the app calls it, runs the baseline the way it was scored: text dropped
    img = test.images[0].transpose(1, 2, 0)
    assert model.predict(img, test.texts[0]).probs == model.predict(img, test.texts[0], drop="text").probs
    assert model.predict(img, test.texts[0]).probs != model.predict(img, test.texts[0], drop="none").probs


def test_zoo_train_rebuilds_a_checkpoint_with_the_same_metrics(tmp_path, monkeypatch):
    """The manifest's experiment is the recipe: rerunning it (same seed) gives the same weights and numbers."""

    from mmlab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMLAB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    assert main(["train", "--dataset", "digits", "--fusion", "gated", "--epochs", "2", "--max-train", "300",
                 "--threads", "1", "--out", "checkpoints/tiny", "--name", "tiny", "--manifest", "--quiet"]) == 0
    first, = zoo.read_manifest()["checkpoints"]
    assert first["config"]["fusion"] == "gated" and first["parameters"] > 0
    weights = (tmp_path / "checkpoints/tiny/model.safetensors").read_bytes()
    assert main(["zoo", "train", "--only", "tiny", "--no-artifacts", "--quiet"]) == 0
    again, = zoo.read_manifest()["checkpoints"]
    assert again["metrics"] == first["metrics"]
    assert (tmp_path / "checkpoints/tiny/model.safetensors").read_bytes() == weights
