"""Patient-wise splits that never leak a patient (or a related slide) across train/val/test.

Paper 000's protocol: 70% of the data train+validation, 30% test; 25% of train+validation is
validation (Table II: 42 / 15 / 25 of 82 patients). Splits are stratified by the task's class
(``task="subtype"``: the eight subtypes; ``task="binary"``: benign / malignant) and balance
**images**, not only patients, because patients have very different image counts: per class,
patient groups are visited largest first (sizes within a factor of sqrt(2) count as ties,
broken at random by the seed) and each goes to the part furthest below its image target
(30% / 17.5% / 52.5% of the class's images). Every class gets a test group when it has two or
more groups and a validation group when it has three or more; a part still lacking a class is
reported (``UserWarning`` and ``PatientSplit.notes``, written to config.json as
``"warnings"``). With equal image counts per patient this reproduces Table II's counts within
a patient per subtype.

Patient ids that share a numeric core (``14-22549AB`` / ``14-22549CD``, ``14-14134`` /
``14-14134E``) are slides of one patient number; they move together as one group so they
never straddle splits. Reports still count each id as a patient (PRR).

A split can also be read back (:func:`load_split`) from the JSON of ``breastzoo data split
--json`` or an official BreaKHis fold file, and checked against the data it is used on
(:func:`validate_split`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from breastzoo.data.records import ImageRecord

_CORE_RE = re.compile(r"^(\d+-\d+|\d+)")
TASKS: tuple[str, ...] = ("subtype", "binary")
PARTS: tuple[str, ...] = ("train", "val", "test")
# Priority of the parts when a class has too few groups for all of them: training first.
_PRIORITY: tuple[str, ...] = ("train", "test", "val")


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
        source: how it was made (``"stratified by binary label"``, ``"official:dsfold1.txt"``,
            ``"file:split.json"``, ...).
        notes: warnings about the split (a part lacking a class, dropped patients, an allowed
            leak); written to JSON as ``"warnings"``.

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


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown task. Received: task={task!r}; expected one of {TASKS}")


def class_of(record: ImageRecord, task: str = "subtype") -> str:
    """The class of ``record`` for ``task``: its subtype, or benign/malignant for ``"binary"``.

    Example:
        >>> class_of(ImageRecord("/x.png", "breakhis", "14-2523", "malignant", "DC"), "binary")
        'malignant'
    """
    _check_task(task)
    return record.label if task == "binary" else record.subtype


@dataclass
class _Group:
    """Patients sharing a numeric core, with their image count and majority class."""

    patients: list[str]
    images: int
    stratum: str


def _groups_by_stratum(
    records: Iterable[ImageRecord], task: str = "subtype"
) -> dict[str, list[_Group]]:
    """Stratum (the group's majority class for ``task``) -> its patient groups."""
    _check_task(task)
    votes: dict[str, Counter] = defaultdict(Counter)
    patients_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        group = patient_group(r.patient)
        votes[group][class_of(r, task)] += 1
        patients_of[group].add(r.patient)
    strata: dict[str, list[_Group]] = defaultdict(list)
    for group in sorted(patients_of):
        stratum = sorted(votes[group].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        n_images = sum(votes[group].values())
        strata[stratum].append(_Group(sorted(patients_of[group]), n_images, stratum))
    return dict(sorted(strata.items()))


def _visit_order(groups: Sequence[_Group], rng: np.random.Generator) -> list[_Group]:
    """Largest group first; sizes within a factor of sqrt(2) are ties, broken at random."""
    keys = rng.random(len(groups))
    order = sorted(
        range(len(groups)),
        key=lambda i: (-math.floor(2 * math.log2(max(groups[i].images, 1))), keys[i]),
    )
    return [groups[i] for i in order]


def _assign(
    order: Sequence[_Group],
    targets: Sequence[float],
    required: Sequence[int],
    tie: Callable[[int], tuple],
) -> list[int]:
    """Greedy assignment of groups (in ``order``) to bins with image ``targets``.

    Each group goes to the bin furthest below its target (ties: ``tie(bin)``, larger wins);
    bins with a zero target get nothing. The bins in ``required`` each get at least one group:
    once only as many groups remain as required bins are empty, the remaining (smallest)
    groups go to those bins.
    """
    counts = [0.0] * len(targets)
    n_groups = [0] * len(targets)
    eligible = [b for b, t in enumerate(targets) if t > 0]
    out = []
    for i, group in enumerate(order):
        remaining = len(order) - i
        empty = [b for b in required if n_groups[b] == 0]
        candidates = empty if empty and remaining <= len(empty) else eligible
        best = max(candidates, key=lambda b: (targets[b] - counts[b], *tie(b)))
        counts[best] += group.images
        n_groups[best] += 1
        out.append(best)
    return out


def class_gaps(
    split: PatientSplit,
    records: Iterable[ImageRecord],
    task: str = "subtype",
    parts: Sequence[str] = PARTS,
) -> list[str]:
    """One message per part that lacks a class present in ``records``.

    Args:
        split: the split to check.
        records: the images it is applied to.
        task: which class: ``"subtype"`` or ``"binary"`` (benign/malignant).
        parts: the parts to check.

    Returns:
        Messages such as ``"val part has no 'benign' images (the data has 1 patient group of
        'benign')"``; empty when every part has every class.

    Example:
        >>> split = split_patients(records, task="binary")  # doctest: +SKIP
        >>> class_gaps(split, records, "binary")  # doctest: +SKIP
        []
    """
    records = list(records)
    groups_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        groups_of[class_of(r, task)].add(patient_group(r.patient))
    assigned = split.assign(records)
    messages = []
    for part in parts:
        present = {class_of(r, task) for r in assigned[part]}
        for cls in sorted(set(groups_of) - present):
            n = len(groups_of[cls])
            messages.append(
                f"{part} part has no {cls!r} images (the data has {n} patient "
                f"group{'' if n == 1 else 's'} of {cls!r})"
            )
    return messages


def _report_gaps(split: PatientSplit, gaps: list[str], what: str) -> None:
    """Record ``gaps`` in ``split.notes`` and emit one UserWarning listing them."""
    new = [g for g in gaps if g not in split.notes]
    if not new:
        return
    split.notes.extend(new)
    warnings.warn(f"{what}: " + "; ".join(new), UserWarning, stacklevel=3)


def _stratified_split(
    records: Sequence[ImageRecord],
    seed: int,
    test_fraction: float,
    val_fraction: float,
    task: str,
) -> PatientSplit:
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"Fraction out of range. Received: {name}={value}")
    strata = _groups_by_stratum(records, task)
    if not strata:
        raise ValueError("Cannot split: no images (Received: records=[])")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {name: [] for name in PARTS}
    for groups in strata.values():
        total = float(sum(g.images for g in groups))
        test = test_fraction * total
        val = val_fraction * (total - test)
        targets = [total - test - val, test, val]  # in _PRIORITY order
        eligible = [b for b, t in enumerate(targets) if t > 0]
        required = eligible[: len(groups)]
        order = _visit_order(groups, rng)
        bins = _assign(order, targets, required, tie=lambda b, t=targets: (t[b], -b))
        for group, b in zip(order, bins, strict=True):
            parts[_PRIORITY[b]].extend(group.patients)
    return PatientSplit(
        sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]), seed=seed,
        source="stratified by " + ("binary label" if task == "binary" else "subtype"),
    )


def split_patients(
    records: Iterable[ImageRecord],
    seed: int = 0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.25,
    task: str = "subtype",
) -> PatientSplit:
    """Stratified, grouped, image-balanced, deterministic patient-wise train / val / test split.

    Per class of ``task``, patient groups (ids sharing a numeric core) are visited largest
    first (ties at random by ``seed``) and each goes to the part furthest below its image
    target; every class gets a test group when it has 2+ groups and a validation group when it
    has 3+. Parts that still lack a class are listed in ``notes`` and warned about.

    Args:
        records: index records (usually of one magnification).
        seed: random seed; the same records and seed give the same split.
        test_fraction: share of each class's images held out for test.
        val_fraction: share of the remaining images used for validation.
        task: stratify by ``"subtype"`` or by benign/malignant (``"binary"``).

    Returns:
        PatientSplit with no patient (and no patient group) in two parts.

    Raises:
        ValueError: fractions outside [0, 1), an unknown task or no records.

    Warns:
        UserWarning: a part has no image of a class (naming both).

    Example:
        >>> split = split_patients(index.records, seed=1, task="binary")  # doctest: +SKIP
        >>> split.notes  # doctest: +SKIP
        []
    """
    records = list(records)
    _check_task(task)
    split = _stratified_split(records, seed, test_fraction, val_fraction, task)
    split.check()
    checked = [name for name, frac in (("train", 1.0), ("val", val_fraction),
                                       ("test", test_fraction)) if frac > 0]
    _report_gaps(split, class_gaps(split, records, task, checked),
                 f"Patient split (task {task}, seed {seed})")
    return split


def kfold_patients(
    records: Iterable[ImageRecord], k: int = 5, seed: int = 0, task: str = "subtype"
) -> list[list[str]]:
    """Split patients into ``k`` disjoint, stratified, group-respecting, image-balanced folds.

    Used by paper 002's bagging (each model trains on k-1 folds of the training patients and
    validates on the k-th) and for k-fold studies of small data. Per class of ``task``, groups
    are visited largest first (ties at random by ``seed``) and each goes to the fold furthest
    below its share of that class's images (ties: fewest images overall, then lowest index),
    so every fold gets every class that has ``k`` or more groups. A fold lacking a class is
    warned about (one ``UserWarning`` listing all of them).

    Args:
        records: records of the patients to split (for bagging: the training part).
        k: number of folds (>= 2).
        seed: random seed.
        task: stratify by ``"subtype"`` or by benign/malignant (``"binary"``).

    Returns:
        ``k`` sorted lists of patient ids.

    Raises:
        ValueError: ``k < 2``, an unknown task or fewer patient groups than folds.

    Example:
        >>> folds = kfold_patients(train_records, k=5, task="binary")  # doctest: +SKIP
        >>> len(folds)  # doctest: +SKIP
        5
    """
    records = list(records)
    if k < 2:
        raise ValueError(f"k-fold needs at least 2 folds. Received: k={k}")
    strata = _groups_by_stratum(records, task)
    n_groups = sum(len(g) for g in strata.values())
    if n_groups < k:
        raise ValueError(
            f"Not enough patient groups for {k} folds. Received: k={k} with {n_groups} groups"
        )
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    images = [0] * k
    for groups in strata.values():
        share = sum(g.images for g in groups) / k
        order = _visit_order(groups, rng)
        bins = _assign(order, [share] * k, [], tie=lambda f: (-images[f], -f))
        for group, f in zip(order, bins, strict=True):
            folds[f].extend(group.patients)
            images[f] += group.images
    folds = [sorted(f) for f in folds]
    gaps = []
    for i, fold in enumerate(folds, start=1):
        as_split = PatientSplit([], [], fold)
        gaps += [g.replace("test part", f"fold {i}", 1)
                 for g in class_gaps(as_split, records, task, ("test",))]
    if gaps:
        warnings.warn(f"{k}-fold split (task {task}, seed {seed}): " + "; ".join(gaps),
                      UserWarning, stacklevel=2)
    return folds


def find_group_leaks(split: PatientSplit) -> dict[str, dict[str, str]]:
    """Patient groups (numeric cores) whose ids sit in different parts.

    Returns:
        ``{group: {patient: part}}`` for every group found in more than one part.

    Example:
        >>> find_group_leaks(PatientSplit(["14-21998AB"], [], ["14-21998CD"]))
        {'14-21998': {'14-21998AB': 'train', '14-21998CD': 'test'}}
    """
    where: dict[str, dict[str, str]] = defaultdict(dict)
    for name in PARTS:
        for p in getattr(split, name):
            where[patient_group(p)].setdefault(p, name)
    return {g: dict(sorted(ids.items())) for g, ids in sorted(where.items())
            if len(set(ids.values())) > 1}


def _short_list(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _refuse_leaks(split: PatientSplit, origin: str) -> None:
    """Raise PatientLeakError for a patient, or a patient number, in two parts."""
    leaks = find_leaks(split)
    if leaks:
        p, parts = next(iter(leaks.items()))
        raise PatientLeakError(
            f"Patient leak in {origin}: patient {p} is in {' and '.join(parts)}"
            + (f" ({len(leaks) - 1} more leaking patients)" if len(leaks) > 1 else "")
            + ". Refusing this split."
        )
    group_leaks = find_group_leaks(split)
    if group_leaks:
        g, ids = next(iter(group_leaks.items()))
        listed = " and ".join(f"{p} ({part})" for p, part in ids.items())
        raise PatientLeakError(
            f"Patient leak in {origin}: {listed} are one patient number ({g})"
            + (f" ({len(group_leaks) - 1} more)" if len(group_leaks) > 1 else "")
            + ". Refusing this split."
        )


def validate_split(
    split: PatientSplit,
    records: Iterable[ImageRecord],
    *,
    task: str = "subtype",
    origin: str | None = None,
) -> PatientSplit:
    """Check a given split (a file, or one built by the caller) against the data it is used on.

    Refuses a split that puts a patient, or two ids of one patient number (``14-21998AB`` /
    ``14-21998CD``), in two parts, and one that names patients absent from ``records``. Data
    patients the split does not mention are dropped (their images are not used) with a
    warning; parts lacking a class of ``task`` are warned about too. Both are recorded in the
    returned split's ``notes``.

    Args:
        split: the split to check (not modified).
        records: the images it will be applied to (one magnification).
        task: class used for the missing-class check.
        origin: where the split came from, for messages (default ``split.source``).

    Returns:
        A copy of ``split`` with the notes added.

    Raises:
        PatientLeakError: a patient or patient number in two parts (naming it).
        ValueError: patients absent from the data (naming them), or an unknown task.

    Example:
        >>> checked = validate_split(PatientSplit(["a"], ["b"], ["c"]), records)  # doctest: +SKIP
    """
    _check_task(task)
    records = list(records)
    origin = origin or split.source
    out = PatientSplit(list(split.train), list(split.val), list(split.test), seed=split.seed,
                       source=split.source, notes=list(split.notes))
    _refuse_leaks(out, origin)
    in_data = {r.patient for r in records}
    named = {p for name in PARTS for p in getattr(out, name)}
    absent = sorted(named - in_data)
    if absent:
        raise ValueError(
            f"Split {origin} names {len(absent)} patient(s) absent from the data: "
            f"{_short_list(absent)}. Received: {len(in_data)} patients in the data"
        )
    unmentioned = sorted(in_data - named)
    notes = []
    if unmentioned:
        n_images = sum(r.patient in set(unmentioned) for r in records)
        notes.append(
            f"{origin} does not mention {len(unmentioned)} patient(s) of the data; their "
            f"{n_images} images are not used: {_short_list(unmentioned)}"
        )
    notes += class_gaps(out, records, task)
    _report_gaps(out, notes, f"Split {origin}")
    return out


def load_split(
    path: str | Path,
    records: Iterable[ImageRecord] | None = None,
    magnification: str | None = None,
    *,
    task: str = "subtype",
    seed: int = 0,
) -> PatientSplit:
    """Read a split file: the JSON of ``breastzoo data split --json`` or an official fold file.

    JSON files need ``train``, ``val`` and ``test`` lists of patient ids; anything else is read
    as an official BreaKHis fold file (``dsfoldN.txt``, see :func:`read_official_fold`; its
    validation patients are carved out of the training part with ``seed``). A file that
    leaks a patient is refused. With ``records``, the split is also checked against the data
    (:func:`validate_split`).

    Args:
        path: the split file.
        records: the images the split will be applied to (optional).
        magnification: the magnification in use (``"100X"``): selects the fold file's rows,
            and a JSON split made at another magnification is noted.
        task: class used for stratifying a fold file's validation part and for the
            missing-class check.
        seed: seed for a fold file's validation part.

    Returns:
        The split, ``source`` ``"file:<name>"`` or ``"official:<name>"``.

    Raises:
        ValueError: missing or malformed file (naming it), patients absent from ``records``.
        PatientLeakError: a patient (or patient number) in two parts.

    Example:
        >>> split = load_split("split.json", index.records, "100X")  # doctest: +SKIP
    """
    from breastzoo.data.records import normalize_magnification

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Split file not found. Received: path={str(path)!r}")
    mag = normalize_magnification(magnification) if magnification else None
    text = path.read_text(errors="replace")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Malformed JSON in split file {path}: {exc}") from None
        lists = {}
        for part in PARTS:
            value = obj.get(part)
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                hint = " (a --kfold file has folds, not a split)" if "folds" in obj else ""
                raise ValueError(
                    f"Split file {path} needs '{part}' as a list of patient ids{hint}. "
                    f"Received: {part}={value!r}"[:300]
                )
            lists[part] = sorted(value)
        split = PatientSplit(lists["train"], lists["val"], lists["test"], seed=obj.get("seed"),
                             source=f"file:{path.name}")
        mismatches = []
        file_mag, file_task = obj.get("magnification"), obj.get("task")
        if mag is not None and file_mag and file_mag != mag:
            mismatches.append(f"{path.name} was made at {file_mag}, used at {mag}")
        if file_task and file_task != task:
            mismatches.append(f"{path.name} was made for task {file_task}, used for {task}")
        for note in mismatches:
            split.notes.append(note)
            warnings.warn(f"Split file {path}: {note}", UserWarning, stacklevel=2)
    else:
        split = read_official_fold(path, mag, seed=seed, task=task)
    if records is None:
        _refuse_leaks(split, str(path))
        return split
    return validate_split(split, records, task=task, origin=str(path))


def read_official_fold(
    path: str | Path,
    magnification: str | None = None,
    val_fraction: float = 0.25,
    seed: int = 0,
    allow_leak: bool = False,
    task: str = "subtype",
) -> PatientSplit:
    """Read an official BreaKHis fold file (``dsfold1.txt``..``dsfold5.txt``).

    Rows are ``filename|mag|fold|train|test`` style: ``SOB_B_A-14-22549AB-40-001.png|40|1|train``.
    The official folds have no validation part; ``val_fraction`` of the training images
    (grouped, stratified by ``task`` and image-balanced as in :func:`split_patients`) become
    validation.

    Args:
        path: the fold file.
        magnification: keep only rows of this magnification (``"100X"``); ``None`` keeps all.
        val_fraction: share of training images moved to validation.
        seed: seed for choosing validation patients.
        allow_leak: accept a fold file that puts a patient in train and test (warns loudly).
        task: stratify the validation part by ``"subtype"`` or ``"binary"``.

    Raises:
        ValueError: unreadable rows (names file and line), no rows at ``magnification``;
            PatientLeakError on a leak.

    Example:
        >>> split = read_official_fold("dsfold1.txt", "100X")  # doctest: +SKIP
    """
    from breastzoo.data.breakhis import parse_filename

    _check_task(task)
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
    if not rows["train"]:
        raise ValueError(f"Fold file {path} has no training rows at magnification "
                         f"{magnification or 'any'}. Received: path={str(path)!r}")
    train_patients = {r.patient for r in rows["train"]}
    test_patients = sorted({r.patient for r in rows["test"]})
    # The "test" part of a split of the training rows is our validation part.
    inner = _stratified_split(rows["train"], seed, val_fraction, 0.0, task)
    split = PatientSplit(
        train=sorted(set(inner.train) | (train_patients - set(inner.test))),
        val=inner.test,
        test=test_patients,
        seed=seed,
        source=f"official:{path.name}",
    )
    split.check(allow_leak=allow_leak)
    if not split.notes:  # gaps are meaningless in a leaking split
        _report_gaps(split, class_gaps(split, rows["train"] + rows["test"], task),
                     f"Fold file {path.name} (task {task})")
    return split
