"""Zoo root resolution, names, SHA256SUMS and verification (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from breastzoo.zoo import registry


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", "", "1model", "name.v1", "..",
                                 "x y", "/abs"])
def test_names_must_be_plain_identifiers(bad):
    with pytest.raises(ValueError, match="plain identifiers"):
        registry.check_name(bad)


def test_traversal_name_is_refused_before_touching_disk(tmp_path):
    with pytest.raises(ValueError, match=r"Received: name='\.\./\.\./etc/passwd'"):
        registry.locate("../../etc/passwd", root=tmp_path)


@pytest.mark.parametrize("bad", [0, -1, "x", True])
def test_versions_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integers"):
        registry.check_version(bad)


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BREASTZOO_ZOO", str(tmp_path / "env"))
    assert registry.resolve_root(tmp_path / "arg").path == tmp_path / "arg"
    assert registry.resolve_root().source == "$BREASTZOO_ZOO"
    monkeypatch.delenv("BREASTZOO_ZOO")
    checkout = registry.checkout_zoo()
    assert checkout is not None and (checkout / "denet_sanet_100x" / "recipe.yaml").is_file()
    assert registry.resolve_root().path == checkout
    monkeypatch.setattr(registry, "checkout_zoo", lambda: None)
    zoo = registry.resolve_root()
    assert zoo.source == "cache" and zoo.path == tmp_path / "cache" / "zoo"


def test_url_root_downloads_into_a_per_url_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTZOO_CACHE", str(tmp_path))
    a = registry.resolve_root("http://127.0.0.1:1/zoo")
    b = registry.resolve_root("https://example.org/zoo/")
    assert a.remote and a.url == "http://127.0.0.1:1/zoo/"
    assert a.path.parent == tmp_path / "zoo-remote" and a.path != b.path


def test_catalogue_has_every_model_of_the_issue():
    names = registry.catalogue_names()
    expected = {"hybrid_bach"} | {
        f"{prefix}_{mag}x" for prefix in ("denet_sanet", "hybrid_sep", "hybrid_sep50")
        for mag in (40, 100, 200, 400)
    }
    assert expected <= set(names)
    for name in expected:
        recipe = registry.read_recipe(name)
        assert recipe["fit"][0] in ("breakhis", "bach") and "--model" in recipe["fit"]
        template = registry.read_card_template(name)
        assert template["on_size_mismatch"] in ("pad", "resize", "error")
        assert all(isinstance(c, str) for c in template["caveats"])


@pytest.mark.parametrize("name", ["denet_sanet_40x", "hybrid_sep_200x", "hybrid_bach"])
def test_recipes_are_valid_fit_arguments(name, monkeypatch):
    """The catalogue's `fit` lists parse with the real `breastzoo fit` (training stubbed)."""
    from typer.testing import CliRunner

    import breastzoo.workflow
    from breastzoo.cli import app

    seen = {}

    def fake_fit(dataset, **kwargs):
        seen.update(kwargs, dataset=dataset)
        return {"run_dir": "runs/x", "metrics": {}}

    monkeypatch.setattr(breastzoo.workflow, "fit", fake_fit)
    args = [str(a) for a in registry.read_recipe(name)["fit"]]
    from breastzoo.commands.fit import ModelName

    if args[args.index("--model") + 1] not in {m.value for m in ModelName}:
        pytest.skip("`fit --model hybrid` is not in this checkout yet (issue 4)")
    result = CliRunner().invoke(app, ["fit", *args, "--data", "demo", "--publish", "--name",
                                      name, "--json"])
    assert result.exit_code == 0, result.output
    assert seen["dataset"] == args[0] and seen["publish"] and seen["publish_name"] == name
    assert seen["config"].model == args[args.index("--model") + 1]


def test_default_names_match_the_catalogue():
    assert registry.default_name("denet_sanet", "breakhis", "40X") == "denet_sanet_40x"
    assert registry.default_name("hybrid", "breakhis", "200X") == "hybrid_sep_200x"
    assert registry.default_name("hybrid", "bach", None) == "hybrid_bach"


def test_default_names_and_cli_choices_come_from_the_model_table():
    from breastzoo.commands.fit import ModelName
    from breastzoo.models.specs import SPECS

    assert [m.value for m in ModelName] == list(SPECS)
    for name, spec in SPECS.items():
        assert registry.default_name(name, "breakhis", "100X") == f"{spec.zoo_prefix}_100x"
        assert registry.default_name(name, "bach", None) == f"{spec.bach_prefix}_bach"
    assert registry.default_name("not_in_the_table", "breakhis", None) == (
        "not_in_the_table_breakhis")


def _version(root: Path, name: str, v: int, files: dict[str, bytes]) -> Path:
    d = root / name / str(v)
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    registry.write_sums(d)
    return d


def test_sums_cover_every_file_and_detect_changes(tmp_path):
    d = _version(tmp_path, "m", 1, {"model.keras": b"weights", "variables/v.index": b"idx"})
    assert registry.verify_dir(d) == []
    listed = registry.parse_sums((d / "SHA256SUMS").read_text())
    assert set(listed) == {"model.keras", "variables/v.index"}

    (d / "variables" / "v.index").write_bytes(b"idX")
    (d / "extra.txt").write_text("sneaked in")
    problems = registry.verify_dir(d)
    assert any("v.index: checksum mismatch" in p for p in problems)
    assert any("extra.txt: not covered" in p for p in problems)
    (d / "model.keras").unlink()
    with pytest.raises(ValueError, match=r"model\.keras: listed in SHA256SUMS but missing"):
        registry.check_dir(d)


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "a/../../b", "~/x"])
def test_unsafe_paths_in_sums_are_refused(rel):
    with pytest.raises(ValueError, match="unsafe path"):
        registry.parse_sums("0" * 64 + f"  {rel}\n")


def test_only_complete_integer_folders_are_versions(tmp_path):
    _version(tmp_path, "m", 1, {"a": b"1"})
    _version(tmp_path, "m", 3, {"a": b"3"})
    (tmp_path / "m" / "4").mkdir()  # no SHA256SUMS: not a version
    (tmp_path / "m" / ".staging-1-x").mkdir()
    assert registry.versions("m", tmp_path) == [1, 3]
    assert registry.locate("m", root=tmp_path) == tmp_path / "m" / "3"
    with pytest.raises(ValueError, match=r"Unknown version of 'm'. Received: version=2"):
        registry.locate("m", 2, root=tmp_path)


def test_unknown_names_get_close_suggestions(tmp_path):
    _version(tmp_path, "tiny_denet", 1, {"a": b"1"})
    with pytest.raises(ValueError, match="Did you mean 'tiny_denet'"):
        registry.locate("tiny_denat", root=tmp_path)
    with pytest.raises(ValueError, match="Did you mean 'denet_sanet_100x'"):
        registry.locate("denet_sanet_10x", root=tmp_path)  # catalogue names count too


def test_catalogue_name_without_versions_says_how_to_publish(tmp_path):
    with pytest.raises(ValueError, match="No published version of 'hybrid_bach'.*zoo publish"):
        registry.locate("hybrid_bach", root=tmp_path)


def test_list_show_verify(tmp_path):
    _version(tmp_path, "m", 1, {"card.json": b'{"name": "m"}', "x": b"1"})
    _version(tmp_path, "m", 2, {"card.json": b'{"name": "m"}', "x": b"2"})
    rows = {r["name"]: r for r in registry.list_models(tmp_path)["models"]}
    assert rows["m"]["versions"] == [1, 2] and rows["m"]["latest"] == 2
    assert rows["denet_sanet_100x"]["versions"] == [] and rows["denet_sanet_100x"]["recipe"]
    shown = registry.show("m", root=tmp_path)
    assert shown["version"] == 2 and shown["card"] == {"name": "m"} and "x" in shown["files"]
    assert registry.verify("m", root=tmp_path)["ok"]
    (tmp_path / "m" / "1" / "x").write_bytes(b"changed")
    report = registry.verify("m", root=tmp_path)
    assert not report["ok"]
    bad = [r for r in report["versions"] if not r["ok"]]
    assert [r["version"] for r in bad] == [1] and "x: checksum mismatch" in bad[0]["problems"][0]


def test_index_lists_published_versions(tmp_path):
    _version(tmp_path, "m", 1, {"a": b"1"})
    _version(tmp_path, "m", 2, {"a": b"2"})
    import json

    index = json.loads(registry.write_index(tmp_path).read_text())
    assert index["models"] == {"m": {"versions": [1, 2], "latest": 2}}
