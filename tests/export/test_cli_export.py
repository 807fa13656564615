"""`breastzoo export` through the Typer app: zoo names, run folders, .keras files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from breastzoo.cli import app
from tests.conftest import NAME

runner = CliRunner()


def _run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def keras_file(selective_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "small.keras"
    selective_model.save(path)
    return path


@pytest.mark.slow  # 33 s each
def test_export_onnx_from_keras_file(keras_file, tmp_path):
    out = tmp_path / "small.onnx"
    result = _run("export", keras_file, "--format", "onnx", "--out", out,
                  "--check-images", 3, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "onnx" and report["path"] == str(out)
    assert report["bytes"] == out.stat().st_size > 0
    check = report["check"]
    assert check["images"] == "3 random images" and check["n"] == 3
    assert check["max_abs_diff"] < 1e-4 and check["top1_agreement"] == 1.0

    again = _run("export", keras_file, "--format", "onnx", "--out", out)
    assert again.exit_code == 2 and "--force" in again.output
    assert "Traceback" not in again.output


def test_export_errors_are_one_line(keras_file, tmp_path):
    bad = _run("export", keras_file, "--format", "savedmodel", "--quantize", "int8")
    assert bad.exit_code == 2 and "TFLite only" in bad.output
    no_run = _run("export", keras_file, "--format", "tflite", "--quantize", "int8_static",
                  "--out", tmp_path / "x.tflite")
    assert no_run.exit_code == 2 and "training-split" in no_run.output
    assert not (tmp_path / "x.tflite").exists()
    traversal = _run("export", "../../etc/passwd", "--format", "onnx")
    assert traversal.exit_code == 2 and "Traceback" not in traversal.output


@pytest.mark.slow  # 33 s each
def test_export_int8_static_from_zoo_name(published, tmp_path):  # noqa: F811
    from breastzoo.export.tflite import TFLiteRunner, flex_ops

    root, _run_dir = published
    out = tmp_path / "tiny_int8.tflite"
    result = _run("export", NAME, "--root", root, "--format", "tflite",
                  "--quantize", "int8_static",
                  "--out", out, "--calibration-images", 8, "--check-images", 4, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["name"] == NAME and report["quantize"] == "int8_static"
    assert report["check"]["images"] == "4 test-split images"
    assert flex_ops(out) == set()
    probs = TFLiteRunner(out)(np.zeros((1, 92, 140, 3), np.uint8))["probabilities"]
    assert probs.shape[0] == 1 and np.isfinite(probs).all()
