"""The real BreaKHis subset beside the repo (../shared/realdata): index it and split it.

The images are never copied into the repository; without the folder these tests skip.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from breastzoo.data.index import index_dataset
from breastzoo.data.splits import kfold_patients, patient_group, split_patients

SKIP_REASON = ("../shared/realdata not found: real-data tests need the BreaKHis subset beside "
               "the repo")


def _realdata() -> Path:
    beside = Path(__file__).resolve().parents[3] / "shared" / "realdata"
    if beside.is_dir():
        return beside
    env = os.environ.get("BREASTZOO_REALDATA")
    if env and Path(env).is_dir():
        return Path(env)
    pytest.skip(SKIP_REASON)


@pytest.fixture(scope="module")
def records_100x():
    # Indexing reads each file once (PNG CRC check) but decodes none: about a second.
    return index_dataset(_realdata(), "breakhis").filter("100X").records


def test_subset_is_what_its_readme_says(records_100x):
    assert len(records_100x) == 277
    assert Counter(r.label for r in records_100x) == {"benign": 146, "malignant": 131}
    assert len({patient_group(r.patient) for r in records_100x}) == 16


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_split_at_100x_has_both_classes_everywhere(records_100x, seed):
    split = split_patients(records_100x, seed=seed, task="binary")
    assert not split.notes, split.notes
    parts = split.assign(records_100x)
    for part, records in parts.items():
        assert {r.label for r in records} == {"benign", "malignant"}, part
    # No numeric patient id straddles parts (14-21998AB / 14-21998CD, 14-22549AB/CD/G).
    groups = {part: {patient_group(p) for p in getattr(split, part)} for part in parts}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert {patient_group(p) for p in ("14-21998AB", "14-21998CD")} == {"14-21998"}
    # Image counts near 52.5 / 17.5 / 30 %: the two largest benign groups hold 72 and 57 of 146
    # benign images, so "roughly" is the best any patient-wise split can do here.
    n = len(records_100x)
    shares = {part: len(records) / n for part, records in parts.items()}
    assert 0.40 <= shares["train"] <= 0.62, shares
    assert 0.10 <= shares["val"] <= 0.25, shares
    assert 0.22 <= shares["test"] <= 0.40, shares
    benign_share = sum(r.label == "benign" for r in parts["train"]) / len(parts["train"])
    assert 0.35 <= benign_share <= 0.65  # the old subtype-only split had 82 % benign


def test_binary_kfold_at_100x_puts_both_classes_in_every_fold(records_100x):
    folds = kfold_patients(records_100x, k=3, seed=0, task="binary")
    label = {r.patient: r.label for r in records_100x}
    for fold in folds:
        assert {label[p] for p in fold} == {"benign", "malignant"}
    groups = [{patient_group(p) for p in f} for f in folds]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == 16
