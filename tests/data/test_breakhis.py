"""BreaKHis indexing on realistic trees: grammar, folder cross-checks, root levels, bad files."""

from __future__ import annotations

import shutil

import pytest

from breastzoo.data.breakhis import (
    archive_relpath,
    folder_conflict,
    format_filename,
    index_breakhis,
    parse_filename,
)
from breastzoo.data.constants import MAGNIFICATIONS, SUBTYPE_CLASS, SUBTYPES
from breastzoo.data.index import detect_dataset, index_dataset
from tests.data.trees import REAL_PATIENTS, breakhis_relpath, make_breakhis, write_png


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SOB_B_A-14-22549AB-40-001.png", ("benign", "A", "14-22549AB", "40X", "001")),
        ("SOB_M_DC-14-2523-400-012.png", ("malignant", "DC", "14-2523", "400X", "012")),
        ("sob_m_mc-14-13418de-100-5.PNG", ("malignant", "MC", "14-13418DE", "100X", "5")),
        ("SOB_B_F-14-14134E-200-010.png", ("benign", "F", "14-14134E", "200X", "010")),
    ],
)
def test_parse_filename_real_names(name, expected):
    p = parse_filename(name)
    assert (p["label"], p["subtype"], p["patient"], p["magnification"], p["seq"]) == expected


@pytest.mark.parametrize(
    "name",
    [
        "SOB_B_DC-14-2523-40-001.png",  # benign letter with a malignant subtype
        "SOB_B_XX-14-2523-40-001.png",  # unknown subtype
        "SOB_B_A-14-22549AB-50-001.png",  # unknown magnification
        "SOB_B_A_14-22549AB-40-001.png",  # folder-style underscore in a file name
        "image_001.png",
        "SOB_B_A-14-22549AB-40-001.txt",
    ],
)
def test_parse_filename_rejects_broken_grammar(name):
    assert parse_filename(name) is None


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_format_filename_is_the_inverse_of_parse_filename(subtype):
    for mag in MAGNIFICATIONS:
        name = format_filename(subtype, "14-22549AB", mag, 7)
        assert parse_filename(name) == {"label": SUBTYPE_CLASS[subtype], "subtype": subtype,
                                        "patient": "14-22549AB", "magnification": mag,
                                        "seq": "007"}
        rel = archive_relpath(subtype, "14-22549AB", mag, 7).split("/")
        assert rel[0] == "BreaKHis_v1" and rel[-1] == name
        assert folder_conflict(tuple(rel[1:-1]), parse_filename(name)) is None
    # The independent copy of the grammar the tree builder of these tests uses agrees.
    assert "/".join(rel[1:]) == breakhis_relpath(subtype, "14-22549AB", 400, 7).as_posix()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("XX", "p", "40X", 1), "subtype='XX'"), (("DC", "p", "40", 1), "magnification='40'")],
)
def test_format_filename_rejects_unknown_codes(args, needle):
    with pytest.raises(ValueError, match=needle):
        format_filename(*args)
    with pytest.raises(ValueError, match=needle):
        archive_relpath(*args)


def test_folder_conflict_detects_moved_files():
    p = parse_filename("SOB_B_A-14-22549AB-40-001.png")
    assert folder_conflict(("benign", "SOB", "adenosis", "SOB_B_A_14-22549AB", "40X"), p) is None
    assert "100X" in folder_conflict(("100X",), p)
    assert "malignant" in folder_conflict(("malignant",), p)
    assert "fibroadenoma" in folder_conflict(("fibroadenoma",), p)
    assert "14-9133" in folder_conflict(("SOB_B_A_14-9133",), p)
    assert folder_conflict(("BENIGN", "Adenosis", "40x"), p) is None  # case-insensitive


def test_index_counts_and_fields(tmp_path):
    make_breakhis(tmp_path, mags=(40, 100), per_mag=2)
    idx = index_breakhis(tmp_path)
    n_patients = sum(len(v) for v in REAL_PATIENTS.values())
    assert len(idx.records) == n_patients * 2 * 2
    assert idx.skipped == []
    assert len(idx.patients()) == n_patients  # 14-22549AB and 14-22549CD count separately
    r = next(r for r in idx.records if r.patient == "14-13418DE")
    assert (r.dataset, r.label, r.subtype) == ("breakhis", "malignant", "MC")
    s = idx.summary()
    assert s["by_magnification"]["40X"] == {"images": n_patients * 2, "patients": n_patients}
    assert s["by_subtype"]["A"] == {"images": 3 * 4, "patients": 3}
    assert idx.filter("100").summary()["images"] == n_patients * 2


@pytest.mark.parametrize(
    "level", ["", "BreaKHis_v1", "BreaKHis_v1/histology_slides/breast",
              "BreaKHis_v1/histology_slides/breast/benign"],
)
def test_root_at_any_level(tmp_path, level):
    make_breakhis(tmp_path)
    idx = index_dataset(tmp_path / level)
    assert idx.dataset == "breakhis"
    expected = index_breakhis(tmp_path).records
    if level.endswith("benign"):
        expected = [r for r in expected if r.label == "benign"]
    assert [r.path for r in idx.records] == [r.path for r in expected]


def test_sibling_tree_outside_archive_is_ignored(tmp_path):
    """A mirror of the archive next to BreaKHis_v1 (the testbed's masks/) is not indexed."""
    archive = make_breakhis(tmp_path)
    shutil.copytree(archive, tmp_path / "masks" / "BreaKHis_v1")
    assert len(index_breakhis(tmp_path).records) == len(index_breakhis(archive).records)


def test_bad_files_are_skipped_with_reasons_and_good_ones_kept(tmp_path):
    archive = make_breakhis(tmp_path, mags=(40,), per_mag=1)
    good = len(index_breakhis(tmp_path).records)
    base = archive / breakhis_relpath("DC", "14-2523", 40, 1).parent
    (base / "SOB_M_DC-14-2523-40-050.png").write_bytes(b"")
    full = (base / "SOB_M_DC-14-2523-40-001.png").read_bytes()
    (base / "SOB_M_DC-14-2523-40-051.png").write_bytes(full[: len(full) // 2])
    (base / "SOB_M_DC-14-2523-40-052.png").write_text("this is not an image")
    (base / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (base / "Thumbs.db").write_bytes(b"\0" * 10)
    write_png(base / "copy of SOB_M_DC-14-2523-40-001.png")
    write_png(base / "SOB_M_DC-14-2523-40-053.png", size=(20, 12))
    write_png(base / "SOB_M_DC-14-2523-40-054.png", mode="L")
    write_png(base / "SOB_M_DC-14-2523-40-055.png", mode="RGBA")
    write_png(base / "SOB_M_DC-14-2523-40-056.png", mode="I;16")
    write_png(base.parent / "100X" / "SOB_M_DC-14-2523-40-057.png")  # wrong mag folder
    (archive / "histology_slides" / "breast" / "empty_folder").mkdir()

    idx = index_breakhis(tmp_path)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in idx.skipped}
    assert reasons["SOB_M_DC-14-2523-40-050.png"] == "empty file (0 bytes)"
    assert "truncated" in reasons["SOB_M_DC-14-2523-40-051.png"]
    assert "not a readable image" in reasons["SOB_M_DC-14-2523-40-052.png"]
    assert reasons[".DS_Store"] == reasons["Thumbs.db"] == "system file, not an image"
    assert "grammar" in reasons["copy of SOB_M_DC-14-2523-40-001.png"]
    assert "too small" in reasons["SOB_M_DC-14-2523-40-053.png"]
    assert "folder says 100X" in reasons["SOB_M_DC-14-2523-40-057.png"]
    assert len(idx.skipped) == 8
    notes = {r.path.rsplit("/", 1)[-1]: r.note for r in idx.records if r.note}
    assert "grayscale" in notes["SOB_M_DC-14-2523-40-054.png"]
    assert "alpha" in notes["SOB_M_DC-14-2523-40-055.png"]
    assert "16-bit" in notes["SOB_M_DC-14-2523-40-056.png"]
    assert len(idx.records) == good + 3
    assert idx.summary()["skipped"][0].keys() == {"path", "reason"}


def test_duplicate_file_names_are_skipped(tmp_path):
    archive = make_breakhis(tmp_path, mags=(40,), per_mag=1)
    src = archive / breakhis_relpath("A", "14-22549AB", 40, 1)
    dst = archive / "extra" / src.name
    dst.parent.mkdir()
    shutil.copy(src, dst)
    idx = index_breakhis(tmp_path)
    assert [s.reason.split(" ")[0] for s in idx.skipped] == ["duplicate"]


def test_missing_root_is_a_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="does_not_exist"):
        index_dataset(tmp_path / "does_not_exist")
    with pytest.raises(ValueError, match="dataset='cifar'"):
        index_dataset(tmp_path, "cifar")


def test_detect_dataset(tmp_path):
    make_breakhis(tmp_path / "bk")
    (tmp_path / "plain" / "benign").mkdir(parents=True)
    write_png(tmp_path / "plain" / "benign" / "x.png")
    assert detect_dataset(tmp_path / "bk") == "breakhis"
    assert detect_dataset(tmp_path / "plain") == "folder"
