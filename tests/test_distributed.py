"""Distributed training and tuning on one machine: several processes talking over 127.0.0.1.

- MirroredStrategy over two logical CPUs: one DeNet+SaNet step on a batch split over two
  replicas equals the same step on one device (the hand-written losses are divided by
  ``num_replicas_in_sync``; plain SGD so a factor of 2 would show).
- ``breastzoo fit --strategy multiworker``: two worker processes (TF_CONFIG) train the tiny
  model; both end with identical weights.
- ``breastzoo tune``: KerasTuner's chief + two workers share one grid; every point runs once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

# Each test starts 1-3 TensorFlow processes: together about 3 minutes on 2 idle cores. The
# two training tests run in `make test`; the chief + two workers study (80 s) is also marked
# slow to keep `make test` near its 20-minute budget (`make test-slow`, or
# `pytest -m distributed` for all three).
# 50-80 s each (two processes, or two replicas): make test-slow / pytest -m distributed.
pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TIMEOUT = 900  # seconds per process group; the shared 2-core machine is slow


def _free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _wait_all(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """``(exit code, stdout, stderr)`` of each process; kills them all on a timeout."""
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            outputs.append((p.returncode, out, err or ""))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outputs


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "breastzoo.cli", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from breastzoo.models.selective import SelectiveAttention, SelectiveRewardCallback

    def make():
        keras.utils.set_random_seed(0)
        m = SelectiveAttention(num_classes=2, image_size=(64, 48), patch_size=16, k=2,
                               k_max=3, max_steps=3, width=2)
        m(np.zeros((1, 48, 64, 3), "uint8"))
        m.compile(optimizer=keras.optimizers.SGD(0.5), denet_optimizer=keras.optimizers.SGD(0.5))
        return m

    image = np.random.default_rng(0).integers(0, 255, (1, 48, 64, 3)).astype("uint8")
    single = make()
    before = [np.array(v.numpy()) for v in single.weights]
    single.fit(image, np.array([1]), batch_size=1, epochs=1, verbose=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        dist = make()
    # The same image on both replicas: each replica's step equals the single-device step,
    # so the summed gradients equal it only if each replica's loss is divided by 2.
    pair = tf.data.Dataset.from_tensor_slices((np.concatenate([image, image]), np.array([1, 1])))
    dist.fit(pair.batch(2), epochs=1, verbose=0)
    diff = max(float(np.abs(a.numpy() - np.array(b.numpy())).max())
               for a, b in zip(single.weights, dist.weights))
    moved = max(float(np.abs(a.numpy() - w).max()) for a, w in zip(single.weights, before))
    # DeNet's reward callback reads its state variables, mirrored under the strategy.
    dist.fit(pair.batch(2), validation_data=pair.batch(2), epochs=1, verbose=0,
             callbacks=[SelectiveRewardCallback()])
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync, "max_diff": diff, "moved": moved,
        "epochs_seen": float(np.array(dist.epochs_seen.numpy())),
        "last_val_accuracy": float(np.array(dist.last_val_accuracy.numpy()))}))
""")


def test_mirrored_replicas_match_single_device_step(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ((code, out, _),) = _wait_all([proc])
    assert code == 0, out[-4000:]
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result["replicas"] == 2
    assert result["moved"] > 1e-3  # the step changed the weights, so equality means something
    assert result["max_diff"] < 1e-5
    assert result["epochs_seen"] == 1.0  # SelectiveRewardCallback ran under the strategy
    assert 0.0 <= result["last_val_accuracy"] <= 1.0


def _weights(path: Path) -> dict[str, tuple[bool, np.ndarray]]:
    import keras

    import breastzoo.models.selective  # noqa: F401  (registers the class for loading)

    # Auto-named sublayers get unique suffixes per process (de_net, de_net_1, ...): reset the
    # name counters so both models' weight paths are comparable.
    keras.backend.clear_session()
    model = keras.saving.load_model(path, safe_mode=True)
    return {w.path: (w.trainable, keras.ops.convert_to_numpy(w)) for w in model.weights}


def test_fit_multiworker_two_processes_end_with_identical_weights(tiny_testbed, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(_cli("fit", "breakhis", "--mag", "100", "--data", str(tiny_testbed),
                          "--config", "tiny", "--strategy", "multiworker", "--out", str(out),
                          "--json", env=_env(TF_CONFIG=tf_config), cwd=tmp_path))
    outputs = _wait_all(procs)
    for code, stdout, stderr in outputs:
        assert code == 0, (stdout + stderr)[-4000:]
    chief, worker = (json.loads(stdout) for _, stdout, _ in outputs)
    assert chief["metrics"] is not None and 0.0 <= chief["metrics"]["irr"] <= 1.0
    assert worker == {"run_dir": f"{out}.worker-1", "metrics": None, "role": "worker-1"}
    assert (out / "metrics.json").exists() and not (Path(f"{out}.worker-1") / "metrics.json"
                                                     ).exists()
    a = _weights(out / "model.keras")
    b = _weights(Path(f"{out}.worker-1") / "model.keras")
    assert a.keys() == b.keys() and len(a) > 100
    differ = {p for p in a if not np.allclose(a[p][1], b[p][1], rtol=0, atol=1e-6)}
    # Every trained weight and DeNet's state (iteration, losses, rewards) agree. Keras 3's
    # BatchNormalization keeps per-worker moving statistics (each worker's own shard); they
    # are the only difference (docs/distributed.md).
    assert all(a[p][0] for p in a if p.endswith("/kernel")) and any(a[p][0] for p in a)
    assert all(p.endswith(("/moving_mean", "/moving_variance")) for p in differ), sorted(differ)
    assert not any(a[p][0] for p in differ)
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert len(history) == 1 and "val_accuracy" in history[0]


STUDY = """
name: dist
model: denet_sanet
dataset: breakhis
mag: "100"
tuner: grid
space:
  gamma: {values: [0.1, 0.25, 0.5]}
"""


@pytest.mark.slow
def test_tune_chief_and_two_workers_share_the_grid(tiny_testbed, tmp_path):
    study = tmp_path / "dist.yaml"
    study.write_text(STUDY)
    (port,) = _free_ports(1)
    out = tmp_path / "study"
    common = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    args = ("tune", str(study), "--data", str(tiny_testbed), "--config", "tiny", "--out",
            str(out), "--json")
    procs = [_cli(*args, env=_env(KERASTUNER_TUNER_ID=tid, **common), cwd=tmp_path)
             for tid in ("chief", "tuner0", "tuner1")]
    outputs = _wait_all(procs)
    for code, stdout, stderr in outputs:
        assert code == 0, (stdout + stderr)[-4000:]
    records = [json.loads(line) for line in (out / "executions.jsonl").read_text().splitlines()]
    ended = [r for r in records if r["event"] == "end"]
    gammas = sorted(r["values"]["gamma"] for r in ended)
    assert gammas == [0.1, 0.25, 0.5]  # every grid point ran, none twice
    assert {r["tuner_id"] for r in ended} == {"tuner0", "tuner1"}  # shared by both workers
    assert "chief" not in {r["tuner_id"] for r in records}  # the chief only serves the oracle
    results = json.loads((out / "results.json").read_text())["trials"]
    assert len(results) == 3 and all(r["status"] == "COMPLETED" for r in results)
    assert sorted(r["gamma"] for r in results) == gammas
