"""Throughput of the tf.data input pipeline against plain PNG decoding.

Measures images/s (wall clock) and CPU ms per image of:

* ``decode_png``: ``read_file`` + ``tf.io.decode_png`` in a ``tf.data`` map with
  ``num_parallel_calls=AUTOTUNE``, batch, prefetch: the baseline;
* ``full``: ``make_dataset`` with Reinhard normalisation and ``xu2020`` augmentation (one
  view per image), same parallelism, first pass (no cache): the number the target is about;
* ablations: decode + Reinhard only, decode + augmentation only, Reinhard without XLA,
  ``zhu2019`` augmentation, the 3x expanded ``xu2020`` stream (counted in output views), and
  the second epoch of a ``cache="memory"`` dataset.

Variants run interleaved (one pass each per repeat) so background load hits them alike; the
table shows medians over ``--repeats``, the median of per-repeat (paired) ratios, and CPU
time per image (process time, insensitive to other processes' load: on a busy shared machine
the wall-clock ratios mostly measure the neighbours). Run from the repository root::

    .venv/bin/python bench/pipeline.py --repeats 5 --json runs/bench/pipeline.json

With no ``--data`` it renders the synthetic BreaKHis testbed (size "tiny", 208 images,
700x460) into a temporary folder once (reused on later runs), or random-ish PNGs if the
testbed generator is not importable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _random_pngs(folder: Path, count: int, size: tuple[int, int]) -> list[str]:
    """H&E-ish PNGs: smooth pink/purple fields with blobs and noise (compress like tissue)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        path = folder / f"img{i:04d}.png"
        paths.append(str(path))
        if path.exists():
            continue
        phase = rng.uniform(0, 6.28, 4)
        field = np.sin(xx / 37 + phase[0]) * np.cos(yy / 29 + phase[1])
        field += 0.5 * np.sin((xx + yy) / 13 + phase[2])
        base = np.stack([215 + 25 * field, 150 + 45 * field, 200 + 20 * field], -1)
        image = base + rng.normal(0, 10, (height, width, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return paths


def _dataset_files(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.data:
        paths = sorted(str(p) for p in Path(args.data).rglob("*.png"))
        if not paths:
            raise SystemExit(f"no .png files under {args.data}")
        return paths[: args.limit] if args.limit else paths, f"PNG files under {args.data}"
    root = Path(tempfile.gettempdir()) / "breastzoo-bench-pipeline"
    try:
        from breastzoo.data import testbed

        out = root / "synth-tiny-700x460"
        testbed.synthesize(out, size="tiny", seed=0, image_size=(700, 460))
        paths = sorted(
            str(p) for p in (out / testbed.ARCHIVE_NAME).rglob("*.png") if "masks" not in p.parts
        )
        source = "synthetic BreaKHis testbed (breastzoo.data.testbed, size tiny, seed 0, 700x460)"
    except ImportError:
        paths = _random_pngs(root / "random-700x460", 200, (700, 460))
        source = "200 random-ish 700x460 PNGs (bench/pipeline.py _random_pngs)"
    return (paths[: args.limit] if args.limit else paths), source


def _time_pass(dataset, count_views: Callable) -> tuple[float, float, int]:
    """One full pass: (images per second, CPU ms per image, images)."""
    wall, cpu = time.perf_counter(), time.process_time()
    seen = 0
    for batch in dataset:
        seen += count_views(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return seen / wall, 1000.0 * cpu / max(seen, 1), seen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of PNGs (searched recursively)")
    parser.add_argument("--limit", type=int, default=0, help="use at most this many files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cycles",
        type=int,
        default=3,
        help="each pass reads the file list this many times (longer passes let tf.data's "
        "autotuner settle; files are in the OS page cache either way)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--variants", help="comma-separated subset to run (decode_png and full always run)"
    )
    args = parser.parse_args(argv)

    import tensorflow as tf

    from breastzoo.data import pipeline
    from breastzoo.data.records import ImageRecord

    paths, source = _dataset_files(args)
    for path in paths:  # page cache: every variant reads warm files
        Path(path).read_bytes()
    files = len(paths)
    paths = paths * args.cycles
    records = [ImageRecord(p, "folder", f"p{i}", "benign", "x") for i, p in enumerate(paths)]
    bs = args.batch_size

    def decode_png():
        ds = tf.data.Dataset.from_tensor_slices(paths)
        ds = ds.map(
            lambda p: tf.io.decode_png(tf.io.read_file(p), channels=3),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.batch(bs).prefetch(tf.data.AUTOTUNE)

    def make(**kwargs):
        return lambda: pipeline.make_dataset(records, ["x"], batch_size=bs, **kwargs)

    def no_xla():
        pipeline._REINHARD_XLA = False
        try:
            return make(normalizer="reinhard", augment="xu2020", expand=False)()
        finally:
            pipeline._REINHARD_XLA = True

    cached_sets: dict[int, object] = {}

    def cached(repeat: int):
        ds = make(normalizer="reinhard", augment="xu2020", expand=False, cache="memory")()
        for _ in ds:  # first epoch fills the cache
            pass
        cached_sets[repeat] = ds
        return ds

    variants: dict[str, tuple[str, Callable]] = {
        "decode_png": ("plain tf.io.decode_png (baseline)", lambda r: decode_png()),
        "full": (
            "decode + Reinhard + xu2020 + batch + prefetch",
            lambda r: make(normalizer="reinhard", augment="xu2020", expand=False)(),
        ),
        "decode_reinhard": ("decode + Reinhard", lambda r: make(normalizer="reinhard")()),
        "decode_xu2020": ("decode + xu2020", lambda r: make(augment="xu2020", expand=False)()),
        "decode_only": ("make_dataset, no normaliser/augmentation", lambda r: make()()),
        "full_no_xla": ("full, Reinhard map not XLA-compiled", lambda r: no_xla()),
        "full_zhu2019": (
            "decode + Reinhard + zhu2019",
            lambda r: make(normalizer="reinhard", augment="zhu2019", expand=False)(),
        ),
        "full_xu2020_x3": (
            "full with 3x expansion (output views/s)",
            lambda r: make(normalizer="reinhard", augment="xu2020")(),
        ),
        "cached_epoch2": ("full, cache='memory', 2nd epoch", cached),
        # What `breastzoo fit` actually runs: stain normalisation is part of the model (so a
        # saved model takes raw images and the op runs batched, on the GPU when there is one),
        # so tf.data only decodes, augments, shuffles and batches. One view per decoded file
        # (expand=False) so the rate compares like with like against plain decoding.
        "fit_pipeline": (
            "breastzoo fit's tf.data: decode + xu2020 + shuffle + batch + prefetch",
            lambda r: make(augment="xu2020", shuffle=True, expand=False)(),
        ),
    }

    if args.variants:
        keep = {"decode_png", "full", *args.variants.split(",")}
        unknown = keep - set(variants)
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(variants)}")
        variants = {k: v for k, v in variants.items() if k in keep}

    def views(batch) -> int:
        images = batch[0] if isinstance(batch, tuple) else batch
        return int(images.shape[0])

    # Warm-up: XLA compilation (once per kernel and shape) is not what we measure.
    for name, (_, build) in variants.items():
        if name != "cached_epoch2":
            for _ in build(-1).take(2):
                pass

    results: dict[str, dict[str, list[float]]] = {k: {"ips": [], "cpu_ms": []} for k in variants}
    for repeat in range(args.repeats):
        for name, (_, build) in variants.items():
            ds = build(repeat)
            ips, cpu_ms, seen = _time_pass(ds, views)
            results[name]["ips"].append(ips)
            results[name]["cpu_ms"].append(cpu_ms)
            print(
                f"  repeat {repeat + 1} {name:16s} {ips:8.1f} img/s {cpu_ms:7.2f} CPU ms/img "
                f"({seen} views)",
                flush=True,
            )
        cached_sets.clear()

    base = statistics.median(results["decode_png"]["ips"])
    base_cpu = statistics.median(results["decode_png"]["cpu_ms"])
    rows = []
    for name, (label, _) in variants.items():
        ips = statistics.median(results[name]["ips"])
        cpu = statistics.median(results[name]["cpu_ms"])
        # Paired per-repeat ratios: both passes of a repeat saw similar background load.
        runs = zip(results[name]["ips"], results["decode_png"]["ips"], strict=True)
        paired = [a / b for a, b in runs]
        rows.append(
            {
                "variant": name,
                "description": label,
                "images_per_s": round(ips, 1),
                "cpu_ms_per_image": round(cpu, 2),
                "vs_decode": round(ips / base, 3),
                "vs_decode_paired_median": round(statistics.median(paired), 3),
                "cpu_vs_decode": round(base_cpu / cpu, 3),
                "runs_images_per_s": [round(v, 1) for v in results[name]["ips"]],
            }
        )

    print(
        f"\nData: {source}; {files} files x {args.cycles} per pass; batch {bs}; "
        f"medians of {args.repeats} runs"
    )
    print(
        f"{'variant':16s} {'img/s':>8s} {'x decode':>9s} {'paired':>7s} {'CPU ms/img':>11s} "
        f"{'CPU x':>6s}  description"
    )
    for row in rows:
        print(
            f"{row['variant']:16s} {row['images_per_s']:8.1f} {row['vs_decode']:9.3f} "
            f"{row['vs_decode_paired_median']:7.3f} {row['cpu_ms_per_image']:11.2f} "
            f"{row['cpu_vs_decode']:6.3f}  {row['description']}"
        )
    print(
        "\nx decode: ratio of median img/s; paired: median of per-repeat ratios; CPU x: decode "
        "CPU ms / variant CPU ms\n(the rate ratio to expect when both are CPU-bound on an idle "
        "machine)."
    )
    full = next(r for r in rows if r["variant"] == "full")
    print(
        f"full / decode_png: {full['vs_decode']:.3f} wall-clock, "
        f"{full['vs_decode_paired_median']:.3f} paired, {full['cpu_vs_decode']:.3f} CPU "
        "(target >= 0.8)"
    )

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": source,
        "files": files,
        "cycles": args.cycles,
        "batch_size": bs,
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
        },
        "results": rows,
        "full_vs_decode": full["vs_decode"],
        "full_vs_decode_paired": full["vs_decode_paired_median"],
        "full_cpu_vs_decode": full["cpu_vs_decode"],
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
