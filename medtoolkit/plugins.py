"""The plugin host: a pluggy manager plus one typed registry per kind.

The core registers its built-ins through the same hooks as any plugin (it is its own
first plugin). Third-party distributions expose a module under the entry-point group
``medtoolkit``; each is imported on its own, and one that fails to import or to register
is recorded as *broken* instead of taking the host down.

A plugin cannot take the command line down:

* whatever it prints while it is imported or registers (``print`` to ``sys.stdout``) is
  forwarded to stderr, so the stdout of ``--json`` commands stays machine-readable;
  (at the file-descriptor level too: ``os.write(1, ...)``, ``sys.__stdout__`` and C
  extensions cannot reach stdout either);
* any exception raised by its import or its hooks marks it broken, ``SystemExit`` and
  ``KeyboardInterrupt`` included. Only a real Ctrl-C (a SIGINT received while the plugin
  loads) stops the command (``error: interrupted``, exit 130);
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
import signal
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
    """``text`` on one line (whitespace runs collapsed, control characters as ``?``), cut to ``limit``."""
    flat = re.sub(r"\s+", " ", text).strip()
    flat = "".join(char if char.isprintable() else "?" for char in flat)  # no terminal escape sequences
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what a plugin prints to stderr: stdout belongs to the command's output.

    ``sys.stdout`` is redirected, and file descriptor 1 is pointed at descriptor 2 as well
    (where both exist), so that ``os.write(1, ...)``, ``sys.__stdout__`` and C code are caught.
    """
    saved = None
    try:
        for stream in (sys.stdout, sys.__stdout__):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 (a detached process): the Python-level redirect only
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            for stream in (sys.stdout, sys.__stdout__, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def _watch_sigint() -> Iterator[list[bool]]:
    """Record whether a real SIGINT (Ctrl-C) arrives; yields a one-item list set to True if so.

    A ``KeyboardInterrupt`` a plugin raises itself is then told apart from the user's Ctrl-C.
    Where no handler can be installed (not the main thread), every interrupt counts as real.
    """
    seen = [False]
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):
        previous = None
    if previous is signal.SIG_IGN:
        yield seen
        return

    def handler(signum: int, frame: Any) -> None:
        seen[0] = True
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, TypeError):  # not the main thread
        seen[0] = True
        yield seen
        return
    try:
        yield seen
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


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
        try:
            found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        except Exception as error:  # noqa: BLE001 - a damaged installed distribution (bad entry_points.txt)
            self.plugins.append(PluginInfo("(entry points)", "", ENTRY_POINT_GROUP, "broken",
                                           _one_line(f"cannot list installed plugins: {_describe(error)}"),
                                           traceback.format_exc()))
            return
        for entry_point in found:
            dist = getattr(entry_point, "dist", None)
            # damaged metadata (no Name or Version) gives None: keep the strings the listing formats
            distribution = str(getattr(dist, "name", None) or entry_point.name)
            version = str(getattr(dist, "version", None) or "")
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
                with _watch_sigint() as interrupted, _stdout_to_stderr():
                    plugin = entry_point.load()
            except KeyboardInterrupt as error:
                if interrupted[0]:
                    raise  # the user pressed Ctrl-C: stop, do not blame the plugin
                self.plugins.append(PluginInfo(distribution, version, entry_point.value, "broken",
                                               _one_line(f"import failed: {_describe(error)}"),
                                               traceback.format_exc()))
                continue
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
        with _watch_sigint() as interrupted:
            return self._add_watched(name, version, plugin, interrupted)

    def _add_watched(self, name: str, version: str, plugin: ModuleType | Any, interrupted: list[bool]) -> PluginInfo:
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
        except BaseException as error:  # noqa: BLE001
            if isinstance(error, KeyboardInterrupt) and interrupted[0]:
                raise  # the user pressed Ctrl-C
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
        except BaseException as error:  # noqa: BLE001 - SystemExit in a hook breaks only its plugin
            if isinstance(error, KeyboardInterrupt) and interrupted[0]:
                raise  # the user pressed Ctrl-C
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

    def versions(self) -> dict[str, str]:
        """``{distribution: version}`` of every plugin that loaded (what a checkpoint records)."""
        return {p.name: p.version for p in self.plugins if p.status == "ok"}

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "broken"]

    def not_loaded_note(self) -> str:
        """Why some installed plugins are missing, for a message about an unknown name.

        Returns:
            ``"(plugins disabled by MEDTOOLKIT_DISABLE_PLUGINS: medtoolkit-algnet)"`` (one
            group per reason, ``; ``-separated, including ``not in MEDTOOLKIT_LOAD_PLUGINS``),
            or ``""`` when every installed plugin was allowed to load.
        """
        groups: dict[str, list[str]] = {}
        for info in self.plugins:
            if info.status == "disabled":
                groups.setdefault(info.error or "disabled", []).append(info.name)
        if not groups:
            return ""
        return "(" + "; ".join(f"plugins {reason}: {', '.join(names)}" for reason, names in groups.items()) + ")"


@functools.lru_cache(maxsize=1)
def default_host() -> PluginHost:
    """The process-wide host with every installed plugin (built on first use)."""
    return PluginHost()


