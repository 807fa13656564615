"""Facts about the datasets: class codes, folder names, magnifications and Table II counts.

Sources: Spanhol et al. 2016 (BreaKHis) and Table II of Xu et al. 2020 (paper 000). Note that
paper 000's Table II prints the PT and TA row labels swapped relative to its numbers; the counts
below follow BreaKHis itself (PT: 3 patients, 453 images; TA: 7 patients, 569 images), which
also gives the table's column totals 1995 / 2081 / 2013 / 1820.
"""

from __future__ import annotations

from collections.abc import Iterable

MAGNIFICATIONS: tuple[str, ...] = ("40X", "100X", "200X", "400X")

BENIGN_SUBTYPES: tuple[str, ...] = ("A", "F", "PT", "TA")
MALIGNANT_SUBTYPES: tuple[str, ...] = ("DC", "LC", "MC", "PC")
SUBTYPES: tuple[str, ...] = BENIGN_SUBTYPES + MALIGNANT_SUBTYPES
BINARY_CLASSES: tuple[str, ...] = ("benign", "malignant")

SUBTYPE_NAMES: dict[str, str] = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}
SUBTYPE_CLASS: dict[str, str] = {
    **{s: "benign" for s in BENIGN_SUBTYPES},
    **{s: "malignant" for s in MALIGNANT_SUBTYPES},
}
CLASS_LETTER: dict[str, str] = {"benign": "B", "malignant": "M"}

# BreaKHis counts (images per magnification 40X, 100X, 200X, 400X; patients).
BREAKHIS_COUNTS: dict[str, dict[str, object]] = {
    "A": {"patients": 4, "images": (114, 113, 111, 106)},
    "F": {"patients": 10, "images": (253, 260, 264, 237)},
    "PT": {"patients": 3, "images": (109, 121, 108, 115)},
    "TA": {"patients": 7, "images": (149, 150, 140, 130)},
    "DC": {"patients": 38, "images": (864, 903, 896, 788)},
    "LC": {"patients": 5, "images": (156, 170, 163, 137)},
    "MC": {"patients": 9, "images": (205, 222, 196, 169)},
    "PC": {"patients": 6, "images": (145, 142, 135, 138)},
}
BREAKHIS_TOTAL_IMAGES = 7909
BREAKHIS_TOTAL_PATIENTS = 82
BREAKHIS_IMAGE_SIZE = (700, 460)  # width, height

BACH_CLASSES: tuple[str, ...] = ("Normal", "Benign", "InSitu", "Invasive")
BACH_BINARY: dict[str, str] = {
    "Normal": "benign",
    "Benign": "benign",
    "InSitu": "malignant",
    "Invasive": "malignant",
}
BACH_IMAGE_SIZE = (2048, 1536)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
# Files that operating systems drop into folders; skipped silently-but-listed.
JUNK_FILES: frozenset[str] = frozenset({".ds_store", "thumbs.db", "desktop.ini"})

DATASETS: tuple[str, ...] = ("breakhis", "bach", "folder")


def class_names(dataset: str, task: str, subtypes: Iterable[str] = ()) -> list[str]:
    """Ordered class names for a dataset and task.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        task: ``"subtype"`` (fine classes) or ``"binary"`` (benign / malignant).
        subtypes: subtypes present (used for ``"folder"`` datasets, sorted).

    Raises:
        ValueError: unknown task.

    Example:
        >>> class_names("breakhis", "binary")
        ['benign', 'malignant']
    """
    if task not in ("subtype", "binary"):
        raise ValueError(f"Unknown task. Received: task={task!r}; expected 'subtype' or 'binary'.")
    if task == "binary":
        return list(BINARY_CLASSES)
    if dataset == "breakhis":
        return list(SUBTYPES)
    if dataset == "bach":
        return list(BACH_CLASSES)
    return sorted(set(subtypes))
