"""Sphinx extension: the configuration reference, generated from the registered components.

Usage in a page::

    .. medtoolkit-config-reference::

The directive builds ``medtoolkit.plugins.PluginHost(load_entry_points=False)`` (the core
only: third-party plugins document their own parts) and emits, for each component kind,
one section per registered component with a table of its ``Params`` fields (name, type,
default, constraints, description), then the run-file sections ``trainer``
(:class:`~medtoolkit.config.TrainerParams`) and ``eval`` (:class:`~medtoolkit.config.EvalParams`)
and the list of presets.

Robustness: when ``medtoolkit`` cannot be imported or the core plugin is broken (a module
it registers does not import), the page gets a clear note with the error and the tables of
everything that *can* be imported; the build does not crash. Set
``medtoolkit_config_reference_strict = True`` in ``conf.py`` to turn that situation into a
Sphinx warning (so that ``sphinx-build -W`` fails).
"""

from __future__ import annotations

import enum
import inspect
import traceback
import types
import typing
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

#: kind -> (section title, hook that fills it), in the order of the page
KIND_TITLES: dict[str, tuple[str, str]] = {
    "dataset": ("Datasets", "register_datasets"),
    "task": ("Tasks", "register_tasks"),
    "encoder": ("Encoders", "register_encoders"),
    "memory": ("Memories", "register_memories"),
    "loss": ("Losses", "register_losses"),
    "recommender": ("Recommenders", "register_recommenders"),
    "adapter": ("Adapters", "register_adapters"),
}

#: descriptions of the run file's top-level keys that have none in RunConfig
RUN_FILE_KEYS: dict[str, str] = {
    "name": "name of the run, used in reports and metrics.json",
    "seed": "seeds Python, numpy and torch before each split is trained",
    "dataset": "where the patients come from",
    "task": "splits, data schema and evaluation protocol",
    "model": "the recommender and, through its slots, its encoders and memories",
    "losses": "terms of the training objective (none for models that need no training)",
    "trainer": "optimisation settings",
    "eval": "how test predictions are scored",
}

_CONSTRAINTS = (
    ("gt", ">"),
    ("ge", ">="),
    ("lt", "<"),
    ("le", "<="),
    ("multiple_of", "multiple of"),
    ("min_length", "min length"),
    ("max_length", "max length"),
)


# ----------------------------------------------------------------------------- formatting
def escape(text: str) -> str:
    """Escape free text for reStructuredText (descriptions are plain text, not markup)."""
    for char in ("\\", "*", "`", "|", "_", "[", "]"):
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def literal(text: str) -> str:
    """Inline literal markup for ``text`` (backslashes and backquotes are safe inside :code:)."""
    text = " ".join(str(text).split())
    if "`" in text or text.endswith("\\"):
        return escape(text)
    return f":code:`{text}`"


def format_type(annotation: Any) -> str:
    """A short, readable spelling of a type annotation (``float | None``, ``'mean' | 'sum'``)."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a.value if isinstance(a, enum.Enum) else a) for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(format_type(a) for a in args)
    if origin is typing.Annotated:
        return format_type(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{name}[{', '.join(format_type(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    if isinstance(annotation, typing.ForwardRef):
        return annotation.__forward_arg__
    return str(annotation).replace("typing.", "")


def format_constraints(field: Any) -> str:
    """Constraints of a pydantic field (``>= 1``, ``> 0, < 1``...) from its metadata."""
    parts = []
    for item in getattr(field, "metadata", ()) or ():
        for attribute, symbol in _CONSTRAINTS:
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value!r}")
    return ", ".join(parts)


def node_spelling(node: Any) -> str:
    """A child node as it would appear in a run file: ``{type: gru, hidden_dim: 64}``."""
    params = dict(getattr(node, "model_extra", None) or {})
    inner = ", ".join([f"type: {node.type}"] + [f"{k}: {v!r}" for k, v in params.items()])
    return "{" + inner + "}"


def format_default(field: Any) -> str:
    """The default of a pydantic field as RST (``required`` when there is none)."""
    if field.is_required():
        return "*required*"
    try:
        value = field.get_default(call_default_factory=True, validated_data={})
    except TypeError:  # pydantic < 2.10 has no validated_data argument
        try:
            value = field.get_default(call_default_factory=True)
        except Exception:  # noqa: BLE001
            return "*computed*"
    except Exception:  # noqa: BLE001 - a factory that needs other fields
        return "*computed*"
    if hasattr(value, "type") and hasattr(value, "model_extra"):  # a Node
        return literal(node_spelling(value))
    if isinstance(value, enum.Enum):
        value = value.value
    if hasattr(type(value), "model_fields") and not hasattr(value, "type"):
        return "*all defaults* (below)"
    if isinstance(value, float) and len(repr(value)) > 10:
        return literal(f"{value:.6g}")
    if isinstance(value, list) and value and all(hasattr(v, "type") for v in value):
        return literal("[" + ", ".join(node_spelling(v) for v in value) + "]")
    return literal(repr(value))


def first_paragraph(obj: Any) -> str:
    """The first paragraph of an object's own docstring (RST, as written)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(doc or "")
    return doc.split("\n\n")[0].strip() if doc else ""


def component_traits(obj: Any) -> str:
    """One sentence on the class-level switches of a component (RST), or ''."""
    kind = getattr(obj, "kind", "")
    traits = []
    if kind == "encoder" and getattr(obj, "consumes", None):
        traits.append(f"Consumes {literal(obj.consumes)}.")
    if kind == "loss" and getattr(obj, "gating", False):
        traits.append("A *gating* loss: folded into the objective after the additive terms.")
    if kind == "recommender" and not getattr(obj, "trainable", True):
        traits.append("Not trainable: the trainer skips training and no loss is needed.")
    return " ".join(traits)


def params_table(params_class: type, slot_kind: Any, caption: str = "") -> list[str]:
    """RST lines of a ``list-table`` for a pydantic model's fields (empty model: a sentence)."""
    fields = getattr(params_class, "model_fields", {})
    if not fields:
        return ["No parameters.", ""]
    lines = [
        f".. list-table:: {escape(caption)}" if caption else ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 18 22 22 12 26",
        "",
        "   * - key",
        "     - type",
        "     - default",
        "     - constraints",
        "     - description",
    ]
    for name, field in fields.items():
        kind = slot_kind(params_class, name) if slot_kind is not None else None
        type_text = f"*{kind} node* (slot)" if kind else literal(format_type(field.annotation))
        constraints = format_constraints(field)
        lines += [
            f"   * - {literal(name)}",
            f"     - {type_text}",
            f"     - {format_default(field)}",
            f"     - {literal(constraints) if constraints else ''}",
            f"     - {escape(field.description or '')}",
        ]
    return lines + [""]


def heading(text: str, char: str) -> list[str]:
    return [text, char * max(len(text), 4), ""]


# ----------------------------------------------------------------------------- collection
def _best_effort_entries() -> tuple[dict[str, list[tuple[str, Any]]], list[str]]:
    """Call each built-in hook on its own, keeping what imports (used when the core is broken)."""
    from medtoolkit import builtins, hookspecs

    found: dict[str, list[tuple[str, Any]]] = {}
    problems = []
    for hook_name, kind in hookspecs.HOOK_KINDS.items():
        function = getattr(builtins, hook_name, None)
        if function is None:
            continue
        collected: list[tuple[str, Any]] = []
        try:
            function(register=lambda name, obj, _c=collected: _c.append((name, obj)))
        except Exception as error:  # noqa: BLE001
            problems.append(f"{hook_name}: {type(error).__name__}: {error}")
            continue
        found[kind] = collected
    return found, problems


def collect() -> dict[str, Any]:
    """Everything the page shows; never raises (problems are returned as notes)."""
    result: dict[str, Any] = {"kinds": {}, "presets": [], "notes": [], "slot_kind": None,
                              "trainer": None, "eval": None, "run": None, "sections": {}}
    try:
        from medtoolkit.components.params import slot_kind
        from medtoolkit.config import NODE_SECTIONS, EvalParams, RunConfig, TrainerParams
    except Exception as error:  # noqa: BLE001
        result["notes"].append(f"medtoolkit could not be imported: {type(error).__name__}: {error}")
        return result
    result.update(slot_kind=slot_kind, trainer=TrainerParams, eval=EvalParams, run=RunConfig,
                  sections=NODE_SECTIONS)
    try:
        from medtoolkit.plugins import CORE_PLUGIN, PluginHost

        host = PluginHost(load_entry_points=False)
    except Exception as error:  # noqa: BLE001
        result["notes"].append(
            f"the plugin host could not be built: {type(error).__name__}: {error}\n"
            + traceback.format_exc(limit=3)
        )
        return result
    core = next((p for p in host.plugins if p.name == CORE_PLUGIN), None)
    if core is not None and core.status == "ok":
        for kind in KIND_TITLES:
            if kind in host.registries:
                result["kinds"][kind] = [(e.name, e.obj, e.plugin, e.version) for e in host.registry(kind)]
        result["presets"] = [(e.name, e.obj) for e in host.registry("preset")]
        return result
    error = core.error if core is not None else "the core plugin is missing"
    result["notes"].append(f"the core plugin is broken: {error}")
    entries, problems = _best_effort_entries()
    result["notes"].extend(problems)
    for kind in KIND_TITLES:
        result["kinds"][kind] = [(n, o, CORE_PLUGIN, "") for n, o in sorted(entries.get(kind, []),
                                                                             key=lambda item: item[0])]
    result["presets"] = sorted(entries.get("preset", []), key=lambda item: item[0])
    return result


# ----------------------------------------------------------------------------- the directive
class ConfigReferenceDirective(SphinxDirective):
    """``.. medtoolkit-config-reference::`` (option ``:kinds:``: comma-separated subset)."""

    has_content = False
    option_spec = {"kinds": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        data = collect()
        wanted = [k.strip() for k in self.options.get("kinds", "").split(",") if k.strip()] or list(KIND_TITLES)
        lines: list[str] = []
        if data["notes"]:
            message = "; ".join(line.splitlines()[0] for line in data["notes"])
            if self.config.medtoolkit_config_reference_strict:
                logger.warning("config reference is incomplete: %s", message, location=self.get_location())
            else:
                logger.info("medtoolkit-config-reference: incomplete: %s", message)
            lines += [".. warning::", "",
                      "   This reference could not be generated completely when the docs were built, "
                      "so some tables below may be missing:", ""]
            for note in data["notes"]:
                lines.append(f"   * {literal(note.splitlines()[0])}")
            lines.append("")

        slot_kind = data["slot_kind"]
        for kind in wanted:
            title, hook = KIND_TITLES[kind]
            entries = data["kinds"].get(kind, [])
            lines += heading(title, "=")
            article = "an" if kind[0] in "aeiou" else "a"
            lines += [f"Registered through :doc:`/hooks/{hook}`; selected with ``type: <name>`` in "
                      f"{article} *{kind}* node.", ""]
            if not entries:
                lines += [f"The core registers no {kind} (plugins may).", ""]
                continue
            for name, obj, plugin, version in entries:
                self._note_source(obj)
                lines += heading(name, "-")
                lines.append(f"Class {literal(obj.__module__ + '.' + obj.__qualname__)}, "
                             f"registered by {literal((plugin + ' ' + version).strip())}.")
                lines.append("")
                summary = first_paragraph(obj)
                if summary:
                    lines += summary.splitlines() + [""]
                traits = component_traits(obj)
                if traits:
                    lines += [traits, ""]
                params = getattr(obj, "Params", None)
                if params is not None and hasattr(params, "model_fields"):
                    lines += params_table(params, slot_kind)

        if data["run"] is not None and not self.options.get("kinds"):
            lines += self._run_file_sections(data)
        parent = nodes.section()
        parent.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="<medtoolkit-config-reference>"),
                                 parent)
        return parent.children

    def _run_file_sections(self, data: dict[str, Any]) -> list[str]:
        lines = heading("Run file", "=")
        lines += ["Top-level keys of a run file (:class:`medtoolkit.config.RunConfig`). "
                  "Node sections take ``{type: <registered name>, ...params}``.", ""]
        sections = data["sections"]
        run = data["run"]
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 14 22 22 42", "",
                  "   * - key", "     - value", "     - default", "     - description"]
        for name, field in run.model_fields.items():
            if name in sections:
                what = f"list of *{sections[name]}* nodes" if name == "losses" else f"*{sections[name]}* node"
            elif name in ("trainer", "eval"):
                what = f"see :ref:`config-{name}`"
            else:
                what = literal(format_type(field.annotation))
            description = field.description or RUN_FILE_KEYS.get(name, "")
            lines += [f"   * - {literal(name)}", f"     - {what}", f"     - {format_default(field)}",
                      f"     - {escape(description)}"]
        lines.append("")
        for key, model in (("trainer", data["trainer"]), ("eval", data["eval"])):
            self._note_source(model)
            lines += [f".. _config-{key}:", ""]
            lines += heading(f"{key} ({model.__name__})", "-")
            summary = first_paragraph(model)
            if summary:
                lines += summary.splitlines() + [""]
            lines += params_table(model, None)
        if data["presets"]:
            lines += heading("Presets", "=")
            lines += ["Run files registered through :doc:`/hooks/register_presets` by the core; "
                      "``medtoolkit presets copy NAME DEST`` writes one out for editing.", ""]
            for name, obj in data["presets"]:
                where = f"file {literal(getattr(obj, 'name', obj))}" if isinstance(obj, (str,)) or hasattr(
                    obj, "suffix") else "a mapping"
                lines.append(f"* {literal(name)}: {where}")
            lines.append("")
        return lines

    def _note_source(self, obj: Any) -> None:
        """Rebuild the page when the component's source file changes."""
        try:
            path = inspect.getsourcefile(obj)
        except (TypeError, OSError):
            return
        if path:
            self.env.note_dependency(path)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("medtoolkit_config_reference_strict", False, "env", types=(bool,))
    app.add_directive("medtoolkit-config-reference", ConfigReferenceDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
