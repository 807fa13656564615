"""The model table (breastzoo.models.specs): one row per `fit --model`, read by configs, the
factory, complexity, export and the zoo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from breastzoo.models.specs import (
    MODEL_NAMES,
    SPECS,
    check_servable,
    find_spec,
    members_of,
    model_spec,
    spec_of,
)

CLASSES = ["a", "b"]


def _tiny(name: str):
    from breastzoo.configs import preset

    return preset("tiny", name).replace(k=1, k_max=2, max_steps=2)


def test_configs_models_are_the_table_and_stay_light():
    from breastzoo.configs import MODELS

    assert MODELS == MODEL_NAMES == tuple(SPECS)
    # configs (and the table) import neither Keras nor TensorFlow.
    code = ("import sys, breastzoo.configs; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if not n.startswith("resnet50")])
def test_every_row_builds_its_class_and_the_model_names_its_row(name):
    from breastzoo.models.factory import build_model

    spec = model_spec(name)
    model = build_model(_tiny(name), CLASSES)
    assert isinstance(model, spec.model_class)
    assert model.spec_name == name and spec_of(model) is spec


def test_resnet_rows_name_their_classes():
    # Built without the factory's forward pass: ResNet-50 is slow to run on CPU.
    assert model_spec("resnet50_roi").model_class.__name__ == "SelectiveAttention"
    assert model_spec("resnet50_full").model_class.__name__ == "WholeImageClassifier"
    model = model_spec("resnet50_full").build(_tiny("resnet50_full"), 2,
                                              image_size=(140, 92))
    assert model.spec_name == "resnet50_full"


def test_flags():
    assert [n for n, s in SPECS.items() if s.needs_lesion_centres] == ["oracle_roi"]
    assert [n for n, s in SPECS.items() if not s.has_rois] == ["sanet_resize", "resnet50_full"]
    # The hybrid reports its grid cells, but they tile the image: no hit rate.
    assert model_spec("hybrid").has_rois and not model_spec("hybrid").selects_rois
    # grid_confident picks its tiles per image (a hit rate), with builtin ops only.
    grid = model_spec("grid_confident")
    assert grid.has_rois and grid.selects_rois and grid.serving == "builtin"
    assert grid.class_path == model_spec("random_roi").class_path
    assert {n: s.serving for n, s in SPECS.items() if s.serving != "builtin"} == {
        "random_roi": "savedmodel", "oracle_roi": "none"}
    assert [n for n, s in SPECS.items() if s.trains_denet] == ["denet_sanet", "resnet50_roi"]
    assert [n for n, s in SPECS.items() if s.own_losses or s.native_bach_size] == ["hybrid"]
    assert (model_spec("hybrid").zoo_prefix, model_spec("hybrid").bach_prefix) == (
        "hybrid_sep", "hybrid")
    assert model_spec("denet_sanet").zoo_prefix == "denet_sanet"


def test_unknown_names_and_models_are_refused():
    with pytest.raises(ValueError, match="model='mystery'.*hybrid"):
        model_spec("mystery")
    assert find_spec(object()) is None
    with pytest.raises(ValueError, match="Received: model=object"):
        spec_of(object())


def test_ensembles_take_their_members_rows():
    from breastzoo.models.baselines import PatchVoteClassifier, WholeImageClassifier
    from breastzoo.models.ensemble import Ensemble

    whole = [WholeImageClassifier(2, image_size=(40, 32), input_size=16, width=2)
             for _ in range(2)]
    ensemble = Ensemble(whole)
    assert spec_of(ensemble).name == "sanet_resize" and members_of(ensemble) == whole
    assert check_servable(ensemble, builtin_ops=True).name == "sanet_resize"
    oracle = PatchVoteClassifier(2, image_size=(40, 32), patch_size=8, k=2, mode="oracle",
                                 width=2)
    mixed = Ensemble([whole[0], oracle])
    with pytest.raises(ValueError, match="oracle_roi"):
        check_servable(mixed)
    nested = Ensemble([Ensemble(whole), whole[0]])
    assert members_of(nested) == [*whole, whole[0]]


def test_example_inputs_add_lesion_centres_where_the_row_says():
    from breastzoo.models.factory import build_model, example_inputs

    oracle = build_model(_tiny("oracle_roi"), CLASSES)
    images = np.zeros((1, 92, 140, 3), "uint8")
    assert sorted(example_inputs(oracle, images)) == ["centres", "images"]
    whole = build_model(_tiny("sanet_resize"), CLASSES)
    assert example_inputs(whole, images) is images
