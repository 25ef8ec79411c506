import pytest
import torch.nn.functional as F

from mmlab.config import ModelConfig
from mmlab.encoders import build_text_encoder
from mmlab.encoders.pretrained import MiniLMBiGRUText, MiniLMText
from mmlab.errors import InputError


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(ModelConfig(text_encoder="minilm", dim=32), None)


def sentence_vectors(enc, texts):
    feats = enc.extract(**enc.tokenize(texts))
    m = feats["attention_mask"].unsqueeze(-1).float()
    return F.normalize((feats["hidden"].float() * m).sum(1) / m.sum(1), dim=-1)  # (B, 384)


def test_tokens_match_token_strings(minilm):
    text = "the small red triangle left of the unbelievably blue circle"
    strings = minilm.token_strings(text)
    assert strings[0] == "[CLS]" and strings[-1] == "[SEP]" and "triangle" in strings
    out = minilm.from_features(**minilm.extract(**minilm.tokenize([text])))
    assert out.tokens.shape == (1, len(strings), 32) and out.mask.all()


def test_padding_and_truncation(minilm):
    batch = minilm.tokenize(["a circle", "the small red triangle left of the blue circle"])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["attention_mask"].sum(1).tolist() == [4, 11]
    out = minilm.from_features(**minilm.extract(**batch))
    assert out.tokens.shape == (2, 11, 32) and out.mask.sum(1).tolist() == [4, 11]
    assert out.pooled.shape == (2, 32)
    long = minilm.tokenize(["word " * 100])
    assert long["input_ids"].shape[1] == 32 and len(minilm.token_strings("word " * 100)) == 32


def test_minilm_knows_what_sentences_mean(minilm):
    a, b, c = sentence_vectors(minilm, ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
                                        "The stock market fell sharply today."])
    assert float(a @ b) > float(a @ c) + 0.3


def test_features_are_frozen_and_the_projection_trains(minilm):
    assert minilm.frozen and all(k.startswith(("proj.", "norm.")) for k in minilm.state_dict())
    feats = minilm.extract(**minilm.tokenize(["a blue square"]))
    assert not feats["hidden"].requires_grad
    # one feature, not the sum of all: a sum over a LayerNorm's output is constant, its gradient 0 up to rounding
    minilm.from_features(**feats).pooled[:, 0].sum().backward()
    assert minilm.proj.weight.grad is not None and minilm.proj.weight.grad.abs().sum() > 0


def test_minilm_bigru():
    enc = build_text_encoder(ModelConfig(text_encoder="minilm_bigru", dim=16), None)
    assert isinstance(enc, MiniLMBiGRUText) and enc.frozen
    batch = enc.tokenize(["a circle", "the small red triangle left of the blue circle"])
    out = enc.from_features(**enc.extract(**batch))
    assert out.tokens.shape == (2, 11, 16) and out.mask.sum(1).tolist() == [4, 11]
    out.pooled.sum().backward()
    assert enc.gru.weight_ih_l0.grad.abs().sum() > 0
    assert enc.cache_key == MiniLMText(16).cache_key  # same frozen features, one cache
    with pytest.raises(InputError):
        MiniLMBiGRUText(15)


def test_bad_text_input(minilm):
    with pytest.raises(InputError):
        minilm.tokenize([])
    with pytest.raises(InputError):
        minilm.tokenize([1, 2])


ODD_TEXTS = ["the cat", "A Café in Zürich — naïve résumé!", "一只猫 sitting on 🐱 mats", "", "x " * 100,
             "  Hello\tWORLD\n", "don't stop-believing 3.14", "the small red triangle left of the blue circle"]


def test_word_pieces_and_states_are_transformers_own():
    """mmlab's MiniLM (tokenizers + plain torch, no transformers import) gives transformers' word pieces and
    hidden states for the same weights, odd texts and truncation included."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mmlab.encoders.pretrained import _load_minilm, _minilm_path, minilm_tokenizer

    path = _minilm_path()
    hf_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    for length in (32, 8):
        theirs = hf_tok(ODD_TEXTS, padding=True, truncation=True, max_length=length, return_tensors="pt")
        ours = minilm_tokenizer()(ODD_TEXTS, length)
        assert torch.equal(theirs["input_ids"], ours["input_ids"])
        assert torch.equal(theirs["attention_mask"], ours["attention_mask"])
        for text in ODD_TEXTS:
            ids = hf_tok(text, truncation=True, max_length=length)["input_ids"]
            assert minilm_tokenizer().pieces(text, length) == hf_tok.convert_ids_to_tokens(ids)
    batch = minilm_tokenizer()(ODD_TEXTS, 32)
    with torch.no_grad():
        theirs = AutoModel.from_pretrained(path, local_files_only=True).eval()(**batch).last_hidden_state
        ours = _load_minilm(True)(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert (theirs - ours)[real].abs().max() < 1e-4


def test_the_pretrained_minilm_never_imports_transformers():
    import subprocess
    import sys

    code = ("import sys; from mmlab.encoders.pretrained import _load_minilm, minilm_tokenizer; "
            "net = _load_minilm(True); net(**minilm_tokenizer()(['a cat'], 32)); print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.split()[-1] == "False"
