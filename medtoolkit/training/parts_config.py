"""The run config of parts built in Python: registered names and parameters as plain data.

:func:`python_run_config` turns the objects given to :func:`medtoolkit.fit.fit_evaluate`
back into a run file's mapping, so such a run gets a ``config.yaml`` that ``medtoolkit
train`` and ``medtoolkit evaluate`` accept whenever every part is a registered component.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from medtoolkit.components.base import KINDS, Dataset, Loss, Recommender, Task
from medtoolkit.components.params import Node
from medtoolkit.config import ConfigValidationError, EvalParams, TrainerParams, node_to_dict, validate_config


def registered_name(cls: type, host: Any) -> str | None:
    """The name ``host`` registered the component class ``cls`` under (None: not registered)."""
    kind = getattr(cls, "kind", "")
    for registry_kind in ([kind] if kind in KINDS else list(KINDS)):
        for entry in host.registry(registry_kind):
            if entry.obj is cls:
                return entry.name
    return None


def _name_children(config: dict[str, Any], params: BaseModel, host: Any) -> bool:
    """Put the registered names of child nodes (``Node.of(GRUEncoder)``) into ``config``."""
    for field_name in type(params).model_fields:
        child = getattr(params, field_name)
        if isinstance(child, Node) and child._component is not None:
            name = registered_name(child.component, host)
            if name is None or not _name_children(config[field_name], child.params, host):
                return False
            config[field_name]["type"] = name
    return True


def component_config(component: Any, host: Any) -> dict[str, Any] | None:
    """A built component as a config node (``{type: <registered name>, ...params}``).

    Returns:
        The node with every parameter filled in, or None when ``host`` does not know its
        class or the class of one of its child nodes.
    """
    name = registered_name(type(component), host)
    params = getattr(component, "params", None)
    if name is None or not isinstance(params, BaseModel):
        return None
    node = Node(type=name)
    node.bind(type(component), params)
    config = node_to_dict(node)
    return config if _name_children(config, params, host) else None


def _describe(component: Any, host: Any) -> dict[str, Any]:
    return component_config(component, host) or {
        "class": f"{type(component).__module__}.{type(component).__qualname__}"
    }


def python_run_config(
    *, name: str, seed: int, device: str, dataset: Dataset | None, task: Task, model: Recommender,
    losses: Sequence[Loss], trainer: TrainerParams, eval: EvalParams, host: Any,
) -> tuple[dict[str, Any], bool]:
    """The run config of parts built in Python, and whether it is a valid run file.

    It is valid (``medtoolkit train``/``evaluate`` accept it as ``config.yaml``) when
    every part is a registered component, the dataset component is given, and validating
    the config gives back exactly these parameters. Otherwise it still describes the run
    (unregistered parts by class name) for the checkpoints.
    """
    parts = {"dataset": dataset, "task": task, "model": model}
    config: dict[str, Any] = {
        "name": name, "seed": seed, "device": device,
        **{key: _describe(part, host) if part is not None else None for key, part in parts.items()},
        "losses": [_describe(loss, host) for loss in losses],
        "trainer": trainer.model_dump(), "eval": eval.model_dump(),
    }
    nodes = [config[key] for key in parts] + config["losses"]
    if any(node is None or "class" in node for node in nodes):
        return config, False
    try:
        validated = validate_config(config, host, source="python run").to_dict()
    except (ConfigValidationError, TypeError, ValueError):
        return config, False
    return config, validated == config
