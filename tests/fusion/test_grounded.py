"""grounded_cross_attention: the mask is drawn only where the attention looks; the head noun's
attention can be supervised with the referred object's mask."""
import pytest
import torch

from mmlab import losses
from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.errors import InputError
from mmlab.fusion import build_fusion
from mmlab.fusion.grounded import GroundedCrossAttentionFusion, mean_attention
from mmlab.fusion.base import LossTargets, masked_mean, supervise_attention
from mmlab.model import build_model
from mmlab.train import Prepared, compute_loss
from mmlab.types import EncoderOutput

B, GRID, T, D = 3, (4, 4), 5, 32
P = GRID[0] * GRID[1]
N = 4  # scenes of the model-level tests


def encoder_outputs() -> dict[str, EncoderOutput]:
    """Random image (B, P, D) and text (B, T, D) outputs; the last text row has two padded words."""
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(B, P, D, generator=g), torch.randn(B, T, D, generator=g)
    img_mask, txt_mask = torch.ones(B, P, dtype=torch.bool), torch.ones(B, T, dtype=torch.bool)
    txt_mask[-1, -2:] = False
    return {"image": EncoderOutput(img, img_mask, masked_mean(img, img_mask), GRID),
            "text": EncoderOutput(txt, txt_mask, masked_mean(txt, txt_mask))}


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "train", n=32)


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    cfg = ModelConfig(fusion="grounded_cross_attention", targets={"label": 4}, mask=True, dim=32, image_size=64)
    return build_model(cfg, classes={"label": data.classes["label"]},
                       tokenizer=WordTokenizer.fit(data.texts).to_json()).eval()


def run_with_selection(model, data, texts, selection=None):
    """The model on the first N scenes; ``selection`` (N, P) replaces the attention's selection map."""
    images = torch.from_numpy(data.images[:N]).float() / 255
    fusion = model.fusion
    if selection is not None:
        fusion.select = lambda maps, words, mask: (selection, torch.full(mask.shape, 1.0 / mask.shape[1]))
    try:
        with torch.no_grad():
            return model(images, model.tokenize(texts))
    finally:
        fusion.__dict__.pop("select", None)


def attention_loss(model, out, prepared, idx):
    """The supervision term ``fit`` adds for a batch (``supervise_attention`` through the strategy's hook)."""
    batch = LossTargets(labels={}, primary=model.primary, masks=prepared.masks[idx], head=prepared.head[idx])
    return supervise_attention(out.fusion, out.encoded, batch)


def cells_of(mask: torch.Tensor, grid=(16, 16)) -> torch.Tensor:
    """(S, S) {0, 1} mask -> (P,) 1.0 on the patches that hold an object pixel."""
    return (torch.nn.functional.adaptive_max_pool2d(mask.float()[None, None], grid).flatten() > 0).float()


def test_selection_is_a_word_weighted_mean_of_the_attention_rows():
    f = build_fusion("grounded_cross_attention", D).eval()
    with torch.no_grad():
        out = f(encoder_outputs())
    maps, sel, weights = mean_attention(out.attention), out.extras["selection"], out.extras["word_weights"]
    assert maps.shape == (B, T, P) and sel.shape == (B, P) and weights.shape == (B, T)
    assert torch.allclose(weights.sum(-1), torch.ones(B)) and (weights[-1, -2:] == 0).all()  # padding gets none
    raw = (weights.unsqueeze(-1) * maps).sum(1)  # (B, P)
    assert torch.allclose(sel, raw / raw.amax(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(sel.amax(-1), torch.ones(B))


def test_a_patch_the_attention_ignores_carries_no_signal():
    f = build_fusion("grounded_cross_attention", D).eval()
    inputs = encoder_outputs()
    only = torch.zeros(B, P)
    only[:, 5] = 1.0  # the attention selects patch 5 alone
    f.select = lambda maps, words, mask: (only, torch.full(mask.shape, 1.0 / mask.shape[1]))
    with torch.no_grad():
        tokens = f(inputs).tokens  # (B, P, D)
    assert tokens[:, 5].abs().sum() > 0
    assert (tokens[:, :5] == 0).all() and (tokens[:, 6:] == 0).all()


def test_the_mask_depends_on_the_attention(model, data):
    texts = data.texts[:N]
    normal = run_with_selection(model, data, texts)
    assert isinstance(model.fusion, GroundedCrossAttentionFusion)
    # no selection: the decoder gets no fused signal, so the sentence cannot change the mask
    zero = torch.zeros(N, 256)
    blind = run_with_selection(model, data, texts, zero)
    other_text = run_with_selection(model, data, texts[1:] + texts[:1], zero)
    assert torch.allclose(blind.mask, other_text.mask, atol=1e-6)
    assert not torch.allclose(blind.mask, normal.mask, atol=1e-3)
    # selecting the referred object versus the rest of the scene gives different masks
    on_object = torch.stack([cells_of(torch.from_numpy(m)) for m in data.masks[:N]])  # (N, P)
    elsewhere = 1.0 - on_object
    a = run_with_selection(model, data, texts, on_object).mask
    b = run_with_selection(model, data, texts, elsewhere).mask
    assert (a - b).abs().mean() > 1e-3


def test_supervision_is_lower_on_the_object_than_uniform():
    grid = (4, 4)
    mask = torch.zeros(1, 16, 16)
    mask[0, 4:8, 8:12] = 1  # the object fills patch (1, 2) of the 4x4 grid: index 6
    on_object = torch.zeros(1, 16)
    on_object[0, 6] = 1.0
    uniform = torch.full((1, 16), 1 / 16)
    elsewhere = torch.zeros(1, 16)
    elsewhere[0, 0] = 1.0
    l_obj, l_uni, l_else = (losses.attention_supervision(r, mask, grid) for r in (on_object, uniform, elsewhere))
    assert l_obj.shape == (1,)
    assert float(l_obj) == pytest.approx(0.0, abs=1e-6)  # -log 1
    assert float(l_uni) == pytest.approx(torch.log(torch.tensor(16.0)).item(), rel=1e-5)  # -log 1/16
    assert l_obj < l_uni < l_else


def test_supervision_targets_the_object_in_proportion_and_ignores_empty_masks():
    mask = torch.zeros(2, 8, 8)
    mask[0, 0:4, 0:2] = 1  # half of patch 0 of a 2x2 grid (4 x 4 px patches)
    mask[0, 0:4, 4:8] = 1  # all of patch 1: the target is 1/3, 2/3
    rows = torch.tensor([[1 / 3, 2 / 3, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    loss = losses.attention_supervision(rows, mask, (2, 2))
    expected = -(1 / 3 * torch.log(torch.tensor(1 / 3)) + 2 / 3 * torch.log(torch.tensor(2 / 3)))
    assert float(loss[0]) == pytest.approx(float(expected), rel=1e-5)  # the entropy: the minimum
    assert float(loss[1]) == 0.0  # an empty mask asks for nothing


def test_training_loss_adds_the_head_nouns_supervision(model, data):
    prepared = Prepared(model, data)
    assert prepared.head.shape == (len(data),)
    idx = torch.arange(8)
    inputs = prepared.inputs(idx)
    with torch.no_grad():
        out = model(inputs["images"], inputs["text"])
    plain = compute_loss(model, out, prepared, idx, TrainConfig())
    term = attention_loss(model, out, prepared, idx)
    supervised = compute_loss(model, out, prepared, idx, TrainConfig(attention_supervision=0.5))
    assert float(term) > 0 and float(supervised) == pytest.approx(float(plain) + 0.5 * float(term), rel=1e-5)
    # by hand: the head noun's row, mean over layers and heads, against the pooled mask
    maps = mean_attention(out.fusion.attention)  # (8, T, P)
    rows = maps[torch.arange(8), prepared.head[idx]]
    by_hand = losses.attention_supervision(rows, prepared.masks[idx], (16, 16)).mean()
    assert float(term) == pytest.approx(float(by_hand), rel=1e-5)


def test_supervision_without_head_nouns_is_an_input_error(model, data):
    unnamed = data.subset(range(len(data)))
    unnamed.info.pop("head_word")
    prepared = Prepared(model, unnamed)
    idx = torch.arange(4)
    inputs = prepared.inputs(idx)
    with torch.no_grad():
        out = model(inputs["images"], inputs["text"])
    with pytest.raises(InputError, match="head noun"):
        compute_loss(model, out, prepared, idx, TrainConfig(attention_supervision=1.0))


def test_fit_with_supervision_lowers_the_head_nouns_loss(data):
    from mmlab.train import fit, seed_everything

    seed_everything(0)
    cfg = ModelConfig(fusion="grounded_cross_attention", targets={"label": 4}, mask=True, dim=32, image_size=32)
    model = build_model(cfg, classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())

    def head_loss() -> float:
        prepared, idx = Prepared(model, data), torch.arange(len(data))
        inputs = prepared.inputs(idx)
        model.eval()
        with torch.no_grad():
            return float(attention_loss(model, model(inputs["images"], inputs["text"]), prepared, idx))

    before = head_loss()
    fit(model, data, TrainConfig(epochs=4, batch_size=8, warmup_steps=2, lr=3e-3, attention_supervision=1.0,
                                 threads=1), progress=False)
    assert head_loss() < before - 0.5  # 4.2 (about log 64: spread over the 8 x 8 grid) -> 2.7-2.9 (three seeds)


def test_cli_refuses_supervision_on_a_dataset_without_head_nouns(tmp_path, capsys):
    from mmlab.cli import main

    code = main(["train", "--dataset", "digits", "--fusion", "grounded_cross_attention", "--epochs", "1",
                 "--max-train", "64", "--attention-supervision", "1", "--threads", "1", "--quiet",
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "head noun" in capsys.readouterr().err
