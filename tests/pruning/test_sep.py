"""SEP channel pruning: eq. 8, selection, the zero-gate property, hybrids, retrain + reload."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from breastzoo.models.complexity import count_macs
from breastzoo.models.inception_sep import HEAD_MODULES, MODULES, InceptionSEP
from breastzoo.pruning.sep import (
    channel_importance,
    loop_fraction,
    prune_model,
    prune_once,
    select_channels,
    sep_branches,
)
from tests.helpers import assert_keras_roundtrip

TINY = 0.125


@pytest.fixture
def images():
    return np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype("float32")


def _sharpen(branch: InceptionSEP, factor: float = 40.0) -> None:
    # Random-init logits are tiny; scale them so small output changes are visible.
    kernel = keras.ops.convert_to_numpy(branch.classifier.kernel)
    branch.classifier.kernel.assign(kernel * factor)


def _make_inert(branch: InceptionSEP, module: str, idx: np.ndarray) -> None:
    """Gate forced to exactly 0 and the channel's squeeze weights zeroed."""
    sep = branch.seps[list(MODULES).index(module)]
    ex_k = keras.ops.convert_to_numpy(sep.excite.kernel).copy()
    ex_b = keras.ops.convert_to_numpy(sep.excite.bias).copy()
    sq_k = keras.ops.convert_to_numpy(sep.squeeze.kernel).copy()
    ex_k[:, idx] = 0.0
    ex_b[idx] = -1e4  # sigmoid(-1e4) == 0.0 in float32
    sq_k[idx, :] = 0.0
    sep.excite.kernel.assign(ex_k)
    sep.excite.bias.assign(ex_b)
    sep.squeeze.kernel.assign(sq_k)


def _inert_keep(branch: InceptionSEP, offset: int) -> dict[str, np.ndarray]:
    keep = {}
    for module in MODULES:
        c = branch.module_channels(module)
        # Every third channel: never a whole output convolution (groups have >= 4 here).
        drop = np.arange(offset, c, 3)
        _make_inert(branch, module, drop)
        keep[module] = np.setdiff1d(np.arange(c), drop)
    return keep


def test_loop_fraction_eq8():
    assert loop_fraction(0.5, 1) == pytest.approx(0.5)
    x = loop_fraction(0.8, 3)
    # Removing X of what is left R times removes O overall (eq. 7).
    assert 1 - (1 - x) ** 3 == pytest.approx(0.8)
    with pytest.raises(ValueError, match="ratio"):
        loop_fraction(1.0)
    with pytest.raises(ValueError, match="loops"):
        loop_fraction(0.5, 0)


def test_select_channels_drops_least_important_and_keeps_each_conv():
    net = InceptionSEP(2, width=TINY)
    c = net.module_channels("3b")
    even = {m: (np.arange(net.module_channels(m)) % 2 == 0).astype("float32") for m in MODULES}
    # Even channels important, odd ones not: exactly the even ones survive 50 %.
    np.testing.assert_array_equal(select_channels(net, even, 0.5)["3b"], np.arange(0, c, 2))
    # Importance falling with the index: 95 % would empty the later convolutions' groups;
    # each keeps its best (first) channel.
    falling = {m: np.linspace(1, 0, net.module_channels(m)).astype("float32") for m in MODULES}
    keep95 = select_channels(net, falling, 0.95)["3b"]
    starts = np.cumsum([0] + [net.channels[f"3b_{k}"] for k in ("1x1", "3x3", "5x5")])
    assert set(starts) <= set(keep95.tolist())
    assert len(keep95) == round(0.05 * c) + 3
    with pytest.raises(ValueError, match="entries"):
        select_channels(net, {**even, "3a": np.ones(3)}, 0.5)


def test_inert_channels_are_removed_without_changing_outputs(images):
    keras.utils.set_random_seed(1)
    net = InceptionSEP(2, width=TINY)
    net(images)
    _sharpen(net)
    keep = _inert_keep(net, 1)
    expected = keras.ops.convert_to_numpy(net(images, training=False))
    small = prune_model(net, {"self": keep})
    for module in MODULES:
        assert small.module_channels(module) == len(keep[module])
    head = sum(len(keep[m]) for m in HEAD_MODULES)
    assert tuple(small.classifier.kernel.shape) == (head, 2)
    actual = keras.ops.convert_to_numpy(small(images, training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert small.count_params() < net.count_params()
    assert count_macs(small, images[:1]) < count_macs(net, images[:1])


def test_removing_live_channels_changes_outputs(images):
    # The property test above could pass vacuously if removal copied nothing; it must not.
    keras.utils.set_random_seed(1)
    net = InceptionSEP(2, width=TINY)
    net(images)
    _sharpen(net)
    keep = {m: np.arange(0, net.module_channels(m), 2) for m in MODULES}
    expected = keras.ops.convert_to_numpy(net(images, training=False))
    actual = keras.ops.convert_to_numpy(prune_model(net, {"self": keep})(images))
    assert np.abs(actual - expected).max() > 1e-3


def test_importance_is_mean_gate(images):
    net = InceptionSEP(2, width=TINY)
    imp = channel_importance(net, [(images[:2], None), (images[2:], None)])["self"]
    gates = net.se_gates(images)
    for module in MODULES:
        np.testing.assert_allclose(
            imp[module], keras.ops.convert_to_numpy(gates[module]).mean(0), rtol=1e-5
        )


def test_hybrid_branches_pruned_and_consistent():
    from breastzoo.models.hybrid import Hybrid

    keras.utils.set_random_seed(2)
    model = Hybrid(2, image_size=(64, 48), grid=(2, 1), patch_size=32, width=TINY)
    raw = np.random.default_rng(3).integers(0, 255, (2, 48, 64, 3)).astype("uint8")
    model(raw)
    assert sorted(sep_branches(model)) == ["global_branch", "local_branch"]
    for b in (model.global_branch, model.local_branch):
        _sharpen(b)
    keep = {"global_branch": _inert_keep(model.global_branch, 0),
            "local_branch": _inert_keep(model.local_branch, 2)}
    expected = keras.ops.convert_to_numpy(model(raw, training=False))
    small = prune_model(model, keep)
    assert isinstance(small, Hybrid)
    assert small.get_config()["global_channels"]["3a_1x1"] == \
        int((keep["global_branch"]["3a"] < model.global_branch.channels["3a_1x1"]).sum())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(small(raw, training=False)), expected, atol=1e-5
    )
    # Scoring a hybrid: the local branch is scored on every patch.
    imp = channel_importance(model, [raw])
    assert set(imp) == {"global_branch", "local_branch"}


@pytest.mark.slow  # 10 s
def test_prune_retrain_save_reload(images, tmp_path):
    keras.utils.set_random_seed(3)
    net = InceptionSEP(2, width=TINY, dropout=0.0)
    net(images)
    small, keep = prune_once(net, [images], loop_fraction(0.5, 1))
    assert small.module_channels("4e") < net.module_channels("4e")
    small.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss="sparse_categorical_crossentropy", run_eagerly=True)
    history = small.fit(images, np.array([0, 1, 0]), epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    loaded = assert_keras_roundtrip(small, images, tmp_path)
    assert loaded.channels == small.channels
    # A second loop works on the reloaded, already pruned model.
    smaller, _ = prune_once(loaded, [images], loop_fraction(0.5, 1))
    assert smaller.count_params() < loaded.count_params()


def test_rejects_other_models():
    with pytest.raises(ValueError, match="InceptionSEP"):
        sep_branches(keras.Sequential([keras.layers.Dense(1)]))


def test_inert_stem_and_reduce_channels_are_removed_without_changing_outputs(images):
    """convs=True: a stem or reduce channel with BatchNorm scale and shift 0 outputs exactly 0
    (after the ReLU), so removing it, and its consumers' input weights, changes nothing."""
    from breastzoo.pruning.sep import (
        INNER_CONV_KEYS,
        conv_importance,
        inner_conv,
        select_conv_channels,
    )

    keras.utils.set_random_seed(2)
    net = InceptionSEP(2, width=TINY)
    net(images)
    _sharpen(net)
    for key in INNER_CONV_KEYS:
        layer = inner_conv(net, key)
        gamma = keras.ops.convert_to_numpy(layer.bn.gamma).copy()
        beta = keras.ops.convert_to_numpy(layer.bn.beta).copy()
        gamma[1::2], beta[1::2] = 0.0, 0.0  # every other channel inert
        layer.bn.gamma.assign(gamma)
        layer.bn.beta.assign(beta)
    imp = conv_importance(net)
    assert all((imp[k][1::2] == 0).all() for k in INNER_CONV_KEYS)
    selected = select_conv_channels(net, 0.5)
    keep = {}
    for key in INNER_CONV_KEYS:  # the inert channels go first
        c = len(imp[key])
        keep[key] = np.arange(0, c, 2)
        assert not set(np.arange(1, c, 2)) & set(selected[key].tolist()), key
    expected = keras.ops.convert_to_numpy(net(images, training=False))
    small = prune_model(net, {"self": keep})
    assert small.channels["stem3"] == len(keep["stem3"])
    assert small.channels["3a_3x3r"] == len(keep["3a_3x3r"])
    actual = keras.ops.convert_to_numpy(small(images, training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert count_macs(small, images[:1]) < 0.6 * count_macs(net, images[:1])


@pytest.mark.slow  # 20 s: three tiny branches and a .keras round trip
def test_pruning_convs_too_cuts_the_macs_sep_leaves(images, tmp_path):
    keras.utils.set_random_seed(3)
    net = InceptionSEP(2, width=TINY)
    net(images)
    sep_only, _ = prune_once(net, [images], 0.5)
    both, keep = prune_once(net, [images], 0.5, convs=True)
    assert "stem1" in keep["self"] and "3a" in keep["self"]
    macs = {name: count_macs(m, images[:1]) for name, m in
            (("net", net), ("sep", sep_only), ("both", both))}
    assert macs["both"] < 0.8 * macs["sep"] < macs["net"]
    assert both.count_params() < sep_only.count_params()
    assert_keras_roundtrip(both, images, tmp_path)

