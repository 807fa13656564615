"""Per-image CPU inference latency, batch 1 and batch 32, median of repeated timed calls.

Two comparisons, one script:

* models (the original one, the default): DeNet+SaNet vs ResNet-50 on the full image vs SaNet
  on the resized image, freshly initialised at the demo preset's sizes (latency does not
  depend on the weights)::

      python bench/latency.py [--repeats 20] [--batches 1,32] [--width 16] --json PATH

* export formats (``--formats``): the *same* model as Keras, SavedModel, TFLite fp32,
  TFLite int8 (int8 weights), TFLite int8_static (int8 convolutions calibrated on the run's
  training split) and ONNX Runtime, plus file sizes; the model is a run folder's trained
  ``model.keras`` or, without ``--run``, a fresh demo-preset DeNet+SaNet (``--model``: another
  ``fit --model``, e.g. ``hybrid``; random calibration images)::

      python bench/latency.py \
          --formats keras,savedmodel,tflite_fp32,tflite_int8,tflite_int8_static,onnx \\
          --run runs/breakhis-100x-denet_sanet-subtype-demo-seed0 --json PATH

Inputs are uint8 700x460 images, as a microscope would send them. Passing ``--formats``
alone skips the model comparison; pass ``--models`` too to run both.

``--quick`` (a few minutes on 2 cores; at most 60): batch 1 only, 10 repeats, 2 threads,
and with ``--formats`` unset the edge formats ``keras,tflite_fp32,tflite_int8`` with a
32-image parity check::

    python bench/latency.py --quick --run runs/breakhis-100x-denet_sanet-subtype-demo-seed0-2 \
        --json bench/results/latency_quick.json

File sizes depend on the model's size: at the demo preset's SaNet width 16 (72 k parameters)
the int8 file keeps a fixed share of graph and small float tensors, at the paper's width 64
it is mostly int8 weights. ``--set`` sizes a fresh model, for example::

    python bench/latency.py --quick --preset demo --set width=64 \
        --json bench/results/latency_quick_denet_w64.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("denet_sanet", "sanet_resize", "resnet50_full")
FORMATS = ("keras", "savedmodel", "tflite_fp32", "tflite_int8", "tflite_int8_static", "onnx")


def _time(fn, x, repeats: int) -> float:
    """Median seconds of ``fn(x)`` over ``repeats`` calls after two warm-up calls."""
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare_models(args, batches: list[int]) -> dict:
    import numpy as np
    import tensorflow as tf

    from breastzoo.configs import preset
    from breastzoo.data.constants import SUBTYPES
    from breastzoo.models.factory import build_model

    cfg = preset("demo")
    w, h = cfg.image_size
    rng = np.random.default_rng(0)
    results: dict[str, dict] = {}
    for name in args.models.split(","):
        model = build_model(cfg.replace(model=name), list(SUBTYPES), "100X")
        fn = tf.function(lambda x, m=model: m(x, training=False), reduce_retracing=True)
        results[name] = {"params": int(model.count_params())}
        for b in batches:
            x = tf.constant(rng.integers(0, 255, (b, h, w, 3), dtype=np.uint8))
            med = _time(lambda v, f=fn: f(v).numpy(), x, args.repeats)
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
    return results


def _load_model(run: str | None, preset_name: str = "demo", model_name: str = "denet_sanet",
                overrides: list[str] | tuple[str, ...] = ()):
    if run is None:
        from breastzoo.configs import apply_overrides, preset
        from breastzoo.data.constants import SUBTYPES
        from breastzoo.models.factory import build_model

        config = apply_overrides(preset(preset_name, model_name), list(overrides))
        model = build_model(config, list(SUBTYPES), "100X")
        settings = f" ({', '.join(overrides)})" if overrides else ""
        return model, f"fresh {preset_name}-preset {model_name} model{settings}"
    from breastzoo.zoo.publish import load_keras_model

    return load_keras_model(Path(run) / "model.keras"), f"{run}/model.keras"


def compare_formats(args, batches: list[int]) -> dict:
    import numpy as np
    import tensorflow as tf

    from breastzoo.export.onnx import OnnxRunner, write_onnx
    from breastzoo.export.parity import compare_outputs, keras_runner, predict_batched, run_images
    from breastzoo.export.savedmodel import load_signature, write_savedmodel
    from breastzoo.export.tflite import TFLiteRunner, write_tflite

    formats = args.formats.split(",")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise SystemExit(f"Unknown formats {sorted(unknown)}; expected {', '.join(FORMATS)}")
    model, source = _load_model(args.run, args.preset, args.model, args.set)
    w, h = model.image_size
    rng = np.random.default_rng(0)
    if args.run:
        calibration, _ = run_images(args.run, "train", limit=args.calibration_images)
        check, _ = run_images(args.run, "test", limit=args.check_images or max(batches))
    else:
        calibration = rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8)
        check = rng.integers(0, 256, (args.check_images or max(batches), h, w, 3),
                             dtype=np.uint8)
    threads = args.threads
    # --artifacts keeps the exports (and reuses those already there: conversions of the
    # 18-step unrolled demo model take minutes); default: a fresh temporary folder.
    out_dir = Path(args.artifacts or tempfile.mkdtemp(prefix="breastzoo-latency-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    runners, sizes = {}, {}
    keras_fn = keras_runner(model)
    for fmt in formats:
        t = time.perf_counter()
        if fmt == "keras":
            path = out_dir / "model.keras"
            model.save(path)
            runners[fmt] = keras_fn
        elif fmt == "savedmodel":
            path = out_dir / "savedmodel" / "1"
            if not (path / "saved_model.pb").exists():
                write_savedmodel(model, path)
            sig = load_signature(path)
            runners[fmt] = lambda x, s=sig: {
                k: v.numpy() for k, v in s(images=tf.constant(x)).items()}
        elif fmt.startswith("tflite"):
            quant = {"tflite_fp32": None, "tflite_int8": "int8"}.get(fmt, "int8_static")
            path = out_dir / f"{fmt}.tflite"
            if not path.exists():
                write_tflite(model, path, quantize=quant,
                             representative=calibration if quant == "int8_static" else None)
            runners[fmt] = TFLiteRunner(path, num_threads=threads)
        else:
            path = out_dir / "model.onnx"
            if not path.exists():
                write_onnx(model, path)
            runners[fmt] = OnnxRunner(path, num_threads=threads)
        sizes[fmt] = _du(path)
        print(f"{fmt:12s} written in {time.perf_counter() - t:6.1f} s, "
              f"{sizes[fmt] / 1e6:7.3f} MB", flush=True)

    reference = predict_batched(keras_fn, check, 16)
    results: dict[str, dict] = {}
    for fmt in formats:
        results[fmt] = {
            "bytes": sizes[fmt],
            "parity_vs_keras": compare_outputs(reference,
                                               predict_batched(runners[fmt], check, 16)),
        }
        for b in batches:
            x = check[:b] if len(check) >= b else np.resize(check, (b, h, w, 3))
            med = _time(runners[fmt], x, args.repeats)
            results[fmt][f"batch{b}_ms_per_image"] = 1000 * med / b
            print(f"{fmt:12s} batch {b:3d}: {1000 * med / b:8.2f} ms/image "
                  f"(median of {args.repeats})", flush=True)
    summary = {}
    if "tflite_fp32" in sizes and "tflite_int8" in sizes:
        summary["int8_size_ratio_vs_fp32"] = sizes["tflite_int8"] / sizes["tflite_fp32"]
    if "keras" in results and "tflite_int8" in results and 1 in batches:
        summary["int8_speedup_vs_keras_batch1"] = (
            results["keras"]["batch1_ms_per_image"] / results["tflite_int8"]["batch1_ms_per_image"]
        )
    return {"model": source, "check_images": len(check), "threads": threads,
            "artifacts": str(out_dir),
            "results": results, "summary": summary}


def _du(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--models", default=None,
                        help=f"model comparison (default {','.join(MODELS)} unless --formats)")
    parser.add_argument("--formats", default=None,
                        help=f"export-format comparison, any of {','.join(FORMATS)}")
    parser.add_argument("--run", default=None,
                        help="run folder whose model.keras and training split --formats uses")
    parser.add_argument("--preset", default="demo",
                        help="--formats without --run: preset of the fresh model (tiny: a "
                             "quick check of the script)")
    parser.add_argument("--model", default="denet_sanet",
                        help="--formats without --run: the fresh model's fit --model "
                             "(e.g. hybrid, with that model's preset settings)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="--formats without --run: config overrides of the fresh model, "
                             "e.g. --set width=64 (paper-sized SaNet)")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--check-images", type=int, default=None,
                        help="--formats: test-split images of the parity check (default: "
                             "the largest batch; more than the split has: all of them)")
    parser.add_argument("--artifacts", default=None,
                        help="folder for the exported files; files already there are reused")
    parser.add_argument("--threads", type=int, default=None,
                        help="TFLite / ONNX Runtime threads (default: runtime default)")
    parser.add_argument("--quick", action="store_true",
                        help="batch 1, 10 repeats, 2 threads; default formats "
                             "keras,tflite_fp32,tflite_int8 (edge models)")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    if args.quick:
        args.batches, args.repeats = "1", min(args.repeats, 10)
        args.threads = args.threads or 2
        if args.models is None and args.formats is None:
            args.formats = "keras,tflite_fp32,tflite_int8"
        if args.formats and args.check_images is None:
            args.check_images = 32
    if args.models is None and args.formats is None:
        args.models = ",".join(MODELS)

    import tensorflow as tf

    from breastzoo.io import atomic_write_json

    batches = [int(b) for b in args.batches.split(",")]
    report = {
        "device": "CPU", "threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "repeats": args.repeats, "image": "uint8 at the model's image_size (demo: 700x460)",
        "config": (f"{args.preset} preset, {args.model}" if args.formats and not args.run
                   else "demo preset"),
    }
    if args.models:
        report["results"] = compare_models(args, batches)
    if args.formats:
        report["formats"] = compare_formats(args, batches)
    atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
