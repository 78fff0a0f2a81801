"""Packaging: wheels built by ``scripts/build_wheels.py`` install and run in a fresh venv.

The documented route (``docs/packaging.rst``): build the core's and every plugin's wheel into
one folder, then in a new virtual environment ``pip install torch==2.13.0`` (pinned first: a
bare ``torch`` requirement may pull a multi-GB CUDA build) and
``pip install --find-links FOLDER "medtoolkit[dnmdr]"``, which installs medtoolkit,
medtoolkit-dnmdr and medtoolkit-molecule from the folder and their dependencies from the index.
The CLI in that venv then lists both plugins and trains on the built-in demo.

The venv tests are slow (about 80 s here: a venv with torch, rdkit and torch-geometric) and
skip when no venv can be created or the package index cannot be reached. The fast tests build a
tiny fake checkout offline (``--no-build-isolation``): stale ``build/`` and ``*.egg-info``
folders stay out of the wheels, and a plugin that fails to build is named in one ``error:`` line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
EXTRA = "dnmdr"
#: the distributions ``medtoolkit[dnmdr]`` installs from the wheel folder
FROM_WHEELS = ("medtoolkit", "medtoolkit-dnmdr", "medtoolkit-molecule")
PLUGINS = ("medtoolkit-dnmdr", "medtoolkit-molecule")
#: pip output that means the index (or the network) is unreachable, not that a package is wrong
NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|Connection refused|ConnectTimeout"
    r"|ReadTimeoutError|ProxyError|Max retries exceeded|SSLError|No route to host"
)


def _environ(cache: Path) -> dict[str, str]:
    """The environment of every command: this process's, minus anything tying it to this venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", MEDTOOLKIT_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(done: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def _pip(venv: Path, *args: str, cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    """Run the venv's pip; skip when the index is unreachable, fail on any other error."""
    done = _run([str(venv / "bin" / "python"), "-m", "pip", *args], cwd, env)
    if done.returncode != 0:
        if NETWORK_TROUBLE.search(done.stdout + done.stderr):
            pytest.skip(f"package index unreachable while installing {what}:\n{_tail(done, 5)}")
        pytest.fail(f"pip install {what} failed (exit {done.returncode}):\n{_tail(done)}")
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Wheels built into a folder and ``medtoolkit[dnmdr]`` installed from it in a fresh venv."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = _environ(tmp / "cache")
    wheels = tmp / "wheels"

    built = _run([sys.executable, str(ROOT / "scripts" / "build_wheels.py"), "--out", str(wheels)], tmp, env)
    if built.returncode != 0 and NETWORK_TROUBLE.search(built.stdout + built.stderr):
        pytest.skip(f"package index unreachable (isolated builds fetch setuptools):\n{_tail(built, 5)}")
    assert built.returncode == 0, _tail(built)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    for dist in FROM_WHEELS:
        assert f"{dist.replace('-', '_')}-0.1.0-py3-none-any.whl" in names, names
        assert f"{dist.replace('-', '_')}-0.1.0-py3-none-any.whl" in built.stdout  # printed with its size

    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp, env, timeout=300)
    if made.returncode != 0 or not (venv / "bin" / "python").is_file():
        pytest.skip(f"cannot create a virtual environment here:\n{_tail(made, 5)}")

    # torch first and pinned: from this machine's disk where it lies there, small on CPU machines
    done = _run([str(venv / "bin" / "python"), "-m", "pip", "install", TORCH], tmp, env)
    if done.returncode != 0:
        pytest.skip(f"cannot install {TORCH} in a fresh venv here:\n{_tail(done, 5)}")
    report = tmp / "report.json"
    requirement = f"medtoolkit[{EXTRA}]"
    install = ["install", "--report", str(report), "--find-links", str(wheels), requirement]
    _pip(venv, *install, cwd=tmp, env=env, what=f'"{requirement}"')
    return {"tmp": tmp, "env": env, "venv": venv, "wheels": wheels, "report": json.loads(report.read_text())}


@pytest.mark.slow
def test_the_core_and_both_plugins_come_from_the_wheel_folder(installed: dict[str, object]) -> None:
    venv, wheels, tmp, env = installed["venv"], installed["wheels"], installed["tmp"], installed["env"]
    assert isinstance(venv, Path) and isinstance(wheels, Path) and isinstance(tmp, Path) and isinstance(env, dict)
    report = installed["report"]
    assert isinstance(report, dict)
    urls = {item["metadata"]["name"]: item["download_info"]["url"] for item in report["install"]}
    for dist in FROM_WHEELS:
        assert urls.get(dist, "").startswith(wheels.as_uri() + "/"), (dist, urls.get(dist))
    assert "medtoolkit-algnet" not in urls  # only what the extra asks for

    shown = _run([str(venv / "bin" / "python"), "-m", "pip", "show", *FROM_WHEELS], tmp, env)
    assert shown.returncode == 0, _tail(shown)
    blocks = [dict(re.findall(r"^([\w -]+): ?(.*)$", block, re.MULTILINE)) for block in shown.stdout.split("\n---")]
    site = {Path(b["Location"]).resolve() for b in blocks}
    assert sorted(b["Name"] for b in blocks) == sorted(FROM_WHEELS)
    assert all(b["Version"] == "0.1.0" for b in blocks), blocks
    assert all("Editable project location" not in b for b in blocks), blocks  # installed, not editable
    assert len(site) == 1 and site.pop().is_relative_to(venv.resolve()), blocks

    where = _run([str(venv / "bin" / "python"), "-c", "import medtoolkit; print(medtoolkit.__file__)"], tmp, env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve()), where.stdout + where.stderr


@pytest.mark.slow
def test_medtoolkit_plugins_lists_both_plugins_ok(installed: dict[str, object]) -> None:
    venv, tmp, env = installed["venv"], installed["tmp"], installed["env"]
    assert isinstance(venv, Path) and isinstance(tmp, Path) and isinstance(env, dict)
    done = _run([str(venv / "bin" / "medtoolkit"), "plugins"], tmp, env)
    assert done.returncode == 0, _tail(done)
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:] if line.strip()}
    for dist in ("medtoolkit", *PLUGINS):
        assert dist in rows, done.stdout
        assert rows[dist][1:3] == ["0.1.0", "ok"], rows[dist]
    assert "medtoolkit-algnet" not in rows


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["safedrug", "dnmdr"])
def test_train_runs_on_the_built_in_demo(installed: dict[str, object], preset: str) -> None:
    venv, tmp, env = installed["venv"], installed["tmp"], installed["env"]
    assert isinstance(venv, Path) and isinstance(tmp, Path) and isinstance(env, dict)
    out = tmp / "runs" / preset
    command = [str(venv / "bin" / "medtoolkit"), "train", preset, "-o", "trainer.epochs=1", "--out", str(out)]
    done = _run(command, tmp, env)
    assert done.returncode == 0, _tail(done, 40)
    assert re.search(r"^\| Jaccard \| \d\.\d+ ± \d\.\d+ \|$", done.stdout, re.MULTILINE), done.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["model"] == preset
    assert 0.0 <= metrics["test"]["jaccard"]["mean"] <= 1.0, metrics["test"]


# ---------------------------------------------------------------------------- the script, offline
CORE_TOML = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "medtoolkit"
version = "0.1.0"

[tool.setuptools.packages.find]
include = ["medtoolkit*"]

[tool.setuptools.package-data]
medtoolkit = ["presets/*.yaml", "resources/**/*"]
"""
PLUGIN_TOML = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "medtoolkit-foo"
version = "0.1.0"
dependencies = ["medtoolkit"]

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
medtoolkit_foo = ["presets/*.yaml"]
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A tiny checkout (core + plugin ``foo``) with stale build folders from an older layout."""
    try:  # offline builds need bdist_wheel from this interpreter: setuptools >= 70.1 or wheel
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
        has_bdist_wheel = (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None
    except importlib.metadata.PackageNotFoundError:
        has_bdist_wheel = False
    if not has_bdist_wheel:
        pytest.skip("an offline build needs setuptools >= 70.1 (or wheel) in this interpreter")
    root = tmp_path / "checkout"
    _write(
        root,
        {
            "pyproject.toml": CORE_TOML,
            "medtoolkit/__init__.py": "",
            "medtoolkit/presets/base.yaml": "model: {}\n",
            "medtoolkit/resources/demo/table.csv": "a,b\n",
            "plugins/foo/pyproject.toml": PLUGIN_TOML,
            "plugins/foo/src/medtoolkit_foo/__init__.py": "",
            "plugins/foo/src/medtoolkit_foo/presets/foo.yaml": "model: {}\n",
            # left behind by an earlier in-tree build: setuptools would reuse them
            "build/lib/medtoolkit/stale.py": "",
            "medtoolkit.egg-info/SOURCES.txt": "medtoolkit/stale.py\n",
            "plugins/foo/build/lib/medtoolkit_foo/stale.py": "",
            "plugins/foo/build/lib/medtoolkit_foo/presets/old.yaml": "",
            "plugins/foo/src/medtoolkit_foo.egg-info/SOURCES.txt": "src/medtoolkit_foo/stale.py\n",
        },
    )
    return root


def _build_script(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "build_wheels.py"
    command = [sys.executable, str(script), "--root", str(root), "--out", str(out), "--no-build-isolation"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _members(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {m for m in archive.namelist() if ".dist-info/" not in m}


def test_build_wheels_ships_the_data_files_and_no_stale_build_output(checkout: Path, tmp_path: Path) -> None:
    out = tmp_path / "wheels"
    (out).mkdir()
    (out / "medtoolkit_foo-0.0.9-py3-none-any.whl").write_bytes(b"")  # an older build: replaced
    done = _build_script(checkout, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "medtoolkit-0.1.0-py3-none-any.whl",
        "medtoolkit_foo-0.1.0-py3-none-any.whl",
    ]
    assert re.search(r"^medtoolkit-0\.1\.0-py3-none-any\.whl  [\d,]+ KiB$", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^medtoolkit_foo-0\.1\.0-py3-none-any\.whl  [\d,]+ KiB$", done.stdout, re.MULTILINE)
    assert _members(out / "medtoolkit-0.1.0-py3-none-any.whl") == {
        "medtoolkit/__init__.py",
        "medtoolkit/presets/base.yaml",
        "medtoolkit/resources/demo/table.csv",
    }
    assert _members(out / "medtoolkit_foo-0.1.0-py3-none-any.whl") == {
        "medtoolkit_foo/__init__.py",
        "medtoolkit_foo/presets/foo.yaml",
    }
    assert not (checkout / "plugins/foo/build/lib/medtoolkit_foo/__init__.py").exists()  # checkout untouched


def test_build_wheels_names_the_plugin_that_fails(checkout: Path, tmp_path: Path) -> None:
    toml = checkout / "plugins/foo/pyproject.toml"
    toml.write_text(PLUGIN_TOML.replace('dependencies = ["medtoolkit"]', "dependencies = ["), encoding="utf-8")
    done = _build_script(checkout, tmp_path / "wheels")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: medtoolkit-foo (plugins/foo): pip wheel failed"), done.stderr
    assert "medtoolkit-0.1.0-py3-none-any.whl" in done.stdout  # the core was built before it
