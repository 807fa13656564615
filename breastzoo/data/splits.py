"""Patient-wise splits that never leak a patient (or a related slide) across train/val/test.

Paper 000's protocol: 70% of patients train+validation, 30% test; 25% of the train+validation
patients are validation (Table II: 42 / 15 / 25 of 82). Patients are stratified by subtype as
far as counts allow: per subtype, ``round(0.3 n)`` patients go to test and
``round(0.25 * rest)`` to validation, each at least one when the subtype has two or more
patients to give. Rounding is half-up, which reproduces Table II's test column exactly
(25 patients) and its validation column within one patient per subtype.

Patient ids that share a numeric core (``14-22549AB`` / ``14-22549CD``, ``14-14134`` /
``14-14134E``) are slides of related cases; they move together as one group so they never
straddle splits. Reports still count each id as a patient (PRR).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breastzoo.data.records import ImageRecord

_CORE_RE = re.compile(r"^(\d+-\d+|\d+)")


class PatientLeakError(ValueError):
    """A split puts the same patient in more than one part."""


def patient_group(patient: str) -> str:
    """The numeric core that related slides share.

    Args:
        patient: patient id such as ``"14-22549AB"``.

    Returns:
        ``"14-22549"``; ids without a leading number are their own group.

    Example:
        >>> patient_group("14-14134E") == patient_group("14-14134")
        True
    """
    m = _CORE_RE.match(patient)
    return m.group(1) if m else patient


@dataclass
class PatientSplit:
    """Patient ids of each part of a split.

    Args:
        train, val, test: sorted patient ids.
        seed: the seed that made it (``None`` for official fold files).
        source: how it was made (``"stratified"``, ``"official:dsfold1.txt"``, ...).

    Example:
        >>> s = PatientSplit(["a"], ["b"], ["c"])
        >>> s.part_of("b")
        'val'
    """

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int | None = None
    source: str = "stratified"
    notes: list[str] = field(default_factory=list)

    def part_of(self, patient: str) -> str | None:
        """``"train"``, ``"val"``, ``"test"`` or ``None`` for a patient id."""
        for name in ("train", "val", "test"):
            if patient in getattr(self, name):
                return name
        return None

    def assign(self, records: Iterable[ImageRecord]) -> dict[str, list[ImageRecord]]:
        """Records of each part (records of patients in no part are dropped)."""
        lookup = {p: name for name in ("train", "val", "test") for p in getattr(self, name)}
        out: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
        for r in records:
            part = lookup.get(r.patient)
            if part is not None:
                out[part].append(r)
        return out

    def check(self, allow_leak: bool = False) -> None:
        """Refuse a split that shares a patient between parts.

        Raises:
            PatientLeakError: naming the patient(s) and parts, unless ``allow_leak``; then a
                loud ``UserWarning`` is emitted instead.
        """
        leaks = find_leaks(self)
        if not leaks:
            return
        message = "Patient leak: " + "; ".join(
            f"patient {p} is in {' and '.join(parts)}" for p, parts in leaks.items()
        )
        if not allow_leak:
            raise PatientLeakError(
                message + ". Refusing this split (use --allow-leak to override)."
            )
        warnings.warn(
            "ALLOWING A PATIENT LEAK; results are optimistic and not comparable. " + message,
            UserWarning,
            stacklevel=2,
        )
        self.notes.append(message)

    def to_dict(self, records: Sequence[ImageRecord] | None = None) -> dict:
        """JSON form: the three id lists, counts, seed, source and fingerprint."""
        out: dict = {
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "counts": {
                name: {"patients": len(getattr(self, name))} for name in ("train", "val", "test")
            },
            "seed": self.seed,
            "source": self.source,
            "fingerprint": self.fingerprint(),
        }
        if records is not None:
            for name, part in self.assign(records).items():
                out["counts"][name]["images"] = len(part)
        if self.notes:
            out["warnings"] = self.notes
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the sorted id lists: the "hash of the data split" recorded with models."""
        blob = json.dumps(
            {k: sorted(getattr(self, k)) for k in ("train", "val", "test")}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def find_leaks(split: PatientSplit) -> dict[str, list[str]]:
    """Patients that appear in more than one part, with the parts they are in."""
    where: dict[str, list[str]] = defaultdict(list)
    for name in ("train", "val", "test"):
        for p in set(getattr(split, name)):
            where[p].append(name)
    return {p: parts for p, parts in sorted(where.items()) if len(parts) > 1}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _groups_by_stratum(records: Iterable[ImageRecord]) -> dict[str, list[list[str]]]:
    """Stratum (majority subtype) -> list of patient groups (sorted ids)."""
    subtype_votes: dict[str, Counter] = defaultdict(Counter)
    patients_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        group = patient_group(r.patient)
        subtype_votes[group][r.subtype] += 1
        patients_of[group].add(r.patient)
    strata: dict[str, list[list[str]]] = defaultdict(list)
    for group in sorted(patients_of):
        stratum = sorted(subtype_votes[group].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        strata[stratum].append(sorted(patients_of[group]))
    return dict(sorted(strata.items()))


def _quota(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return min(max(1, _round_half_up(fraction * n)), n - 1)


def _fill(groups: list[list[str]], quota: int) -> tuple[list[list[str]], list[list[str]]]:
    """Take groups in order while they fit in ``quota`` patients; return (taken, rest).

    Skipping a group that would overshoot keeps a related pair from inflating a small part;
    a part that is still empty gets the smallest group rather than nothing, unless that
    group is the last one left (training must keep at least one group).
    """
    taken: list[list[str]] = []
    rest: list[list[str]] = []
    count = 0
    for group in groups:
        if count + len(group) <= quota:
            taken.append(group)
            count += len(group)
        else:
            rest.append(group)
    if quota > 0 and not taken and len(rest) > 1:
        smallest = min(rest, key=len)
        rest.remove(smallest)
        taken.append(smallest)
    return taken, rest


def split_patients(
    records: Iterable[ImageRecord],
    seed: int = 0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.25,
) -> PatientSplit:
    """Stratified, grouped, deterministic patient-wise train / val / test split.

    Args:
        records: index records (usually of one magnification).
        seed: random seed; the same records and seed give the same split.
        test_fraction: share of each subtype's patients held out for test.
        val_fraction: share of the remaining patients used for validation.

    Returns:
        PatientSplit with no patient (and no patient group) in two parts.

    Raises:
        ValueError: fractions outside [0, 1) or no records.

    Example:
        >>> split = split_patients(index.records, seed=1)  # doctest: +SKIP
        >>> len(split.test)  # doctest: +SKIP
        25
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"Fraction out of range. Received: {name}={value}")
    strata = _groups_by_stratum(records)
    if not strata:
        raise ValueError("Cannot split: no images (Received: records=[])")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for groups in strata.values():
        order = [groups[i] for i in rng.permutation(len(groups))]
        n = sum(len(g) for g in order)
        n_test = _quota(n, test_fraction)
        n_val = _quota(n - n_test, val_fraction)
        remaining = order
        for part, quota in (("test", n_test), ("val", n_val)):
            chosen, remaining = _fill(remaining, quota)
            for group in chosen:
                parts[part].extend(group)
        for group in remaining:
            parts["train"].extend(group)
    split = PatientSplit(
        sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]), seed=seed
    )
    split.check()
    return split


def kfold_patients(records: Iterable[ImageRecord], k: int = 5, seed: int = 0) -> list[list[str]]:
    """Split patients into ``k`` disjoint, subtype-stratified, group-respecting folds.

    Used by paper 002's bagging (each model trains on k-1 folds of the training patients and
    validates on the k-th). Each group goes to the fold that has the fewest patients of its
    subtype so far (ties: fewest patients overall, then lowest index).

    Args:
        records: records of the patients to split (for bagging: the training part).
        k: number of folds (>= 2).
        seed: random seed.

    Returns:
        ``k`` sorted lists of patient ids.

    Raises:
        ValueError: ``k < 2`` or fewer patient groups than folds.

    Example:
        >>> folds = kfold_patients(train_records, k=5)  # doctest: +SKIP
        >>> len(folds)  # doctest: +SKIP
        5
    """
    if k < 2:
        raise ValueError(f"k-fold needs at least 2 folds. Received: k={k}")
    strata = _groups_by_stratum(records)
    n_groups = sum(len(g) for g in strata.values())
    if n_groups < k:
        raise ValueError(
            f"Not enough patient groups for {k} folds. Received: k={k} with {n_groups} groups"
        )
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    for groups in strata.values():
        per_stratum = [0] * k
        for i in rng.permutation(len(groups)):
            group = groups[i]
            target = min(range(k), key=lambda f: (per_stratum[f], len(folds[f]), f))
            per_stratum[target] += len(group)
            folds[target].extend(group)
    return [sorted(f) for f in folds]


def read_official_fold(
    path: str | Path,
    magnification: str | None = None,
    val_fraction: float = 0.25,
    seed: int = 0,
    allow_leak: bool = False,
) -> PatientSplit:
    """Read an official BreaKHis fold file (``dsfold1.txt``..``dsfold5.txt``).

    Rows are ``filename|mag|fold|train|test`` style: ``SOB_B_A-14-22549AB-40-001.png|40|1|train``.
    The official folds have no validation part; ``val_fraction`` of the training patients
    (grouped and stratified as in :func:`split_patients`) become validation.

    Args:
        path: the fold file.
        magnification: keep only rows of this magnification (``"100X"``); ``None`` keeps all.
        val_fraction: share of training patients moved to validation.
        seed: seed for choosing validation patients.
        allow_leak: accept a fold file that puts a patient in train and test (warns loudly).

    Raises:
        ValueError: unreadable rows (names file and line); PatientLeakError on a leak.

    Example:
        >>> split = read_official_fold("dsfold1.txt", "100X")  # doctest: +SKIP
    """
    from breastzoo.data.breakhis import parse_filename

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Fold file not found. Received: path={str(path)!r}")
    rows: dict[str, list[ImageRecord]] = {"train": [], "test": []}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 4 or fields[-1].lower() not in rows:
            raise ValueError(
                f"{path}:{lineno}: expected 'filename|mag|fold|train|test'. Received: {line!r}"
            )
        parsed = parse_filename(Path(fields[0]).name)
        if parsed is None:
            raise ValueError(f"{path}:{lineno}: not a BreaKHis file name. Received: {fields[0]!r}")
        if magnification is not None and parsed["magnification"] != magnification:
            continue
        rows[fields[-1].lower()].append(
            ImageRecord(
                fields[0],
                "breakhis",
                parsed["patient"],
                parsed["label"],
                parsed["subtype"],
                parsed["magnification"],
            )
        )
    train_patients = {r.patient for r in rows["train"]}
    test_patients = sorted({r.patient for r in rows["test"]})
    inner = split_patients(rows["train"], seed=seed, test_fraction=val_fraction, val_fraction=0)
    # split_patients' "test" part of the training rows is our validation part.
    split = PatientSplit(
        train=sorted(set(inner.train) | (train_patients - set(inner.test))),
        val=inner.test,
        test=test_patients,
        seed=seed,
        source=f"official:{path.name}",
    )
    split.check(allow_leak=allow_leak)
    return split
