"""Where breastzoo keeps things on disk: the cache and the generated demo data."""

from __future__ import annotations

import os
from pathlib import Path

DEMO_PRESET = "demo"
DEMO_SEED = 0


def cache_dir() -> Path:
    """``$BREASTZOO_CACHE`` or ``$XDG_CACHE_HOME/breastzoo`` or ``~/.cache/breastzoo``.

    Example:
        >>> cache_dir().name
        'breastzoo'
    """
    env = os.environ.get("BREASTZOO_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "breastzoo"


def demo_data_dir(preset: str = DEMO_PRESET, seed: int = DEMO_SEED) -> Path:
    """Folder of the cached synthetic testbed for ``preset`` and ``seed``."""
    return cache_dir() / "data" / f"testbed-{preset}-seed{seed}"


def ensure_demo_data(preset: str = DEMO_PRESET, seed: int = DEMO_SEED, progress=None) -> Path:
    """Generate the synthetic testbed once and return its root (reused on later calls).

    Args:
        preset: testbed preset (``"tiny"``, ``"demo"``, ``"full"``).
        seed: generator seed.
        progress: optional ``callback(done, total)``.

    Example:
        >>> root = ensure_demo_data("tiny")  # doctest: +SKIP
    """
    from breastzoo.data.synth import synthesize

    out = demo_data_dir(preset, seed)
    synthesize(out, preset=preset, seed=seed, progress=progress)
    return out
