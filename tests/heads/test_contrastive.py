"""Contrastive alignment (seed 001): InfoNCE with a learned temperature, scored by recall@k."""
import torch

from mmlab.config import ModelConfig, TrainConfig
from mmlab.data.tokenizer import WordTokenizer
from mmlab.evaluate import evaluate
from mmlab.model import build_model
from mmlab.train import fit


def _model(train):
    return build_model(ModelConfig(fusion="concat", targets={}, contrastive=True, dim=32), classes={},
                 tokenizer=WordTokenizer.fit(train.texts).to_json())


def test_embeddings_are_unit_vectors_and_temperature_learns(tiny_shapes):
    train, _ = tiny_shapes
    model = _model(train)
    x = torch.from_numpy(train.images[:8]).float() / 255
    out = model(x, model.tokenize(train.texts[:8]))
    img, txt = out.contrast
    assert img.shape == txt.shape == (8, 32)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(8))
    before = model.contrastive.logit_scale.item()
    fit(model, train.subset(range(128)), TrainConfig(epochs=1, batch_size=32, lr=3e-3), progress=False)
    assert model.contrastive.logit_scale.item() != before  # the temperature is a trained parameter


def test_alignment_retrieves_the_right_pair_above_chance(tiny_shapes):
    train, test = tiny_shapes
    model = _model(train)
    fit(model, train, TrainConfig(epochs=4, batch_size=64, lr=3e-3, warmup_steps=10), progress=False)
    m = evaluate(model, test)
    chance = 5 / len(test)  # recall@5 among len(test) candidates
    assert m["t2i_recall@5"] > 4 * chance and m["i2t_recall@5"] > 4 * chance, m
    p = model.eval().predict(test.images[0].transpose(1, 2, 0), test.texts[0])
    assert p.label is None and -1.0 <= p.extras["similarity"] <= 1.0
