"""Resource limits for YAML text from users (run files, ``-o key=value`` overrides).

PyYAML builds whatever a document describes: a few hundred bytes of nested aliases
("billion laughs") expand to billions of nodes once anything walks the result, and
100,000 nested brackets overflow the (recursive) composer. :func:`check_yaml_limits`
walks PyYAML's *event stream* - produced by an iterative state machine, so it never
recurses - and refuses a document before anything is composed when it

* nests collections deeper than ``max_depth`` (aliases count with the depth they expand to),
* would expand to more than ``max_nodes`` nodes (an alias counts as the size of what it
  points to, so alias bombs are caught while still tiny),
* uses more than ``max_aliases`` aliases, or an alias inside the node it names (a cycle).

The size of the text itself is limited by the callers (:data:`MAX_BYTES`).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass

import yaml

#: largest run file / override value accepted, in bytes
MAX_BYTES = 1_000_000
#: deepest nesting of collections accepted
MAX_DEPTH = 64
#: most nodes a document may expand to (aliases expanded)
MAX_NODES = 100_000
#: most aliases (``*name``) a document may use
MAX_ALIASES = 100
#: longest echo of a user value inside an error message
MAX_ECHO = 200

_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class YAMLLimitError(ValueError):
    """A YAML document exceeds a limit; ``line``/``column`` (1-based) say where it was noticed."""

    def __init__(self, message: str, line: int, column: int) -> None:
        self.line = line
        self.column = column
        super().__init__(f"{message} (line {line}, column {column})")


@dataclass
class _Open:
    """A collection whose end event has not been seen yet."""

    anchor: str | None
    nodes: int = 1
    height: int = 1


def check_yaml_limits(
    text: str,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_aliases: int = MAX_ALIASES,
) -> None:
    """Refuse YAML text that is nested too deeply or expands to too many nodes.

    Args:
        text: the YAML text.
        max_depth: deepest nesting of collections (a top-level mapping has depth 1).
        max_nodes: most nodes after alias expansion (scalars and collections).
        max_aliases: most alias uses.

    Raises:
        YAMLLimitError: a limit is exceeded; the message names the limit, line and column.
        yaml.YAMLError: the text is not YAML (syntax errors surface here first).
    """
    stack: list[_Open] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
    open_anchors: set[str] = set()
    total = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        mark = event.start_mark
        where = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        if isinstance(event, _START):
            if len(stack) + 1 > max_depth:
                raise YAMLLimitError(f"YAML nested deeper than {max_depth} levels", *where)
            stack.append(_Open(event.anchor))
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            total += 1
            added, height = 0, -1
        elif isinstance(event, _END):
            done = stack.pop()
            if done.anchor is not None:
                anchors[done.anchor] = (done.nodes, done.height)
                open_anchors.discard(done.anchor)
            added, height = done.nodes, done.height
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
            total += 1
            added, height = 1, 0
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > max_aliases:
                raise YAMLLimitError(f"YAML uses more than {max_aliases} aliases", *where)
            if event.anchor in open_anchors:
                raise YAMLLimitError(f"alias *{event.anchor} refers to a node that contains it", *where)
            added, height = anchors.get(event.anchor, (1, 0))  # unknown: the composer reports it
            if len(stack) + height > max_depth:
                raise YAMLLimitError(f"YAML nested deeper than {max_depth} levels (aliases expanded)", *where)
            total += added
        else:
            continue
        if total > max_nodes:
            raise YAMLLimitError(f"YAML expands to more than {max_nodes:,} nodes (aliases expanded)", *where)
        if stack and height >= 0:
            parent = stack[-1]
            parent.nodes += added
            parent.height = max(parent.height, height + 1)


class _BoundedRepr(reprlib.Repr):
    """:class:`reprlib.Repr` that also summarises integers too long for ``repr`` (inside containers too)."""

    def repr_int(self, x: int, level: int) -> str:  # noqa: D102 - reprlib hook
        if x.bit_length() > 4 * MAX_ECHO:
            return f"<an integer of {x.bit_length():,} bits>"
        return super().repr_int(x, level)

    def repr_str(self, x: str, level: int) -> str:  # noqa: D102 - reprlib hook: never repr a huge string whole
        return super().repr_str(x[: self.maxstring + 1], level)


_REPR = _BoundedRepr()
_REPR.maxstring = MAX_ECHO
_REPR.maxother = MAX_ECHO
_REPR.maxlong = 60
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 10


def short_repr(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` of bounded cost and about ``limit`` characters (cut with ``...``).

    A long string keeps its start: ``'xxxx'...``; containers are shortened by :mod:`reprlib`.
    """
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "..."
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # repr would be long (or refused)
        return f"<an integer of {value.bit_length():,} bits>"
    try:
        return clip(_REPR.repr(value), limit)
    except Exception:  # noqa: BLE001 - a repr that fails (or recurses) must not replace the error being reported
        return f"<{type(value).__name__}>"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
