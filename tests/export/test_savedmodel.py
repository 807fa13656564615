"""SavedModel in TF Serving layout: loads with tf.saved_model.load, gives Keras' numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def version_dir(selective_model, tmp_path_factory):
    from breastzoo.export.savedmodel import write_savedmodel

    directory = tmp_path_factory.mktemp("zoo") / "tiny" / "1"
    directory.mkdir(parents=True)
    (directory / "model.keras").write_bytes(b"placeholder")  # a publish puts files beside it
    write_savedmodel(selective_model, directory)
    return directory


def test_layout_keeps_other_files(version_dir):
    names = {p.name for p in version_dir.iterdir()}
    assert {"saved_model.pb", "variables", "model.keras"} <= names
    assert (version_dir / "model.keras").read_bytes() == b"placeholder"
    assert not [n for n in names if n.startswith(".savedmodel-")]  # staging removed


def test_signature_gives_keras_outputs(version_dir, images, keras_outputs):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 92, 140, 3]
    out = fn(images=tf.constant(images))
    assert sorted(out) == ["boxes", "class", "n_rois", "probabilities"]
    np.testing.assert_allclose(out["probabilities"].numpy(), keras_outputs["probabilities"],
                               atol=1e-6)
    np.testing.assert_array_equal(out["boxes"].numpy(), keras_outputs["boxes"])
    np.testing.assert_array_equal(out["class"].numpy(),
                                  keras_outputs["probabilities"].argmax(-1))


def test_saved_model_cli_lists_the_signature(version_dir):
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.exists():
        pytest.skip("saved_model_cli is not installed beside this Python")
    result = subprocess.run(
        [str(cli), "show", "--dir", str(version_dir), "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "inputs['images']" in text and "dtype: DT_UINT8" in text
    for name in ("probabilities", "class", "boxes", "n_rois"):
        assert f"outputs['{name}']" in text


def test_refuses_to_overwrite(selective_model, version_dir):
    from breastzoo.export.savedmodel import write_savedmodel

    with pytest.raises(FileExistsError, match="already holds a SavedModel"):
        write_savedmodel(selective_model, version_dir)


def test_whole_image_signature_has_no_boxes(tmp_path, images):
    import tensorflow as tf

    from breastzoo.export.savedmodel import load_signature, write_savedmodel
    from breastzoo.models.factory import build_model
    from tests.export.conftest import CLASSES, small_config

    model = build_model(small_config("sanet_resize"), CLASSES)
    write_savedmodel(model, tmp_path / "1")
    out = load_signature(tmp_path / "1")(images=tf.constant(images))
    assert sorted(out) == ["class", "probabilities"]
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               np.asarray(model(images, training=False)), atol=1e-6)


def test_load_signature_errors(tmp_path):
    from breastzoo.export.savedmodel import load_signature

    with pytest.raises(FileNotFoundError, match="No saved_model.pb"):
        load_signature(tmp_path)
