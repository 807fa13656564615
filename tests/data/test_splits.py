"""Patient-wise splits: no leaks, grouping of related slides, stratification, determinism."""

from __future__ import annotations

import pytest

from breastzoo.data.constants import BREAKHIS_COUNTS, SUBTYPE_CLASS
from breastzoo.data.records import ImageRecord
from breastzoo.data.splits import (
    PatientLeakError,
    PatientSplit,
    find_leaks,
    kfold_patients,
    patient_group,
    read_official_fold,
    split_patients,
)


def table2_records(images_per_patient: int = 3) -> list[ImageRecord]:
    """Records with BreaKHis' patient counts; subtypes with 4+ patients hold one related pair."""
    records = []
    for s_i, (sub, spec) in enumerate(BREAKHIS_COUNTS.items()):
        for p in range(spec["patients"]):
            core = 1000 * (s_i + 1) + p
            # The last two patients of a subtype share a numeric core (like 14-22549AB/CD).
            paired = p == spec["patients"] - 1 and spec["patients"] >= 4
            pid = f"14-{core - 1}CD" if paired else f"14-{core}AB"
            for i in range(images_per_patient):
                records.append(
                    ImageRecord(f"/{pid}/{i}.png", "breakhis", pid, SUBTYPE_CLASS[sub], sub, "40X")
                )
    return records


def test_patient_group_numeric_core():
    assert patient_group("14-22549AB") == patient_group("14-22549CD") == "14-22549"
    assert patient_group("14-14134") == patient_group("14-14134E")
    assert patient_group("14-2523") != patient_group("14-25230")
    assert patient_group("b001") == "b001"


def test_split_protocol_matches_table_ii_shape():
    records = table2_records()
    split = split_patients(records, seed=0)
    assert len(split.train) + len(split.val) + len(split.test) == 82
    assert find_leaks(split) == {}
    assert len(split.test) == 25  # Table II's test column (30% per subtype, half-up)
    assert 14 <= len(split.val) <= 16  # Table II: 15
    sub_of = {r.patient: r.subtype for r in records}
    for sub, spec in BREAKHIS_COUNTS.items():
        per_part = [sum(sub_of[p] == sub for p in getattr(split, part))
                    for part in ("train", "val", "test")]
        assert all(n >= 1 for n in per_part), (sub, per_part)  # every subtype in every part
        assert sum(per_part) == spec["patients"]


def test_related_slides_never_straddle_splits():
    for seed in range(10):
        split = split_patients(table2_records(), seed=seed)
        for part in ("train", "val", "test"):
            others = {patient_group(p) for q in ("train", "val", "test") if q != part
                      for p in getattr(split, q)}
            assert not {patient_group(p) for p in getattr(split, part)} & others


def test_split_is_deterministic_per_seed():
    a = split_patients(table2_records(), seed=3)
    b = split_patients(table2_records(), seed=3)
    c = split_patients(table2_records(), seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.fingerprint() != c.fingerprint()


def test_assign_and_counts():
    records = table2_records(images_per_patient=2)
    split = split_patients(records, seed=0)
    parts = split.assign(records)
    assert sum(len(v) for v in parts.values()) == len(records)
    d = split.to_dict(records)
    assert d["counts"]["test"] == {"patients": 25, "images": 50}


def test_kfold_disjoint_covering_and_balanced():
    records = table2_records()
    folds = kfold_patients(records, k=5, seed=1)
    flat = [p for f in folds for p in f]
    assert len(flat) == len(set(flat)) == 82
    assert max(map(len, folds)) - min(map(len, folds)) <= 3
    groups = [{patient_group(p) for p in f} for f in folds]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not groups[i] & groups[j]
    with pytest.raises(ValueError, match="k=1"):
        kfold_patients(records, k=1)


def test_leak_is_refused_naming_the_patient_unless_allowed():
    split = PatientSplit(["14-2523", "14-9133"], ["14-2980"], ["14-2523"])
    with pytest.raises(PatientLeakError, match="14-2523 is in train and test"):
        split.check()
    with pytest.warns(UserWarning, match="ALLOWING A PATIENT LEAK"):
        split.check(allow_leak=True)
    assert split.to_dict()["warnings"]


def _write_fold(path, rows):
    path.write_text("\n".join("|".join(map(str, r)) for r in rows) + "\n")


def test_official_fold_file(tmp_path):
    rows = []
    for pid, sub, part in [("14-22549AB", "A", "train"), ("14-29960CD", "A", "train"),
                           ("14-9133", "F", "train"), ("14-14134", "F", "train"),
                           ("14-2523", "DC", "test"), ("14-2980", "DC", "train"),
                           ("14-13412", "DC", "train")]:
        letter = "B" if SUBTYPE_CLASS[sub] == "benign" else "M"
        for mag in (40, 100):
            rows.append((f"SOB_{letter}_{sub}-{pid}-{mag}-001.png", mag, 1, part))
    fold = tmp_path / "dsfold1.txt"
    _write_fold(fold, rows)
    split = read_official_fold(fold, "100X")
    assert split.test == ["14-2523"]
    assert split.source == "official:dsfold1.txt"
    assert len(split.val) >= 1 and not set(split.val) & set(split.train)
    assert len(split.train) + len(split.val) == 6

    rows.append(("SOB_M_DC-14-2980-100-002.png", 100, 1, "test"))  # the known official leak
    _write_fold(fold, rows)
    with pytest.raises(PatientLeakError, match="14-2980"):
        read_official_fold(fold, "100X")
    with pytest.warns(UserWarning):
        leaky = read_official_fold(fold, "100X", allow_leak=True)
    assert "14-2980" in leaky.test


def test_official_fold_file_bad_row(tmp_path):
    fold = tmp_path / "dsfold2.txt"
    fold.write_text("SOB_B_A-14-22549AB-40-001.png|40|2|holdout\n")
    with pytest.raises(ValueError, match=r"dsfold2.txt:1"):
        read_official_fold(fold)


def test_small_subtype_with_related_pair_keeps_a_training_patient():
    records = [
        ImageRecord(f"/{pid}.png", "breakhis", pid, "benign", "PT", "40X")
        for pid in ("14-21998AB", "14-21998CD", "14-3411F")
    ]
    for seed in range(8):
        split = split_patients(records, seed=seed)
        assert split.train, seed
        assert {patient_group(p) for p in split.train} != {patient_group(p) for p in split.test}
