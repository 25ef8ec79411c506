import numpy as np
import pytest

from mmlab.data import load_dataset
from mmlab.data.shapes import COLOUR_NAMES, SHAPES, generate


def test_deterministic_by_seed():
    a, b = generate(50, seed=3), generate(50, seed=3)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts and np.array_equal(a.masks, b.masks)
    c = generate(50, seed=4)
    assert not np.array_equal(a.images, c.images)


def test_splits_differ():
    tr, te = load_dataset("shapes", "train", n=30), load_dataset("shapes", "test", n=30)
    assert not np.array_equal(tr.images, te.images)


def test_mask_matches_the_named_object():
    d = generate(200, seed=1)
    for i in range(len(d)):
        m = d.masks[i].astype(bool)
        assert m.sum() > 10, "every referred object has a visible mask"
        colour = np.array(__import__("mmlab.data.shapes", fromlist=["COLOURS"]).COLOURS[COLOUR_NAMES[d.targets["colour"][i]]])
        pix = d.images[i].transpose(1, 2, 0)[m]
        # the mask covers pixels of the referred object's colour
        assert (np.abs(pix.astype(int) - colour).sum(1) < 10).mean() > 0.95
        # every attribute word in the sentence is true of the target (before a relation)
        head = d.texts[i].split(" left of ")[0].split(" right of ")[0].split(" above ")[0].split(" below ")[0]
        words = head.split()
        assert SHAPES[d.targets["shape"][i]] == words[-1]
        for c in COLOUR_NAMES:
            if c in words:
                assert c == COLOUR_NAMES[d.targets["colour"][i]]


def test_distractors_share_attributes():
    """Most scenes hold another object of the target's shape or colour: one modality alone cannot find it."""
    d = generate(300, seed=2)
    shared = 0
    for i in range(len(d)):
        img = d.images[i].transpose(1, 2, 0).astype(int)
        from mmlab.data.shapes import COLOURS

        colour = np.array(COLOURS[COLOUR_NAMES[d.targets["colour"][i]]])
        same_colour = (np.abs(img - colour).sum(-1) < 10)
        if same_colour.sum() > d.masks[i].sum() + 5:
            shared += 1
    assert shared / len(d) > 0.3


def test_relations_are_used_and_sentences_vary():
    d = generate(400, seed=0)
    rel = sum(any(r in t for r in (" left of ", " right of ", " above ", " below ")) for t in d.texts)
    assert 0.2 < rel / len(d) < 0.8
    assert len(set(d.texts)) > 100


def test_truth_variant_balanced_and_false_masks_empty():
    d = load_dataset("shapes_truth", "test", n=300)
    frac = d.targets["truth"].mean()
    assert 0.35 < frac < 0.65
    assert all(d.masks[i].sum() == 0 for i in range(len(d)) if d.targets["truth"][i] == 0)


def test_unknown_dataset_is_input_error():
    from mmlab import InputError

    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("nope")
    with pytest.raises(InputError, match="no split"):
        load_dataset("shapes", "bogus")
