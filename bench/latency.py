"""Per-image CPU inference latency: DeNet+SaNet vs ResNet-50 on the full image vs SaNet on the
resized image, batch 1 and batch 32, median of repeated timed calls, side by side in one run.

    python bench/latency.py [--repeats 20] [--batches 1,32] [--width 16] --json PATH

Models are freshly initialised at the demo preset's sizes (latency does not depend on the
weights); inputs are uint8 700x460 images, as a microscope would send them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("denet_sanet", "sanet_resize", "resnet50_full")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from breastzoo.configs import preset
    from breastzoo.data.constants import SUBTYPES
    from breastzoo.io import atomic_write_json
    from breastzoo.models.factory import build_model

    cfg = preset("demo")
    w, h = cfg.image_size
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, dict] = {}
    for name in args.models.split(","):
        model = build_model(cfg.replace(model=name), list(SUBTYPES), "100X")
        fn = tf.function(lambda x, m=model: m(x, training=False), reduce_retracing=True)
        results[name] = {"params": int(model.count_params())}
        for b in batches:
            x = tf.constant(rng.integers(0, 255, (b, h, w, 3), dtype=np.uint8))
            fn(x)  # trace and warm up
            fn(x)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn(x).numpy()
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            results[name][f"batch{b}_ms_per_image"] = 1000 * med / b
            print(f"{name:14s} batch {b:3d}: {1000 * med / b:8.2f} ms/image "
                  f"(median of {args.repeats})", flush=True)
    ref = results.get("denet_sanet")
    if ref and "resnet50_full" in results:
        for b in batches:
            key = f"batch{b}_ms_per_image"
            results["speedup_vs_resnet50_full_" + f"batch{b}"] = (
                results["resnet50_full"][key] / ref[key]
            )
    atomic_write_json(args.json, {
        "device": "CPU", "threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "repeats": args.repeats, "image": f"{w}x{h} uint8", "config": "demo preset",
        "results": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
