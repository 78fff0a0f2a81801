"""Drug knowledge a run needs versus what its dataset provides, checked before any data is read.

Components declare what drug knowledge they need from the data with
:meth:`~medtoolkit.components.base.Component.knowledge_needed` (for example ``"ddi"``, the
DDI matrix); datasets declare what they provide, when they can tell from their options
alone, with :meth:`~medtoolkit.components.base.Dataset.knowledge_provided`. ``medtoolkit
validate`` compares the two so that a run on data without a DDI matrix is refused before
the data is loaded, naming the component and its config path. A dataset that cannot tell
before loading returns ``None`` and the check falls back to the component's constructor
(:meth:`~medtoolkit.components.schema.DataSchema.require_ddi`).

Components also declare the training-split count statistics they read with
:meth:`~medtoolkit.components.base.Component.statistics_needed`; :func:`statistics_errors`
refuses a malformed statistic name before any data is read (whether the data has the
named vocabularies is only known once it is loaded: the schema checks that).

A loss that reads named model extras (:meth:`~medtoolkit.components.base.Loss.extras_needed`)
must sit beside a recommender that provides them
(:meth:`~medtoolkit.components.base.Recommender.extras_provided`): :func:`extras_errors`.

A recommender reading task-supplied batch items
(:meth:`~medtoolkit.components.base.Recommender.batch_items_needed`) must run under a task
providing them (:meth:`~medtoolkit.components.base.Task.batch_items_provided`), and the task
may refuse the recommender outright (:meth:`~medtoolkit.components.base.Task.recommender_error`):
:func:`task_errors`.

Knowledge names: :data:`KNOWLEDGE_NAMES`. Molecule graphs and a BRICS substructure mask are
built from SMILES with rdkit (the ``chem`` extra), so they count as provided when the dataset
provides ``"smiles"`` and rdkit is installed; without rdkit the refusal names the extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from medtoolkit.components.params import Node
from medtoolkit.components.statistics import parse_statistic

if TYPE_CHECKING:
    from medtoolkit.config import ConfigError, RunConfig

#: what each knowledge name means, for messages
KNOWLEDGE_NAMES = {
    "ddi": "a DDI matrix",
    "smiles": "drug SMILES",
    "substructures": "a drug-to-substructure mask",
    "molecules": "drug molecule graphs",
}
#: knowledge a dataset provides whenever it provides ``"smiles"`` and rdkit is installed
#: (built from the SMILES by :meth:`DataSchema.require_molecules` / ``require_substructures``)
FROM_SMILES = frozenset({"molecules", "substructures"})
#: knowledge that needs rdkit unless the dataset declares it ready-made (none does today):
#: refused without rdkit even when the dataset cannot tell what it provides
NEEDS_RDKIT = frozenset({"molecules"})
_CHEM_EXTRA = 'pip install "medtoolkit[chem]"'


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


def component_nodes(config: "RunConfig") -> list[tuple[str, Node]]:
    """Every resolved node of the model, the losses and the stages, with its dotted config path.

    Args:
        config: a validated run config.

    Returns:
        ``(path, node)`` pairs: ``model`` and its sub-nodes, then ``losses.<i>`` and theirs,
        then each stage's ``stages.<k>.losses.<i>`` and ``stages.<k>.adapter`` and theirs.
    """
    roots = [("model", config.model)] + [(f"losses.{i}", node) for i, node in enumerate(config.losses)]
    for k, stage in enumerate(getattr(config, "stages", None) or ()):
        roots += [(f"stages.{k}.losses.{i}", node) for i, node in enumerate(stage.losses or ())]
        if stage.adapter is not None:
            roots.append((f"stages.{k}.adapter", stage.adapter))
    return [(path, node) for root_path, root in roots for path, node in walk_nodes(root, root_path)]


def _needed(node: Node) -> frozenset[str]:
    needs = getattr(node.component, "knowledge_needed", None)
    return frozenset(needs(node.params)) if needs is not None else frozenset()


def with_derived(provided: frozenset[str], rdkit: bool) -> frozenset[str]:
    """``provided`` plus what is built from it: molecule graphs and a BRICS substructure
    mask come from ``"smiles"`` when rdkit is installed.

    Args:
        provided: knowledge names a dataset declares.
        rdkit: whether rdkit can be imported.

    Returns:
        the names the run can count on.
    """
    return provided | FROM_SMILES if rdkit and "smiles" in provided else provided


def _message(kind: str, name: str, missing: str, dataset: str, provided: frozenset[str] | None,
             rdkit: bool) -> str:
    what = KNOWLEDGE_NAMES.get(missing, repr(missing))
    smiles_known = missing in NEEDS_RDKIT if provided is None else "smiles" in provided
    if not rdkit and missing in FROM_SMILES and smiles_known:
        return (f"{kind} {name!r} needs {what}, built from the dataset's SMILES with rdkit, which is "
                f"not installed: {_CHEM_EXTRA}")
    return f"{kind} {name!r} needs {what}, but dataset {dataset!r} as configured has none"


def knowledge_errors(config: "RunConfig") -> list["ConfigError"]:
    """A :class:`ConfigError` for every component needing knowledge the dataset lacks.

    ``"molecules"`` and ``"substructures"`` count as provided when the dataset provides
    ``"smiles"`` and rdkit is installed (:func:`with_derived`). A component needing
    ``"molecules"`` is refused without rdkit even when the dataset cannot tell what it
    provides; the message names the extra to install.

    Args:
        config: a validated run config.

    Returns:
        One error per (component, missing knowledge) pair; empty when everything is
        provided or the dataset cannot tell before loading.
    """
    from medtoolkit.config import ConfigError
    from medtoolkit.knowledge.molecules import rdkit_available

    provided_by = getattr(config.dataset.component, "knowledge_provided", None)
    declared: Any = provided_by(config.dataset.params) if provided_by is not None else None
    needed = [(path, node, _needed(node)) for path, node in component_nodes(config)]
    if declared is None and not any(needs & NEEDS_RDKIT for _, _, needs in needed):
        return []
    rdkit = rdkit_available() if any(needs & FROM_SMILES for _, _, needs in needed) else True
    provided = None if declared is None else frozenset(declared)
    errors: list[ConfigError] = []
    for path, node, needs in needed:
        if provided is None:
            missing_names = needs & NEEDS_RDKIT if not rdkit else frozenset()
        else:
            missing_names = needs - with_derived(provided, rdkit)
        for missing in sorted(missing_names):
            errors.append(ConfigError(
                path, _message(node.component.kind, node.type, missing, config.dataset.type, provided, rdkit),
            ))
    return errors


def statistics_errors(config: "RunConfig") -> list["ConfigError"]:
    """A :class:`ConfigError` for every malformed statistic name a component declares.

    Walks the model and loss nodes like :func:`knowledge_errors` and parses what each
    component's :meth:`~medtoolkit.components.base.Component.statistics_needed` returns
    with :func:`~medtoolkit.components.statistics.parse_statistic`.

    Args:
        config: a validated run config.

    Returns:
        One error per malformed name (path: the component's config path); empty when
        every name is well formed.
    """
    from medtoolkit.config import ConfigError

    errors: list[ConfigError] = []
    for path, node in component_nodes(config):
        declare = getattr(node.component, "statistics_needed", None)
        if declare is None:
            continue
        names = declare(node.params)
        for name in sorted(names, key=repr):
            try:
                parse_statistic(name)
            except ValueError as error:
                errors.append(ConfigError(
                    path, f"{node.component.kind} {node.type!r} declares a statistic it needs that "
                          f"cannot be computed: {error}",
                ))
    return errors


def _declared(node: Node, method: str) -> frozenset[str]:
    declare = getattr(node.component, method, None)
    return frozenset(declare(node.params)) if declare is not None else frozenset()


def extras_errors(model: Node, losses: Sequence[tuple[str, Node]]) -> list["ConfigError"]:
    """A :class:`ConfigError` for every loss needing model extras the recommender does not provide.

    Compares each loss's :meth:`~medtoolkit.components.base.Loss.extras_needed` with the
    model's :meth:`~medtoolkit.components.base.Recommender.extras_provided`, both with
    their validated params (see :class:`~medtoolkit.components.base.ModelOutput`).

    Args:
        model: the validated recommender node (``config.model``).
        losses: ``(config path, validated loss node)`` pairs, e.g. ``("losses.1", node)``
            or ``("stages.0.losses.0", node)``.

    Returns:
        One error per loss lacking an extra, at the loss's path, naming the loss type,
        the missing extras and what the model provides (``none`` when nothing); empty
        when every need is met.
    """
    from medtoolkit.config import ConfigError

    provided = _declared(model, "extras_provided")
    errors: list[ConfigError] = []
    for path, node in losses:
        missing = _declared(node, "extras_needed") - provided
        if missing:
            offered = ", ".join(repr(name) for name in sorted(provided)) or "none"
            errors.append(ConfigError(
                path,
                f"loss {node.type!r} needs model extras {', '.join(repr(n) for n in sorted(missing))} that "
                f"recommender {model.type!r} does not provide (it provides: {offered})",
            ))
    return errors


def adapter_errors(model: Node, adapters: Sequence[tuple[str, Node]]) -> list["ConfigError"]:
    """Stage adapters that refuse the run's recommender type, before any data is read.

    Each adapter class answers :meth:`~medtoolkit.components.base.Adapter.recommender_error`
    for the model's component class (default: it adapts any recommender).

    Args:
        model: the validated recommender node.
        adapters: ``(config path, adapter node)`` pairs, e.g. ``("stages.1.adapter", node)``.

    Returns:
        one :class:`~medtoolkit.config.ConfigError` per refusing adapter, at its path.
    """
    from medtoolkit.config import ConfigError

    found = []
    for path, node in adapters:
        check = getattr(node.component, "recommender_error", None)
        problem = check(node.params, model.component) if check is not None else None
        if problem:
            found.append(ConfigError(path, f"adapter {node.type!r} cannot adapt recommender {model.type!r}: {problem}"))
    return found


def task_errors(model: Node, task: Node) -> list["ConfigError"]:
    """The recommender's needs the task does not meet, before any data is read.

    Two checks: every batch item of the model's
    :meth:`~medtoolkit.components.base.Recommender.batch_items_needed` must be in the task's
    :meth:`~medtoolkit.components.base.Task.batch_items_provided`, and the task's
    :meth:`~medtoolkit.components.base.Task.recommender_error` must accept the model class.

    Args:
        model: the validated recommender node (``config.model``).
        task: the validated task node (``config.task``).

    Returns:
        the :class:`~medtoolkit.config.ConfigError` s, at ``model`` for missing items (naming
        the recommender, the items and the task) and at ``task`` for a refusal.
    """
    from medtoolkit.config import ConfigError

    errors: list[ConfigError] = []
    if model._component is None or task._component is None:  # an invalid node: reported on its own
        return errors
    missing = _declared(model, "batch_items_needed") - _declared(task, "batch_items_provided")
    if missing:
        offered = ", ".join(repr(name) for name in sorted(_declared(task, "batch_items_provided"))) or "none"
        errors.append(ConfigError(
            "model",
            f"recommender {model.type!r} needs batch items {', '.join(repr(n) for n in sorted(missing))} that "
            f"task {task.type!r} does not provide (it provides: {offered})",
        ))
    check = getattr(task.component, "recommender_error", None)
    problem = check(task.params, model.component) if check is not None else None
    if problem:
        errors.append(ConfigError("task", f"task {task.type!r} cannot use recommender {model.type!r}: {problem}"))
    return errors
