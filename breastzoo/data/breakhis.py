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

from breastzoo.data.constants import (
    CLASS_LETTER,
    MAGNIFICATIONS,
    SUBTYPE_CLASS,
    SUBTYPE_NAMES,
    SUBTYPES,
)
from breastzoo.data.files import (
    DEFAULT_MIN_SIZE,
    iter_image_files,
    require_dir,
    usable_images,
)
from breastzoo.data.records import DatasetIndex, ImageRecord, Skipped

ARCHIVE_NAME = "BreaKHis_v1"
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


def format_filename(
    subtype: str, patient: str, magnification: str, seq: int, ext: str = "png"
) -> str:
    """Build a BreaKHis file name: the inverse of :func:`parse_filename`.

    Args:
        subtype: subtype code (``"A"`` .. ``"PC"``); it also gives the class letter.
        patient: patient id (``"14-22549AB"``).
        magnification: ``"40X"``, ``"100X"``, ``"200X"`` or ``"400X"``.
        seq: 1-based sequence number (written with at least 3 digits).
        ext: file extension without the dot.

    Raises:
        ValueError: unknown subtype or magnification.

    Example:
        >>> format_filename("A", "14-22549AB", "40X", 1)
        'SOB_B_A-14-22549AB-40-001.png'
    """
    check_codes(subtype, magnification)
    letter = CLASS_LETTER[SUBTYPE_CLASS[subtype]]
    return f"SOB_{letter}_{subtype}-{patient}-{magnification[:-1]}-{seq:03d}.{ext}"


def archive_relpath(subtype: str, patient: str, magnification: str, seq: int) -> str:
    """Path of one image inside the official archive, starting with ``BreaKHis_v1/``.

    Args:
        subtype: subtype code (``"A"`` .. ``"PC"``).
        patient: patient id (``"14-22549AB"``).
        magnification: ``"40X"`` .. ``"400X"``.
        seq: 1-based sequence number.

    Raises:
        ValueError: unknown subtype or magnification.

    Example:
        >>> archive_relpath("A", "14-22549AB", "40X", 1).split("/")[5:]
        ['adenosis', 'SOB_B_A_14-22549AB', '40X', 'SOB_B_A-14-22549AB-40-001.png']
    """
    name = format_filename(subtype, patient, magnification, seq)  # checks the codes
    cls = SUBTYPE_CLASS[subtype]
    folder = f"SOB_{CLASS_LETTER[cls]}_{subtype}_{patient}"
    return "/".join(
        (ARCHIVE_NAME, "histology_slides", "breast", cls, "SOB", SUBTYPE_NAMES[subtype], folder,
         magnification, name)
    )


def check_codes(subtype: str, magnification: str) -> None:
    """Raise unless ``subtype`` and ``magnification`` are BreaKHis codes (canonical case).

    Args:
        subtype: subtype code (``"A"`` .. ``"PC"``).
        magnification: ``"40X"`` .. ``"400X"``.

    Raises:
        ValueError: naming the unknown value (the subtype is checked first).

    Example:
        >>> check_codes("DC", "100X")  # returns None
    """
    if subtype not in SUBTYPES:
        raise ValueError(
            f"Unknown subtype. Received: subtype={subtype!r}; expected one of {', '.join(SUBTYPES)}"
        )
    if magnification not in MAGNIFICATIONS:
        raise ValueError(
            f"Unknown magnification. Received: magnification={magnification!r}; expected one "
            f"of {', '.join(MAGNIFICATIONS)}"
        )


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
            if child.is_dir() and child.name.lower() == ARCHIVE_NAME.lower():
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

