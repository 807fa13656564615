"""Index a BreaKHis tree: parse every file name, cross-check it against its folders.

The official archive layout is::

    BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<subtype folder>/
        SOB_<B|M>_<CODE>_<patient>/<MAG>/SOB_<B|M>_<CODE>-<patient>-<mag>-<seq>.png

The file name alone carries class, subtype, patient and magnification; the folders repeat that
information, so a file whose name disagrees with a folder it sits in is skipped (it was most
likely moved by hand). Case is ignored everywhere. The root may be the folder holding
``BreaKHis_v1``, ``BreaKHis_v1`` itself, ``histology_slides/breast`` or any folder below it.
"""

from __future__ import annotations

import re
from pathlib import Path

from breastzoo.data.constants import MAGNIFICATIONS, SUBTYPE_CLASS, SUBTYPE_NAMES
from breastzoo.data.files import (
    DEFAULT_MIN_SIZE,
    iter_image_files,
    require_dir,
    usable_images,
)
from breastzoo.data.records import DatasetIndex, ImageRecord, Skipped

FILENAME_RE = re.compile(
    r"^SOB_(?P<cls>[BM])_(?P<sub>A|F|PT|TA|DC|LC|MC|PC)-(?P<patient>\d+-\d+[A-Z]*)"
    r"-(?P<mag>40|100|200|400)-(?P<seq>\d+)\.(?:png|jpe?g|tiff?)$",
    re.IGNORECASE,
)
PATIENT_FOLDER_RE = re.compile(
    r"^SOB_(?P<cls>[BM])_(?P<sub>[A-Z]+)_(?P<patient>\d+-\d+[A-Z]*)$", re.IGNORECASE
)
_CLASS_FROM_LETTER = {"B": "benign", "M": "malignant"}
_MAG_FOLDERS = {m.lower() for m in MAGNIFICATIONS}
_SUBTYPE_FOLDERS = {name: code for code, name in SUBTYPE_NAMES.items()}


def parse_filename(name: str) -> dict[str, str] | None:
    """Parse a BreaKHis file name.

    Args:
        name: base name such as ``"SOB_B_A-14-22549AB-40-001.png"`` (any case).

    Returns:
        ``{"label", "subtype", "patient", "magnification", "seq"}`` in canonical case, or
        ``None`` when the name does not follow the grammar (or class and subtype disagree).

    Example:
        >>> parse_filename("SOB_M_DC-14-2523-400-012.png")["magnification"]
        '400X'
    """
    m = FILENAME_RE.match(name)
    if m is None:
        return None
    subtype = m["sub"].upper()
    label = _CLASS_FROM_LETTER[m["cls"].upper()]
    if SUBTYPE_CLASS[subtype] != label:
        return None
    return {
        "label": label,
        "subtype": subtype,
        "patient": m["patient"].upper(),
        "magnification": f"{m['mag']}X",
        "seq": m["seq"],
    }


def folder_conflict(parts: tuple[str, ...], parsed: dict[str, str]) -> str | None:
    """The first disagreement between folder names and the parsed file name, if any.

    Only folder names that look like BreaKHis folders are compared, so flattened or partial
    copies of the archive are accepted.

    Example:
        >>> p = parse_filename("SOB_B_A-14-22549AB-40-001.png")
        >>> folder_conflict(("benign", "SOB", "adenosis", "100X"), p)
        'file name says 40X but folder says 100X'
    """
    for part in parts:
        low = part.lower()
        if low in _MAG_FOLDERS and low.upper() != parsed["magnification"]:
            return f"file name says {parsed['magnification']} but folder says {part}"
        if low in ("benign", "malignant") and low != parsed["label"]:
            return f"file name says {parsed['label']} but folder says {part}"
        if low in _SUBTYPE_FOLDERS and _SUBTYPE_FOLDERS[low] != parsed["subtype"]:
            return f"file name says {SUBTYPE_NAMES[parsed['subtype']]} but folder says {part}"
        pm = PATIENT_FOLDER_RE.match(part)
        if pm and (
            pm["patient"].upper() != parsed["patient"] or pm["sub"].upper() != parsed["subtype"]
        ):
            return f"file name says patient {parsed['patient']} but folder says {part}"
    return None


def locate_archive(root: Path) -> Path:
    """The folder to walk: ``root/BreaKHis_v1`` when present (case-insensitive), else ``root``.

    Preferring ``BreaKHis_v1`` keeps sibling folders (such as the synthetic testbed's
    ``masks/`` tree, which mirrors the archive's file names) out of the index.
    """
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.lower() == "breakhis_v1":
                return child
    return root


def index_breakhis(root: str | Path, min_size: int = DEFAULT_MIN_SIZE) -> DatasetIndex:
    """Index every BreaKHis image under ``root``.

    Args:
        root: any level of a BreaKHis tree (see module docstring).
        min_size: smallest acceptable image side in pixels.

    Returns:
        DatasetIndex with one record per usable image and every other file in ``skipped``.

    Raises:
        ValueError: ``root`` does not exist or is not a folder.

    Example:
        >>> idx = index_breakhis("/data/BreaKHis_v1")  # doctest: +SKIP
        >>> idx.summary()["images"]  # doctest: +SKIP
        7909
    """
    root = require_dir(root)
    archive = locate_archive(root)
    skipped: list[Skipped] = []
    candidates: list[tuple[Path, dict[str, str]]] = []
    seen: dict[str, Path] = {}
    for path in iter_image_files(archive, skipped):
        parsed = parse_filename(path.name)
        if parsed is None:
            skipped.append(Skipped(str(path), "file name does not follow the BreaKHis grammar"))
            continue
        conflict = folder_conflict(path.relative_to(archive).parts[:-1], parsed)
        if conflict:
            skipped.append(Skipped(str(path), conflict))
            continue
        key = path.name.lower()
        if key in seen:
            skipped.append(Skipped(str(path), f"duplicate of {seen[key]}"))
            continue
        seen[key] = path
        candidates.append((path, parsed))

    records = [
        ImageRecord(
            path=str(path.resolve()),
            dataset="breakhis",
            patient=parsed["patient"],
            label=parsed["label"],
            subtype=parsed["subtype"],
            magnification=parsed["magnification"],
            note=note,
        )
        for path, parsed, note in usable_images(candidates, min_size, skipped)
    ]
    records.sort(key=lambda r: r.path)
    skipped.sort(key=lambda s: s.path)
    return DatasetIndex("breakhis", str(root), records, skipped)

