"""Behaviour of the synthetic BreaKHis-format testbed (breastzoo.data.testbed)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from breastzoo.data import testbed
from breastzoo.data.constants import (
    BREAKHIS_COUNTS,
    BREAKHIS_TOTAL_IMAGES,
    BREAKHIS_TOTAL_PATIENTS,
    MAGNIFICATIONS,
    SUBTYPE_CLASS,
    SUBTYPE_NAMES,
    SUBTYPES,
)
from breastzoo.data.testbed import write

SMALL = (96, 64)  # (width, height): big enough for a lesion, small enough to be fast

# The exact BreaKHis grammar, folder by folder, with the patient id shape of the real set.
PATH_RE = re.compile(
    r"^BreaKHis_v1/histology_slides/breast/(?P<cls>benign|malignant)/SOB/(?P<name>[a-z_]+)/"
    r"SOB_(?P<l1>[BM])_(?P<c1>[A-Z]+)_(?P<p1>\d{2}-\d+[A-Z]*)/(?P<mag>40|100|200|400)X/"
    r"SOB_(?P<l2>[BM])_(?P<c2>[A-Z]+)-(?P<p2>\d{2}-\d+[A-Z]*)-(?P<m2>40|100|200|400)-"
    r"(?P<seq>\d{3})\.png$"
)


def _tree_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _digest(root: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in _tree_files(root).items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tb") / "tiny"
    calls: list[tuple[int, int]] = []
    summary = testbed.synthesize(
        out,
        size="tiny",
        seed=0,
        image_size=SMALL,
        workers=1,
        progress=lambda d, t: calls.append((d, t)),
    )
    summary["_progress"] = calls
    return out, summary


def _images(root: Path) -> list[Path]:
    return sorted((root / "BreaKHis_v1").rglob("*.png"))


def test_layout_and_file_grammar(tiny):
    root, summary = tiny
    files = _images(root)
    assert files and summary["archive"] == str(root / "BreaKHis_v1")
    for path in files:
        rel = path.relative_to(root).as_posix()
        m = PATH_RE.match(rel)
        assert m, rel
        code = m["c1"]
        assert code in SUBTYPES and m["c2"] == code
        assert m["name"] == SUBTYPE_NAMES[code]
        assert m["cls"] == SUBTYPE_CLASS[code]
        assert m["l1"] == m["l2"] == ("B" if m["cls"] == "benign" else "M")
        assert m["p1"] == m["p2"]
        assert m["mag"] == m["m2"]
    # Only images and the manifest at the top level; masks live outside the archive.
    assert sorted(p.name for p in root.iterdir()) == ["BreaKHis_v1", "masks", "testbed.json"]


def test_tiny_counts_and_every_patient_has_all_magnifications(tiny):
    root, summary = tiny
    spec = testbed.SIZES["tiny"]
    by_sub_mag: Counter = Counter()
    mags_of: dict[str, set] = defaultdict(set)
    patients_of: dict[str, set] = defaultdict(set)
    seqs: dict[tuple, list[int]] = defaultdict(list)
    for path in _images(root):
        m = PATH_RE.match(path.relative_to(root).as_posix())
        by_sub_mag[m["c1"], m["mag"] + "X"] += 1
        mags_of[m["p1"]].add(m["mag"] + "X")
        patients_of[m["c1"]].add(m["p1"])
        seqs[m["p1"], m["mag"]].append(int(m["seq"]))
    for s in SUBTYPES:
        n_patients, per_mag = spec.counts[s]
        assert len(patients_of[s]) == n_patients >= 3
        for mag, n in zip(MAGNIFICATIONS, per_mag, strict=True):
            assert by_sub_mag[s, mag] == n
    assert all(mags == set(MAGNIFICATIONS) for mags in mags_of.values())
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in seqs.values())  # 001, 002...
    assert summary["images"] == spec.images == len(_images(root))
    assert summary["patients"] == spec.patients
    assert summary["_progress"][-1] == (spec.images, spec.images)


def test_patient_ids_look_real_and_some_share_a_numeric_core():
    items = testbed.plan("full", seed=0)
    patients = {(p.subtype, p.patient) for p in items}
    assert all(re.fullmatch(r"\d{2}-\d{3,5}[A-Z]{0,2}", p) for _, p in patients)
    cores: dict[tuple[str, str], set] = defaultdict(set)
    for s, p in patients:
        cores[s, re.match(r"\d+-\d+", p).group()].add(p)
    assert any(len(v) > 1 for v in cores.values())
    # Numeric cores never cross subtypes, and every subtype keeps >= 3 independent groups.
    core_subtypes = Counter(core for _s, core in cores)
    assert max(core_subtypes.values()) == 1
    groups_per_subtype = Counter(s for s, _core in cores)
    assert min(groups_per_subtype.values()) >= 3


def test_full_plan_has_the_exact_breakhis_counts():
    items = testbed.plan("full", seed=3)
    assert len(items) == BREAKHIS_TOTAL_IMAGES
    assert len({p.patient for p in items}) == BREAKHIS_TOTAL_PATIENTS
    assert len({p.relpath for p in items}) == len(items)
    for s, c in BREAKHIS_COUNTS.items():
        mine = [p for p in items if p.subtype == s]
        assert len({p.patient for p in mine}) == c["patients"]
        for mag, n in zip(MAGNIFICATIONS, c["images"], strict=True):
            assert sum(p.magnification == mag for p in mine) == n
    totals = [sum(p.magnification == m for p in items) for m in MAGNIFICATIONS]
    assert totals == [1995, 2081, 2013, 1820]
    # Spread unevenly over a subtype's patients, like the real set.
    per_patient = Counter(p.patient for p in items if p.subtype == "DC")
    assert max(per_patient.values()) > 2 * min(per_patient.values())
    assert all(len({p.magnification for p in items if p.patient == q}) == 4 for q in per_patient)


@pytest.mark.slow
def test_full_size_renders_exact_counts_at_70x46(tmp_path):
    summary = testbed.synthesize(tmp_path / "full", size="full", seed=0, image_size=(70, 46))
    files = _images(tmp_path / "full")
    assert summary["images"] == len(files) == BREAKHIS_TOTAL_IMAGES
    counts = Counter(p.parent.name for p in files)
    assert [counts[m] for m in MAGNIFICATIONS] == [1995, 2081, 2013, 1820]
    assert Image.open(files[0]).size == (70, 46)


def test_masks_exist_match_and_cover_part_of_the_image(tiny):
    root, _ = tiny
    fractions = []
    for path in _images(root):
        mpath = testbed.mask_path(path, root)
        assert mpath.is_file(), mpath
        assert mpath.relative_to(root).parts[0] == "masks"
        img, mask = Image.open(path), Image.open(mpath)
        assert img.mode == "RGB" and img.size == SMALL
        assert mask.mode == "L" and mask.size == SMALL
        m = np.asarray(mask)
        assert set(np.unique(m)) <= {0, 255}
        fractions.append((m > 0).mean())
    # Small lesions (testbed v2): a few percent of the field, exactly the drawn share.
    lo, hi = testbed.LESION_FRACTION
    assert lo - 0.005 <= min(fractions) and max(fractions) <= hi + 0.005


def test_mask_path_and_manifest_from_any_level(tiny):
    root, summary = tiny
    image = _images(root)[0]
    archive = root / "BreaKHis_v1"
    assert testbed.mask_path(image, root) == testbed.mask_path(image, archive)
    rel = image.relative_to(root)
    assert testbed.mask_path(rel, root) == root / "masks" / rel
    for where in (root, archive, archive / "histology_slides"):
        manifest = testbed.read_manifest(where)
        # On disk the size keeps its old field name, "preset", and the generator its old
        # module name: testbeds (and caches) written before the rename stay valid.
        assert manifest is not None and manifest["preset"] == "tiny"
        assert manifest["generator"] == "breastzoo.data.synth"
    assert manifest["images"] == summary["images"] and manifest["image_size"] == list(SMALL)
    assert manifest["version"] == testbed.SYNTH_VERSION
    assert testbed.read_manifest(root.parent / "nothing-here") is None


def test_index_and_patient_split_accept_the_tree(tiny):
    from breastzoo.data.breakhis import index_breakhis
    from breastzoo.data.splits import split_patients

    root, summary = tiny
    index = index_breakhis(root, min_size=16)
    assert len(index.records) == summary["images"] and not index.skipped
    split = split_patients(index.filter("100X").records, seed=0)
    parts = {name: {r.subtype for r in recs} for name, recs in split.assign(index.records).items()}
    assert parts["train"] == parts["val"] == parts["test"] == set(SUBTYPES)


def test_same_seed_same_bytes_whatever_the_workers(tiny, tmp_path):
    root, _ = tiny
    again = testbed.synthesize(tmp_path / "again", size="tiny", seed=0, image_size=SMALL, workers=2)
    assert _digest(root) == _digest(Path(again["root"]))


def test_different_seed_different_testbed(tiny, tmp_path):
    root, _ = tiny
    other = testbed.synthesize(tmp_path / "other", size="tiny", seed=1, image_size=SMALL, workers=1)
    a, b = _digest(root), _digest(Path(other["root"]))
    assert a != b
    shared = set(a) & set(b) - {"testbed.json"}
    assert all(a[k] != b[k] for k in shared)


def test_subtypes_differ_in_lesion_morphology():
    r = testbed.NUCLEUS_RADIUS_40X * testbed.MAG_SCALE["200X"]
    yy, xx = np.mgrid[-8:9, -8:9]
    disc = xx**2 + yy**2 <= (1.2 * r) ** 2

    def large_dark_share(subtype: str) -> float:
        # Granulometry: the share of the lesion's darkest 30% that survives an opening with a
        # disc of 1.2 normal nuclear radii, i.e. lies in dark objects larger than that disc.
        # (Testbed v2 gives every lesion one mean darkness, so the threshold is relative.)
        shares = []
        for k in range(4):
            img, mask = testbed.render_image(subtype, "200X", np.random.default_rng(k))
            grey = img.astype(np.float32).mean(-1)
            dark = (grey < np.percentile(grey[mask], 30)) & mask
            shares.append(ndimage.binary_opening(dark, disc).sum() / max(int(dark.sum()), 1))
        return float(np.mean(shares))

    # Ductal carcinoma: large pleomorphic nuclei in sheets; adenosis: small regular nuclei.
    assert large_dark_share("DC") > 3 * large_dark_share("A") + 0.1

    def lesion_grey(subtype: str) -> tuple[float, float]:
        means, detail = [], []
        for k in range(4):
            img, mask = testbed.render_image(
                subtype, "100X", np.random.default_rng(k), size=(240, 180)
            )
            grey = img.astype(np.float32).mean(-1)
            means.append(grey[mask].mean())
            detail.append(np.abs(grey - ndimage.gaussian_filter(grey, 2.0))[mask].mean())
        return float(np.mean(means)), float(np.mean(detail))

    # Testbed v2: mucin pools and carcinoma sheets have one mean brightness (the class is not
    # in the low-pass colour), but sheets of nuclei have much more fine detail than mucin.
    (mc_mean, mc_detail), (dc_mean, dc_detail) = lesion_grey("MC"), lesion_grey("DC")
    assert abs(mc_mean - dc_mean) < 8
    assert dc_detail > 1.3 * mc_detail


def test_render_image_contract():
    img, mask = testbed.render_image("PC", "400X", np.random.default_rng(0), size=(130, 90))
    assert img.shape == (90, 130, 3) and img.dtype == np.uint8
    assert mask.shape == (90, 130) and mask.dtype == bool
    assert testbed.LESION_FRACTION[0] - 0.01 <= mask.mean() <= testbed.LESION_FRACTION[1] + 0.01
    a, _ = testbed.render_image("LC", "40X", np.random.default_rng(5), size=(64, 48))
    b, _ = testbed.render_image("LC", "40X", np.random.default_rng(5), size=(64, 48))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size": "huge"}, "size='huge'"),
        ({"image_size": (700,)}, "image_size="),
        ({"image_size": (8, 460)}, "image_size=(8, 460)"),
        ({"image_size": (70.5, 46)}, "image_size=(70.5, 46)"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(tmp_path, kwargs, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        testbed.synthesize(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_unknown_size_message():
    with pytest.raises(ValueError) as err:
        testbed.plan("huge")
    assert str(err.value) == (
        "Unknown testbed size. Received: size='huge'; expected one of tiny, demo, full"
    )


@pytest.mark.parametrize(("subtype", "mag"), [("XX", "40X"), ("DC", "300X")])
def test_render_image_rejects_unknown_subtype_or_magnification(subtype, mag):
    with pytest.raises(ValueError, match="Received"):
        testbed.render_image(subtype, mag, np.random.default_rng(0), size=(64, 48))


def test_interrupted_run_leaves_nothing_at_out(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = write.write_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash mid-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(write, "write_batch", failing)
    out = tmp_path / "tb"
    with pytest.raises(KeyboardInterrupt):
        testbed.synthesize(out, size="tiny", image_size=(48, 32), workers=1)
    assert calls["n"] == 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary build folder is gone too


def test_cached_rerun_returns_without_regenerating(tiny, monkeypatch):
    root, summary = tiny

    def boom(*args, **kwargs):
        raise AssertionError("regenerated a cached testbed")

    monkeypatch.setattr(write, "write_batch", boom)
    before = _digest(root)
    again = testbed.synthesize(root, size="tiny", seed=0, image_size=SMALL)
    assert again["cached"] is True and not summary["cached"]
    assert {k: again[k] for k in ("images", "patients", "size", "seed", "image_size")} == {
        k: summary[k] for k in ("images", "patients", "size", "seed", "image_size")
    }
    assert _digest(root) == before


def test_refuses_a_non_empty_folder_that_is_not_the_same_testbed(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(ValueError, match="different testbed"):
        testbed.synthesize(root, size="tiny", seed=1, image_size=SMALL)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="non-empty folder"):
        testbed.synthesize(other, size="tiny", image_size=SMALL)
    assert (other / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = testbed.synthesize(empty, size="tiny", image_size=(48, 32), workers=1)
    assert summary["images"] == testbed.SIZES["tiny"].images


def test_cli_synth_takes_size_and_still_accepts_the_hidden_preset(tmp_path):
    from typer.testing import CliRunner

    from breastzoo.cli import app

    runner = CliRunner()
    helptext = runner.invoke(app, ["data", "synth", "--help"]).stdout
    assert "--size" in helptext and "--preset" not in helptext
    args = ["--seed", "0", "--image-size", "48x32", "--json"]
    new = runner.invoke(app, ["data", "synth", str(tmp_path / "a"), "--size", "tiny", *args])
    assert new.exit_code == 0, new.output
    old = runner.invoke(app, ["data", "synth", str(tmp_path / "b"), "--preset", "tiny", *args])
    assert old.exit_code == 0, old.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    both = runner.invoke(app, ["data", "synth", str(tmp_path / "c"), "--size", "tiny",
                               "--preset", "demo", *args])
    assert both.exit_code == 2 and not (tmp_path / "c").exists()


def test_demo_cache_folder_names_carry_the_testbed_version(monkeypatch, tmp_path):
    from breastzoo import paths

    monkeypatch.setenv("BREASTZOO_CACHE", str(tmp_path))
    assert testbed.TESTBED_VERSION == testbed.SYNTH_VERSION == 2
    # A cache written by the v1 generator (testbed-demo-seed0) is never reused.
    assert paths.demo_data_dir() == tmp_path / "data" / "testbed-v2-demo-seed0"
    assert paths.demo_data_dir("tiny", 3).name == "testbed-v2-tiny-seed3"
    assert paths.DEMO_PRESET == paths.DEMO_SIZE == "demo"  # old name kept as an alias
