"""The tiny zoo the app and browser tests point the app at (``MMLAB_CHECKPOINTS``).

Three checkpoints trained through ``mmlab.experiment.run`` for one epoch on 128 shapes scenes:
seconds to build, enough for every page to have something to show (two strategies, and a
text-dropout model beside a plain one), each recording its experiment, metrics and domain.
"""
from __future__ import annotations

from pathlib import Path


def tiny_experiment(fusion: str, drop_text: float = 0.0, dataset: str = "shapes"):
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.experiment import Experiment

    from mmlab.zoo import recipes

    options = {"n": 128} if dataset == "shapes" else {**recipes()[dataset].data_options, "n": 128}
    return Experiment(dataset=dataset, task="mask" if dataset == "shapes" else "classify", data_options=options,
                      model=ModelConfig(fusion=fusion, dim=32, image_size=None),
                      train=TrainConfig(epochs=1, batch_size=32, drop_text=drop_text, threads=1))


def build_tiny_zoo(root: Path) -> Path:
    """Train and save cross_attention, concat and a text-dropout cross_attention mask model, and a concat
    digits classifier, into ``root`` with a manifest. Reused when it is already there."""
    if (root / "manifest.json").is_file():
        return root
    from mmlab import artifacts
    from mmlab.experiment import run

    for name, fusion, drop_text in [("tiny-cross", "cross_attention", 0.0), ("tiny-concat", "concat", 0.0),
                                    ("tiny-cross-droptext", "cross_attention", 0.3)]:
        run(tiny_experiment(fusion, drop_text), root / name, manifest=True)
    run(tiny_experiment("concat", dataset="digits"), root / "tiny-digits", manifest=True)  # other data
    # tiny-cross opens on stored results (PCA only, a small scorecard); the others are measured live
    artifacts.build(root / "tiny-cross", methods=("pca",),
                    scorecard_options={"n": 48, "curves_n": 12, "randomization": False})
    add_photo_model(root)
    return root


def add_photo_model(root: Path) -> None:
    """The shipped photo model (zero-shot: nothing to train), copied in with its manifest entry."""
    import shutil

    from mmlab import photo, zoo

    entry = zoo.find(photo.NAME)
    shutil.copytree(entry["dir"], root / photo.NAME)
    zoo.update_manifest({k: v for k, v in entry.items() if k != "dir"}, root)
