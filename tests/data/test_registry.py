"""The dataset registry: every name loads, describe_all is quick, options are checked."""
import time

import numpy as np
import pytest

from mmlab.data import DATASETS, available, describe_all, load_dataset
from mmlab.data.base import MMDataset
from mmlab.errors import InputError


def test_describe_all_lists_every_dataset_quickly():
    t0 = time.perf_counter()
    rows = describe_all()
    assert time.perf_counter() - t0 < 5.0
    assert [r["name"] for r in rows] == available()
    assert {"shapes", "easyvqa", "digits", "mnist", "folder"} <= set(available())
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        assert set(r["sizes"]) == set(DATASETS[r["name"]].splits) and r["description"]
    assert by_name["folder"]["sizes"] == {"train": "user data", "val": "user data", "test": "user data"}
    assert by_name["digits"]["sizes"] == {"train": 1200, "val": 197, "test": 400}
    assert by_name["easyvqa"]["sizes"]["test"] == 9673
    assert sum(by_name["easyvqa"]["sizes"][s] for s in ("train", "val")) == 38575


@pytest.mark.parametrize("name", ["shapes", "easyvqa", "digits", "mnist"])
def test_every_builtin_loads_a_labelled_dataset(name):
    d = load_dataset(name, "val", n=40)
    assert isinstance(d, MMDataset) and len(d) == 40
    assert d.targets["label"].dtype == np.int64
    assert 0 <= d.targets["label"].min() and d.targets["label"].max() < len(d.classes["label"])
    assert d.images.ndim == 4 and d.images.shape[1] == 3 and d.images.dtype == np.uint8


def test_sizes_agree_with_loaded_lengths():
    rows = {r["name"]: r["sizes"] for r in describe_all()}
    for name in ("digits", "mnist"):
        assert rows[name]["val"] == len(load_dataset(name, "val"))


def test_unknown_names_splits_and_options_are_input_errors():
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("imagenet", "train")
    with pytest.raises(InputError, match="no split"):
        load_dataset("digits", "holdout")
    with pytest.raises(InputError, match="no option"):
        load_dataset("easyvqa", "val", captions="exact")
    with pytest.raises(InputError, match="no option"):
        load_dataset("digits", "val", path="/tmp")
