#!/usr/bin/env python
"""Build wheels of the core and of every first-party plugin into one folder.

Usage (from anywhere; standard library only)::

    python scripts/build_wheels.py [--out dist/wheels] [--no-build-isolation] [-v]
    pip install --find-links dist/wheels "medtoolkit[dnmdr]"   # in any environment

Builds ``medtoolkit`` (the repository root) and every ``plugins/*/pyproject.toml`` with
``python -m pip wheel --no-deps``. Each project is first copied to a fresh temporary folder
(in a git checkout: the tracked files plus the untracked ones git does not ignore), so a stale
``build/`` or ``*.egg-info`` folder in the checkout can never put old files in a wheel, and the
checkout is left untouched. Each wheel is then checked: every module and data file of the
project's import packages (``presets/*.yaml``, the core's ``resources/``) is in it, and nothing
else of those packages is. Wheels of the same distributions already in ``--out`` are replaced.

By default pip builds in an isolated environment, fetching ``setuptools`` and ``wheel`` from
the package index; ``--no-build-isolation`` builds with the running interpreter's setuptools
instead (offline).

Prints each wheel's name and size; on failure prints one ``error:`` line naming the project
and exits with status 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: never copied into a build folder (also used when the checkout is not a git repository)
IGNORED = ("build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".venv", "venv", ".git", ".pytest_cache")


#: pip's summary lines, which say that a build failed but not why
GENERIC_PIP_ERRORS = {"error: subprocess-exited-with-error", "error: metadata-generation-failed"}


class BuildError(Exception):
    """A project failed to build or its wheel is incomplete; the message names the project."""


def project_name(project: Path) -> str:
    """The ``[project] name`` of ``project/pyproject.toml`` (read without tomllib: Python 3.10)."""
    text = (project / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    match = re.search(r'^name\s*=\s*"([^"]+)"', section.group(1) if section else "", re.MULTILINE)
    if not match:
        raise BuildError(f"{project}: pyproject.toml declares no [project] name")
    return match.group(1)


def projects(root: Path = ROOT) -> list[Path]:
    """The core (``root``) first, then every ``plugins/*`` folder with a pyproject.toml, sorted."""
    return [root, *sorted(p.parent for p in (root / "plugins").glob("*/pyproject.toml"))]


def source_files(project: Path, root: Path = ROOT) -> list[Path]:
    """The files of ``project`` (relative to it) a clean checkout plus uncommitted new files holds."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "."],
            cwd=project,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [Path(name) for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the folder
        files = [p.relative_to(project) for p in project.rglob("*") if p.is_file()]
    keep = []
    for rel in files:
        if any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in IGNORED):
            continue
        if project == root and rel.parts[0] == "plugins":  # plugins are built on their own
            continue
        if (project / rel).is_file():  # --cached lists files deleted from the working tree
            keep.append(rel)
    return keep


def copy_project(project: Path, dest: Path, root: Path = ROOT) -> list[Path]:
    """Copy ``project``'s source files to ``dest``; returns them (relative paths)."""
    files = source_files(project, root)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, dest / rel)
    return files


def expected_package_files(files: Sequence[Path]) -> set[str]:
    """The files a wheel must hold: every module and data file under the import packages.

    Import packages are the top-level folders with an ``__init__.py`` (under ``src/`` when the
    project has one); data files are ``presets/*.yaml``, ``py.typed`` and ``resources/**``.
    """
    names = {rel.as_posix() for rel in files}
    src = "src/" if any(n.startswith("src/") for n in names) else ""
    packages = {n[len(src) :].split("/")[0] for n in names if n.startswith(src) and n.endswith("/__init__.py")}
    packages = {p for p in packages if f"{src}{p}/__init__.py" in names}
    expected = set()
    for name in names:
        if not name.startswith(src):
            continue
        inner = name[len(src) :]
        parts = inner.split("/")
        if parts[0] not in packages or len(parts) < 2:
            continue
        data = (
            parts[-1] == "py.typed"
            or (len(parts) == 3 and parts[1] == "presets" and parts[2].endswith(".yaml"))
            or parts[1] == "resources"
        )
        if inner.endswith(".py") or data:
            expected.add(inner)
    return expected


def check_wheel(wheel: Path, name: str, expected: set[str]) -> None:
    """The wheel holds exactly the expected files of its import packages (no stale ones)."""
    with zipfile.ZipFile(wheel) as archive:
        members = {m for m in archive.namelist() if not m.endswith("/") and ".dist-info/" not in m}
    packages = {e.split("/")[0] for e in expected}
    inside = {m for m in members if m.split("/")[0] in packages}
    missing = sorted(expected - inside)
    extra = sorted(inside - expected)
    if not expected:
        raise BuildError(f"{name}: no import package found in the sources")
    if missing:
        raise BuildError(f"{name}: wheel {wheel.name} lacks {len(missing)} file(s), e.g. {missing[0]}")
    if extra:
        raise BuildError(f"{name}: wheel {wheel.name} holds {len(extra)} unexpected file(s), e.g. {extra[0]}")
    if name == "medtoolkit":  # the shipped presets and demo data
        for folder in ("medtoolkit/presets/", "medtoolkit/resources/demo/"):
            if not any(e.startswith(folder) for e in expected):
                raise BuildError(f"{name}: wheel {wheel.name} holds nothing under {folder}")


def wheel_prefix(name: str) -> str:
    """The file-name prefix of a distribution's wheels (``medtoolkit-algnet`` -> ``medtoolkit_algnet-``)."""
    return re.sub(r"[-_.]+", "_", name).lower() + "-"


def pip_reason(output: str) -> str:
    """The most specific ``error:`` line of pip's output (pip's generic ones come last)."""
    lines = [line.strip(" |\u2502") for line in output.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.lower().startswith("error") and not line.endswith(":")]
    specific = [line for line in errors if line not in GENERIC_PIP_ERRORS]
    # "ERROR: Exception:" precedes a traceback, whose last line says what went wrong
    return (specific or lines[-1:] or ["no output"])[0]


def build(project: Path, out: Path, root: Path = ROOT, isolation: bool = True, verbose: bool = False) -> Path:
    """Build one project's wheel into ``out`` from a temporary copy; returns the checked wheel."""
    name = project_name(project)
    with tempfile.TemporaryDirectory(prefix=f"build-{name}-") as tmp:
        tmp_path = Path(tmp)
        source, wheels = tmp_path / "src", tmp_path / "wheels"
        files = copy_project(project, source, root)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)]
        if not isolation:
            command.insert(4, "--no-build-isolation")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            if verbose:
                sys.stderr.write(done.stdout + done.stderr)
            raise BuildError(
                f"{name} ({project.relative_to(root) if project != root else 'repository root'}): "
                f"pip wheel failed (exit {done.returncode}): {pip_reason(done.stdout + done.stderr)}"
                + ("" if verbose else " (rerun with -v for pip's output)")
            )
        built = sorted(wheels.glob("*.whl"))
        if len(built) != 1 or not built[0].name.lower().startswith(wheel_prefix(name)):
            raise BuildError(f"{name}: expected one wheel of {name}, pip produced {[w.name for w in built]}")
        check_wheel(built[0], name, expected_package_files(files))
        for old in out.glob("*.whl"):  # older builds of this distribution
            if old.name.lower().startswith(wheel_prefix(name)):
                old.unlink()
        return Path(shutil.copy2(built[0], out / built[0].name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="wheel folder (default: dist/wheels in the checkout)")
    parser.add_argument(
        "--no-build-isolation",
        dest="isolation",
        action="store_false",
        help="build with this interpreter's setuptools instead of fetching it (offline)",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to build (default: this script's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pip's output when a build fails")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    out: Path = (args.out or root / "dist" / "wheels").resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        for project in projects(root):
            wheel = build(project, out, root, isolation=args.isolation, verbose=args.verbose)
            print(f"{wheel.name}  {wheel.stat().st_size / 1024:,.0f} KiB")
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wheels in {out}; install with: pip install --find-links {out} \"medtoolkit[<plugin>]\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
