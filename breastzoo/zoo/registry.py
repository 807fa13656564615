"""Where the zoo lives, what it holds, and whether a published version is intact.

A zoo root is a folder (or an http(s) URL serving one) laid out as::

    <root>/index.json                      names and versions (written by publish; remote zoos)
    <root>/<name>/recipe.yaml              catalogue: the exact `breastzoo fit` arguments
    <root>/<name>/card_template.yaml       catalogue: the hand-written parts of the model card
    <root>/<name>/<N>/                     published version N (immutable), also a SavedModel
        model.keras  saved_model.pb  variables/  card.md  card.json  metadata.json  SHA256SUMS

The root is chosen in this order: an explicit argument, ``$BREASTZOO_ZOO`` (folder or URL),
the checkout's ``zoo/``, then ``<cache>/zoo`` (:func:`breastzoo.paths.cache_dir`). A remote
version is downloaded into ``<cache>/zoo-remote/<url hash>/`` and verified before use; one
folder per URL because two remote zoos may publish different models under the same name and
version.

Only integer-named folders that hold a ``SHA256SUMS`` count as versions. Publishing stages in a
``.staging-*`` sibling and renames it into place, so a half-written version is never seen.

Example:
    >>> check_name("denet_sanet_100x")
    'denet_sanet_100x'
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

SUMS_FILE = "SHA256SUMS"
INDEX_FILE = "index.json"
RECIPE_FILE = "recipe.yaml"
CARD_TEMPLATE_FILE = "card_template.yaml"
STAGING_PREFIX = ".staging-"
ENV_VAR = "BREASTZOO_ZOO"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHUNK = 1 << 20
_HTTP_TIMEOUT = 30.0


def check_name(name: str) -> str:
    """Return ``name`` if it is a plain identifier (letters, digits, underscores).

    Anything else (``"../../etc/passwd"``, ``"a/b"``, ``""``) could address files outside the
    zoo, so it is refused.

    Args:
        name: a model name such as ``"denet_sanet_100x"``.

    Raises:
        ValueError: not a plain identifier.

    Example:
        >>> check_name("hybrid_bach")
        'hybrid_bach'
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            "Model names are plain identifiers (letters, digits and underscores, not starting "
            f"with a digit). Received: name={name!r}"
        )
    return name


def check_version(version: Any) -> int | None:
    """``None`` (latest) or a positive integer version.

    Example:
        >>> check_version("3")
        3
    """
    if version is None:
        return None
    if isinstance(version, bool):
        raise ValueError(f"Versions are positive integers. Received: version={version!r}")
    try:
        value = int(str(version))
    except ValueError:
        raise ValueError(
            f"Versions are positive integers. Received: version={version!r}"
        ) from None
    if value < 1:
        raise ValueError(f"Versions are positive integers. Received: version={version!r}")
    return value


def default_name(model: str, dataset: str, magnification: str | None) -> str:
    """The catalogue name a run publishes under when no ``--name`` is given: the model's zoo
    prefix from the model table (:mod:`breastzoo.models.specs`), then the magnification
    (BreaKHis), ``bach`` or the dataset. A name outside the table is its own prefix.

    Example:
        >>> default_name("denet_sanet", "breakhis", "100X")
        'denet_sanet_100x'
        >>> default_name("hybrid", "breakhis", "200X")
        'hybrid_sep_200x'
        >>> default_name("hybrid", "bach", None)
        'hybrid_bach'
    """
    from breastzoo.models.specs import SPECS

    spec = SPECS.get(model)
    prefix = spec.zoo_prefix if spec else model
    if dataset == "bach":
        return check_name(f"{spec.bach_prefix if spec else model}_bach")
    if magnification:
        return check_name(f"{prefix}_{magnification.lower()}")
    return check_name(f"{prefix}_{dataset}")


# ---------------------------------------------------------------------------- roots


@dataclass(frozen=True)
class ZooRoot:
    """A resolved zoo root.

    Attributes:
        location: the folder or URL as given.
        path: local folder holding the versions (for a URL: its download cache).
        url: the base URL of a remote zoo, else ``None``.
        source: how it was chosen (``"argument"``, ``"$BREASTZOO_ZOO"``, ``"checkout"``,
            ``"cache"``).
    """

    location: str
    path: Path
    url: str | None
    source: str

    @property
    def remote(self) -> bool:
        """Whether this is an http(s) zoo."""
        return self.url is not None


def checkout_zoo() -> Path | None:
    """The ``zoo/`` catalogue of the source checkout this package runs from, if any.

    An installed (non-editable) package has no checkout; a ``pyproject.toml`` beside ``zoo/``
    tells a checkout from an unrelated ``zoo`` folder next to site-packages.
    """
    repo = Path(__file__).resolve().parents[2]
    zoo = repo / "zoo"
    return zoo if zoo.is_dir() and (repo / "pyproject.toml").is_file() else None


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _remote_cache(url: str) -> Path:
    from breastzoo.paths import cache_dir

    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir() / "zoo-remote" / digest


def resolve_root(root: str | Path | None = None) -> ZooRoot:
    """Pick the zoo root: ``root``, then ``$BREASTZOO_ZOO``, the checkout's ``zoo/``, the cache.

    Args:
        root: a folder or an http(s) URL; ``None`` to use the fallbacks.

    Example:
        >>> resolve_root("/tmp/myzoo").path
        PosixPath('/tmp/myzoo')
    """
    from breastzoo.paths import cache_dir

    candidates: list[tuple[str, str | Path | None]] = [
        ("argument", root),
        ("$BREASTZOO_ZOO", os.environ.get(ENV_VAR) or None),
        ("checkout", checkout_zoo()),
        ("cache", cache_dir() / "zoo"),
    ]
    for source, value in candidates:
        if value is None or value == "":
            continue
        text = str(value)
        if _is_url(text):
            url = text.rstrip("/") + "/"
            return ZooRoot(text, _remote_cache(url), url, source)
        return ZooRoot(text, Path(text).expanduser(), None, source)
    raise AssertionError("unreachable: the cache fallback always exists")


# ---------------------------------------------------------------------------- local listing


def local_versions(root_path: Path, name: str) -> list[int]:
    """Published versions of ``name`` under a local root, ascending.

    Example:
        >>> local_versions(Path("/nonexistent"), "x")
        []
    """
    folder = Path(root_path) / check_name(name)
    if not folder.is_dir():
        return []
    out = []
    for child in folder.iterdir():
        if child.name.isdigit() and child.is_dir() and (child / SUMS_FILE).is_file():
            out.append(int(child.name))
    return sorted(out)


def catalogue_names(root_path: Path | None = None) -> list[str]:
    """Names with a folder in the checkout catalogue and/or ``root_path``.

    Example:
        >>> isinstance(catalogue_names(), list)
        True
    """
    names: set[str] = set()
    for base in (checkout_zoo(), root_path):
        if base is None or not Path(base).is_dir():
            continue
        for child in Path(base).iterdir():
            if child.is_dir() and _NAME_RE.match(child.name):
                names.add(child.name)
    return sorted(names)


def _catalogue_file(name: str, filename: str, root_path: Path | None) -> Path | None:
    for base in (root_path, checkout_zoo()):
        if base is not None and (Path(base) / name / filename).is_file():
            return Path(base) / name / filename
    return None


def read_recipe(name: str, root_path: Path | None = None) -> dict | None:
    """The catalogue recipe of ``name`` (``recipe.yaml``), or ``None`` when there is none."""
    return _read_yaml(_catalogue_file(check_name(name), RECIPE_FILE, root_path))


def read_card_template(name: str, root_path: Path | None = None) -> dict | None:
    """The catalogue card template of ``name`` (``card_template.yaml``), or ``None``."""
    return _read_yaml(_catalogue_file(check_name(name), CARD_TEMPLATE_FILE, root_path))


def _read_yaml(path: Path | None) -> dict | None:
    if path is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"Malformed YAML in {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"Expected a mapping in {path}. Received: {type(data).__name__}")
    return data


def unknown_name_error(name: str, known: list[str], where: str) -> ValueError:
    """A ValueError for an unknown model name, suggesting close names (difflib).

    Example:
        >>> str(unknown_name_error("denet_sanet_10x", ["denet_sanet_100x"], "zoo"))[:40]
        "Unknown model name. Received: name='den"
    """
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = f" Known: {', '.join(known)}." if known and not close else ""
    return ValueError(f"Unknown model name. Received: name={name!r} in {where}.{hint}{listing}")


# ---------------------------------------------------------------------------- checksums


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Example:
        >>> len(sha256_file(Path(__file__)))
        64
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def version_files(directory: Path) -> list[str]:
    """Every regular file under ``directory`` as a POSIX relative path, except SHA256SUMS."""
    directory = Path(directory)
    out = []
    for dirpath, _dirs, files in os.walk(directory):
        for f in files:
            rel = (Path(dirpath) / f).relative_to(directory).as_posix()
            if rel != SUMS_FILE:
                out.append(rel)
    return sorted(out)


def write_sums(directory: Path) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum -c`` format) covering every other file.

    Example:
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("a")
        >>> write_sums(d).read_text().split()[1]
        'a.txt'
    """
    from breastzoo.io import atomic_write_bytes

    lines = [f"{sha256_file(Path(directory) / rel)}  {rel}\n" for rel in version_files(directory)]
    return atomic_write_bytes(Path(directory) / SUMS_FILE, "".join(lines).encode())


def _safe_relpath(rel: str, sums: Path) -> str:
    """Refuse SHA256SUMS entries that would point outside the version folder."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or rel.startswith("~"):
        raise ValueError(f"{sums}: unsafe path in SHA256SUMS. Received: {rel!r}")
    return p.as_posix()


def parse_sums(text: str, sums: Path | str = SUMS_FILE) -> dict[str, str]:
    """``{relative path: hex digest}`` from SHA256SUMS text; unsafe paths are refused.

    Example:
        >>> parse_sums("0" * 64 + "  model.keras\\n")
        {'model.keras': '0000000000000000000000000000000000000000000000000000000000000000'}
    """
    out = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        if not m:
            raise ValueError(f"{sums}: malformed line {n}. Received: {line[:80]!r}")
        out[_safe_relpath(m.group(2), Path(sums))] = m.group(1)
    if not out:
        raise ValueError(f"{sums}: lists no files.")
    return out


def verify_dir(directory: Path) -> list[str]:
    """Problems found when checking a version folder against its SHA256SUMS (empty: intact).

    Each problem names the file: a checksum mismatch (tampered or truncated), a listed file
    that is missing, or a file SHA256SUMS does not cover.

    Example:
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("a"); _ = write_sums(d)
        >>> verify_dir(d)
        []
    """
    directory = Path(directory)
    sums = directory / SUMS_FILE
    if not sums.is_file():
        return [f"{sums}: missing; cannot verify this version"]
    try:
        expected = parse_sums(sums.read_text(errors="replace"), sums)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for rel, digest in expected.items():
        path = directory / rel
        if not path.is_file():
            problems.append(f"{path}: listed in SHA256SUMS but missing")
            continue
        actual = sha256_file(path)
        if actual != digest:
            problems.append(
                f"{path}: checksum mismatch ({path.stat().st_size} bytes; expected sha256 "
                f"{digest[:12]}..., got {actual[:12]}...): the file was modified or truncated"
            )
    for rel in version_files(directory):
        if rel not in expected:
            problems.append(f"{directory / rel}: not covered by SHA256SUMS")
    return problems


def check_dir(directory: Path) -> Path:
    """Raise ValueError naming the first bad file unless ``directory`` verifies; return it."""
    problems = verify_dir(directory)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ValueError(f"Refusing to load a corrupted artifact: {problems[0]}{more}")
    return Path(directory)


# ---------------------------------------------------------------------------- remote


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as resp:  # noqa: S310
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise ValueError(f"Remote zoo: HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(f"Remote zoo unreachable: {url} ({exc})") from None


def _remote_index(url: str) -> dict:
    raw = _fetch(urllib.parse.urljoin(url, INDEX_FILE))
    try:
        index = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Remote zoo: malformed {INDEX_FILE} at {url}: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
        raise ValueError(f"Remote zoo: {INDEX_FILE} at {url} has no 'models' mapping.")
    return index


def _download_version(zoo: ZooRoot, name: str, version: int) -> Path:
    """Download ``<url>/<name>/<version>/`` into the cache (staged, verified, renamed)."""
    assert zoo.url is not None
    target = zoo.path / name / str(version)
    if target.is_dir() and not verify_dir(target):
        return target
    base = urllib.parse.urljoin(zoo.url, f"{name}/{version}/")
    sums_bytes = _fetch(base + SUMS_FILE)
    expected = parse_sums(sums_bytes.decode(errors="replace"), base + SUMS_FILE)
    (zoo.path / name).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-",
                                    dir=zoo.path / name))
    try:
        for rel in expected:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(_fetch(base + urllib.parse.quote(rel)))
        (staging / SUMS_FILE).write_bytes(sums_bytes)
        check_dir(staging)
        if target.is_dir():  # a corrupted earlier download: replace it
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------------- lookup


def known_names(zoo: ZooRoot) -> list[str]:
    """Names the root knows (catalogue folders, published names, a remote index)."""
    names = set(catalogue_names(None if zoo.remote else zoo.path))
    if zoo.remote:
        try:
            names |= set(_remote_index(zoo.url or "")["models"])
        except ValueError:
            names |= set(catalogue_names(zoo.path))
    return sorted(names)


def versions(name: str, root: str | Path | ZooRoot | None = None) -> list[int]:
    """Published versions of ``name`` (ascending) in the resolved zoo.

    Example:
        >>> versions("no_such_model", "/nonexistent")
        []
    """
    zoo = root if isinstance(root, ZooRoot) else resolve_root(root)
    check_name(name)
    if not zoo.remote:
        return local_versions(zoo.path, name)
    try:
        entry = _remote_index(zoo.url or "")["models"].get(name) or {}
        return sorted(int(v) for v in entry.get("versions", []))
    except ValueError:
        return local_versions(zoo.path, name)  # offline: what was downloaded before


def locate(
    name: str, version: int | None = None, root: str | Path | ZooRoot | None = None
) -> Path:
    """Folder of a published version (downloaded first for a remote zoo), not yet verified.

    Args:
        name: model name (plain identifier).
        version: integer version; ``None`` for the latest.
        root: zoo root (see :func:`resolve_root`).

    Raises:
        ValueError: bad or unknown name (with close-name suggestions), no published version,
            or an unknown version.

    Example:
        >>> locate("denet_sanet_100x", root="/tmp/empty_zoo")  # doctest: +SKIP
    """
    check_name(name)
    version = check_version(version)
    zoo = root if isinstance(root, ZooRoot) else resolve_root(root)
    found = versions(name, zoo)
    if not found:
        known = known_names(zoo)
        if name not in known:
            raise unknown_name_error(name, known, f"zoo {zoo.location}")
        raise ValueError(
            f"No published version of {name!r} in zoo {zoo.location}. Publish one with "
            f"`breastzoo zoo publish RUN_DIR --name {name}` or `breastzoo fit ... --publish "
            f"--name {name}` (the recipe is in zoo/{name}/{RECIPE_FILE})."
        )
    chosen = found[-1] if version is None else version
    if chosen not in found:
        raise ValueError(
            f"Unknown version of {name!r}. Received: version={version}; published: "
            f"{', '.join(map(str, found))}"
        )
    if zoo.remote:
        return _download_version(zoo, name, chosen)
    return zoo.path / name / str(chosen)


def write_index(root_path: Path) -> Path:
    """(Re)write ``<root>/index.json`` from the folders on disk, under a lock.

    Scanning the disk instead of editing the old index means concurrent publishers converge:
    whoever writes last has seen every rename that happened before its scan.
    """
    import fcntl

    from breastzoo.io import atomic_write_json

    root_path = Path(root_path)
    root_path.mkdir(parents=True, exist_ok=True)
    with open(root_path / ".index.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        models = {}
        for name in catalogue_names(root_path):
            found = local_versions(root_path, name)
            if found:
                models[name] = {"versions": found, "latest": found[-1]}
        return atomic_write_json(root_path / INDEX_FILE, {"format": 1, "models": models})


def read_card(directory: Path) -> dict:
    """``card.json`` of a version folder (``{}`` when absent)."""
    path = Path(directory) / "card.json"
    if not path.is_file():
        return {}
    from breastzoo.io import read_json

    return read_json(path)


# ---------------------------------------------------------------------------- list/show/verify


def list_models(root: str | Path | ZooRoot | None = None) -> dict:
    """Every catalogue or published name with its versions and latest card summary.

    Returns:
        ``{"root", "source", "models": [{"name", "versions", "latest", "recipe",
        "architecture", "magnification", "synthetic", "irr", "prr"}]}``.

    Example:
        >>> list_models("/nonexistent")["models"] == [] or True
        True
    """
    zoo = root if isinstance(root, ZooRoot) else resolve_root(root)
    rows = []
    for name in known_names(zoo):
        found = versions(name, zoo)
        row: dict[str, Any] = {"name": name, "versions": found,
                               "latest": found[-1] if found else None,
                               "recipe": read_recipe(name, None if zoo.remote else zoo.path)
                               is not None}
        card = {}
        if found and not zoo.remote:
            card = read_card(zoo.path / name / str(found[-1]))
        elif found and (zoo.path / name / str(found[-1])).is_dir():
            card = read_card(zoo.path / name / str(found[-1]))  # downloaded before
        metrics = next(iter(((card.get("metrics") or {}).get("per_magnification") or {})
                            .values()), {})
        row.update(
            architecture=(card.get("model_details") or {}).get("architecture"),
            magnification=(card.get("input") or {}).get("magnification"),
            synthetic=(card.get("training_data") or {}).get("synthetic"),
            irr=metrics.get("irr"), prr=metrics.get("prr"),
        )
        rows.append(row)
    return {"root": zoo.location, "source": zoo.source, "models": rows}


def show(name: str, version: int | None = None,
         root: str | Path | ZooRoot | None = None) -> dict:
    """Card, metadata, files and path of a published version (downloaded if remote).

    Example:
        >>> show("denet_sanet_100x")["card"]["name"]  # doctest: +SKIP
        'denet_sanet_100x'
    """
    from breastzoo.io import read_json

    zoo = root if isinstance(root, ZooRoot) else resolve_root(root)
    directory = locate(name, version, zoo)
    meta = directory / "metadata.json"
    return {
        "name": name,
        "version": int(directory.name),
        "versions": versions(name, zoo),
        "path": str(directory),
        "card": read_card(directory),
        "metadata": read_json(meta) if meta.is_file() else {},
        "files": {rel: (directory / rel).stat().st_size for rel in version_files(directory)},
    }


def verify(name: str, version: int | None = None,
           root: str | Path | ZooRoot | None = None) -> dict:
    """Check one version (or every version when ``version`` is ``None``) against SHA256SUMS.

    Returns:
        ``{"name", "ok", "versions": [{"version", "path", "ok", "files", "problems"}]}``.

    Example:
        >>> verify("denet_sanet_100x")["ok"]  # doctest: +SKIP
        True
    """
    zoo = root if isinstance(root, ZooRoot) else resolve_root(root)
    check_name(name)
    wanted = [check_version(version)] if version is not None else versions(name, zoo)
    if not wanted:
        locate(name, None, zoo)  # raises the unknown-name / nothing-published error
    out = []
    for v in wanted:
        directory = locate(name, v, zoo)
        problems = verify_dir(directory)
        out.append({"version": v, "path": str(directory), "ok": not problems,
                    "files": len(version_files(directory)), "problems": problems})
    return {"name": name, "ok": all(r["ok"] for r in out), "versions": out}
