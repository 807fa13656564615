"""Patient-wise splits: no leaks, grouping of related slides, stratification, determinism."""

from __future__ import annotations

import json

import pytest

from breastzoo.data.constants import BREAKHIS_COUNTS, SUBTYPE_CLASS
from breastzoo.data.records import ImageRecord
from breastzoo.data.splits import (
    PatientLeakError,
    PatientSplit,
    find_leaks,
    kfold_patients,
    load_split,
    patient_group,
    read_official_fold,
    split_patients,
    validate_split,
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
    # Table II: 25 test and 15 validation patients. Splits balance images, not patient counts,
    # so a subtype whose 30% falls halfway between two groups may round down (here LC: 4.5
    # of 15 images as one 3-image patient rather than two, as patient-count half-up did).
    assert 24 <= len(split.test) <= 26
    assert 14 <= len(split.val) <= 16
    sub_of = {r.patient: r.subtype for r in records}
    parts = split.assign(records)
    for sub, spec in BREAKHIS_COUNTS.items():
        per_part = [sum(sub_of[p] == sub for p in getattr(split, part))
                    for part in ("train", "val", "test")]
        assert all(n >= 1 for n in per_part), (sub, per_part)  # every subtype in every part
        assert sum(per_part) == spec["patients"]
        n_images = sum(r.subtype == sub for r in records)
        for part, share in (("test", 0.3), ("val", 0.175)):
            got = sum(r.subtype == sub for r in parts[part])
            assert abs(got - share * n_images) <= 3, (sub, part, got)  # within half a pair


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
    assert d["counts"]["test"] == {"patients": len(split.test), "images": 2 * len(split.test)}
    assert 24 <= len(split.test) <= 26


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


# ---------------------------------------------------------------- task-aware, image-balanced


def make_records(spec: list[tuple[str, str, int]], mag: str = "100X") -> list[ImageRecord]:
    """Records of ``(patient, subtype, n_images)`` rows."""
    return [
        ImageRecord(f"/{pid}/{i}.png", "breakhis", pid, SUBTYPE_CLASS[sub], sub, mag)
        for pid, sub, n in spec
        for i in range(n)
    ]


# 8 benign patients with many images (two share a numeric core), 4 malignant with few: the
# shape of the real 100X subset that made subtype-only splits put no benign patient in test.
IMBALANCED = [
    ("14-22549AB", "A", 40), ("14-22549CD", "A", 35), ("14-29960CD", "A", 30),
    ("14-9133", "F", 28), ("14-14134", "F", 25), ("14-21998AB", "PT", 22),
    ("14-3411F", "TA", 20), ("14-16196", "TA", 18),
    ("14-2523", "DC", 6), ("14-2980", "DC", 5), ("14-18842", "MC", 4), ("14-10147", "MC", 3),
]


def _class_images(split, records, part):
    out: dict[str, int] = {}
    for r in split.assign(records)[part]:
        out[r.label] = out.get(r.label, 0) + 1
    return out


def test_binary_split_puts_both_classes_in_val_and_test_and_balances_images():
    records = make_records(IMBALANCED)
    for seed in range(6):
        split = split_patients(records, seed=seed, task="binary")
        assert split.source == "stratified by binary label"
        assert not split.notes, split.notes
        for part in ("train", "val", "test"):
            assert set(_class_images(split, records, part)) == {"benign", "malignant"}, part
        # Image shares per class are near 30% test / 17.5% val (within the largest group).
        for label, largest in (("benign", 75), ("malignant", 6)):
            total = sum(r.label == label for r in records)
            test = _class_images(split, records, "test")[label]
            assert abs(test - 0.3 * total) <= largest / 2, (seed, label, test)
        groups = {part: {patient_group(p) for p in getattr(split, part)}
                  for part in ("train", "val", "test")}
        assert not groups["train"] & groups["test"] and not groups["val"] & groups["test"]


def test_binary_split_is_deterministic_and_seed_dependent():
    records = make_records(IMBALANCED)
    a = split_patients(records, seed=1, task="binary")
    assert a.to_dict() == split_patients(records, seed=1, task="binary").to_dict()
    fingerprints = {split_patients(records, seed=s, task="binary").fingerprint()
                    for s in range(6)}
    assert len(fingerprints) > 1


def test_subtype_task_on_binary_data_lacks_classes_and_says_so():
    records = make_records(IMBALANCED)
    with pytest.warns(UserWarning, match=r"val part has no 'PT' images"):
        split = split_patients(records, seed=0)  # the default task is still "subtype"
    assert any("test part has no 'PT'" in n for n in split.notes)
    assert split.to_dict(records)["warnings"] == split.notes


def test_too_few_groups_for_val_is_warned_and_recorded():
    records = make_records([("14-1", "A", 5), ("14-2", "F", 5), ("14-3", "DC", 5),
                            ("14-4", "DC", 5), ("14-5", "MC", 5)])
    with pytest.warns(UserWarning, match=r"val part has no 'benign' images \(the data has 2"):
        split = split_patients(records, seed=0, task="binary")
    assert {patient_group(p) for p in split.test} & {"14-1", "14-2"}  # benign still in test
    assert split.notes == ["val part has no 'benign' images (the data has 2 patient groups "
                           "of 'benign')"]


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="task='ternary'"):
        split_patients(make_records(IMBALANCED), task="ternary")


def test_kfold_by_binary_label_balances_images():
    records = make_records(IMBALANCED)
    folds = kfold_patients(records, k=3, seed=0, task="binary")
    assert sorted(p for f in folds for p in f) == sorted({r.patient for r in records})
    label_of = {r.patient: r.label for r in records}
    for fold in folds:
        assert {label_of[p] for p in fold} == {"benign", "malignant"}
    benign = [sum(n for pid, _, n in IMBALANCED if pid in set(f) and label_of[pid] == "benign")
              for f in folds]
    assert max(benign) - min(benign) <= 40  # 223 images in groups of 18..75


# ---------------------------------------------------------------- split files


def _write_json(path, **parts):
    path.write_text(json.dumps(parts))
    return path


def test_load_split_round_trips_the_data_split_json(tmp_path):
    records = make_records(IMBALANCED)
    split = split_patients(records, seed=0, task="binary")
    path = _write_json(tmp_path / "split.json", **split.to_dict(records), magnification="100X")
    loaded = load_split(path, records, "100", task="binary")
    assert (loaded.train, loaded.val, loaded.test) == (split.train, split.val, split.test)
    assert loaded.fingerprint() == split.fingerprint()
    assert loaded.source == "file:split.json"


def test_load_split_refuses_leaks_and_unknown_patients(tmp_path):
    records = make_records(IMBALANCED)
    leak = _write_json(tmp_path / "leak.json", train=["14-2523", "14-9133"], val=["14-2980"],
                       test=["14-2523"])
    with pytest.raises(PatientLeakError, match="patient 14-2523 is in train and test"):
        load_split(leak, records)
    related = _write_json(tmp_path / "related.json", train=["14-22549AB"], val=["14-2980"],
                          test=["14-22549CD"])
    with pytest.raises(PatientLeakError, match=r"14-22549AB \(train\) and 14-22549CD \(test\)"):
        load_split(related)
    unknown = _write_json(tmp_path / "unknown.json", train=["14-2523", "14-99999"],
                          val=["14-2980"], test=["14-9133"])
    with pytest.raises(ValueError, match="absent from the data: 14-99999"):
        load_split(unknown, records)
    folds = _write_json(tmp_path / "folds.json", folds=[["14-2523"], ["14-2980"]])
    with pytest.raises(ValueError, match="--kfold file"):
        load_split(folds)
    with pytest.raises(ValueError, match="nope.json"):
        load_split(tmp_path / "nope.json")


def test_load_split_drops_unmentioned_patients_with_a_warning(tmp_path):
    records = make_records(IMBALANCED)
    path = _write_json(tmp_path / "part.json", train=["14-22549AB", "14-22549CD", "14-2523"],
                       val=["14-9133", "14-2980"], test=["14-14134", "14-18842"])
    with pytest.warns(UserWarning, match="does not mention 5 patient"):
        split = load_split(path, records)
    assert split.train == ["14-22549AB", "14-22549CD", "14-2523"]
    assert any("does not mention" in n for n in split.notes)
    assigned = split.assign(records)
    assert "14-10147" not in {r.patient for part in assigned.values() for r in part}


def test_load_split_reads_an_official_fold_file(tmp_path):
    rows = []
    for pid, sub, part in [("14-22549AB", "A", "train"), ("14-29960CD", "A", "train"),
                           ("14-9133", "F", "train"), ("14-2523", "DC", "test"),
                           ("14-2980", "DC", "train"), ("14-13412", "DC", "train")]:
        letter = "B" if SUBTYPE_CLASS[sub] == "benign" else "M"
        rows.append((f"SOB_{letter}_{sub}-{pid}-100-001.png", 100, 1, part))
    fold = tmp_path / "dsfold1.txt"
    _write_fold(fold, rows)
    with pytest.warns(UserWarning, match="test part has no 'benign' images"):
        split = load_split(fold, magnification="100X", task="binary")
    assert split.source == "official:dsfold1.txt" and split.test == ["14-2523"]
    with pytest.raises(ValueError, match="no training rows at magnification 40X"):
        load_split(fold, magnification="40")


def test_validate_split_copies_and_notes(tmp_path):
    records = make_records(IMBALANCED)
    given = PatientSplit(["14-22549AB", "14-22549CD", "14-2523", "14-10147"],
                         ["14-9133", "14-2980"], ["14-14134", "14-18842"], source="bench")
    with pytest.warns(UserWarning):
        checked = validate_split(given, records, task="binary")
    assert given.notes == [] and checked.notes
    assert checked.train == given.train
