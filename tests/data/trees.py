"""Builders for small but realistic dataset trees (real layouts, real file-name grammar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from breastzoo.data.constants import SUBTYPE_CLASS, SUBTYPE_NAMES

# Real BreaKHis patient ids (two share a numeric core, as in the archive).
REAL_PATIENTS = {
    "A": ["14-22549AB", "14-22549CD", "14-29960CD"],
    "F": ["14-14134", "14-14134E", "14-9133"],
    "DC": ["14-2523", "14-2980", "14-13412"],
    "MC": ["14-13418DE", "14-18842"],
}


def write_png(path: Path, size: tuple[int, int] = (70, 46), mode: str = "RGB", seed: int = 0):
    """A random image of ``size`` (width, height) in ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGB":
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    elif mode == "RGBA":
        arr = rng.integers(0, 255, (h, w, 4), dtype=np.uint8)
    elif mode == "L":
        arr = rng.integers(0, 255, (h, w), dtype=np.uint8)
    elif mode == "I;16":
        arr = rng.integers(0, 65535, (h, w), dtype=np.uint16)
    else:
        raise ValueError(mode)
    Image.fromarray(arr).save(path)
    return path


def breakhis_relpath(subtype: str, patient: str, mag: int, seq: int) -> Path:
    """Relative path below ``BreaKHis_v1`` of one image, exactly as in the archive."""
    letter = "B" if SUBTYPE_CLASS[subtype] == "benign" else "M"
    return (
        Path("histology_slides/breast")
        / SUBTYPE_CLASS[subtype]
        / "SOB"
        / SUBTYPE_NAMES[subtype]
        / f"SOB_{letter}_{subtype}_{patient}"
        / f"{mag}X"
        / f"SOB_{letter}_{subtype}-{patient}-{mag}-{seq:03d}.png"
    )


def make_breakhis(root: Path, patients=None, mags=(40, 100), per_mag: int = 2) -> Path:
    """Write ``root/BreaKHis_v1/...``; return the BreaKHis_v1 folder."""
    archive = root / "BreaKHis_v1"
    patients = patients or REAL_PATIENTS
    i = 0
    for subtype, ids in patients.items():
        for patient in ids:
            for mag in mags:
                for seq in range(1, per_mag + 1):
                    write_png(archive / breakhis_relpath(subtype, patient, mag, seq), seed=i)
                    i += 1
    return archive


def make_bach(root: Path, per_class: int = 3, with_csv: bool = True) -> Path:
    """Write ``root/ICIAR2018_BACH_Challenge/Photos/<class>/<id>.tif`` plus the CSV."""
    photos = root / "ICIAR2018_BACH_Challenge" / "Photos"
    prefix = {"Normal": "n", "Benign": "b", "InSitu": "is", "Invasive": "iv"}
    rows = []
    for cls, p in prefix.items():
        for i in range(1, per_class + 1):
            name = f"{p}{i:03d}.tif"
            path = photos / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(path, format="TIFF")
            rows.append(f"{name},{cls}")
    if with_csv:
        (photos / "microscopy_ground_truth.csv").write_text("\n".join(rows) + "\n")
    return photos
