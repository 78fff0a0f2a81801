"""Typed registries: one per component kind, each entry attributed to its plugin."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

#: Names that live in plugin distributions, and the core extra that installs them
#: (the extra and the plugin share a name: extra ``x`` pulls ``medtoolkit-x``, in ``plugins/x``).
KNOWN_PLUGIN_NAMES: dict[str, str] = {
    "lightgcn": "algnet",
    "dual_self_attention": "algnet",
    "algnet": "algnet",
    "evolvegat": "dnmdr",
    "gat_views": "dnmdr",
    "dnmdr": "dnmdr",
    "dnmdr_prob": "dnmdr",
    "dnmdr_lstm": "dnmdr",
    "dnmdr_internal": "dnmdr",
    "dnmdr_interactive": "dnmdr",
    "dnmdr_dynn": "dnmdr",
    "dnmdr_dim128": "dnmdr",
    "dnmdr_dim256": "dnmdr",
    "mpnn": "molecule",
    "safedrug": "molecule",
    "safedrug_frozen_mpnn": "molecule",
    "controllable_ddi": "molecule",
    "gamenet_controllable_ddi": "molecule",
    "algnet_controllable_ddi": "molecule",
    "ncf": "dpr",
    "dpr": "dpr",
    "bpr": "dpr",
    "package_bpr": "dpr",
    "edge_type": "dpr",
    "dpr_ncf": "dpr",
    "dpr_nn": "dpr",
    "dpr_gnn": "dpr",
    "dpr_wg": "dpr",
    "dpr_ag": "dpr",
    "dpr_wg_context": "dpr",
    "dpr_wg_type": "dpr",
    "dpr_ag_mask": "dpr",
    "dpr_ag_type": "dpr",
    "tempt": "tempt",
    "tempt_finetune": "tempt",
    "tempt_finetune_freeze": "tempt",
    "tempt_lora": "tempt",
    "tempt_single_train": "tempt",
    "tempt_full_train": "tempt",
    "hospital_prompt": "tempt",
    "set_transformer": "tempt",
    "contrastive": "tempt",
    "masked_code": "tempt",
}

#: Names that appear only when another plugin is installed too (name -> those extras).
NAME_ALSO_NEEDS: dict[str, tuple[str, ...]] = {"algnet_controllable_ddi": ("algnet",)}

#: Every plugin extra: ``"available"`` (released, in ``plugins/<extra>`` of a checkout) or
#: ``"planned"`` (declared in pyproject.toml, but its distribution does not exist yet, so no
#: install command is printed for it).
PLUGIN_STATUS: dict[str, str] = {
    "algnet": "available",
    "molecule": "available",
    "dnmdr": "available",
    "tempt": "available",
    "dpr": "available",
}

#: Other plugins a plugin depends on (installed alongside it from a checkout).
PLUGIN_REQUIRES: dict[str, tuple[str, ...]] = {"dnmdr": ("molecule",)}


def plugin_install_hint(extras: str | Sequence[str]) -> str:
    """How to install the plugins behind ``extras``, released and from a checkout.

    Example: ``plugin_install_hint("molecule")`` gives ``pip install "medtoolkit[molecule]"
    (from a checkout: pip install -e ".[molecule]" -e plugins/molecule)``. A plugin that
    is planned but not released yet gets ``medtoolkit-<name> (planned, not released yet)``
    instead of a command that would fail.

    Args:
        extras: one extra name or several (see :data:`PLUGIN_STATUS`).

    Raises:
        KeyError: an extra that is not in :data:`PLUGIN_STATUS`.
    """
    names = [extras] if isinstance(extras, str) else list(extras)
    unknown = [name for name in names if name not in PLUGIN_STATUS]
    if unknown:
        raise KeyError(f"no plugin extra named {', '.join(map(repr, unknown))}; known: {', '.join(PLUGIN_STATUS)}")
    planned = [name for name in names if PLUGIN_STATUS[name] != "available"]
    if planned:
        return ", ".join(f"medtoolkit-{name}" for name in planned) + " (planned, not released yet)"
    plugins: list[str] = []  # each plugin, then what it needs, without repeats
    for name in names:
        for plugin in (name, *PLUGIN_REQUIRES.get(name, ())):
            if plugin not in plugins:
                plugins.append(plugin)
    joined = ",".join(names)
    editable = " ".join(f"-e plugins/{plugin}" for plugin in plugins)
    return f'pip install "medtoolkit[{joined}]" (from a checkout: pip install -e ".[{joined}]" {editable})'


def name_install_hint(name: object) -> str | None:
    """The sentence an unknown-name message adds for a name provided by a plugin (None: not one)."""
    extra = KNOWN_PLUGIN_NAMES.get(str(name))
    if extra is None:
        return None
    extras = [extra, *NAME_ALSO_NEEDS.get(str(name), ())]
    hint = plugin_install_hint(extras)
    if any(PLUGIN_STATUS[e] != "available" for e in extras):
        return f"It belongs to the plugin {hint}."
    return f"It is provided by {'a plugin' if len(extras) == 1 else 'plugins'}: {hint}."


_PLURALS = {"memory": "memories", "loss": "losses"}


class RegistryError(Exception):
    """Base of registry errors."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no loaded plugin registered (message suggests close names or an extra)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(RegistryError):
    """Two plugins registered the same name for the same kind."""


class InvalidComponentError(RegistryError, TypeError):
    """A registered object is not a subclass of its kind's base class (or lacks ``Params``)."""


@dataclass(frozen=True)
class Entry:
    """One registered component.

    Attributes:
        name: registered name (what ``type:`` refers to in configs).
        kind: component kind.
        obj: the class (or, for presets, the preset mapping; for commands, the command class).
        plugin: distribution that registered it (``"medtoolkit"`` for built-ins).
        version: that distribution's version.
    """

    name: str
    kind: str
    obj: Any
    plugin: str
    version: str


class Registry:
    """Registered components of one kind.

    Args:
        kind: the kind (``"encoder"``, ``"preset"``, ...).
        base_class: required base class of registered objects (None: anything goes).
    """

    def __init__(self, kind: str, base_class: type | None = None) -> None:
        self.kind = kind
        self.base_class = base_class
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any, plugin: str = "medtoolkit", version: str = "") -> Entry:
        """Add ``obj`` under ``name``; raises on duplicates and on wrong base classes."""
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidComponentError(
                f"{self.kind} name {name!r} from plugin {plugin!r} must be a Python identifier "
                "(letters, digits, underscores)"
            )
        if name in self._entries:
            first = self._entries[name]
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by {first.plugin} {first.version} "
                f"and by {plugin} {version}; uninstall one or disable it with "
                f"MEDTOOLKIT_DISABLE_PLUGINS={plugin}"
            )
        if self.base_class is not None:
            if not (isinstance(obj, type) and issubclass(obj, self.base_class)):
                raise InvalidComponentError(
                    f"{self.kind} {name!r} from plugin {plugin!r} must be a subclass of "
                    f"{self.base_class.__module__}.{self.base_class.__qualname__}, got {obj!r}"
                )
            params = getattr(obj, "Params", None)
            if not (isinstance(params, type) and issubclass(params, BaseModel)):
                raise InvalidComponentError(
                    f"{self.kind} {name!r} from plugin {plugin!r} has no nested Params "
                    f"(a subclass of medtoolkit.components.params.Params), got {params!r}"
                )
            # the registered name is what configs and checkpoints refer to
            if obj.__dict__.get("registered_name") is None:
                obj.registered_name = name
        elif self.kind == "command":  # the CLI calls these for every command at start-up
            missing = [m for m in ("add_arguments", "run") if not callable(getattr(obj, m, None))]
            if missing:
                raise InvalidComponentError(
                    f"command {name!r} from plugin {plugin!r} must have {' and '.join(missing)} "
                    f"(see medtoolkit.hookspecs.register_commands), got {obj!r}"
                )
        elif self.kind == "preset" and not isinstance(obj, (str, os.PathLike, Mapping)):
            raise InvalidComponentError(
                f"preset {name!r} from plugin {plugin!r} must be a run-config mapping or a path to a "
                f"YAML file, got {obj!r}"
            )
        entry = Entry(name=name, kind=self.kind, obj=obj, plugin=plugin, version=version)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an :class:`UnknownComponentError` with suggestions otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        """The message for an unknown name: close matches, the extra to install, what exists."""
        message = f"unknown {self.kind} {name!r}."
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.6)
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        hint = name_install_hint(name)
        if hint:
            message += " " + hint
        known = ", ".join(sorted(self._entries)) or "none"
        return message + f" Known {_PLURALS.get(self.kind, self.kind + 's')}: {known}."

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)
