"""Presets: run files shipped by plugins (the core ships the GAMENet family and baselines)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
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


def derived_presets(base_name: str, base_path: Path, variants: Mapping[str, Sequence[str]]) -> dict[str, Path | dict[str, Any]]:
    """A base preset file and presets derived from it by ``-o``-style overrides.

    Plugins register the result from their ``register_presets`` hook, so every variant
    differs from the base by exactly its overrides (and its ``name``).

    Args:
        base_name: name of the base preset.
        base_path: its YAML run file.
        variants: variant name -> ``key.path=value`` overrides of the base.

    Returns:
        ``{base_name: base_path, variant: raw config, ...}`` in the given order.
    """
    from medtoolkit.config import apply_overrides, load_yaml

    base = load_yaml(base_path)
    sources: dict[str, Path | dict[str, Any]] = {base_name: base_path}
    for name, overrides in variants.items():
        sources[name], _notes = apply_overrides(base, [f"name={name}", *overrides])
    return sources
