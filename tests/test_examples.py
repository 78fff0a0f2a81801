"""The example plugins in ``examples/``: discovered through entry points, usable from a run file.

The in-process tests feed the example modules to a fresh :class:`PluginHost` through fake entry
points. ``test_installed_example_plugins`` pip-installs both examples into a throw-away virtual
environment layered over the current one (offline: no dependencies, no build isolation) and
drives the real command line there.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from medtoolkit.config import apply_overrides, load_yaml, validate_config
from medtoolkit.plugins import ENTRY_POINT_GROUP, PluginHost
from medtoolkit.presets import preset_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BAGOFCODES = EXAMPLES / "medtoolkit-bagofcodes"
BROKEN = EXAMPLES / "medtoolkit-broken"
RUN_FILE = EXAMPLES / "bagofcodes_gamenet.yaml"


#: example project -> (distribution, version, entry-point name, module), as its pyproject declares
DECLARED = {
    BAGOFCODES: ("medtoolkit-bagofcodes", "0.1.0", "bagofcodes", "medtoolkit_bagofcodes"),
    BROKEN: ("medtoolkit-broken", "0.0.1", "broken", "medtoolkit_broken"),
}


@dataclass(frozen=True)
class FakeDistribution:
    name: str
    version: str


@dataclass(frozen=True)
class FileEntryPoint:
    """An entry point whose ``load()`` executes the example's module file, as an install would."""

    name: str
    value: str
    dist: FakeDistribution
    path: Path
    group: str = ENTRY_POINT_GROUP

    def load(self) -> ModuleType:
        spec = importlib.util.spec_from_file_location(self.value, self.path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[self.value] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules[self.value] = None  # type: ignore[assignment]
            raise
        return module


@pytest.fixture
def example_host(monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    """A host that discovers both examples through (fake) installed entry points."""
    points = []
    for project, (distribution, version, name, module) in DECLARED.items():
        points.append(FileEntryPoint(name, module, FakeDistribution(distribution, version), project / f"{module}.py"))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [p for p in points if p.group == group])
    monkeypatch.delenv("MEDTOOLKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MEDTOOLKIT_DISABLE_PLUGINS", raising=False)
    for point in points:  # load() puts the modules there; undone after the test
        monkeypatch.setitem(sys.modules, point.value, None)
    return PluginHost()


def by_name(host: PluginHost) -> dict[str, Any]:
    return {p.name: p for p in host.plugins}


@pytest.mark.parametrize("project", list(DECLARED), ids=lambda p: p.name)
def test_example_pyprojects_declare_their_entry_point(project: Path) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    distribution, version, name, module = DECLARED[project]
    assert (meta["name"], meta["version"]) == (distribution, version)
    assert meta["entry-points"] == {ENTRY_POINT_GROUP: {name: module}}


def test_example_module_is_a_small_plugin() -> None:
    lines = (BAGOFCODES / "medtoolkit_bagofcodes.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 30, f"the README promises a module under 30 lines; it has {len(lines)}"


def test_bagofcodes_registers_and_broken_plugin_is_isolated(example_host: PluginHost) -> None:
    plugins = by_name(example_host)
    good = plugins["medtoolkit-bagofcodes"]
    assert (good.status, good.version, good.registered) == ("ok", "0.1.0", {"encoder": ["bag_of_codes"]})
    entry = example_host.registry("encoder").get("bag_of_codes")
    assert (entry.plugin, entry.version, entry.obj.__name__) == ("medtoolkit-bagofcodes", "0.1.0", "BagOfCodesEncoder")
    broken = plugins["medtoolkit-broken"]
    assert (broken.status, broken.version, broken.module) == ("broken", "0.0.1", "medtoolkit_broken")
    assert broken.error.startswith("import failed: ImportError: medtoolkit-broken needs 'torch_imaginary'")


def test_disabling_the_broken_example(monkeypatch: pytest.MonkeyPatch, example_host: PluginHost) -> None:
    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", "medtoolkit-broken")
    plugins = by_name(PluginHost())
    assert plugins["medtoolkit-broken"].status == "disabled"
    assert plugins["medtoolkit-bagofcodes"].status == "ok"


def test_run_file_with_the_plugin_disabled_says_so(monkeypatch: pytest.MonkeyPatch, example_host: PluginHost) -> None:
    monkeypatch.setenv("MEDTOOLKIT_DISABLE_PLUGINS", "medtoolkit_bagofcodes")
    with pytest.raises(ValueError) as caught:
        validate_config(load_yaml(RUN_FILE), PluginHost(), source=str(RUN_FILE))
    (error,) = caught.value.errors
    assert error.path == "model.encoder.type"
    assert "Plugins not loaded: medtoolkit-bagofcodes (disabled), medtoolkit-broken (broken)" in error.message


def test_run_file_uses_bag_of_codes_as_gamenet_encoder(example_host: PluginHost) -> None:
    config = validate_config(load_yaml(RUN_FILE), example_host, source=str(RUN_FILE))
    assert config.model.type == "gamenet"
    encoder = config.model.params.encoder
    assert encoder.type == "bag_of_codes"
    assert encoder.component is example_host.get("encoder", "bag_of_codes")
    assert config.dataset.type == "synthetic"


def test_run_file_without_the_plugin_names_the_problem() -> None:
    host = PluginHost(load_entry_points=False)
    with pytest.raises(ValueError, match=r"model\.encoder\.type: unknown encoder 'bag_of_codes'"):
        validate_config(load_yaml(RUN_FILE), host, source=str(RUN_FILE))


def test_override_switches_the_gamenet_preset_to_bag_of_codes(example_host: PluginHost) -> None:
    preset = preset_config("gamenet", host=example_host)
    raw, notes = apply_overrides(preset, ["model.encoder.type=bag_of_codes", "model.encoder.output_dim=32"])
    assert notes == [
        "model.encoder: switched type 'gru' -> 'bag_of_codes'; "
        "reset parameters dropout, embedding_dim, hidden_dim, output_dim"
    ]
    encoder = validate_config(raw, example_host).model.params.encoder
    assert (encoder.type, encoder.params.output_dim) == ("bag_of_codes", 32)


# ---------------------------------------------------------------------------- a real install
def make_layered_venv(path: Path) -> Path:
    """A venv that sees this environment's packages (torch, medtoolkit, pip, setuptools).

    ``--system-site-packages`` only exposes the base interpreter's packages, so a ``.pth`` file
    adds this environment's site-packages (processing its ``.pth`` files, which is how the
    editable medtoolkit is found). Returns the new interpreter.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True
    )
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_medtoolkit_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDTOOLKIT_", "PYTEST_", "PYTHON"))}
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_installed_example_plugins(tmp_path: Path) -> None:
    # copies, so that building them leaves no build/ or egg-info behind in the repository
    sources = [shutil.copytree(p, tmp_path / p.name, ignore=shutil.ignore_patterns("build", "*.egg-info"))
               for p in (BAGOFCODES, BROKEN)]
    python = make_layered_venv(tmp_path / "venv")
    installed = run(
        python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--quiet", *map(str, sources), cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    listed = run(python, "-m", "medtoolkit", "plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["medtoolkit"]["status"] == "ok"
    assert plugins["medtoolkit-bagofcodes"]["status"] == "ok"
    assert plugins["medtoolkit-bagofcodes"]["registered"] == {"encoder": ["bag_of_codes"]}
    assert plugins["medtoolkit-broken"]["status"] == "broken"
    assert "torch_imaginary" in plugins["medtoolkit-broken"]["error"]

    table = run(python, "-m", "medtoolkit", "plugins", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:] if line.strip()}
    assert "bag_of_codes" in rows["medtoolkit-bagofcodes"]
    assert " broken " in rows["medtoolkit-broken"]

    validated = run(python, "-m", "medtoolkit", "validate", str(RUN_FILE), cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "model=gamenet" in validated.stdout

    # the example's own test suite, against the installed plugin
    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(sources[0] / "tests"), cwd=sources[0])
    assert tests.returncode == 0, tests.stdout + tests.stderr
