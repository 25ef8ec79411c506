"""The zoo plan: every registry strategy on every built-in dataset, each a valid ``mmlab train``."""
import shlex

from mmlab import zoo
from mmlab.cli import parser
from mmlab.fusion import available, get as get_fusion


def test_plan_covers_every_strategy_on_every_dataset():
    names = zoo.plan()
    for dataset in ("shapes", "shapes_truth", "easyvqa", "digits"):
        for s in available():
            assert f"{dataset}-{s}" in names
    for s in zoo.MASK_STRATEGIES:
        assert f"shapes-mask-{s}" in names
    # the mask set: every spatial strategy, plus the pooled ones seed 004 compares against
    assert {s for s in available() if get_fusion(s).spatial} <= set(zoo.MASK_STRATEGIES)
    tasks = {shlex.split(c)[shlex.split(c).index("--task") + 1] for c in names.values() if "--task" in c}
    assert {"multitask", "mask", "contrastive", "generate"} <= tasks


def test_every_plan_command_parses_and_names_its_own_folder():
    p = parser()
    for name, command in zoo.plan().items():
        argv = shlex.split(command)
        assert argv[0] == "mmlab"
        args = p.parse_args(argv[1:])
        assert args.name == name and args.out == f"checkpoints/{name}" and args.manifest
        assert args.fusion in available()


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
    import json

    import mmlab
    from mmlab.cli import main
    from mmlab.data import load_dataset
    from mmlab.evaluate import evaluate

    out = tmp_path / "image_only"
    assert main(["train", "--dataset", "digits", "--epochs", "4", "--max-train", "400", "--drop-text", "1",
                 "--threads", "1", "--out", str(out), "--manifest", "--quiet"]) == 0
    entry, = json.loads((tmp_path / "manifest.json").read_text())["checkpoints"]
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
    """The manifest's command is the recipe: rerunning it (same seed) gives the same numbers."""
    import json

    from mmlab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zoo, "DEFAULT_ROOT", tmp_path / "checkpoints")
    assert main(["train", "--dataset", "digits", "--fusion", "gated", "--epochs", "2", "--max-train", "300",
                 "--threads", "1", "--out", "checkpoints/tiny", "--name", "tiny", "--manifest", "--quiet"]) == 0
    first, = zoo.read_manifest()["checkpoints"]
    assert first["config"]["fusion"] == "gated" and first["parameters"] > 0
    weights = (tmp_path / "checkpoints/tiny/model.safetensors").read_bytes()
    assert main(["zoo", "train", "--only", "tiny"]) == 0
    again, = zoo.read_manifest()["checkpoints"]
    assert again["metrics"] == first["metrics"]
    assert (tmp_path / "checkpoints/tiny/model.safetensors").read_bytes() == weights
