"""Every registered fusion strategy, on random encoder outputs: the FusionOutput contract."""
import pytest
import torch

from mmlab.errors import InputError
from mmlab.fusion import build_fusion, describe, get, trainable as available
from mmlab.fusion.base import masked_mean
from mmlab.types import EncoderOutput

CATALOGUE = [
    "early", "concat", "add", "hadamard", "bilinear", "tensor", "gated", "concat_attention",
    "cross_attention", "bidirectional_cross_attention", "grounded_cross_attention", "transformer",
    "late_average", "late_weighted", "late_product", "late_max", "late_vote",
]
B, GRID, T, D, C = 3, (4, 4), 5, 32, 4
P = GRID[0] * GRID[1]


def encoder_outputs(*, requires_grad: bool = False, seed: int = 0) -> dict[str, EncoderOutput]:
    """Random image (B, P, D) and text (B, T, D) outputs; the last text row has two padded words."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(B, P, D, generator=g).requires_grad_(requires_grad)
    txt = torch.randn(B, T, D, generator=g).requires_grad_(requires_grad)
    img_mask = torch.ones(B, P, dtype=torch.bool)
    txt_mask = torch.ones(B, T, dtype=torch.bool)
    txt_mask[-1, -2:] = False
    return {
        "image": EncoderOutput(img, img_mask, masked_mean(img, img_mask), GRID),
        "text": EncoderOutput(txt, txt_mask, masked_mean(txt, txt_mask)),
    }


def build(name: str):
    return build_fusion(name, D, num_classes=C).eval()


def test_catalogue_order_is_the_contract():
    assert available() == CATALOGUE


@pytest.mark.parametrize("name", available())
def test_describe_is_a_paragraph_from_the_seeds(name):
    text = describe(name)
    assert len(text) > 200 and "\n" not in text
    assert "seed" in text.lower()


@pytest.mark.parametrize("name", available())
def test_class_attributes_are_consistent(name):
    cls = get(name)
    assert cls.family in {"early", "mid", "attention", "late"}
    assert cls.raw_input == (cls.family == "early")
    assert cls.decides == (cls.family == "late")
    if cls.attends:
        assert cls.family == "attention"


@pytest.mark.parametrize("name", available())
def test_output_shapes_match_the_class_attributes(name):
    f = build(name)
    with torch.no_grad():
        out = f(encoder_outputs())
    assert out.fused.shape == (B, D) and torch.isfinite(out.fused).all()
    if f.spatial:
        assert out.tokens is not None and out.tokens.shape == (B, P, D) and torch.isfinite(out.tokens).all()
    else:
        assert out.tokens is None
    if f.attends:
        assert out.attention and all(k.startswith("layer") for k in out.attention)
        assert [f"layer{i}" for i in range(len(out.attention))] == list(out.attention)
    else:
        assert out.attention is None
    if f.decides:
        assert out.logits.shape == (B, C) and torch.isfinite(out.logits).all()
        assert out.branch_logits["image"].shape == (B, C)
        assert out.branch_logits["text"].shape == (B, C)
        for m in ("image", "text"):
            assert torch.allclose(out.extras[f"probs:{m}"].sum(-1), torch.ones(B), atol=1e-5)
        assert torch.allclose(out.logits.exp().sum(-1), torch.ones(B), atol=1e-4)
    else:
        assert out.logits is None


@pytest.mark.parametrize("name", [n for n in available() if get(n).attends])
def test_attention_maps_are_text_to_image_distributions(name):
    f = build(name)
    with torch.no_grad():
        out = f(encoder_outputs())
    for key, a in out.attention.items():
        H = a.shape[1]
        assert a.shape == (B, H, T, P), key
        assert (a >= 0).all()
        assert torch.allclose(a.sum(-1), torch.ones(B, H, T), atol=1e-4), key


def test_bidirectional_returns_image_to_text_maps_without_padding():
    out = build("bidirectional_cross_attention")(encoder_outputs())
    maps = [v for k, v in out.extras.items() if k.startswith("image_to_text.layer")]
    assert len(maps) == len(out.attention)
    for a in maps:
        assert a.shape[0] == B and a.shape[2:] == (P, T)
        assert torch.allclose(a.sum(-1), torch.ones(a.shape[:3]), atol=1e-4)
        assert a[-1, :, :, -2:].abs().max() < 1e-6  # the padded words of the last row get nothing


def test_transformer_returns_full_self_attention_for_rollout():
    out = build("transformer")(encoder_outputs())
    full = out.joint_attention["layer0"]
    N = 1 + P + T
    assert full.shape[0] == B and full.shape[2:] == (N, N)
    assert torch.allclose(full.sum(-1), torch.ones(full.shape[:3]), atol=1e-4)
    assert full[-1, :, :, -2:].abs().max() < 1e-6  # padded words are never attended to


@pytest.mark.parametrize("name", available())
def test_scoring_without_maps_changes_nothing_but_the_maps(name):
    """without_maps (whole-split scoring: predict_dataset, the ablation) lets a strategy skip its
    maps and use a fused kernel (the transformer does); the fused vector, tokens and logits stay
    the same. The switch is per thread: a request served beside it still gets its maps."""
    import threading

    from mmlab.fusion import base

    f, inputs = build(name), encoder_outputs()
    with torch.no_grad():
        full = f(inputs)
        with base.without_maps():
            fast = f(inputs)
            beside = {}
            worker = threading.Thread(target=lambda: beside.update(out=f(inputs), wanted=base.maps_wanted()))
            worker.start()
            worker.join()
    assert base.maps_wanted()
    assert torch.allclose(full.fused, fast.fused, atol=1e-5)
    if full.tokens is not None:
        assert torch.allclose(full.tokens, fast.tokens, atol=1e-5)
    if full.logits is not None:
        assert torch.allclose(full.logits, fast.logits, atol=1e-5)
    assert beside["wanted"] and set(beside["out"].attention or {}) == set(full.attention or {})
    if name == "transformer":
        assert not fast.attention and not fast.joint_attention


@pytest.mark.parametrize("name", available())
def test_gradients_reach_both_modalities(name):
    f = build_fusion(name, D, num_classes=C).train()
    inputs = encoder_outputs(requires_grad=True)
    out = f(inputs)
    if f.decides:  # what the training loop trains: the combined and the per-branch logits
        loss = out.logits.sum() + out.branch_logits["image"].sum() + out.branch_logits["text"].sum()
    else:
        loss = out.fused.pow(2).sum() + (out.tokens.pow(2).sum() if out.tokens is not None else 0)
    loss.backward()
    for m in ("image", "text"):
        grad = inputs[m].tokens.grad
        assert grad is not None and grad.abs().sum() > 0, f"{name}: no gradient reached the {m} input"
    assert all(p.grad is not None for p in f.parameters() if p.requires_grad), f"{name}: unused parameters"


@pytest.mark.parametrize("name", available())
def test_padded_words_do_not_change_the_output(name):
    f = build(name)
    a = encoder_outputs()
    tokens = a["text"].tokens.clone()
    tokens[-1, -2:] = 100.0  # garbage in the padding of the last row
    b = dict(a, text=a["text"]._replace(tokens=tokens))
    with torch.no_grad():
        oa, ob = f(a), f(b)
    assert torch.allclose(oa.fused, ob.fused, atol=1e-5)
    if oa.logits is not None:
        assert torch.allclose(oa.logits, ob.logits, atol=1e-5)


@pytest.mark.parametrize("name", available())
def test_samples_do_not_leak_into_each_other(name):
    f = build(name)
    a = encoder_outputs(seed=0)
    other = encoder_outputs(seed=1)
    b = {m: a[m]._replace(tokens=torch.cat([other[m].tokens[:1], a[m].tokens[1:]]),
                          pooled=torch.cat([other[m].pooled[:1], a[m].pooled[1:]])) for m in a}
    with torch.no_grad():
        oa, ob = f(a), f(b)
    assert torch.allclose(oa.fused[1:], ob.fused[1:], atol=1e-5)
    assert not torch.allclose(oa.fused[:1], ob.fused[:1], atol=1e-5)


@pytest.mark.parametrize("name", [n for n in available() if get(n).decides])
def test_late_fusion_needs_classes(name):
    with pytest.raises(InputError, match="classification target"):
        build_fusion(name, D, num_classes=None)


@pytest.mark.parametrize("name", available())
def test_unknown_option_is_an_input_error(name):
    with pytest.raises(InputError, match=name):
        build_fusion(name, D, num_classes=C, no_such_option=1)


@pytest.mark.parametrize("options", [{"weights": (0.5,)}, {"weights": (-1.0, 2.0)}, {"weights": (0.0, 0.0)}])
def test_late_weighted_refuses_bad_weights(options):
    with pytest.raises(InputError, match="weights"):
        build_fusion("late_weighted", D, num_classes=C, **options)


def test_bad_sizes_are_input_errors():
    with pytest.raises(InputError):
        build_fusion("bilinear", D, num_classes=C, rank=0)
    with pytest.raises(InputError):
        build_fusion("tensor", D, num_classes=C, proj_dim=0)
    with pytest.raises(InputError):
        build_fusion("transformer", 30, num_classes=C, heads=4)
    with pytest.raises(InputError, match="positions"):
        build_fusion("transformer", D, num_classes=C, max_positions=8)(encoder_outputs())


def test_gated_gates_are_weights_and_a_missing_modality_gets_zero():
    f = build("gated")
    inputs = encoder_outputs()
    with torch.no_grad():
        gates = f(inputs).extras["gates"]
        assert gates.shape == (B, 2) and (gates > 0).all()
        assert torch.allclose(gates.sum(1), torch.ones(B))
        present = torch.tensor([False, True, True])
        dropped = dict(inputs, image=inputs["image"]._replace(present=present))
        g2 = f(dropped).extras["gates"]
    assert g2[0].tolist() == [0.0, 1.0]
    assert torch.allclose(g2[1:], gates[1:])


def test_late_weighted_fixed_and_learned_weights():
    fixed = build_fusion("late_weighted", D, num_classes=C, weights=(0.7, 0.3)).eval()
    assert torch.allclose(fixed.modality_weights(), torch.tensor([0.7, 0.3]))
    assert not any(p.requires_grad and p.dim() == 1 and p.numel() == 2 for p in fixed.parameters())
    learned = build("late_weighted")
    assert torch.allclose(learned.modality_weights(), torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        out = fixed(encoder_outputs())
    p = 0.7 * out.extras["probs:image"] + 0.3 * out.extras["probs:text"]
    assert torch.allclose(out.logits.exp(), p, atol=1e-5)
    assert torch.allclose(out.extras["weights"], torch.tensor([[0.7, 0.3]] * B))
