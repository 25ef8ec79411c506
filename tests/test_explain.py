"""mmlab.explain: shapes, sums, fall-backs, a planted case where the right patch must light up,
and (slow) relevance of a briefly trained model landing on the named object."""
import numpy as np
import pytest
import torch
from torch import nn

from mmlab import explain as E
from mmlab.config import ModelConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.errors import InputError
from mmlab.fusion.base import Fusion
from mmlab.fusion.cross_attention import CrossAttentionBlock
from mmlab.encoders.base import ImageEncoder, TextEncoder
from mmlab.model import build_model
from mmlab.types import EncoderOutput, FusionOutput


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "train", n=64)


def build(data, fusion="cross_attention", *, mask=True, targets=("label",), **options):
    torch.manual_seed(0)
    return build_model(ModelConfig(fusion=fusion, fusion_options=options, targets={t: len(data.classes[t]) for t in targets},
                             mask=mask, dim=32),
                 classes={t: data.classes[t] for t in targets}, tokenizer=WordTokenizer.fit(data.texts).to_json())


def pair(data, i=0):
    return data.images[i].transpose(1, 2, 0), data.texts[i]  # (S, S, 3) uint8, sentence


@pytest.fixture(scope="module")
def cross(data):
    return build(data, "cross_attention")


@pytest.fixture(scope="module")
def concat(data):
    return build(data, "concat", mask=False)


# ---- shapes, sums, finiteness -----------------------------------------------------------
def test_attention_maps_shapes_and_rows_sum_to_one(cross, data):
    image, text = pair(data)
    T = len(cross.text_encoder.token_strings(text))
    maps = E.attention_maps(cross, image, text)
    assert sorted(maps) == ["layer0", "layer1"]
    for a in maps.values():
        assert a.shape == (4, T, 16, 16)  # (heads, tokens, h, w)
        assert np.isfinite(a).all() and (a >= 0).all()
        np.testing.assert_allclose(a.sum((2, 3)), 1.0, atol=1e-5)  # a softmax over patches per head and token


def test_rollout_relevance_gradcam_shapes(cross, data):
    image, text = pair(data, 1)
    T = len(cross.text_encoder.token_strings(text))
    r = E.rollout(cross, image, text)
    assert r.shape == (T, 16, 16) and np.isfinite(r).all() and (r >= 0).all()
    np.testing.assert_allclose(r.sum((1, 2)), 1.0, atol=1e-5)
    rel = E.relevance(cross, image, text)
    assert rel.shape == (T, 16, 16) and np.isfinite(rel).all()
    assert (rel >= 0).all() and rel.sum() > 0
    cam = E.grad_cam(cross, image, text)
    assert cam.shape == (16, 16) and np.isfinite(cam).all() and (cam >= 0).all()


@pytest.mark.parametrize("method", E.METHODS)
def test_explain_gives_one_normalised_map(cross, data, method):
    image, text = pair(data, 2)
    res = E.explain(cross, image, text, method)
    assert res.method_used == method and res.note == ""
    assert res.tokens == cross.text_encoder.token_strings(text)
    assert res.map.shape == (16, 16) and np.isfinite(res.map).all()
    assert res.map.min() >= 0 and res.map.max() <= 1 and res.map.max() == pytest.approx(1.0)
    one = E.explain(cross, image, text, method, token=0)
    assert one.map.shape == (16, 16)


def test_one_layer_rollout_is_the_head_mean_and_two_layers_weigh_the_last_more(data):
    image, text = pair(data, 3)
    one = build(data, "cross_attention", layers=1)
    maps = E.attention_maps(one, image, text)
    np.testing.assert_allclose(E.rollout(one, image, text), maps["layer0"].mean(0), atol=1e-5)
    two = build(data, "cross_attention", layers=2)
    maps = E.attention_maps(two, image, text)
    # the joint-graph product with residual 1/2: 1/2 A_1 + 1/4 A_0, rows renormalised (sum 3/4)
    expected = (0.5 * maps["layer1"].mean(0) + 0.25 * maps["layer0"].mean(0)) / 0.75
    np.testing.assert_allclose(E.rollout(two, image, text), expected, atol=1e-5)


def test_explain_layer_head_token_options(cross, data):
    image, text = pair(data, 4)
    maps = E.attention_maps(cross, image, text)
    got = E.explain(cross, image, text, "attention", layer="layer1", head=2, token=1).map
    np.testing.assert_allclose(got, E.normalize(maps["layer1"][2, 1]), atol=1e-6)
    got = E.explain(cross, image, text, "attention", layer=0).map
    np.testing.assert_allclose(got, E.normalize(maps["layer0"].mean((0, 1))), atol=1e-6)
    T = len(cross.text_encoder.token_strings(text))
    for bad in ({"token": T}, {"token": "red"}, {"layer": 5}, {"layer": "layer9"}, {"head": 4}):
        with pytest.raises(InputError):
            E.explain(cross, image, text, "attention", **bad)
    with pytest.raises(InputError):
        E.explain(cross, image, text, "saliency")
    with pytest.raises(InputError):
        E.explain(cross, image, "   ", "relevance")
    with pytest.raises(InputError):
        E.relevance(cross, b"not an image", text)


def test_targets(cross, data):
    image, text = pair(data, 5)
    names = cross.classes["label"]
    by_name = E.relevance(cross, image, text, target=names[1])
    np.testing.assert_allclose(by_name, E.relevance(cross, image, text, target=1), atol=1e-6)
    np.testing.assert_allclose(by_name, E.relevance(cross, image, text, target=f"label:{names[1]}"), atol=1e-6)
    mask_rel = E.relevance(cross, image, text, target="mask")
    assert mask_rel.shape == by_name.shape and (mask_rel >= 0).all() and np.isfinite(mask_rel).all()
    for bad in (len(names), "hexagon", "colour:red"):
        with pytest.raises(InputError):
            E.relevance(cross, image, text, target=bad)


def test_mask_only_model_explains_its_mask(data):
    model = build(data, "cross_attention", targets=())
    image, text = pair(data, 6)
    rel = E.relevance(model, image, text)  # default target: the predicted mask
    assert rel.shape[1:] == (16, 16) and (rel >= 0).all() and rel.sum() > 0
    assert E.grad_cam(model, image, text).shape == (16, 16)


def test_explaining_leaves_the_model_as_it_was(cross, data):
    image, text = pair(data, 7)
    cross.train()
    with torch.inference_mode():  # gradients are still taken inside
        rel = E.relevance(cross, image, text)
        cam = E.grad_cam(cross, image, text)
    assert rel.sum() > 0 and cam.shape == (16, 16)
    assert cross.training
    assert all(p.grad is None for p in cross.parameters())
    cross.eval()


# ---- strategies without attention ------------------------------------------------------
def test_concat_has_no_attention_and_falls_back_to_gradcam(concat, data):
    image, text = pair(data, 8)
    assert E.attention_maps(concat, image, text) == {}
    with pytest.raises(E.NoAttentionError):
        E.rollout(concat, image, text)
    with pytest.raises(InputError):
        E.relevance(concat, image, text)
    cam = E.grad_cam(concat, image, text)
    assert cam.shape == (16, 16) and np.isfinite(cam).all() and (cam >= 0).all()
    assert cam.max() > cam.min()  # gradients reach the patch tokens through the pooled vector
    for method in E.METHODS:
        res = E.explain(concat, image, text, method)
        assert res.method_used == "gradcam" and res.map.shape == (16, 16)
        assert (method == "gradcam") == (res.note == "")
        np.testing.assert_allclose(res.map, E.normalize(cam), atol=1e-6)
    assert "token" in E.explain(concat, image, text, "gradcam", token=0).note


# ---- joint self-attention (the square case of rollout and relevance) ----------------------
class JointSelfAttention(Fusion):
    """A toy multimodal transformer: self-attention over [CLS, image patches, words]."""

    family, spatial, attends = "attention", True, True

    def __init__(self, dim, *, num_classes=None, layers=2):
        super().__init__(dim, num_classes=num_classes)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads=4) for _ in range(layers))

    def forward(self, inputs):
        image, text = inputs["image"].tokens, inputs["text"].tokens
        B, P, _ = image.shape
        x = torch.cat([self.cls.expand(B, -1, -1), image, text], dim=1)  # (B, 1 + P + T, D)
        attention, joint = {}, {}
        for i, block in enumerate(self.blocks):
            x, a = block(x, x)  # a (B, H, N, N)
            joint[f"layer{i}"] = a
            attention[f"layer{i}"] = a[:, :, 1 + P:, 1:1 + P]  # words -> patches
        return FusionOutput(fused=x[:, 0], tokens=x[:, 1:1 + P], attention=attention, joint_attention=joint)

    @staticmethod
    def joint_slices(num_patches, num_tokens):
        return {"decision": slice(0, 1), "image": slice(1, 1 + num_patches),
                "text": slice(1 + num_patches, 1 + num_patches + num_tokens)}


def test_joint_self_attention_rollout_and_relevance(data):
    model = build(data, "cross_attention")
    model.fusion = JointSelfAttention(32, layers=1)
    model.eval()
    image, text = pair(data, 9)
    T = len(model.text_encoder.token_strings(text))
    with torch.no_grad():
        out = model(model.preprocess([image])[0], model.tokenize([text]))
    full = out.fusion.joint_attention["layer0"][0].mean(0)  # (N, N)
    # one layer: R = I/2 + Ā/2, whose word -> patch block is Ā's, rows renormalised
    block = full[1 + 256:, 1:1 + 256]
    expected = (block / block.sum(-1, keepdim=True)).reshape(T, 16, 16).numpy()
    np.testing.assert_allclose(E.rollout(model, image, text), expected, atol=1e-5)
    model.fusion = JointSelfAttention(32, layers=2)
    rel = E.relevance(model, image, text)
    assert rel.shape == (T, 16, 16) and np.isfinite(rel).all() and (rel >= 0).all() and rel.sum() > 0
    r = E.rollout(model, image, text)
    assert r.shape == (T, 16, 16)
    np.testing.assert_allclose(r.sum((1, 2)), 1.0, atol=1e-5)


# ---- a planted case ---------------------------------------------------------------------
class StubImage(ImageEncoder):
    """Fixed patch tokens (1, P, D) on an 8 x 8 grid, whatever the picture."""

    grid = (8, 8)

    def __init__(self, tokens):
        super().__init__()
        self.tokens = nn.Parameter(tokens)

    def forward(self, images):
        t = self.tokens.expand(images.shape[0], -1, -1)
        return EncoderOutput(t, torch.ones(t.shape[:2], dtype=torch.bool), t.mean(1), grid=(8, 8))


class StubText(TextEncoder):
    """Fixed word tokens (1, T, D), whatever the sentence."""

    max_tokens = 32

    def __init__(self, tokens, words):
        super().__init__()
        self.tokens, self.words = tokens, words

    def tokenize(self, texts):
        return {"n": torch.zeros(len(texts))}

    def token_strings(self, text):
        return self.words

    def forward(self, n):
        t = self.tokens.expand(len(n), -1, -1)
        return EncoderOutput(t, torch.ones(t.shape[:2], dtype=torch.bool), t.mean(1))


PLANTED = {0: 10, 1: 45}  # word index -> the patch whose key its query matches


@pytest.fixture(scope="module")
def planted():
    """Words 0 and 1 are exact copies of patches 10 and 45; queries = 8 x keys, one head, so by
    Cauchy-Schwarz each planted word's score is highest at its own patch. The attention output
    and feed-forward are zeroed (words stay as they are through both layers) and the class-0
    logit is hand-wired to read the attention (through the fusion's "where" term) positively."""
    D, g = 16, torch.Generator().manual_seed(0)
    image = torch.randn(1, 64, D, generator=g)
    words = torch.cat([image[:, [PLANTED[0]]], image[:, [PLANTED[1]]], torch.randn(1, 1, D, generator=g)], dim=1)
    model = build_model(ModelConfig(fusion="cross_attention", fusion_options={"heads": 1, "layers": 2},
                              targets={"label": 2}, dim=D),
                  classes={"label": ["yes", "no"]}, tokenizer=WordTokenizer.fit(["red square"]).to_json())
    model.image_encoder = StubImage(image)
    model.text_encoder = StubText(words, ["red", "square", "please"])
    with torch.no_grad():
        for block in model.fusion.blocks:
            block.to_q.weight.copy_(8 * torch.eye(D))
            block.to_kv.weight.copy_(torch.cat([torch.eye(D), torch.eye(D)]))
            for lin in (block.to_q, block.to_kv):
                lin.bias.zero_()
            for lin in (block.to_out, block.ff[-1]):
                lin.weight.zero_()
                lin.bias.zero_()
        proj = nn.Linear(2 * D, D)
        proj.weight.zero_()
        proj.weight[0, D] = 1.0  # fused[0] = mean over patches of the fused tokens' channel 0 (+10)
        proj.bias.zero_()
        proj.bias[0] = 10.0
        model.fusion.proj = nn.Sequential(proj, nn.ReLU())
        head = nn.Linear(D, 2)
        head.weight.zero_()
        head.weight[0, 0], head.weight[1, 0] = 1.0, -1.0
        head.bias.zero_()
        model.heads["label"] = head
    return model


def test_planted_patch_lights_up(planted):
    image, text = np.zeros((64, 64, 3), np.uint8), "red square please"
    assert planted.predict(image, text).label == "yes"
    maps = E.attention_maps(planted, image, text)
    rel = E.relevance(planted, image, text)
    roll = E.rollout(planted, image, text)
    for word, patch in PLANTED.items():
        for a in maps.values():
            assert a[0, word].argmax() == patch
            assert a[0, word].max() > 0.9
        assert rel[word].argmax() == patch
        assert roll[word].argmax() == patch
        for method in ("attention", "rollout", "relevance"):
            res = E.explain(planted, image, text, method, token=word)
            assert res.map.argmax() == patch and res.tokens == ["red", "square", "please"]
    # the planted words do not light up each other's patch
    assert rel[0].reshape(-1)[PLANTED[1]] < 0.01 * rel[0].max()


# ---- maps to masks ----------------------------------------------------------------------
class PlantedJoint(Fusion):
    """A hand-built joint transformer layer over [CLS, 64 patches, words] whose answer is known: [CLS] reads
    only patch ``PATCH`` and the class is read from [CLS]; the words attend evenly to every patch but their
    outputs feed nothing (as in the multimodal transformer's last layer)."""

    family, spatial, attends = "attention", True, True
    decides = True
    PATCH = 37

    def __init__(self, dim, *, num_classes=None):
        super().__init__(dim, num_classes=num_classes)
        self.scale = nn.Parameter(torch.ones(()))  # puts the attention on the gradient's path

    def forward(self, inputs):
        image, text = inputs["image"].tokens, inputs["text"].tokens
        B, P, _ = image.shape
        T = text.shape[1]
        N = 1 + P + T
        x = torch.cat([image.mean(1, keepdim=True), image, text], dim=1)  # (B, N, D)
        plan = torch.zeros(N, N)
        plan[0, 1 + self.PATCH] = 1.0  # [CLS] -> the planted patch
        plan[1 + P:, 1:1 + P] = 1.0 / P  # every word -> every patch, evenly
        plan[1:1 + P, 1:1 + P] = torch.eye(P)  # patches keep themselves
        A = (plan * self.scale).expand(B, 1, N, N)
        out = (A @ x[:, None])[:, 0]  # (B, N, D)
        s = out[:, 0].sum(-1)  # the decision: [CLS]'s output, positive for positive tokens
        logits = torch.stack([s, -s], dim=1)
        words = A[:, :, 1 + P:, 1:1 + P]
        return FusionOutput(fused=out[:, 0], tokens=out[:, 1:1 + P], attention={"layer0": words}, logits=logits,
                            joint_attention={"layer0": A})

    @staticmethod
    def joint_slices(num_patches, num_tokens):
        return {"decision": slice(0, 1), "image": slice(1, 1 + num_patches),
                "text": slice(1 + num_patches, 1 + num_patches + num_tokens)}


def test_joint_transformer_relevance_is_read_where_the_decision_is_made():
    """The multimodal transformer's relevance landed on no shape because it was read from the word rows,
    whose outputs feed no decision (zero gradient): they are flat. Read at [CLS], where the class is decided,
    it finds the one patch the decision used."""
    D, g = 16, torch.Generator().manual_seed(1)
    model = build_model(ModelConfig(fusion="concat", targets={"label": 2}, dim=D), classes={"label": ["yes", "no"]},
                        tokenizer=WordTokenizer.fit(["red square"]).to_json())
    model.image_encoder = StubImage(torch.rand(1, 64, D, generator=g) + 0.1)  # positive tokens: class "yes"
    model.text_encoder = StubText(torch.rand(1, 3, D, generator=g), ["red", "square", "please"])
    model.fusion = PlantedJoint(D, num_classes=2)
    image, text = np.zeros((64, 64, 3), np.uint8), "red square please"
    assert model.predict(image, text).label == "yes"
    words = E.relevance(model, image, text)  # (T, 8, 8): each word's own row
    assert np.allclose(words, 0)  # what the old reading showed: nothing anywhere
    decision = E.relevance_of_decision(model, image, text)  # (8, 8)
    assert int(decision.argmax()) == PlantedJoint.PATCH and decision.max() > 0
    assert np.count_nonzero(decision) == 1
    result = E.explain(model, image, text, "relevance")  # the whole sentence shows the decision's relevance
    assert int(result.map.argmax()) == PlantedJoint.PATCH


def test_upsample():
    m = np.arange(16, dtype=np.float32).reshape(4, 4)
    up = E.upsample(m, 16)
    assert up.shape == (16, 16) and up.min() >= m.min() and up.max() <= m.max()
    assert E.upsample(m, (8, 12)).shape == (8, 12)
    np.testing.assert_array_equal(E.upsample(m, 4), m)
    np.testing.assert_allclose(E.upsample(np.full((3, 3), 0.7), 9), 0.7, atol=1e-6)
    with pytest.raises(InputError):
        E.upsample(np.zeros((2, 2, 2)), 4)


def test_map_to_mask_and_score_map():
    gt = np.zeros((64, 64), np.uint8)
    gt[10:30, 20:44] = 1
    perfect = gt.astype(np.float32) * 0.3 + 0.1  # any scale: the map is min-max normalised first
    assert E.score_map(perfect, gt) == {"iou": 1.0, "dice": 1.0}
    assert E.score_map(1.0 - perfect, gt) == {"iou": 0.0, "dice": 0.0}
    np.testing.assert_array_equal(E.map_to_mask(perfect, 0.5), gt.astype(bool))
    # a patch-grid map (16 x 16) of the same block, upsampled x4 before thresholding
    coarse = np.zeros((16, 16), np.float32)
    coarse[2:8, 5:11] = 1.0
    gt2 = np.kron(coarse, np.ones((4, 4))).astype(np.uint8)
    scores = E.score_map(coarse, gt2)
    assert scores["iou"] > 0.95 and scores["dice"] > 0.95
    with pytest.raises(InputError):
        E.map_to_mask(perfect, 1.5)
    with pytest.raises(InputError):
        E.score_map(perfect, gt[None])


# ---- after a short training run ---------------------------------------------------------
@pytest.mark.slow
def test_relevance_of_a_trained_model_lands_on_the_named_object():
    """Two short epochs (batch 16, short warm-up, so ~125 steps): the sentence's relevance for the
    predicted shape, and its raw attention, weigh the referred object's pixels above the rest."""
    from mmlab.config import TrainConfig
    from mmlab.train import fit

    train, test = load_dataset("shapes", "train", n=1000), load_dataset("shapes", "test", n=40)
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, mask=True, dim=32),
                  classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    threads = torch.get_num_threads()
    try:  # one thread: on a shared, loaded CPU more threads only spin against each other
        fit(model, train, TrainConfig(epochs=2, batch_size=16, warmup_steps=5, threads=1), progress=False)
    finally:
        torch.set_num_threads(threads)
    inside, outside = {"relevance": [], "attention": []}, {"relevance": [], "attention": []}
    for i in range(len(test)):
        image, text = test.images[i].transpose(1, 2, 0), test.texts[i]
        gt = test.masks[i] > 0
        for method in inside:
            up = E.upsample(E.explain(model, image, text, method).map, gt.shape)  # (64, 64) in [0, 1]
            inside[method].append(up[gt].mean())
            outside[method].append(up[~gt].mean())
    for method in inside:
        assert np.mean(inside[method]) > np.mean(outside[method]), method
