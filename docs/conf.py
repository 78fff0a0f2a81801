"""Sphinx configuration of the medtoolkit documentation.

Build (zero warnings required)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))  # the local config-reference extension
sys.path.insert(0, str(ROOT))  # medtoolkit itself, when not installed

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

# -- HTML -----------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"medtoolkit {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Composable, fast and safe medication recommendation",
    "fixed_sidebar": True,
}
