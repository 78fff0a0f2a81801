"""pluggy hook specifications (project name ``medtoolkit``).

Hooks only *discover*: each implementation receives one ``register(name, obj)`` callable
and calls it once per part it provides. The host calls every implementation separately, so
each entry is attributed to the plugin (distribution and version) that made it.

Example::

    import medtoolkit

    @medtoolkit.hookimpl
    def register_encoders(register):
        register("bag_of_codes", BagOfCodesEncoder)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "medtoolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, Any], None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Dataset` subclasses by name."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Task` subclasses by name."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Encoder` subclasses by name."""


@hookspec
def register_memories(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Memory` subclasses by name."""


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Loss` subclasses by name."""


@hookspec
def register_recommenders(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Recommender` subclasses by name."""


@hookspec
def register_adapters(register: Register) -> None:
    """Register :class:`~medtoolkit.components.base.Adapter` subclasses by name."""


@hookspec
def register_presets(register: Register) -> None:
    """Register presets: ``register(name, run_config_mapping_or_yaml_path)``."""


@hookspec
def register_commands(register: Register) -> None:
    """Register CLI sub-commands: ``register(name, command_class)``.

    A command class has ``help: str``, ``add_arguments(parser)`` and ``run(args, host) -> int``.
    """


#: hook name -> registry kind it fills
HOOK_KINDS: dict[str, str] = {
    "register_datasets": "dataset",
    "register_tasks": "task",
    "register_encoders": "encoder",
    "register_memories": "memory",
    "register_losses": "loss",
    "register_recommenders": "recommender",
    "register_adapters": "adapter",
    "register_presets": "preset",
    "register_commands": "command",
}
