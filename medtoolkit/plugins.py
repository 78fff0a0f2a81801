"""The plugin host: a pluggy manager plus one typed registry per kind.

The core registers its built-ins through the same hooks as any plugin (it is its own
first plugin). Third-party distributions expose a module under the entry-point group
``medtoolkit``; each is imported on its own, and one that fails to import or to register
is recorded as *broken* instead of taking the host down.

A plugin cannot take the command line down:

* whatever it prints while it is imported or registers (``print`` to ``sys.stdout``) is
  forwarded to stderr, so the stdout of ``--json`` commands stays machine-readable;
* any exception, ``SystemExit`` included, raised by its import or its hooks marks it
  broken. ``KeyboardInterrupt`` is the exception: it cannot be told apart from the user
  pressing Ctrl-C, so it stops the command (``error: interrupted``, exit 130);
* the reason shown for a broken plugin is one line of at most :data:`MAX_ERROR` characters
  (the full traceback is kept in :attr:`PluginInfo.details`).

Environment:
    ``MEDTOOLKIT_LOAD_PLUGINS``: comma-separated allow-list of distribution or entry-point
    names (only these third-party plugins load). ``MEDTOOLKIT_DISABLE_PLUGINS``: comma-separated
    names never loaded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from medtoolkit import hookspecs
from medtoolkit.components.base import BASE_CLASSES
from medtoolkit.registry import Registry, RegistryError

ENTRY_POINT_GROUP = "medtoolkit"
CORE_PLUGIN = "medtoolkit"
MAX_ERROR = 200
"""Longest reason stored for a broken plugin (one line; longer ones end in ``...``)."""


@dataclass
class PluginInfo:
    """What the host knows about one plugin.

    Attributes:
        name: distribution name (``"medtoolkit"`` for the core).
        version: distribution version.
        module: module that holds the hook implementations.
        status: ``"ok"``, ``"broken"`` or ``"disabled"``.
        error: one-line reason when broken or disabled.
        details: full traceback when broken.
        registered: kind -> names this plugin registered.
    """

    name: str
    version: str
    module: str
    status: str = "ok"
    error: str = ""
    details: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "registered": self.registered,
        }


def _normalize(name: str) -> str:
    """Distribution names compare like pip compares them (PEP 503): ``Foo_Bar`` == ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split_env(name: str) -> set[str]:
    return {_normalize(item.strip()) for item in os.environ.get(name, "").split(",") if item.strip()}


def _one_line(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what a plugin prints to stderr: stdout belongs to the command's output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _core_version() -> str:
    from medtoolkit import __version__

    return __version__


class PluginHost:
    """Owns the pluggy manager and the registries.

    Args:
        load_entry_points: discover third-party plugins through entry points.
        extra_plugins: extra ``(name, version, module_or_object)`` to register (tests,
            notebooks); they are treated like installed plugins.
    """

    def __init__(
        self,
        load_entry_points: bool = True,
        extra_plugins: tuple[tuple[str, str, Any], ...] = (),
    ) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {
            kind: Registry(kind, base) for kind, base in BASE_CLASSES.items()
        }
        self.registries["preset"] = Registry("preset")
        self.registries["command"] = Registry("command")
        self.plugins: list[PluginInfo] = []

        from medtoolkit import builtins

        self._add(CORE_PLUGIN, _core_version(), builtins)
        if load_entry_points:
            self._load_entry_points()
        for name, version, plugin in extra_plugins:
            self._add(name, version, plugin)

    # ------------------------------------------------------------------ loading
    def _load_entry_points(self) -> None:
        allow = _split_env("MEDTOOLKIT_LOAD_PLUGINS")
        deny = _split_env("MEDTOOLKIT_DISABLE_PLUGINS")
        for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            distribution = entry_point.dist.name if entry_point.dist is not None else entry_point.name
            version = entry_point.dist.version if entry_point.dist is not None else ""
            names = {_normalize(distribution), _normalize(entry_point.name)}
            if names & deny or (allow and not names & allow):
                reason = "disabled by MEDTOOLKIT_DISABLE_PLUGINS" if names & deny else (
                    "not in MEDTOOLKIT_LOAD_PLUGINS"
                )
                self.plugins.append(
                    PluginInfo(distribution, version, entry_point.value, "disabled", reason)
                )
                continue
            try:
                with _stdout_to_stderr():
                    plugin = entry_point.load()
            except KeyboardInterrupt:
                raise  # indistinguishable from the user's Ctrl-C: stop, do not blame the plugin
            except BaseException as error:  # noqa: BLE001 - any import failure (SystemExit too) marks it broken
                self.plugins.append(
                    PluginInfo(
                        distribution,
                        version,
                        entry_point.value,
                        "broken",
                        _one_line(f"import failed: {_describe(error)}"),
                        traceback.format_exc(),
                    )
                )
                continue
            with _stdout_to_stderr():
                self._add(distribution, version, plugin)

    def _add(self, name: str, version: str, plugin: ModuleType | Any) -> PluginInfo:
        """Register one plugin object and run its hooks, attributing every entry to it."""
        module_name = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, version, module_name)
        self.plugins.append(info)
        try:
            unmarked = [
                hook for hook in hookspecs.HOOK_KINDS
                if callable(getattr(plugin, hook, None)) and self.manager.parse_hookimpl_opts(plugin, hook) is None
            ]
            if unmarked:  # pluggy would silently ignore them
                raise pluggy.PluginValidationError(
                    plugin, f"{', '.join(unmarked)} of {module_name} not decorated with @medtoolkit.hookimpl"
                )
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001
            info.status, info.error, info.details = "broken", _one_line(_describe(error)), traceback.format_exc()
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            return info
        added: list[tuple[str, str]] = []
        try:
            for hook_name, kind in hookspecs.HOOK_KINDS.items():
                registry = self.registries[kind]
                for implementation in getattr(self.manager.hook, hook_name).get_hookimpls():
                    if implementation.plugin is not plugin:
                        continue

                    def register(component_name: str, obj: Any, _registry: Registry = registry) -> None:
                        _registry.register(component_name, obj, plugin=name, version=version)
                        added.append((_registry.kind, component_name))

                    implementation.function(register=register)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - SystemExit in a hook breaks only its plugin
            info.status = "broken"
            info.error = _one_line(f"registration failed: {_describe(error)}")
            info.details = traceback.format_exc()
            for kind, component_name in added:  # roll back the half-registered plugin
                self.registries[kind]._entries.pop(component_name, None)
            self.manager.unregister(plugin)
            return info
        for kind, component_name in added:
            info.registered.setdefault(kind, []).append(component_name)
        return info

    def add_plugin(self, name: str, version: str, plugin: ModuleType | Any) -> PluginInfo:
        """Register a plugin object at run time (tests, notebooks)."""
        return self._add(name, version, plugin)

    # ------------------------------------------------------------------ lookups
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind``."""
        try:
            return self.registries[kind]
        except KeyError:
            raise RegistryError(
                f"unknown component kind {kind!r}; kinds: {', '.join(self.registries)}"
            ) from None

    def get(self, kind: str, name: str) -> Any:
        """The registered object ``name`` of ``kind``."""
        return self.registry(kind).get(name).obj

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "broken"]


@functools.lru_cache(maxsize=1)
def default_host() -> PluginHost:
    """The process-wide host with every installed plugin (built on first use)."""
    return PluginHost()


