"""The documentation builds with zero warnings, with and without the ALGNet plugin's dependency.

The README's main-job environment (``pip install torch==2.13.0 -e ".[dev]"``) does not install
``medtoolkit-algnet`` or ``torch_geometric``; ``docs/conf.py`` then mocks ``torch_geometric``
so that ``docs/algnet.rst`` still documents the plugin from the checkout.
"""

from __future__ import annotations

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: runs sphinx-build with torch_geometric made unimportable (as in the main-job environment)
WITHOUT_TORCH_GEOMETRIC = """
import sys


class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "torch_geometric" or name.startswith("torch_geometric."):
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)")
        return None


sys.meta_path.insert(0, _Refuse())
from sphinx.cmd.build import main

sys.exit(main(sys.argv[1:]))
"""
WITH_WHATEVER_IS_INSTALLED = "import sys\nfrom sphinx.cmd.build import main\nsys.exit(main(sys.argv[1:]))\n"


def _conf(monkeypatch: pytest.MonkeyPatch, installed: set[str]) -> dict[str, Any]:
    """Execute ``docs/conf.py`` with only ``installed`` among its optional imports findable."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] == "torch_geometric":
            return real_find_spec("json") if name in installed else None  # any spec stands for "present"
        return real_find_spec(name, package)

    monkeypatch.setattr(sys, "path", list(sys.path))  # conf.py inserts its directories
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return runpy.run_path(str(DOCS / "conf.py"))


def test_conf_mocks_torch_geometric_only_when_it_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _conf(monkeypatch, installed=set())["autodoc_mock_imports"] == ["torch_geometric"]
    assert _conf(monkeypatch, installed={"torch_geometric"})["autodoc_mock_imports"] == []


def test_conf_documents_the_plugin_from_the_checkout_and_is_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = _conf(monkeypatch, installed=set())
    assert str(ROOT / "plugins" / "algnet" / "src") in sys.path
    assert namespace["medtoolkit_config_reference_strict"] is True


@pytest.mark.slow
@pytest.mark.parametrize("bootstrap", [WITH_WHATEVER_IS_INSTALLED, WITHOUT_TORCH_GEOMETRIC],
                         ids=["installed", "without-torch-geometric"])
def test_sphinx_build_has_no_warnings(tmp_path: Path, bootstrap: str) -> None:
    pytest.importorskip("sphinx")
    out = tmp_path / "html"
    completed = subprocess.run(
        [sys.executable, "-c", bootstrap, "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    algnet = (out / "algnet.html").read_text(encoding="utf-8")
    for documented in ("LightGCNMemory", "DualSelfAttentionEncoder", "ALGNet", "ablation_config"):
        assert documented in algnet


def test_public_names_the_quickstart_uses_are_exported_and_documented() -> None:
    import re

    import medtoolkit

    quickstart = (DOCS / "quickstart.rst").read_text(encoding="utf-8")
    api = (DOCS / "api.rst").read_text(encoding="utf-8")
    used = set(re.findall(r"\bmt\.(\w+)", quickstart))
    assert {"build", "load_preset", "fit_evaluate"} <= used
    for name in used:
        assert name in medtoolkit.__all__, name
        assert f".. autofunction:: medtoolkit.{name}\n" in api, name
    # the modules the quickstart and its example import from are documented too
    example = (ROOT / "examples" / "python_api.py").read_text(encoding="utf-8")
    modules = set(re.findall(r"^\s*from (medtoolkit[\w.]*) import", quickstart + example, flags=re.M))
    assert "medtoolkit.fit" in modules
    for module in modules:
        if module.startswith("medtoolkit.components.") and module != "medtoolkit.components.params":
            continue  # components: docs/config_reference.rst lists each one's class path and Params fields
        assert f".. automodule:: {module}\n" in api, module
    assert ":doc:`config_reference`" in quickstart
