"""Paper 002's Table 7 analogue: SEP channel pruning of the Inception-SEP branch, and Fig. 13's
SEP + magnitude versus magnitude alone at equal size.

One InceptionSEP branch (full width unless ``--width``) on the whole image resized to
``--size`` (224), binary task, the cached synthetic demo testbed (``ensure_demo_data``) at one
magnification, patient-wise split (train / val / test as ``breastzoo fit`` makes it; val is
unused). Images are scaled to [0, 1]; no stain normalisation or augmentation (a short budget
on a small CPU).

1. Train the unpruned branch for ``--epochs`` epochs (Adam 1e-3, batch ``--batch``).
2. For every ratio O in ``--ratios``: start from that trained model, one SEP loop
   (importance = mean SE gate over the training images, eq. 5; remove O of each SEP block's
   channels, eq. 8 with R = 1; physical removal), retrain ``--retrain-epochs`` epochs, and
   measure parameters, MACs, CPU latency per image (batch 1, median of ``--repeats`` timed
   calls of a compiled ``tf.function``) and test accuracy. O = 0 is the unpruned model given
   the same retraining budget.
3. SEP (O = ``--combo-ratio``) + TF-MOT magnitude pruning (sparsity ``--combo-sparsity``
   during the retraining) versus magnitude pruning alone from the unpruned model at the
   sparsity that leaves the same number of non-zero weights; accuracy and gzip size.

Writes JSON (``--json``) and prints a table::

    python bench/prune.py --json bench/results/prune.json

Numbers come from the synthetic testbed, not BreaKHis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load(args) -> dict:
    import numpy as np

    from breastzoo.data.pipeline import make_dataset
    from breastzoo.paths import ensure_demo_data
    from breastzoo.training import prepare_data

    root = ensure_demo_data(args.testbed_size)
    prepared = prepare_data("breakhis", str(root), args.mag, "binary", args.seed)
    out = {"class_names": prepared.class_names, "root": str(root)}
    for part, records in prepared.parts().items():
        ds = make_dataset(records, prepared.class_names, task="binary", batch_size=32,
                          image_size=(700, 460), resize=(args.size, args.size))
        xs, ys = [], []
        for images, labels in ds:
            xs.append(images.numpy())
            ys.append(labels.numpy())
        out[part] = (np.concatenate(xs).astype("float32") / 255.0, np.concatenate(ys))
    return out


def _compile(model, lr: float):
    import keras

    # Eager: every pruned model is a new graph, and tracing one costs minutes on a busy
    # 2-core machine, more than the per-op overhead of a few hundred eager steps.
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=True)


def _accuracy(model, x, y) -> float:
    import numpy as np

    probs = model.predict(x, batch_size=32, verbose=0)
    return float((np.argmax(probs, axis=1) == y).mean())


def _latency_ms(model, size: int, repeats: int) -> float:
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)), tf.float32)
    fn = tf.function(lambda t: model(t, training=False))
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def _kernel_split(model) -> tuple[int, int]:
    """(weights in prunable kernels, all other weights) of a dense model."""
    import numpy as np

    from breastzoo.pruning.magnitude import prunable_kernels

    kernels = sum(int(np.prod(k.shape)) for k in prunable_kernels(model))
    return kernels, int(model.count_params()) - kernels


def _latency_table(args) -> None:
    """Latency of every ratio's architecture, timed round-robin (weights do not matter)."""
    import numpy as np
    import tensorflow as tf

    from breastzoo.models.complexity import count_macs
    from breastzoo.models.inception_sep import InceptionSEP
    from breastzoo.pruning.sep import prune_once

    rng = np.random.default_rng(args.seed)
    scoring = [rng.uniform(0, 1, (8, args.size, args.size, 3)).astype("float32")]
    base = InceptionSEP(2, width=args.width)
    base(scoring[0][:1])
    x = tf.constant(scoring[0][:1])
    models = {}
    for ratio in [float(r) for r in args.ratios.split(",")]:
        model = base if ratio == 0 else prune_once(base, scoring, ratio)[0]
        fn = tf.function(lambda t, m=model: m(t, training=False))
        fn(x)
        fn(x)
        models[ratio] = (model, fn, [])
    for _ in range(args.repeats):
        for _, fn, times in models.values():
            t = time.perf_counter()
            fn(x).numpy()
            times.append(time.perf_counter() - t)
    rows = []
    for ratio, (model, _, times) in models.items():
        rows.append({"ratio": ratio, "params": int(model.count_params()),
                     "macs": count_macs(model, x),
                     "latency_ms": 1000.0 * statistics.median(times)})
    ref = rows[0]
    for row in rows:
        row["latency_x"] = row["latency_ms"] / ref["latency_ms"]
        print(json.dumps(row))
    result = {"command": "python bench/prune.py " + " ".join(sys.argv[1:]),
              "latency": f"CPU, batch 1, {args.size}x{args.size}, median of {args.repeats} "
                         f"round-robin calls of each model's tf.function (shared 2-core "
                         f"machine)", "rows": rows}
    if args.json:
        from breastzoo.io import atomic_write_json

        atomic_write_json(args.json, result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--testbed-size", "--preset", dest="testbed_size", default="demo",
                        choices=("tiny", "demo", "full"), help="testbed size (--preset: old name)")
    parser.add_argument("--mag", default="100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--retrain-epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ratios", default="0,0.5,0.7,0.9,0.95")
    parser.add_argument("--combo-ratio", type=float, default=0.5)
    parser.add_argument("--combo-sparsity", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--latency-only", action="store_true",
                        help="only CPU latency of the pruned architectures, measured "
                             "interleaved (round-robin) so machine load hits all alike")
    parser.add_argument("--no-combo", action="store_true",
                        help="skip the SEP + magnitude vs magnitude comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import keras
    import numpy as np

    from breastzoo.models.complexity import count_macs
    from breastzoo.models.inception_sep import InceptionSEP
    from breastzoo.pruning.magnitude import MagnitudePruning, gzip_weights_size, sparsity
    from breastzoo.pruning.sep import prune_once

    started = time.perf_counter()
    if args.latency_only:
        _latency_table(args)
        return
    data = _load(args)
    (x_tr, y_tr), (x_te, y_te) = data["train"], data["test"]
    print(f"train {len(y_tr)} images, test {len(y_te)} images ({args.mag}X, binary)")
    keras.utils.set_random_seed(args.seed)
    base = InceptionSEP(2, width=args.width)
    base(x_tr[:1])
    _compile(base, args.lr)
    t = time.perf_counter()
    base.fit(x_tr, y_tr, epochs=args.epochs, batch_size=args.batch, shuffle=True, verbose=2)
    print(f"unpruned trained in {time.perf_counter() - t:.0f} s; "
          f"test acc {_accuracy(base, x_te, y_te):.3f}")
    base_weights = base.get_weights()
    one = x_tr[:1]
    scoring = [x_tr[i:i + 32] for i in range(0, len(x_tr), 32)]

    def fresh_base():
        model = InceptionSEP(2, width=args.width)
        model(one)
        model.set_weights(base_weights)
        return model

    rows = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        t = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        model = fresh_base()
        if ratio > 0:
            model, _ = prune_once(model, scoring, ratio)
        _compile(model, args.lr)
        model.fit(x_tr, y_tr, epochs=args.retrain_epochs, batch_size=args.batch, shuffle=True,
                  verbose=0)
        row = {"ratio": ratio, "params": int(model.count_params()),
               "macs": count_macs(model, one),
               "latency_ms": _latency_ms(model, args.size, args.repeats),
               "accuracy": _accuracy(model, x_te, y_te),
               "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(json.dumps(row))
    ref = rows[0] if rows and rows[0]["ratio"] == 0 else None
    if ref:
        for row in rows:
            row["params_x"] = row["params"] / ref["params"]
            row["macs_x"] = row["macs"] / ref["macs"]
            row["latency_x"] = row["latency_ms"] / ref["latency_ms"]
            row["accuracy_delta_points"] = 100.0 * (row["accuracy"] - ref["accuracy"])

    # Fig. 13: SEP + magnitude vs magnitude alone at the same number of non-zero weights.
    combo, variants = [], []
    if not args.no_combo:
        keras.utils.set_random_seed(args.seed)
        sep_model, _ = prune_once(fresh_base(), scoring, args.combo_ratio)
        k1, other1 = _kernel_split(sep_model)
        target_nonzero = (1.0 - args.combo_sparsity) * k1 + other1
        k0, other0 = _kernel_split(base)
        mag_sparsity = 1.0 - (target_nonzero - other0) / k0
        variants = [("sep+magnitude", sep_model, args.combo_sparsity),
                    ("magnitude", fresh_base(), mag_sparsity)]
    steps = args.retrain_epochs * int(np.ceil(len(y_tr) / args.batch))
    for name, model, s in variants:
        t = time.perf_counter()
        keras.utils.set_random_seed(args.seed)
        _compile(model, args.lr)
        cb = MagnitudePruning(s, end_step=max(2, steps), frequency=max(1, steps // 10))
        model.fit(x_tr, y_tr, epochs=args.retrain_epochs, batch_size=args.batch, shuffle=True,
                  callbacks=[cb], verbose=0)
        stats = sparsity(model)
        row = {"method": name, "sep_ratio": args.combo_ratio if name != "magnitude" else 0.0,
               "kernel_sparsity": round(stats["sparsity"], 4),
               "params_dense": int(model.count_params()),
               "nonzero_params": stats["nonzero_params"],
               "gzip_bytes": gzip_weights_size(model),
               "macs": count_macs(model, one),
               "accuracy": _accuracy(model, x_te, y_te),
               "seconds": round(time.perf_counter() - t, 1)}
        combo.append(row)
        print(json.dumps(row))

    result = {
        "command": "python bench/prune.py " + " ".join(sys.argv[1:]),
        "data": f"synthetic testbed ({args.testbed_size} size, seed {args.seed}), not BreaKHis; "
                f"{args.mag}X, binary, patient-wise split",
        "images": {"train": int(len(y_tr)), "test": int(len(y_te))},
        "input": f"whole image resized to {args.size}x{args.size}, scaled to [0, 1]",
        "width": args.width,
        "budget": {"unpruned_epochs": args.epochs, "retrain_epochs": args.retrain_epochs,
                   "batch": args.batch, "optimizer": f"Adam({args.lr:g})",
                   "augmentation": "none", "loops": 1},
        "latency": f"CPU, batch 1, median of {args.repeats} calls of a tf.function "
                   f"(noisy shared 2-core machine)",
        "sep": rows,
        "magnitude_comparison": combo,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"{'O':>5} {'params':>10} {'MACs':>14} {'lat ms':>8} {'acc':>6}")
    for r in rows:
        print(f"{r['ratio']:>5g} {r['params']:>10,} {r['macs']:>14,} {r['latency_ms']:>8.1f} "
              f"{r['accuracy']:>6.3f}")
    if args.json:
        from breastzoo.io import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
