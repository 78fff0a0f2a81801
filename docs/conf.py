"""Sphinx configuration of the medtoolkit documentation.

Build (zero warnings required)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))  # the local config-reference extension
sys.path.insert(0, str(ROOT))  # medtoolkit itself, when not installed
# The ALGNet plugin page documents plugins/algnet from the checkout, whether or not the
# plugin is installed. Its only dependency beyond the core, torch_geometric, is absent in the
# main job's environment (pip install -e ".[dev]"): autodoc then imports the plugin against
# a mock of it (the docstrings are the plugin's own; nothing of torch_geometric is documented).
sys.path.insert(0, str(ROOT / "plugins" / "algnet" / "src"))
# The molecule plugin's page likewise (it imports torch_geometric too; rdkit only lazily, in the core).
sys.path.insert(0, str(ROOT / "plugins" / "molecule" / "src"))
# And the DNMDR plugin's (it imports the molecule plugin's parts only through the registry).
sys.path.insert(0, str(ROOT / "plugins" / "dnmdr" / "src"))
sys.path.insert(0, str(ROOT / "plugins" / "tempt" / "src"))
sys.path.insert(0, str(ROOT / "plugins" / "dpr" / "src"))
#: modules mocked while autodoc imports the documented modules (only those not installed)
OPTIONAL_IMPORTS = ("torch_geometric",)


def _installed(name: str) -> bool:
    """True when ``name`` can be imported (a finder that refuses it counts as absent)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


autodoc_mock_imports = [name for name in OPTIONAL_IMPORTS if not _installed(name)]

project = "medtoolkit"
author = "the medtoolkit developers"
copyright = "the medtoolkit developers; Apache-2.0"  # noqa: A001 - Sphinx's name

try:
    from medtoolkit import __version__ as release
except Exception:  # noqa: BLE001 - the docs still build without an importable package
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "config_reference",
]
# a broken core plugin is a warning (so -W fails), not a note on the page
medtoolkit_config_reference_strict = True

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
root_doc = "index"
language = "en"

# -- autodoc / napoleon (Google-style docstrings) ------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_inherit_docstrings = False  # do not copy torch/pydantic docstrings into ours
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become :ivar: fields, not extra object descriptions that would
# duplicate the attributes autodoc documents itself.
napoleon_use_ivar = True
napoleon_use_rtype = False

# Resolved type names in signatures are shown without their module path.
python_use_unqualified_type_names = True


def _qualify_params(app, what, name, obj, options, signature, return_annotation):
    """Qualify the bare ``Params`` of component signatures.

    Every component annotates ``params: Params``; unqualified, Sphinx finds a dozen
    ``*.Params`` targets and warns that the reference is ambiguous. A class's own nested
    ``Params`` wins, else the base :class:`medtoolkit.components.params.Params`.
    """
    import inspect
    import re

    if not signature or "Params" not in signature:
        return None
    owner = obj if inspect.isclass(obj) else None
    if owner is None and "." in getattr(obj, "__qualname__", ""):
        module = inspect.getmodule(obj)
        owner = getattr(module, obj.__qualname__.split(".")[0], None)
    target = None
    if owner is not None and inspect.isclass(owner.__dict__.get("Params")):
        target = owner.__dict__["Params"]
    if target is None:
        target = getattr(inspect.getmodule(obj), "Params", None)
    if not inspect.isclass(target):
        return None
    path = f"{target.__module__}.{target.__qualname__}"
    pattern = re.compile(r"(?<![\w.])Params(?![\w.])")
    return pattern.sub(path, signature), (
        pattern.sub(path, return_annotation) if return_annotation else return_annotation
    )


def _fix_plural_literals(app, what, name, obj, options, lines):
    """Make a literal followed by a plural "s" (double-backquoted Node, then "s") valid RST.

    docutils needs whitespace or punctuation after an inline literal; insert an escaped
    space, which renders as nothing.
    """
    import re

    pattern = re.compile(r"(``[^`]+``)(s\b)")
    lines[:] = [pattern.sub(r"\1\\ \2", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-signature", _qualify_params)
    app.connect("autodoc-process-docstring", _fix_plural_literals)


# -- HTML -----------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"medtoolkit {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Composable, fast and safe medication recommendation",
    "fixed_sidebar": True,
}
