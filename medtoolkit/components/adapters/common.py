"""What the core adapters share: parameter counts, the output head, name patterns.

The *head* of a recommender is what turns its representations into drug logits. A
recommender names it with :attr:`Recommender.head_modules
<medtoolkit.components.base.Recommender.head_modules>` (submodule-name prefixes); when it
names nothing, the head is the last ``nn.Linear`` in ``named_modules()`` order (GAMENet:
``output.3``, the ``hidden -> n_drugs`` layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from torch import nn

from medtoolkit.components.base import Recommender


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Trainable and total parameter counts (elements, not tensors) of ``module``.

    A parameter shared by several submodules counts once (``nn.Module.parameters`` yields
    it once).

    Args:
        module: any module (a recommender after an adapter's ``attach``).

    Returns:
        ``(trainable, total)``: elements of parameters with ``requires_grad``, and of all.
    """
    trainable = total = 0
    for parameter in module.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def under(name: str, prefixes: Iterable[str]) -> bool:
    """Whether the dotted ``name`` is one of ``prefixes`` or lies under one (``output.3.weight`` under ``output``).

    Args:
        name: a parameter or module name.
        prefixes: module names (an empty string matches everything).

    Returns:
        True when ``name == p`` or ``name`` starts with ``p + "."`` for some prefix ``p``.
    """
    return any(not prefix or name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def head_prefixes(recommender: nn.Module) -> tuple[str, ...]:
    """The module-name prefixes of ``recommender``'s output head.

    Args:
        recommender: a recommender (any module; ``head_modules`` is read off its class).

    Returns:
        ``type(recommender).head_modules`` when not empty, otherwise the name of the last
        ``nn.Linear`` in ``named_modules()`` order; ``()`` when there is neither.
    """
    declared = tuple(getattr(type(recommender), "head_modules", ()) or ())
    if declared:
        return declared
    linears = [name for name, module in recommender.named_modules() if isinstance(module, nn.Linear)]
    return (linears[-1],) if linears else ()


def matching(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names matching any of the fnmatch ``patterns`` (case-sensitive), in their order.

    Args:
        names: parameter or module names.
        patterns: fnmatch patterns (``encoder.*``, ``*.bias``).

    Returns:
        the matching names.
    """
    return [name for name in names if any(fnmatchcase(name, pattern) for pattern in patterns)]


def model_name(recommender: nn.Module) -> str:
    """The recommender's registered name (or class name) for messages."""
    cls = type(recommender)
    registered = getattr(cls, "registered_name", None)
    return f"{registered!r} ({cls.__name__})" if registered else cls.__name__


def require_recommender(adapter: str, recommender: object) -> Recommender:
    """``recommender`` when it is a :class:`Recommender`.

    Raises:
        TypeError: it is not (the message names the adapter and the type received).
    """
    if not isinstance(recommender, Recommender):
        raise TypeError(f"adapter {adapter!r} adapts a Recommender, got {type(recommender).__name__}")
    return recommender
