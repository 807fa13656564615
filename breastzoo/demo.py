"""``make demo``: the main job, end to end, on the built-in synthetic demo data.

1. Generate (once, cached) the BreaKHis-format synthetic testbed.
2. Train DeNet+SaNet at 100X on a patient-wise split with the ``demo`` preset (resumable).
3. Evaluate it on the test patients (metrics, confusion matrix, ROC, ROI overlays).
4. Publish it to the zoo as ``denet_sanet_100x`` (skipped when that exact model is already
   the latest published version, so re-running does not pile up identical versions).
5. Export an int8 TFLite model for an edge microscope and check it against Keras.
6. Predict a few test images through ``breastzoo.load`` with ROI overlays, and print how to
   do the same in Python.

Every number it prints comes from the synthetic testbed, not from BreaKHis.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

ZOO_NAME = "denet_sanet_100x"
PREDICT_IMAGES = 4


def fit_resuming(say: Callable[[str], None], **fit_args: Any) -> dict:
    """``workflow.fit`` of the demo run: resumes its folder, or, when that folder was made by
    an older breastzoo or testbed (a different setup), trains into ``<folder>-2`` (``-3``, ...)
    instead, leaving the old run as it is.

    Args:
        say: where to print.
        **fit_args: ``data`` and ``config`` for ``workflow.fit``.

    Example:
        >>> fit_resuming(print, data="demo-root", config=preset("demo"))  # doctest: +SKIP
    """
    from breastzoo.quiet import keras_verbosity
    from breastzoo.runs import SetupMismatch, default_run_dir
    from breastzoo.workflow import fit

    base = default_run_dir("breakhis", "100", fit_args["config"], "demo")
    for n in itertools.count(1):
        out = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            # One line per epoch when stdout is a file or a pipe, not a progress bar.
            return fit("breakhis", mag="100", preset="demo", out=out, log=say,
                       verbose=keras_verbosity(), **fit_args)
        except SetupMismatch:
            say(f"{out} holds a run of an older setup; it is kept, and this run goes to the next "
                "free folder.")
    raise AssertionError("unreachable")


def main() -> int:
    """Run the demo; return a process exit code."""
    from breastzoo.quiet import quiet_tensorflow

    quiet_tensorflow()  # before anything below imports TensorFlow: no CUDA start-up lines
    from breastzoo.configs import preset
    from breastzoo.io import read_json
    from breastzoo.paths import DEMO_SEED, DEMO_SIZE, ensure_demo_data
    from breastzoo.runs import RunFolder
    from breastzoo.workflow import export_model, predict_images, publish_new
    from breastzoo.zoo import load

    console = Console()
    say = lambda m: console.print(m, highlight=False)  # noqa: E731
    console.rule("breastzoo demo: synthetic BreaKHis-format testbed (results are not BreaKHis)")
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("synthesizing demo data", total=None)
        root = ensure_demo_data(
            DEMO_SIZE, DEMO_SEED, lambda d, t: progress.update(task, completed=d, total=t)
        )
    say(f"demo data: {root} ({time.perf_counter() - start:.0f} s)")

    result = fit_resuming(say, data=str(root), config=preset("demo"))
    run = RunFolder(result["run_dir"])
    run_dir = run.path
    m = result["metrics"]
    say(f"DeNet+SaNet, 100X, 8 subtypes: IRR {m['irr']:.3f}, PRR {m['prr']:.3f}, "
        f"binary IRR {m['binary']['irr']:.3f}, ROI hit rate {m['roi_hit_rate']:.2f} "
        "(synthetic testbed)")

    console.rule("publish to the zoo")
    version = publish_new(run_dir, ZOO_NAME, log=say)["version"]

    console.rule("export for an edge microscope (TFLite int8)")
    exported = export_model(ZOO_NAME, "tflite", quantize="int8", version=version, force=True)
    check = exported.get("check") or {}
    agreement = check.get("top1_agreement")
    say(f"TFLite int8: {exported['path']} ({exported['bytes'] / 1e6:.2f} MB)"
        + (f", top-1 agreement with Keras {agreement:.2f}" if agreement is not None else ""))

    console.rule("predict with ROI overlays")
    model = load(ZOO_NAME, version=version)
    test_paths = [Path(r["path"]) for r in read_json(run.predictions_path)["images"]]
    chosen = test_paths[:PREDICT_IMAGES]
    overlay_dir = run_dir / "demo_predictions"
    for row in predict_images(model, chosen, overlay_dir=overlay_dir):
        say(f"  {Path(row['image']).name}: {row['class']} "
            f"(p = {max(row['probabilities'].values()):.2f}, {len(row['boxes'])} ROIs)")

    console.rule(f"done in {time.perf_counter() - start:.0f} s")
    say(f"run folder:        {run_dir}  (metrics.json, confusion_matrix.png, roc.png)")
    say(f"ROI overlays:      {run_dir}/overlays/ and {overlay_dir}/")
    say(f"zoo version:       {model.path}  (card.md, SavedModel for TF Serving)")
    say(f"TFLite int8:       {exported['path']}")
    say("in Python:")
    say(f"    import breastzoo\n    model = breastzoo.load({ZOO_NAME!r})\n"
        "    probs = model.predict(images)   # uint8 [N, 460, 700, 3] -> [N, 8]\n"
        "    out = model.infer(images)       # + class names and ROI boxes")
    say(f"command line:      breastzoo predict {ZOO_NAME} IMAGE.png --overlay out/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
