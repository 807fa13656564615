"""Where breastzoo keeps things on disk: the cache and the generated demo data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

DEMO_SIZE = "demo"  # the testbed size `make demo` and `--data demo` use
DEMO_SEED = 0
DEMO_PRESET = DEMO_SIZE  # deprecated alias of DEMO_SIZE


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


def demo_data_dir(size: str = DEMO_SIZE, seed: int = DEMO_SEED) -> Path:
    """Folder of the cached synthetic testbed of ``size`` and ``seed``.

    The name holds the testbed's version (``TESTBED_VERSION`` of
    :mod:`breastzoo.data.testbed`), so a cache written by an older generator is never reused.

    Args:
        size: testbed size (``"tiny"``, ``"demo"``, ``"full"``).
        seed: generator seed.

    Example:
        >>> demo_data_dir("tiny", 0).name
        'testbed-v2-tiny-seed0'
    """
    from breastzoo.data.testbed.layout import TESTBED_VERSION

    return cache_dir() / "data" / f"testbed-v{TESTBED_VERSION}-{size}-seed{seed}"


def ensure_demo_data(
    size: str = DEMO_SIZE,
    seed: int = DEMO_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate the synthetic testbed once and return its root (reused on later calls).

    Args:
        size: testbed size (``"tiny"``, ``"demo"``, ``"full"``).
        seed: generator seed.
        progress: optional ``callback(done, total)``.

    Example:
        >>> root = ensure_demo_data("tiny")  # doctest: +SKIP
    """
    from breastzoo.data.testbed import synthesize

    out = demo_data_dir(size, seed)
    synthesize(out, size=size, seed=seed, progress=progress)
    return out
