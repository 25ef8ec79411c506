"""Late-fusion combination rules on seed 003's hand-worked numbers (§5.1, level 3)."""
import pytest
import torch

from mmlab.fusion import late

IMAGE = [0.7, 0.2, 0.1]
TEXT = [0.3, 0.5, 0.2]


def voters(*rows) -> torch.Tensor:
    """(1, M, C) from M probability lists."""
    return torch.tensor([list(rows)])


def approx(t: torch.Tensor, expected, tol=1e-3):
    assert t.shape == (1, len(expected))
    assert t[0].tolist() == pytest.approx(expected, abs=tol)


def test_average():
    approx(late.average(voters(IMAGE, TEXT)), [0.5, 0.35, 0.15])


def test_weighted():
    approx(late.weighted(voters(IMAGE, TEXT), torch.tensor([0.7, 0.3])), [0.58, 0.29, 0.13])


def test_weighted_renormalises_weights():
    approx(late.weighted(voters(IMAGE, TEXT), torch.tensor([7.0, 3.0])), [0.58, 0.29, 0.13])


def test_product_normalised():
    # seed 003 prints "Normalized: [0.66, 0.31, 0.03]" for the product [0.21, 0.10, 0.02]; that is a
    # rounding error in the seed: 0.21 / 0.33 = 0.636, 0.10 / 0.33 = 0.303, 0.02 / 0.33 = 0.061.
    approx(late.product(voters(IMAGE, TEXT)), [0.21 / 0.33, 0.10 / 0.33, 0.02 / 0.33])
    approx(late.product(voters(IMAGE, TEXT)), [0.636, 0.303, 0.061])


def test_max_renormalised():
    # seed 003 prints "Renormalize: [0.538, 0.385, 0.154]" for the maxima [0.7, 0.5, 0.2]; those are
    # the maxima divided by 1.3, but they sum to 1.4: the true values are [0.5, 0.357, 0.143].
    approx(late.maximum(voters(IMAGE, TEXT)), [0.7 / 1.4, 0.5 / 1.4, 0.2 / 1.4])
    approx(late.maximum(voters(IMAGE, TEXT)), [0.5, 0.357, 0.143])


def test_vote_tie_goes_to_the_more_confident_voter():
    combined = late.vote(voters(IMAGE, TEXT))  # image: class 0 at 0.7, text: class 1 at 0.5
    assert int(combined.argmax()) == 0
    approx(combined, IMAGE, tol=1e-6)  # the winning voter's distribution
    combined = late.vote(voters([0.4, 0.35, 0.25], [0.1, 0.8, 0.1]))
    assert int(combined.argmax()) == 1


def test_vote_agreement_wins_and_averages():
    combined = late.vote(voters(IMAGE, [0.6, 0.3, 0.1]))
    approx(combined, [0.65, 0.25, 0.1], tol=1e-6)


def test_vote_majority_beats_confidence():
    combined = late.vote(voters([0.4, 0.35, 0.25], [0.45, 0.3, 0.25], [0.0, 0.99, 0.01]))
    assert int(combined.argmax()) == 0


@pytest.mark.parametrize("rule", [late.average, late.product, late.maximum, late.vote,
                                  lambda p, present=None: late.weighted(p, torch.tensor([0.7, 0.3]), present)])
def test_a_missing_voter_is_skipped(rule):
    probs = torch.tensor([[IMAGE, TEXT], [IMAGE, TEXT], [IMAGE, TEXT]])  # (3, 2, 3)
    present = torch.tensor([[True, False], [False, True], [False, False]])
    out = rule(probs, present)
    assert torch.allclose(out[0], torch.tensor(IMAGE), atol=1e-5)  # text missing: the image alone
    assert torch.allclose(out[1], torch.tensor(TEXT), atol=1e-5)  # image missing: the text alone
    assert torch.allclose(out[2:], rule(probs[2:]), atol=1e-6)  # nothing present: every voter counts


@pytest.mark.parametrize("rule", [late.average, late.product, late.maximum, late.vote])
def test_rules_return_distributions(rule):
    probs = torch.rand(8, 2, 5).softmax(-1)
    out = rule(probs)
    assert out.shape == (8, 5) and (out >= 0).all()
    assert torch.allclose(out.sum(-1), torch.ones(8), atol=1e-5)
