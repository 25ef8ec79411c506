"""Cross-modal generation (seed 001): image -> caption scored by BLEU, text -> image by SSIM."""
import numpy as np
import pytest

from mmlab import metrics
from mmlab.config import ModelConfig, TrainConfig
from mmlab.data.tokenizer import WordTokenizer
from mmlab.evaluate import evaluate
from mmlab.model import build_model
from mmlab.train import fit


def test_bleu_hand_worked():
    ref = "the small red circle".split()
    assert metrics.bleu([ref], [ref]) == pytest.approx(1.0)
    assert metrics.bleu([ref], [["blue", "square"]]) == 0.0
    # unigram precision 3/3; bigrams 2/2 (+1 smoothing -> 3/3); tri 1/1 -> 2/2; 4-grams 0/0 -> 1/1;
    # brevity penalty exp(1 - 4/3)
    assert metrics.bleu([ref], [["the", "small", "red"]]) == pytest.approx(np.exp(1 - 4 / 3), rel=1e-6)


def test_ssim_hand_worked():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 16, 16))
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, 1 - a) < 0  # an inverted image is anti-correlated
    assert metrics.ssim(a, np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)) > metrics.ssim(a, rng.random(a.shape))


def test_generation_learns_captions_and_images():
    """On digits with exact captions (the caption describes the picture, unlike a referring
    sentence over a multi-object scene), a short run lifts both BLEU and SSIM well above an
    untrained model's."""
    from mmlab.data import load_dataset

    train = load_dataset("digits", "train", captions="exact")
    test = load_dataset("digits", "test", captions="exact").subset(range(200))
    model = build_model(ModelConfig(fusion="concat", targets={}, generate=True, dim=32, image_size=32), classes={},
                  tokenizer=WordTokenizer.fit(train.texts).to_json())
    before = evaluate(model, test)
    fit(model, train, TrainConfig(epochs=4, batch_size=64, lr=3e-3, warmup_steps=10), progress=False)
    after = evaluate(model, test)
    assert after["bleu"] > before["bleu"] + 0.03, (before, after)
    assert after["ssim"] > before["ssim"] + 0.15, (before, after)
    p = model.eval().predict(test.images[0].transpose(1, 2, 0), test.texts[0])
    from mmlab.evaluate import predict_dataset

    ids = predict_dataset(model, test.subset([0]))["generated"]["captions"][0]  # the batched path's caption
    vocab = model.text_encoder.tokenizer.vocab
    assert p.extras["caption"] == " ".join(vocab[i] for i in ids[: ids.index(0) if 0 in ids else len(ids)])
    assert p.extras["generated_image"].shape == (32, 32, 3)


def test_generation_needs_a_word_vocabulary():
    from mmlab import InputError

    with pytest.raises(InputError, match="generation"):
        build_model(ModelConfig(fusion="concat", targets={}, generate=True, text_encoder="minilm", dim=32), classes={})
