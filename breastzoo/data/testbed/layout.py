"""Where things are in a testbed on disk: the manifest and the lesion masks.

::

    OUT/BreaKHis_v1/...                       the archive, named as BreaKHis names it
    OUT/masks/BreaKHis_v1/...same path...png   ground-truth lesion masks (0/255)
    OUT/testbed.json                           manifest (see read_manifest)
"""

from __future__ import annotations

import json
from pathlib import Path

from breastzoo.data.breakhis import ARCHIVE_NAME

# Version of what the generator draws. 2: small lesions placed uniformly, one low-pass colour
# for every subtype's lesion, a class-independent halo. It is part of the manifest's identity
# and of the cache folder's name (breastzoo.paths.demo_data_dir), so old testbeds are never
# taken for new ones.
TESTBED_VERSION = 2
SYNTH_VERSION = TESTBED_VERSION  # the manifest's "version" field (its older name)
# The identity stored in every manifest. It names the old module on purpose: testbeds written
# before the split must stay recognised (and cached ones reused), so it never changes.
GENERATOR = "breastzoo.data.synth"
MANIFEST_NAME = "testbed.json"
MASKS_NAME = "masks"


def mask_path(image_path: str | Path, data_root: str | Path) -> Path:
    """Ground-truth lesion mask of an image of a synthetic tree.

    Masks mirror the archive under ``<testbed root>/masks/``, so they stay out of the
    BreaKHis tree that indexers walk.

    Args:
        image_path: an image path (absolute, or relative to ``data_root``).
        data_root: the testbed root, or any folder of it (for example ``.../BreaKHis_v1``).

    Returns:
        The mask's path (it may not exist if the tree is not a testbed).

    Example:
        >>> str(mask_path("/t/BreaKHis_v1/x/a.png", "/t"))
        '/t/masks/BreaKHis_v1/x/a.png'
    """
    image_path = Path(image_path)
    if not image_path.is_absolute():
        image_path = Path(data_root) / image_path
    parts = image_path.parts
    lowered = [p.lower() for p in parts]
    if ARCHIVE_NAME.lower() in lowered:
        i = len(lowered) - 1 - lowered[::-1].index(ARCHIVE_NAME.lower())
        return Path(*parts[:i], MASKS_NAME, *parts[i:])
    root = Path(data_root)
    return root / MASKS_NAME / image_path.relative_to(root)


def _manifest_candidates(data_root: Path) -> list[Path]:
    out = [data_root / MANIFEST_NAME]
    lowered = [p.lower() for p in data_root.parts]
    if ARCHIVE_NAME.lower() in lowered:
        i = lowered.index(ARCHIVE_NAME.lower())
        out.append(Path(*data_root.parts[:i]) / MANIFEST_NAME)
    return out


def read_manifest(data_root: str | Path) -> dict | None:
    """The testbed manifest of a data folder, or ``None`` if it is not a synthetic testbed.

    Args:
        data_root: the testbed root, or ``BreaKHis_v1`` / any folder inside it.

    Returns:
        The parsed ``testbed.json`` (``generator``, ``version``, ``preset``, ``seed``,
        ``image_size``, ``images``, ``patients``, ``counts``, ...) or ``None``. Its
        ``preset`` field holds the testbed size (``tiny``, ``demo``, ``full``): the field keeps
        its old name so that testbeds written earlier stay valid.

    Example:
        >>> read_manifest("/nonexistent") is None
        True
    """
    for path in _manifest_candidates(Path(data_root)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("generator") == GENERATOR:
            return data
    return None

