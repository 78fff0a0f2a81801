"""Helpers for testing presets, in particular presets derived from a base by overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["config_leaves"]


def config_leaves(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a raw run config as ``{"a.b.0.c": value}``.

    Mappings are walked by key, and lists whose items are all mappings or lists (such as
    ``losses`` or ``stages``) by index, so two configs can be compared leaf by leaf: a derived
    preset differs from its base exactly in the paths its overrides name. Other lists (``seeds:
    [0, 1]``) are leaves.

    Args:
        config: a raw run config (what :func:`medtoolkit.config.load_yaml` returns) or any part.
        prefix: the path of ``config`` itself ("" for a whole config).

    Returns:
        the leaves in walking order; ``{prefix: config}`` when ``config`` is itself a leaf.
    """
    if isinstance(config, Mapping):
        items = ((str(key), value) for key, value in config.items())
    elif isinstance(config, list) and config and all(isinstance(item, (Mapping, list)) for item in config):
        items = ((str(index), item) for index, item in enumerate(config))
    else:
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(config_leaves(value, f"{prefix}.{key}" if prefix else key))
    return out
