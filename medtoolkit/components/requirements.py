"""Drug knowledge a run needs versus what its dataset provides, checked before any data is read.

Components declare what drug knowledge they need from the data with
:meth:`~medtoolkit.components.base.Component.knowledge_needed` (for example ``"ddi"``, the
DDI matrix); datasets declare what they provide, when they can tell from their options
alone, with :meth:`~medtoolkit.components.base.Dataset.knowledge_provided`. ``medtoolkit
validate`` compares the two so that a run on data without a DDI matrix is refused before
the data is loaded, naming the component and its config path. A dataset that cannot tell
before loading returns ``None`` and the check falls back to the component's constructor
(:meth:`~medtoolkit.components.schema.DataSchema.require_ddi`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from medtoolkit.components.params import Node

if TYPE_CHECKING:
    from medtoolkit.config import ConfigError, RunConfig

#: what each knowledge name means, for messages
KNOWLEDGE_NAMES = {"ddi": "a DDI matrix"}


def walk_nodes(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    """Every resolved node under ``node`` (itself first) with its dotted config path.

    Args:
        node: a validated node (its params are bound).
        path: the node's config path (``model``, ``losses.2``).

    Yields:
        ``(path, node)`` pairs, depth first.
    """
    yield path, node
    params = node._params
    if not isinstance(params, BaseModel):
        return
    for name in type(params).model_fields:
        value = getattr(params, name)
        children = value if isinstance(value, (list, tuple)) else [value]
        for index, child in enumerate(children):
            if isinstance(child, Node) and child._params is not None:
                child_path = f"{path}.{name}" if not isinstance(value, (list, tuple)) else f"{path}.{name}.{index}"
                yield from walk_nodes(child, child_path)


def _needed(node: Node) -> frozenset[str]:
    needs = getattr(node.component, "knowledge_needed", None)
    return frozenset(needs(node.params)) if needs is not None else frozenset()


def knowledge_errors(config: "RunConfig") -> list["ConfigError"]:
    """A :class:`ConfigError` for every component needing knowledge the dataset lacks.

    Args:
        config: a validated run config.

    Returns:
        One error per (component, missing knowledge) pair; empty when everything is
        provided or the dataset cannot tell before loading.
    """
    from medtoolkit.config import ConfigError

    provided_by = getattr(config.dataset.component, "knowledge_provided", None)
    provided: Any = provided_by(config.dataset.params) if provided_by is not None else None
    if provided is None:
        return []
    roots = [("model", config.model)] + [(f"losses.{i}", node) for i, node in enumerate(config.losses)]
    errors: list[ConfigError] = []
    for root_path, root in roots:
        for path, node in walk_nodes(root, root_path):
            for missing in sorted(_needed(node) - frozenset(provided)):
                what = KNOWLEDGE_NAMES.get(missing, repr(missing))
                errors.append(ConfigError(
                    path, f"{node.component.kind} {node.type!r} needs {what}, but dataset "
                          f"{config.dataset.type!r} as configured has none",
                ))
    return errors
