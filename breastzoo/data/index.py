"""One entry point for indexing: detect the dataset kind and dispatch to its indexer."""

from __future__ import annotations

from pathlib import Path

from breastzoo.data.bach import index_bach, locate_photos
from breastzoo.data.breakhis import index_breakhis, locate_archive, parse_filename
from breastzoo.data.constants import DATASETS
from breastzoo.data.files import DEFAULT_MIN_SIZE, iter_files, require_dir
from breastzoo.data.folder import index_folder
from breastzoo.data.records import DatasetIndex

# How many files to look at when guessing: enough to pass a few junk files, cheap on 7909.
_DETECT_LOOKAHEAD = 200


def detect_dataset(root: str | Path) -> str:
    """Guess the dataset kind of a folder: ``"breakhis"``, ``"bach"`` or ``"folder"``.

    BreaKHis wins when any of the first files follows its file-name grammar; BACH when the
    four class folders (possibly under ``Photos``) exist; anything else is plain folders.

    Example:
        >>> detect_dataset("/data/BreaKHis_v1")  # doctest: +SKIP
        'breakhis'
    """
    root = require_dir(root)
    for i, path in enumerate(iter_files(locate_archive(root))):
        if parse_filename(path.name) is not None:
            return "breakhis"
        if i >= _DETECT_LOOKAHEAD:
            break
    if locate_photos(root) is not None:
        return "bach"
    return "folder"


def index_dataset(
    root: str | Path, dataset: str | None = None, min_size: int = DEFAULT_MIN_SIZE
) -> DatasetIndex:
    """Index any supported dataset.

    Args:
        root: dataset folder.
        dataset: ``"breakhis"``, ``"bach"``, ``"folder"`` or ``None`` to auto-detect.
        min_size: smallest acceptable image side in pixels.

    Raises:
        ValueError: unknown ``dataset`` or a missing ``root``.

    Example:
        >>> index_dataset("/data/BreaKHis_v1").dataset  # doctest: +SKIP
        'breakhis'
    """
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(
            f"Unknown dataset. Received: dataset={dataset!r}; expected one of "
            f"{', '.join(DATASETS)}."
        )
    kind = dataset or detect_dataset(root)
    indexer = {"breakhis": index_breakhis, "bach": index_bach, "folder": index_folder}[kind]
    return indexer(root, min_size=min_size)
