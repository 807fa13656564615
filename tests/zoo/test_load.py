"""`breastzoo.load`: same outputs as the run's model, tamper/truncation refusal, remote zoo."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

import breastzoo
from breastzoo.zoo import registry
from tests.zoo.conftest import NAME


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 92, 140, 3), dtype=np.uint8)


@pytest.mark.slow  # 21 s on 2 cores
def test_load_predict_equals_the_run_model(published):
    from breastzoo.runs import load_model

    root, run = published
    model = breastzoo.load(NAME, root=str(root))
    assert model.version == 1 and model.image_size == (140, 92)
    import json

    assert model.class_names == json.loads((run / "config.json").read_text())["class_names"]
    x = _images()
    expected = np.asarray(load_model(run / "model.keras").predict(x, verbose=0))
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-6)
    out = model.infer(x)
    graph = model.infer(x, compiled=True)  # what predict uses for many images
    np.testing.assert_allclose(graph["probs"], expected, atol=1e-6)
    for b_graph, b_eager in zip(graph["boxes"], out["boxes"], strict=True):
        np.testing.assert_array_equal(b_graph, b_eager)
    assert out["class_names"] == [model.class_names[i] for i in expected.argmax(-1)]
    for boxes, n in zip(out["boxes"], out["n_rois"], strict=True):
        assert boxes.shape == (n, 4) and n >= 3
        assert np.all(boxes[:, 2] - boxes[:, 0] == 32)  # tiny preset's 32-px ROIs
        assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= 92


def test_load_checks_the_input_contract(published):
    root, _ = published
    model = breastzoo.load(NAME, root=str(root))
    with pytest.raises(ValueError, match=r"uint8 images \[N, 92, 140, 3\]"):
        model.predict(np.zeros((1, 92, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype=float32"):
        model.predict(np.zeros((1, 92, 140, 3), np.float32))
    padded, note = model.fit_image(np.zeros((90, 140, 3), np.uint8))
    assert padded.shape == (92, 140, 3) and note == "padded 140x90 to 140x92"
    assert padded[0].min() == 255  # white padding, as the training pipeline pads


def test_import_breastzoo_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, breastzoo; print('tensorflow' in sys.modules, callable(breastzoo.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "True"]


def test_traversal_names_are_refused():
    with pytest.raises(ValueError, match="plain identifiers"):
        breastzoo.load("../../etc/passwd")


def test_flipped_byte_is_refused_naming_the_file(zoo_copy):
    path = zoo_copy / NAME / "1" / "model.keras"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.keras: checksum mismatch"):
        breastzoo.load(NAME, root=str(zoo_copy))


def test_truncated_file_is_refused(zoo_copy):
    path = next((zoo_copy / NAME / "1" / "variables").glob("variables.data*"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"variables\.data-\S+: checksum mismatch \(100 bytes"):
        breastzoo.load(NAME, root=str(zoo_copy))


def test_missing_sums_is_not_a_version(zoo_copy):
    (zoo_copy / NAME / "1" / "SHA256SUMS").unlink()
    with pytest.raises(ValueError, match="No published version"):
        breastzoo.load(NAME, root=str(zoo_copy))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` of a loopback HTTP server for ``folder``."""
    servers = []

    def start(folder):
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/zoo"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_remote_zoo_over_loopback_http(published, tmp_path, serve, monkeypatch):
    root, _ = published
    site = tmp_path / "site"
    shutil.copytree(root, site / "zoo")
    monkeypatch.setenv("BREASTZOO_CACHE", str(tmp_path / "cache"))
    url = serve(site)
    monkeypatch.setenv("BREASTZOO_ZOO", url)

    assert registry.versions(NAME) == [1]
    model = breastzoo.load(NAME)  # via $BREASTZOO_ZOO
    assert str(model.path).startswith(str(tmp_path / "cache" / "zoo-remote"))
    assert registry.verify_dir(model.path) == []
    x = _images(2)
    local = breastzoo.load(NAME, root=str(root))
    np.testing.assert_allclose(model.predict(x), local.predict(x), atol=1e-6)
    rows = {r["name"]: r for r in registry.list_models()["models"]}
    assert rows[NAME]["versions"] == [1]
    with pytest.raises(ValueError, match="Did you mean 'tiny_denet'"):
        breastzoo.load("tiny_denat")


def test_tampered_remote_download_is_refused_and_not_cached(published, tmp_path, serve,
                                                           monkeypatch):
    root, _ = published
    site = tmp_path / "site" / "zoo"
    shutil.copytree(root, site)
    card = site / NAME / "1" / "card.json"
    card.chmod(0o644)
    card.write_text(card.read_text().replace("FLAGGED", "fine"))
    monkeypatch.setenv("BREASTZOO_CACHE", str(tmp_path / "cache"))
    url = serve(tmp_path / "site")
    with pytest.raises(ValueError, match=r"card\.json: checksum mismatch"):
        breastzoo.load(NAME, root=url)
    cached = registry.resolve_root(url).path / NAME
    assert registry.local_versions(cached.parent, NAME) == []
    assert not list(cached.glob(".staging-*"))
