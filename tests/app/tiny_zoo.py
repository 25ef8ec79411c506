"""The tiny zoo the app and browser tests point the app at (``MMLAB_CHECKPOINTS``).

Three checkpoints trained for one epoch on 128 shapes scenes: seconds to build, enough for
every page to have something to show (two strategies, and a text-dropout model beside a plain one).
"""
from __future__ import annotations

from pathlib import Path


def build_tiny_zoo(root: Path) -> Path:
    """Train and save cross_attention, concat and a text-dropout cross_attention mask model (dim 32,
    1 epoch, 128 scenes) into ``root`` with a manifest. Reused when it is already there."""
    if (root / "manifest.json").is_file():
        return root
    import torch

    from mmlab import checkpoint, zoo
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.evaluate import evaluate
    from mmlab.model import Model
    from mmlab.train import fit

    torch.set_num_threads(1)
    train = load_dataset("shapes", "train", n=128)
    test = load_dataset("shapes", "test", n=64)
    specs = [("tiny-cross", "cross_attention", 0.0), ("tiny-concat", "concat", 0.0),
             ("tiny-cross-droptext", "cross_attention", 0.3)]
    for name, fusion, drop_text in specs:
        model = Model(ModelConfig(fusion=fusion, targets={"label": 4}, mask=True, dim=32),
                      classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
        result = fit(model, train, TrainConfig(epochs=1, batch_size=32, drop_text=drop_text), progress=False)
        metrics = evaluate(model, test)
        meta = {"name": name, "dataset": "shapes", "task": "mask", "metrics": metrics,
                "train": {"drop_text": drop_text, "drop_image": 0.0}}
        checkpoint.save(model, root / name, meta=meta)
        zoo.update_manifest({
            "name": name, "path": name, "dataset": "shapes", "task": "mask", "strategy": fusion,
            "encoders": {"image": "cnn", "text": "bigru"}, "metrics": metrics,
            "train_seconds": round(result.seconds, 1), "parameters": model.num_parameters(),
            "command": f"test fixture ({fusion}, drop_text={drop_text})", "train": {"drop_text": drop_text},
        }, root)
    return root
