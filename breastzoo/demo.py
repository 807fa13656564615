"""``make demo``: the main job on the built-in synthetic demo data.

Today it synthesizes the BreaKHis-format testbed (cached), indexes it and makes the 100X
patient-wise split; training and evaluation of DeNet+SaNet join here when that model lands.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import Progress


def main() -> int:
    """Run the demo; return a process exit code."""
    from breastzoo.data.breakhis import index_breakhis
    from breastzoo.data.splits import split_patients
    from breastzoo.paths import DEMO_PRESET, DEMO_SEED, ensure_demo_data

    console = Console()
    console.rule("breastzoo demo (synthetic BreaKHis-format testbed, not BreaKHis)")
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("synthesizing demo data", total=None)
        root = ensure_demo_data(
            DEMO_PRESET, DEMO_SEED, lambda d, t: progress.update(task, completed=d, total=t)
        )
    console.print(f"demo data: {root} ({time.perf_counter() - start:.1f} s)")
    index = index_breakhis(root)
    summary = index.summary()
    console.print(
        f"indexed {summary['images']} images of {summary['patients']} patients; "
        f"{len(summary['skipped'])} skipped"
    )
    at100 = index.filter("100X")
    split = split_patients(at100.records, seed=0)
    counts = split.to_dict(at100.records)["counts"]
    for part in ("train", "val", "test"):
        console.print(f"  100X {part}: {counts[part]['patients']} patients, "
                      f"{counts[part]['images']} images")
    console.print("Next: breastzoo data index " + str(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
