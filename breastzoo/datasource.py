"""Where a command's data comes from: an explicit path, ``demo``, ``$BREASTZOO_DATA`` or ./data.

Never falls back to synthetic data silently: without ``--data`` and without a real tree in
the usual places, the user gets one message saying how to point at BreaKHis or use the demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from breastzoo.data.constants import DATASETS


@dataclass(frozen=True)
class DataSource:
    """A resolved dataset root.

    Args:
        root: folder to index.
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        synthetic: True for the built-in testbed (results are not BreaKHis results).
    """

    root: Path
    dataset: str
    synthetic: bool

    @property
    def label(self) -> str:
        """Human description used in run folders and model cards."""
        if self.synthetic:
            return "synthetic BreaKHis-format testbed, not BreaKHis"
        return f"{self.dataset} at {self.root}"


def resolve_data(dataset: str, data: str | None = None, progress=None) -> DataSource:
    """Resolve ``--data`` for ``breastzoo fit DATASET``.

    Args:
        dataset: ``"breakhis"``, ``"bach"`` or ``"folder"``.
        data: a path, ``"demo"`` (the synthetic testbed, generated once and cached) or
            ``None`` (look in ``$BREASTZOO_DATA``, then ``./data``).
        progress: optional ``callback(done, total)`` for demo data generation.

    Raises:
        ValueError: unknown dataset, a path that does not exist, or no data found.

    Example:
        >>> resolve_data("breakhis", "demo").synthetic  # doctest: +SKIP
        True
    """
    from breastzoo.data.index import detect_dataset

    if dataset not in DATASETS:
        raise ValueError(
            f"Unknown dataset. Received: dataset={dataset!r}; expected one of "
            f"{', '.join(DATASETS)}."
        )
    if data == "demo":
        if dataset != "breakhis":
            raise ValueError(
                f"--data demo is a BreaKHis-format testbed. Received: dataset={dataset!r}"
            )
        from breastzoo.data.testbed import read_manifest
        from breastzoo.paths import ensure_demo_data

        root = ensure_demo_data(progress=progress)
        return DataSource(root, "breakhis", read_manifest(root) is not None)
    if data is not None:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise ValueError(f"Data folder does not exist. Received: data={data!r}")
        return DataSource(root, dataset, _is_testbed(root))
    candidates = [Path(p) for p in (os.environ.get("BREASTZOO_DATA"), "data") if p]
    for root in candidates:
        if root.is_dir() and detect_dataset(root) == dataset:
            return DataSource(root, dataset, _is_testbed(root))
    looked = ", ".join(str(c) for c in candidates)
    raise ValueError(
        f"No {dataset} data found (looked in: {looked}). Point at your copy with "
        f"--data /path/to/{'BreaKHis_v1' if dataset == 'breakhis' else dataset} or set "
        "BREASTZOO_DATA; to try breastzoo on the built-in synthetic testbed use --data demo."
    )


def _is_testbed(root: Path) -> bool:
    from breastzoo.data.testbed import read_manifest

    return read_manifest(root) is not None
