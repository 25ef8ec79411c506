"""The shipped zoo is what its manifest says: its metrics are those of its weights, ``mmlab eval`` reproduces
them, and every checkpoint's answer and its explanations come from the same forward pass."""
import json

import numpy as np
import pytest

import mmlab
from mmlab import zoo

FAST = ("digits-image_only", "digits-concat", "shapes-concat", "easyvqa-add", "shapes_truth-late_product")


@pytest.mark.parametrize("name", FAST)
def test_shipped_metrics_are_those_of_the_shipped_weights(name):
    from mmlab.evaluate import evaluate_checkpoint

    entry = zoo.find(name)
    again = evaluate_checkpoint(mmlab.load(name))
    for k, v in entry["metrics"].items():
        assert again[k] == pytest.approx(v, abs=1e-9), (name, k)


def test_mmlab_eval_uses_the_checkpoint_s_own_data_and_drop(capsys):
    from mmlab.cli import main

    assert main(["eval", "digits-image_only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == zoo.find("digits-image_only")["metrics"]["accuracy"] == 0.825
    assert out["drop"] == "text" and out["dataset"] == "digits"
    assert main(["eval", "digits-image_only", "--drop", "none", "--json"]) == 0  # asked for: both
    assert json.loads(capsys.readouterr().out)["accuracy"] != 0.825


def _pair(model):
    from mmlab.evaluate import split_of

    if model.cfg.fusion == "concept_bridge":  # the photo model has no split: a photo the tests may read
        from mmlab.data import photos

        return photos.photo("chelsea"), "the cat"
    data = split_of(model, "test", n=3)
    return data.images[1].transpose(1, 2, 0), data.texts[1]


@pytest.mark.parametrize("name", [e["name"] for e in zoo.list_checkpoints()])
def test_predict_and_explain_share_one_forward_pass(name):
    """The pass an explanation differentiates is the pass ``predict`` answered with (the stored drop included):
    the same class, the same attention."""
    from mmlab import explain as E

    model = mmlab.load(name)
    image, text = _pair(model)
    pred = model.predict(image, text)
    with E._with_grad(model):
        run = model.run_pair(image, text)
        if model.primary is not None and pred.label is not None:
            logits = run.out.logits[model.primary][0]
            assert model.classes[model.primary][int(logits.argmax())] == pred.label
            np.testing.assert_allclose(logits.softmax(-1).detach().numpy(),
                                       [pred.probs[c] for c in model.classes[model.primary]], atol=1e-5)
    if pred.attention:
        result = E.explain(model, image, text, "attention")
        mean = np.stack(list(pred.attention.values())).mean((0, 1, 2))  # layers, heads, tokens
        own = (pred.extras or {}).get("sentence_attention")  # a strategy's own map of the sentence
        expected = mean if own is None else np.asarray(own).reshape(mean.shape)
        np.testing.assert_allclose(result.map, E.normalize(expected), atol=1e-5)
    assert run.drop == model.eval_drop
