"""Every install hint the CLI prints works from a checkout, as documented.

``pyproject.toml`` declares one extra per plugin (extra ``x`` pulls ``medtoolkit-x``, which
lives in ``plugins/x``); :mod:`medtoolkit.registry` says which plugins are released and
prints the install hints for names they provide. These tests read the checkout itself.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from medtoolkit.plugins import PluginHost
from medtoolkit.registry import (
    KNOWN_PLUGIN_NAMES,
    NAME_ALSO_NEEDS,
    PLUGIN_REQUIRES,
    PLUGIN_STATUS,
    Registry,
    name_install_hint,
    plugin_install_hint,
)

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
CHECKOUT = re.compile(r'\(from a checkout: (pip install -e "\.\[[a-z,]+\]"(?: -e \S+)+)\)')


def plugin_distributions(requirements: list[str]) -> list[str]:
    """The ``medtoolkit-*`` distributions among an extra's requirements (names only)."""
    names = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements]
    return [name for name in names if name.startswith("medtoolkit-")]


def checkout_plugin(name: str) -> str | None:
    """The distribution name declared by ``plugins/<name>/pyproject.toml`` (None: no such file)."""
    path = ROOT / "plugins" / name / "pyproject.toml"
    if not path.is_file():
        return None
    return str(tomllib.loads(path.read_text(encoding="utf-8"))["project"]["name"])


def every_hint() -> list[str]:
    """Every install hint the registry can print: per extra, and per plugin-provided name."""
    hints = [plugin_install_hint(extra) for extra in PLUGIN_STATUS]
    hints += [hint for name in KNOWN_PLUGIN_NAMES if (hint := name_install_hint(name)) is not None]
    return hints


# ---------------------------------------------------------------------------- extras and status
def test_every_plugin_extra_has_a_status_and_pulls_its_distribution() -> None:
    pulling_plugins = {extra for extra, requirements in EXTRAS.items() if plugin_distributions(requirements)}
    assert pulling_plugins == set(PLUGIN_STATUS) == {"algnet", "molecule", "dnmdr", "tempt", "dpr"}
    for extra in PLUGIN_STATUS:
        distributions = plugin_distributions(EXTRAS[extra])
        assert distributions[0] == f"medtoolkit-{extra}", extra
        assert tuple(d.removeprefix("medtoolkit-") for d in distributions[1:]) == PLUGIN_REQUIRES.get(extra, ())


@pytest.mark.parametrize("extra", sorted(PLUGIN_STATUS))
def test_available_exactly_when_the_checkout_holds_the_plugin(extra: str) -> None:
    assert PLUGIN_STATUS[extra] in ("available", "planned")
    in_checkout = checkout_plugin(extra) == f"medtoolkit-{extra}"
    assert (PLUGIN_STATUS[extra] == "available") == in_checkout, (extra, checkout_plugin(extra))


def test_a_plugin_needs_only_released_plugins_once_released() -> None:
    for extra, needed in PLUGIN_REQUIRES.items():
        assert set(needed) <= set(PLUGIN_STATUS), extra
        if PLUGIN_STATUS[extra] == "available":
            assert all(PLUGIN_STATUS[n] == "available" for n in needed), extra


def test_every_known_name_points_to_a_plugin_extra() -> None:
    assert set(KNOWN_PLUGIN_NAMES.values()) <= set(PLUGIN_STATUS) <= set(EXTRAS)
    assert set(NAME_ALSO_NEEDS) <= set(KNOWN_PLUGIN_NAMES)
    assert {e for also in NAME_ALSO_NEEDS.values() for e in also} <= set(PLUGIN_STATUS)


def test_no_hint_for_a_name_the_core_registers() -> None:
    core = PluginHost(load_entry_points=False)
    builtin = {entry.name for registry in core.registries.values() for entry in registry}
    assert {"gru", "gamenet", "mimic3", "mimic4", "eicu"} <= builtin
    assert not builtin & set(KNOWN_PLUGIN_NAMES)
    assert name_install_hint("mimic3") is None
    assert Registry("dataset").unknown_message("mimic3") == "unknown dataset 'mimic3'. Known datasets: none."


# ---------------------------------------------------------------------------- the printed hints
@pytest.mark.parametrize("hint", every_hint())
def test_every_printed_command_works_from_a_checkout(hint: str) -> None:
    if "planned, not released yet" in hint:
        assert "pip install" not in hint
        return
    (command,) = CHECKOUT.findall(hint)
    words = shlex.split(command)
    assert words[:3] == ["pip", "install", "-e"]
    extras = words[3].removeprefix(".[").removesuffix("]").split(",")
    assert set(extras) <= set(EXTRAS), command
    assert f'pip install "medtoolkit[{",".join(extras)}]"' in hint
    editable = words[5::2]
    assert words[4::2] == ["-e"] * len(editable)
    for path in editable:  # each exists and is a released plugin
        name = checkout_plugin(path.removeprefix("plugins/"))
        assert path.startswith("plugins/") and name == f"medtoolkit-{path.removeprefix('plugins/')}", path
    # pip resolves every plugin distribution the extras pull from the listed directories
    wanted = {d for extra in extras for d in plugin_distributions(EXTRAS[extra])}
    assert wanted == {f"medtoolkit-{path.removeprefix('plugins/')}" for path in editable}, command


def test_hint_texts() -> None:
    assert plugin_install_hint("molecule") == (
        'pip install "medtoolkit[molecule]" (from a checkout: pip install -e ".[molecule]" -e plugins/molecule)'
    )
    assert plugin_install_hint("tempt") == (
        'pip install "medtoolkit[tempt]" (from a checkout: pip install -e ".[tempt]" -e plugins/tempt)'
    )
    assert plugin_install_hint("dpr") == (
        'pip install "medtoolkit[dpr]" (from a checkout: pip install -e ".[dpr]" -e plugins/dpr)'
    )
    assert name_install_hint("bpr") == (
        'It is provided by a plugin: pip install "medtoolkit[dpr]" (from a checkout: pip install -e ".[dpr]" -e plugins/dpr).'
    )
    assert name_install_hint("evolvegat") == (
        'It is provided by a plugin: pip install "medtoolkit[dnmdr]" '
        '(from a checkout: pip install -e ".[dnmdr]" -e plugins/dnmdr -e plugins/molecule).'
    )
    assert name_install_hint("algnet_controllable_ddi") == (
        'It is provided by plugins: pip install "medtoolkit[molecule,algnet]" '
        '(from a checkout: pip install -e ".[molecule,algnet]" -e plugins/molecule -e plugins/algnet).'
    )
    with pytest.raises(KeyError) as caught:
        plugin_install_hint(["molecule", "chem"])
    assert str(caught.value) == "\"no plugin extra named 'chem'; known: algnet, molecule, dnmdr, tempt, dpr\""


def test_a_planned_extra_prints_no_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLUGIN_STATUS, "dpr", "planned")
    assert plugin_install_hint("dpr") == "medtoolkit-dpr (planned, not released yet)"
    assert name_install_hint("bpr") == "It belongs to the plugin medtoolkit-dpr (planned, not released yet)."


def test_dnmdr_installs_the_molecule_plugin_it_builds_on() -> None:
    assert PLUGIN_STATUS["dnmdr"] == PLUGIN_STATUS["molecule"] == "available"
    assert PLUGIN_REQUIRES["dnmdr"] == ("molecule",)
    assert "medtoolkit-molecule" in EXTRAS["dnmdr"]
    # the extra pulls what the molecule extra pulls beside its distribution (rdkit, torch-geometric)
    assert set(EXTRAS["molecule"]) - {"medtoolkit-molecule"} <= set(EXTRAS["dnmdr"])


# ---------------------------------------------------------------------------- the documented setup
@pytest.mark.parametrize("path", ["README.md", ".ci/run"])
def test_the_test_command_installs_the_core_first_then_every_released_plugin(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if ".venv/bin/python -m pytest" in line]
    released = " ".join(f"-e plugins/{name}" for name, status in PLUGIN_STATUS.items() if status == "available")
    assert f'.venv/bin/pip install torch==2.13.0 -e ".[dev]" {released} && ' in line


def test_pytest_collects_every_released_plugins_tests() -> None:
    testpaths = PYPROJECT["tool"]["pytest"]["ini_options"]["testpaths"]
    released = [f"plugins/{n}/tests" for n, s in PLUGIN_STATUS.items() if s == "available"]
    assert testpaths == ["tests", *released]
    assert all((ROOT / p).is_dir() for p in testpaths)
