"""Index plain class folders: ``root/<class>/*.png|jpg|tif``.

An optional second level is read as the patient: ``root/<class>/<patient>/*.png``. Without it,
each image is its own patient (splits become image-wise). A class folder named ``benign`` or
``malignant``, or after a BreaKHis subtype (code or name), also gets the binary label; any other
class folder name is its own label.
"""

from __future__ import annotations

from pathlib import Path

from breastzoo.data.constants import SUBTYPE_CLASS, SUBTYPE_NAMES
from breastzoo.data.files import (
    DEFAULT_MIN_SIZE,
    iter_image_files,
    require_dir,
    usable_images,
)
from breastzoo.data.records import DatasetIndex, ImageRecord, Skipped

_BINARY_OF = {
    "benign": "benign",
    "malignant": "malignant",
    **{code.lower(): cls for code, cls in SUBTYPE_CLASS.items()},
    **{SUBTYPE_NAMES[code]: cls for code, cls in SUBTYPE_CLASS.items()},
}


def index_folder(root: str | Path, min_size: int = DEFAULT_MIN_SIZE) -> DatasetIndex:
    """Index a folder of class folders.

    Args:
        root: folder whose sub-folders are the classes.
        min_size: smallest acceptable image side in pixels.

    Returns:
        DatasetIndex (subtype = class folder name; label = binary class when recognisable).

    Example:
        >>> idx = index_folder("/data/my_slides")  # doctest: +SKIP
        >>> idx.classes()  # doctest: +SKIP
        ['benign', 'malignant']
    """
    root = require_dir(root)
    skipped: list[Skipped] = []
    candidates: list[tuple[Path, tuple[str, str]]] = []
    for path in iter_image_files(root, skipped):
        rel = path.relative_to(root).parts
        if len(rel) < 2:
            skipped.append(Skipped(str(path), "image not inside a class folder"))
            continue
        cls = rel[0]
        patient = rel[1] if len(rel) > 2 else f"{cls}/{path.stem}"
        candidates.append((path, (cls, patient)))
    records = [
        ImageRecord(
            path=str(path.resolve()),
            dataset="folder",
            patient=patient,
            label=_BINARY_OF.get(cls.lower(), cls),
            subtype=cls,
            note=note,
        )
        for path, (cls, patient), note in usable_images(candidates, min_size, skipped)
    ]
    records.sort(key=lambda r: r.path)
    skipped.sort(key=lambda s: s.path)
    return DatasetIndex("folder", str(root), records, skipped)
