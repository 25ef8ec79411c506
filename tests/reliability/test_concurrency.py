"""One cached model serves concurrent sessions: threaded predictions equal the sequential ones."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import encode

import mmlab

THREADS = 8


def same(a, b):
    assert a.label == b.label and a.tokens == b.tokens
    assert a.probs.keys() == b.probs.keys()
    np.testing.assert_allclose([a.probs[k] for k in a.probs], [b.probs[k] for k in a.probs], atol=1e-6)
    np.testing.assert_allclose(a.mask, b.mask, atol=1e-6)
    assert a.attention.keys() == b.attention.keys()
    for k in a.attention:
        np.testing.assert_allclose(a.attention[k], b.attention[k], atol=1e-6)
    for k in a.embeddings:
        np.testing.assert_allclose(a.embeddings[k], b.embeddings[k], atol=1e-5)


def test_threaded_predictions_equal_sequential_ones(trained, shapes256, tmp_path):
    _, test = shapes256
    inputs = []
    for i in range(24):  # every kind of source the app and demo hand over
        arr = test.images[i].transpose(1, 2, 0)  # (3, S, S) -> (S, S, 3)
        kind = i % 4
        if kind == 0:
            image = arr
        elif kind == 1:
            image = encode(Image.fromarray(arr), "PNG")
        elif kind == 2:
            image = tmp_path / f"{i}.png"
            Image.fromarray(arr).save(image)
        else:
            image = Image.fromarray(arr)
        drop = (None, "image", "text")[i % 3] if i >= 12 else None
        inputs.append((image, test.texts[i], drop))
    sequential = [trained.predict(im, t, drop=d) for im, t, d in inputs]
    # the sequential answers are the model's own: the batched pass over the same pairs gives the same classes
    from mmlab.evaluate import predict_dataset

    batched = predict_dataset(trained, test.subset(range(24)), drop="none")["probs"]["label"].argmax(1)
    for i, (p, (_, _, d)) in enumerate(zip(sequential, inputs)):
        if d is None:
            assert p.label == test.classes["label"][int(batched[i])]

    start = threading.Barrier(THREADS)

    def work(offset):
        start.wait()  # all threads hit the model at once
        out = {}
        for j in range(offset, len(inputs) + offset):  # each thread walks all inputs, in its own order
            k = j % len(inputs)
            im, t, d = inputs[k]
            out[k] = trained.predict(im, t, drop=d)
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(0, 3 * THREADS, 3)))
    for res in results:
        for k, pred in res.items():
            same(pred, sequential[k])


def test_bad_input_in_one_thread_leaves_the_others_working(trained, shapes256):
    _, test = shapes256
    arr = test.images[0].transpose(1, 2, 0)
    good = trained.predict(arr, test.texts[0])
    bad_inputs = [(b"not an image", "a red circle"), (arr, "   "), (np.zeros((1, 1, 3)), "x"), (arr, "\x00")]

    def work(i):
        if i % 2:
            im, t = bad_inputs[(i // 2) % len(bad_inputs)]
            with pytest.raises(mmlab.InputError):
                trained.predict(im, t)
            return None
        return trained.predict(arr, test.texts[0])

    with ThreadPoolExecutor(THREADS) as pool:
        outs = list(pool.map(work, range(2 * THREADS)))
    for p in outs:
        if p is not None:
            same(p, good)
    assert not trained.training  # predict restored eval mode
