"""Walking dataset folders and checking that each image file is usable.

Indexers call :func:`scan` so that every dataset treats bad files the same way: zero-byte,
truncated, non-image, system junk and too-small files are reported as skipped with a reason;
grayscale, palette, RGBA and 16-bit images are kept (the pipeline converts them to 8-bit RGB)
with a note saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from breastzoo.data.constants import IMAGE_EXTENSIONS, JUNK_FILES

# Files that belong to dataset distributions but are not images; they are read by the indexers
# (or are ours) and so are not reported as skipped.
KNOWN_METADATA = ("microscopy_ground_truth.csv", "testbed.json", "readme", "license")

DEFAULT_MIN_SIZE = 32
T = TypeVar("T")


@dataclass(frozen=True)
class FileCheck:
    """Outcome of :func:`check_image`: ``ok`` with an optional ``note``, or a skip ``reason``."""

    path: str
    ok: bool
    message: str = ""
    size: tuple[int, int] | None = None  # (width, height)


def iter_files(root: Path) -> Iterator[Path]:
    """All regular files under ``root``, in sorted order, skipping hidden folders.

    Args:
        root: folder to walk.

    Example:
        >>> list(iter_files(Path("/nonexistent")))
        []
    """
    for dirpath, dirnames, filenames in os.walk(root):
        # Sorting in place makes os.walk deterministic; hidden folders (.git, .ipynb_checkpoints)
        # never hold dataset images.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def classify_non_image(path: Path) -> str | None:
    """Why ``path`` is not an image candidate, or ``None`` if it has an image extension.

    Returns an empty string for known metadata files that should not be reported at all.
    """
    name = path.name.lower()
    if name in JUNK_FILES or name.startswith("._"):
        return "system file, not an image"
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return None
    if name.startswith(KNOWN_METADATA) or (name.startswith("dsfold") and name.endswith(".txt")):
        return ""
    return f"not an image file (extension {path.suffix or 'none'!r})"


def check_image(path: str | Path, min_size: int = DEFAULT_MIN_SIZE) -> FileCheck:
    """Open an image header-and-data with Pillow and decide whether it can be used.

    Args:
        path: image file.
        min_size: smallest acceptable width and height in pixels (smaller images cannot hold a
            single patch and are skipped).

    Returns:
        FileCheck with ``ok=False`` and a reason for empty, unreadable, truncated or too-small
        files; ``ok=True`` with a note for files that will be converted (grayscale, RGBA, ...).

    Example:
        >>> check_image("/nonexistent.png").ok
        False
    """
    from PIL import Image, UnidentifiedImageError

    path = str(path)
    try:
        if os.path.getsize(path) == 0:
            return FileCheck(path, False, "empty file (0 bytes)")
        with Image.open(path) as im:
            size, mode, fmt = im.size, im.mode, im.format
            # verify() walks the whole stream (PNG chunk CRCs), catching truncated files
            # without decoding pixels; it is not implemented for every format, so formats
            # other than PNG are decoded once to the same end.
            im.verify()
        if fmt != "PNG":
            with Image.open(path) as im:
                im.load()
    except FileNotFoundError:
        return FileCheck(path, False, "file not found")
    except UnidentifiedImageError:
        return FileCheck(path, False, "not a readable image (unknown format or corrupt header)")
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises these for damaged data
        return FileCheck(path, False, f"truncated or corrupt image ({exc})")
    width, height = size
    if width < min_size or height < min_size:
        return FileCheck(
            path, False, f"too small ({width}x{height} < {min_size} px)", size=size
        )
    note = _conversion_note(mode)
    return FileCheck(path, True, note, size=size)


def _conversion_note(mode: str) -> str:
    if mode == "RGB":
        return ""
    if mode in ("L", "1", "LA"):
        return f"grayscale ({mode}), converted to RGB"
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        return f"16-bit ({mode}), scaled to 8-bit RGB"
    if mode in ("RGBA", "RGBa"):
        return "RGBA, alpha dropped"
    if mode == "P":
        return "palette image, converted to RGB"
    return f"mode {mode}, converted to RGB"


def check_images(
    paths: list[Path], min_size: int = DEFAULT_MIN_SIZE, workers: int = 8
) -> list[FileCheck]:
    """:func:`check_image` over many files, in parallel threads (Pillow releases the GIL)."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: check_image(p, min_size), paths))


def require_dir(root: str | Path) -> Path:
    """``root`` as a Path, or a ValueError naming it when it is missing or not a folder.

    Example:
        >>> require_dir("/")
        PosixPath('/')
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise ValueError(f"Dataset root does not exist. Received: root={str(root)!r}")
    if not path.is_dir():
        raise ValueError(f"Dataset root is not a folder. Received: root={str(root)!r}")
    return path


def iter_image_files(root: Path, skipped: list) -> Iterator[Path]:
    """Files under ``root`` with an image extension; other files (except known metadata)
    are appended to ``skipped`` with a reason. Shared first stage of every indexer."""
    from breastzoo.data.records import Skipped

    for path in iter_files(root):
        reason = classify_non_image(path)
        if reason is None:
            yield path
        elif reason:
            skipped.append(Skipped(str(path), reason))


def usable_images(
    candidates: list[tuple[Path, T]], min_size: int, skipped: list
) -> Iterator[tuple[Path, T, str]]:
    """Check candidate images (in parallel) and yield ``(path, payload, note)`` for usable
    ones; unusable ones go to ``skipped``. Shared last stage of every indexer."""
    from breastzoo.data.records import Skipped

    checks = check_images([c[0] for c in candidates], min_size)
    for (path, payload), check in zip(candidates, checks, strict=True):
        if check.ok:
            yield path, payload, check.message
        else:
            skipped.append(Skipped(str(path), check.message))
