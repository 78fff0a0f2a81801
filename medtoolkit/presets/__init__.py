"""Presets: run files shipped by plugins (the core ships the GAMENet family and baselines)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent


def builtin_presets() -> dict[str, Path]:
    """The core's preset files by name (``gamenet.yaml`` -> ``gamenet``)."""
    return {path.stem: path for path in sorted(PRESET_DIR.glob("*.yaml"))}


def preset_config(name: str, host: Any = None) -> dict[str, Any]:
    """The raw config of preset ``name`` as a fresh dict.

    A preset is registered either as a path to a YAML file or as a mapping.
    """
    if host is None:
        from medtoolkit.plugins import default_host

        host = default_host()
    obj = host.registry("preset").get(name).obj
    if isinstance(obj, (str, Path)):
        data = yaml.safe_load(Path(obj).read_text(encoding="utf-8"))
    else:
        data = copy.deepcopy(dict(obj))
    return data
