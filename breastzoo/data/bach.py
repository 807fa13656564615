"""Index the BACH (ICIAR 2018) microscopy set.

Layout: ``.../Photos/{Normal,Benign,InSitu,Invasive}/*.tif`` (2048x1536), optionally with the
headerless ``microscopy_ground_truth.csv`` (rows ``filename,label``) in ``Photos``. BACH has no
patient ids, so each image is its own "patient" (patient-wise splitting becomes image-wise; say
so in reports). Binary mapping: Normal + Benign -> benign, InSitu + Invasive -> malignant.
"""

from __future__ import annotations

import csv
from pathlib import Path

from breastzoo.data.constants import BACH_BINARY, BACH_CLASSES
from breastzoo.data.files import (
    DEFAULT_MIN_SIZE,
    iter_image_files,
    require_dir,
    usable_images,
)
from breastzoo.data.records import DatasetIndex, ImageRecord, Skipped

GROUND_TRUTH = "microscopy_ground_truth.csv"
_CANON = {c.lower(): c for c in BACH_CLASSES}
# Spellings seen in the wild (the challenge CSV writes "InSitu"; some copies "In Situ").
_CANON.update({"in situ": "InSitu", "in_situ": "InSitu", "insitu carcinoma": "InSitu"})


def locate_photos(root: Path) -> Path | None:
    """The folder holding the four class folders: ``root`` itself or a ``Photos`` below it."""
    if _has_class_folders(root):
        return root
    for path in sorted(root.rglob("*")):
        if path.is_dir() and path.name.lower() == "photos" and _has_class_folders(path):
            return path
    return None


def _has_class_folders(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    return len(names & set(_CANON)) >= 2


def read_ground_truth(path: Path) -> dict[str, str]:
    """Parse the headerless ``filename,label`` CSV into ``{filename: canonical class}``.

    Raises:
        ValueError: a row has an unknown label (names the row).
    """
    labels: dict[str, str] = {}
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'filename,label'. Received: {row}")
            name, label = row[0].strip(), row[1].strip()
            canon = _CANON.get(label.lower())
            if canon is None:
                raise ValueError(
                    f"{path}:{lineno}: unknown BACH label. Received: label={label!r}; expected "
                    f"one of {', '.join(BACH_CLASSES)}."
                )
            labels[name.lower()] = canon
    return labels


def index_bach(root: str | Path, min_size: int = DEFAULT_MIN_SIZE) -> DatasetIndex:
    """Index BACH microscopy images.

    Args:
        root: the ``Photos`` folder or any folder above it.
        min_size: smallest acceptable image side in pixels.

    Returns:
        DatasetIndex (subtype = BACH class, label = binary class, patient = image id).

    Raises:
        ValueError: ``root`` is missing or holds no BACH class folders.

    Example:
        >>> idx = index_bach("/data/ICIAR2018_BACH_Challenge")  # doctest: +SKIP
        >>> idx.summary()["by_subtype"]["Normal"]["images"]  # doctest: +SKIP
        100
    """
    root = require_dir(root)
    photos = locate_photos(root)
    if photos is None:
        raise ValueError(
            f"No BACH class folders ({', '.join(BACH_CLASSES)}) found. Received: root={str(root)!r}"
        )
    truth_file = next(
        (p for p in photos.iterdir() if p.name.lower() == GROUND_TRUTH), None
    )
    truth = read_ground_truth(truth_file) if truth_file else {}
    skipped: list[Skipped] = []
    candidates: list[tuple[Path, str]] = []
    found: set[str] = set()
    for path in iter_image_files(photos, skipped):
        rel = path.relative_to(photos).parts
        folder_class = _CANON.get(rel[0].lower()) if len(rel) > 1 else None
        if folder_class is None:
            skipped.append(Skipped(str(path), "not inside a BACH class folder"))
            continue
        found.add(path.name.lower())
        csv_class = truth.get(path.name.lower())
        if csv_class is not None and csv_class != folder_class:
            skipped.append(
                Skipped(
                    str(path),
                    f"{GROUND_TRUTH} says {csv_class} but folder says {rel[0]}",
                )
            )
            continue
        candidates.append((path, folder_class))
    for name in sorted(set(truth) - found):
        skipped.append(Skipped(str(photos / name), f"listed in {GROUND_TRUTH} but not found"))

    records = [
        ImageRecord(
            path=str(path.resolve()),
            dataset="bach",
            patient=path.stem,
            label=BACH_BINARY[cls],
            subtype=cls,
            magnification=None,
            note=note,
        )
        for path, cls, note in usable_images(candidates, min_size, skipped)
    ]
    records.sort(key=lambda r: r.path)
    skipped.sort(key=lambda s: s.path)
    return DatasetIndex("bach", str(root), records, skipped)
