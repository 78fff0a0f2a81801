"""Declarative run files: parsing, whole-config validation, overrides.

A run file (YAML) has ``seed``, ``device``, ``dataset``, ``task``, ``model``, ``losses``,
``trainer``, ``eval`` and, optionally, ``stages`` (:class:`StageParams`: a run trained in
several stages, see ``docs/stages.rst``). Every component node is ``{type: <registered name>,
...params}``; parents declare child slots by kind (see :func:`medtoolkit.components.params.slot`).
:func:`validate_config` resolves every name and validates every ``Params``, collecting
*all* errors with their config path before any data is read.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medtoolkit.components.params import Node, slot_kind, slot_mismatch
from medtoolkit.files import FileTooLargeError, NotARegularFileError, read_regular_file
from medtoolkit.registry import UnknownComponentError
from medtoolkit.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_ECHO, YAMLLimitError, check_yaml_limits, clip, short_repr

if TYPE_CHECKING:  # avoids an import cycle at runtime
    from medtoolkit.plugins import PluginHost


#: largest seed: numpy's legacy ``RandomState`` (bootstrap draws) takes 0 <= seed < 2**32
MAX_SEED = 2**32 - 1
#: sane upper bounds of loop counts and sizes (far beyond any real run; they stop typos like 1e12)
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1_000_000
MAX_THREADS = 4096
MAX_BOOTSTRAP_ROUNDS = 1_000_000
#: longest message / config path kept in a :class:`ConfigError`
MAX_MESSAGE = 2000
MAX_ECHO_PATH = 300


_PROGRESS_WORDS: dict[str, str] = {
    "off": "none", "no": "none", "false": "none", "on": "auto", "yes": "auto", "true": "auto",
}
"""Switch words accepted for :attr:`TrainerParams.progress` and the mode each one means."""


class TrainerParams(BaseModel):
    """Settings of :class:`medtoolkit.training.Trainer`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(40, ge=0, le=MAX_EPOCHS, description="maximum number of epochs")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate per epoch: constant, or cosine from lr down to 0 over the epochs"
    )
    batch_size: int = Field(
        16, ge=1, le=MAX_BATCH_SIZE,
        description="patients per optimizer step (under torchrun: over all processes together)",
    )
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm (None: no clipping)")
    ema_decay: float | None = Field(
        None, gt=0, lt=1,
        description="keep an exponential moving average of the trainable weights with this per-step decay "
                    "(0.99: about the last 100 steps, after a warm-up decay (1 + n) / (10 + n) at step n) and "
                    "validate, select and keep the averaged weights; None: the raw weights",
    )
    amp: bool = Field(False, description="automatic mixed precision (CUDA only)")
    early_stopping_patience: int | None = Field(
        None, ge=1, le=MAX_EPOCHS, description="stop after this many epochs without validation improvement"
    )
    select_metric: Literal["jaccard", "prauc", "f1", "loss"] = Field(
        "jaccard",
        description="what selects the best epoch: the highest validation jaccard, prauc or f1, or the lowest "
                    "validation loss (loss: the weighted sum of the run's loss terms on the validation patients); "
                    "without validation patients the last epoch is kept",
    )
    progress: Literal["auto", "bar", "log", "none"] = Field(
        "auto", description="progress bar on a terminal, plain log lines otherwise (YAML off/false: none)"
    )
    num_threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="torch CPU threads (None: torch default)")
    find_unused_parameters: bool = Field(
        True,
        description="under torchrun: let a step leave trainable parameters without a gradient (which ones may "
                    "depend on the batch, e.g. a model reading earlier visits); false is faster for a model that "
                    "uses every parameter in every step",
    )
    flush_denormal: bool = Field(
        False,
        description="on the CPU, treat denormal floats (below 1.2e-38) as zero during training epochs: once "
                    "Adam's moments of rarely seen embedding rows decay into that range every operation on them is "
                    "many times slower. A model whose passes produce such values trains along a slightly different "
                    "path, so it is off unless a run asks for it (the gamenet preset does: its runs are the same)",
    )
    prefetch: int | None = Field(
        None, ge=0, le=64,
        description="training batches cut ahead in a background thread (0: in the training loop; None: 2 on "
                    "CUDA, 0 on the CPU, where the thread competes with the step for the interpreter)",
    )

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_from_bool(cls, value: Any) -> Any:
        """Map switch words to a progress mode: off/no/false -> ``none``, on/yes/true -> ``auto``.

        YAML 1.1 reads ``off``/``no``/``false`` as False and ``on``/``yes`` as True; the same
        words written as strings (a Python dict, a quoted YAML value) mean the same.
        """
        if isinstance(value, str) and value.strip().lower() in _PROGRESS_WORDS:
            return _PROGRESS_WORDS[value.strip().lower()]
        if value is False:
            return "none"
        if value is True:
            return "auto"
        return value


class EvalParams(BaseModel):
    """How test predictions are scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.5, gt=0, lt=1, description="probability threshold for a recommended drug")
    averaging: Literal["patient", "visit"] = Field(
        "patient", description="average per patient (neural papers) or per visit (LR/ECC/TEMPT)"
    )
    bootstrap_rounds: int = Field(
        10, ge=0, le=MAX_BOOTSTRAP_ROUNDS, description="bootstrap rounds (0: score the full test set once)"
    )
    bootstrap_fraction: float = Field(0.8, gt=0, le=1, description="share of test patients drawn per round")
    bootstrap_seed: int = Field(2048, ge=0, le=MAX_SEED, description="seed of the bootstrap draws")
    batch_size: int = Field(256, ge=1, le=MAX_BATCH_SIZE, description="patients per evaluation batch")
    group_by: Literal["none", "hospital"] = Field(
        "none", description="also score per group: 'hospital' gives metrics per hospital and per hospital-size bin"
    )
    group_bins: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1000, 2000],
        description="upper bounds (records per hospital, inclusive) of the size bins; the last bin is open",
    )

    @field_validator("group_bins")
    @classmethod
    def _increasing_bins(cls, value: list[int]) -> list[int]:
        """Bin bounds must increase strictly (checked before any data is read)."""
        if any(low >= high for low, high in zip(value, value[1:])):
            raise ValueError(f"group_bins must be strictly increasing, got {value}")
        return value


#: what a stage name looks like (it becomes part of file names: ``model_<split>.<stage>.pt``)
STAGE_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
#: longest stage name
MAX_STAGE_NAME = 64


class StageParams(BaseModel):
    """One stage of a staged run (the run file's ``stages`` list; see ``docs/stages.rst``).

    Built by :func:`validate_config`, which resolves the nodes and merges the stage's
    ``trainer`` keys over the run's ``trainer``: :attr:`trainer` holds the merged settings.

    Attributes:
        name: unique within the run; part of the stage's file names.
        losses: the stage's loss terms (None: the run's ``losses``).
        trainer: the run's trainer settings updated by the keys the stage gives.
        init_from: an earlier stage whose selected weights this stage starts from (None:
            a freshly built model).
        freeze: fnmatch patterns over parameter names (after the adapter is attached) whose
            parameters are not trained; a pattern matching no parameter is an error.
        adapter: an adapter node (kind ``adapter``) attached before training (None: none).
        repeat_per: None (train once) or ``"hospital"`` (one unit per hospital of the split).
        evaluate: also score this stage on the test patients (the last stage always is).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(pattern=STAGE_NAME_PATTERN, max_length=MAX_STAGE_NAME,
                      description="unique stage name: lower-case letters, digits and _ (starts with a letter)")
    losses: list[Node] | None = Field(None, description="loss nodes of this stage (None: the run's losses)")
    trainer: TrainerParams = Field(
        default_factory=TrainerParams, description="trainer keys that differ from the run's trainer"
    )
    init_from: str | None = Field(None, description="an earlier stage whose selected weights this stage starts from")
    freeze: list[str] = Field(
        default_factory=list, description="fnmatch patterns of parameter names that are not trained"
    )
    adapter: Node | None = Field(None, description="adapter node attached before training (kind adapter)")
    repeat_per: Literal["hospital"] | None = Field(
        None, description="null: train once; hospital: train one unit per hospital of the split"
    )
    evaluate: bool = Field(False, description="also score this stage on the test patients (the last stage always is)")

    def to_dict(self) -> dict[str, Any]:
        """The stage as plain data (trainer merged, every default filled in)."""
        return {
            "name": self.name,
            "losses": None if self.losses is None else [node_to_dict(n) for n in self.losses],
            "trainer": self.trainer.model_dump(),
            "init_from": self.init_from,
            "freeze": list(self.freeze),
            "adapter": None if self.adapter is None else node_to_dict(self.adapter),
            "repeat_per": self.repeat_per,
            "evaluate": self.evaluate,
        }


class RunConfig(BaseModel):
    """A validated run file. Nodes are resolved :class:`Node` objects."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = "run"
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seeds Python, numpy and torch")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...")
    dataset: Node
    task: Node = Field(default_factory=lambda: Node(type="medication_recommendation"))
    model: Node
    losses: list[Node] = Field(default_factory=list)
    trainer: TrainerParams = Field(default_factory=TrainerParams)
    eval: EvalParams = Field(default_factory=EvalParams)
    stages: list[StageParams] = Field(
        default_factory=list,
        description="train in stages (pre-train, then tune per hospital...); empty: one stage, the run itself",
    )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (every default filled in).

        A config without stages has no ``stages`` key (its resolved file, and so its
        ``--resume`` key, is the same as before stages existed).
        """
        resolved = {
            "name": self.name,
            "seed": self.seed,
            "device": self.device,
            "dataset": node_to_dict(self.dataset),
            "task": node_to_dict(self.task),
            "model": node_to_dict(self.model),
            "losses": [node_to_dict(n) for n in self.losses],
            "trainer": self.trainer.model_dump(),
            "eval": self.eval.model_dump(),
        }
        if self.stages:
            resolved["stages"] = [stage.to_dict() for stage in self.stages]
        return resolved

    def stage(self, name: str) -> StageParams:
        """The stage called ``name``.

        Raises:
            KeyError: no stage has that name.
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}")

    def stage_losses(self, stage: StageParams) -> list[Node]:
        """The loss nodes ``stage`` trains with: its own, else the run's."""
        return list(self.losses if stage.losses is None else stage.losses)


#: top-level key -> kind of its node(s)
NODE_SECTIONS = {"dataset": "dataset", "task": "task", "model": "recommender", "losses": "loss"}


@dataclass(frozen=True)
class ConfigError:
    """One problem in a run file.

    Attributes:
        path: dotted config path (``model.encoder.hidden_size``, ``losses.1.type``).
        message: what is wrong.
        plugin: the plugin that owns the node, when known.
    """

    path: str
    message: str
    plugin: str | None = None

    def __post_init__(self) -> None:
        # messages may echo user input (keys, names, values): keep them printable
        # and on one line (PyYAML's messages span several, with the offending text quoted)
        object.__setattr__(self, "path", clip(_one_line(self.path), MAX_ECHO_PATH))
        object.__setattr__(self, "message", clip(_one_line(self.message), MAX_MESSAGE))

    def __str__(self) -> str:
        owner = f" [{self.plugin}]" if self.plugin else ""
        return f"{self.path or '<root>'}: {self.message}{owner}"


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


class ConfigValidationError(ValueError):
    """Raised with every :class:`ConfigError` of a run file at once."""

    def __init__(self, errors: Sequence[ConfigError], source: str = "config") -> None:
        self.errors = list(errors)
        self.source = source
        #: notes of the overrides applied before validation (a node whose type they switched
        #: and the parameters that went with it), printed before the error by the command line
        self.notes: list[str] = []
        if len(self.errors) == 1:
            super().__init__(f"{source}: {self.errors[0]}")
        else:
            super().__init__(f"{source}: {len(self.errors)} errors\n{self.detail_lines()}")

    def detail_lines(self) -> str:
        """One indented ``  - path: message`` line per error."""
        return "\n".join(f"  - {e}" for e in self.errors)

    def summary(self) -> str:
        """One line: the error itself, or how many errors there are when there are several."""
        if len(self.errors) == 1:
            return _one_line(str(self))
        return _one_line(f"{self.source}: {len(self.errors)} errors (listed above)")


# ---------------------------------------------------------------------------- helpers
def node_to_dict(node: Node) -> dict[str, Any]:
    """A resolved node as plain data with every default filled in (children recursively)."""
    out: dict[str, Any] = {"type": node.type}
    params = node._params
    if params is None:
        out.update(node.raw_params)
        return out
    for field_name in type(params).model_fields:
        value = getattr(params, field_name)
        if isinstance(value, Node):
            out[field_name] = node_to_dict(value)
        elif isinstance(value, BaseModel):
            out[field_name] = value.model_dump(mode="json")
        else:
            out[field_name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _join(*parts: object) -> str:
    return ".".join(str(p) for p in parts if str(p) != "")


def _fields_at(model: type[BaseModel], location: Sequence[str]) -> list[str]:
    """Field names of the (nested) model at ``location`` inside ``model`` (``trainer`` -> its keys)."""
    current: type[BaseModel] | None = model
    for part in location:
        if current is None or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        candidates = (annotation, *get_args(annotation))
        current = next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return list(current.model_fields) if current is not None else []


def _pydantic_errors(
    error: ValidationError, path: str, plugin: str | None, model: type[BaseModel], skip: set[str]
) -> list[ConfigError]:
    found = []
    for item in error.errors():
        location = [str(x) for x in item["loc"]]
        if location and location[0] in skip:
            continue
        message = item["msg"]
        if item["type"] == "extra_forbidden" and location:
            fields = _fields_at(model, location[:-1])
            close = difflib.get_close_matches(location[-1], list(fields), n=1, cutoff=0.6)
            message = f"unknown key {short_repr(location[-1])}"
            if close:
                message += f"; did you mean {close[0]!r}?"
            if fields:
                message += f" (valid keys: {', '.join(fields)})"
        elif "input" in item and item["type"] not in ("missing",):
            message += f" (got {short_repr(item['input'])})"
        found.append(ConfigError(_join(path, *location), message, plugin))
    return found


def _validate_node(
    value: Any, kind: str, path: str, host: "PluginHost", errors: list[ConfigError]
) -> Node | None:
    """Resolve and validate one node (and its children); append problems to ``errors``."""
    if isinstance(value, Node):
        value = {"type": value.type, **value.raw_params}
    if not isinstance(value, Mapping):
        errors.append(ConfigError(path, f"expected a {kind} node {{type: <name>, ...}}, got {short_repr(value)}"))
        return None
    if "type" not in value:
        errors.append(ConfigError(path, f"missing 'type' (a registered {kind} name)"))
        return None
    type_name = value["type"]
    if not isinstance(type_name, str):
        message = f"must be a registered {kind} name, got {short_repr(type_name)}"
        errors.append(ConfigError(_join(path, "type"), message))
        return None
    try:
        entry = host.registry(kind).get(type_name)
    except UnknownComponentError as error:
        message = str(error)
        other_kinds = [k for k, r in host.registries.items() if k != kind and type_name in r]
        if other_kinds:
            message += f" ({type_name!r} is registered as kind {other_kinds[0]!r}, not {kind!r}.)"
        not_loaded = [f"{p.name} ({p.status})" for p in host.plugins if p.status != "ok"]
        if not_loaded:
            message += f" Plugins not loaded: {', '.join(not_loaded)} (see `medtoolkit plugins`)."
        errors.append(ConfigError(_join(path, "type"), message))
        return None
    params_class = entry.obj.Params
    fields = list(params_class.model_fields)
    raw = {k: v for k, v in value.items() if k != "type"}
    inputs: dict[str, Any] = {}
    failed_slots: set[str] = set()
    for key, item in raw.items():
        child_kind = slot_kind(params_class, key) if key in params_class.model_fields else None
        if child_kind is None:
            inputs[key] = item
            continue
        if isinstance(item, Mapping) and "type" not in item:
            default = params_class.model_fields[key].get_default(call_default_factory=True)
            if isinstance(default, Node):  # `-o model.encoder.x=1` tweaks the default encoder
                item = {"type": default.type, **default.raw_params, **item}
        child = _validate_node(item, child_kind, _join(path, key), host, errors)
        mismatch = None if child is None else slot_mismatch(params_class, key, child.component, host)
        if mismatch is not None:  # e.g. a visit encoder in a drug-encoder slot
            errors.append(ConfigError(_join(path, key), mismatch, entry.plugin))
        if child is None or mismatch is not None:
            failed_slots.add(key)
        else:
            inputs[key] = child
    try:
        params = params_class.model_validate(inputs)
    except ValidationError as error:
        errors.extend(_pydantic_errors(error, path, entry.plugin, params_class, failed_slots))
        return None
    if failed_slots:
        return None
    # default children (slots not written in the file) are resolved and checked too
    updates = {}
    for field_name in fields:
        child_kind = slot_kind(params_class, field_name)
        child = getattr(params, field_name)
        if child_kind is None or not isinstance(child, Node) or field_name in raw:
            continue
        resolved = child
        if child._component is None:
            resolved = _validate_node(child, child_kind, _join(path, field_name), host, errors)
        mismatch = None if resolved is None else slot_mismatch(params_class, field_name, resolved.component, host)
        if mismatch is not None:
            errors.append(ConfigError(_join(path, field_name), mismatch, entry.plugin))
        if resolved is None or mismatch is not None:
            failed_slots.add(field_name)
        elif resolved is not child:
            updates[field_name] = resolved
    if failed_slots:
        return None
    if updates:
        params = params.model_copy(update=updates)
    node = Node(type=type_name, **raw)
    node.bind(entry.obj, params, path=path)
    return node


def validate_config(
    raw: Mapping[str, Any], host: "PluginHost | None" = None, source: str = "config"
) -> RunConfig:
    """Validate a whole run config; raise :class:`ConfigValidationError` listing every problem.

    Args:
        raw: the parsed YAML (or a Python dict of the same shape).
        host: plugin host to resolve names with (default: the process-wide host).
        source: name of the file, used in messages.
    """
    if host is None:
        from medtoolkit.plugins import default_host

        host = default_host()
    if not isinstance(raw, Mapping):
        raise ConfigValidationError([ConfigError("", f"a run file must be a mapping, got {type(raw).__name__}")], source)
    errors: list[ConfigError] = []
    resolved: dict[str, Any] = {}
    top_fields = list(RunConfig.model_fields)
    for key, value in raw.items():
        if key not in RunConfig.model_fields:
            close = difflib.get_close_matches(str(key), top_fields, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(
                ConfigError(str(key), f"unknown top-level key {short_repr(key)}{hint} (valid: {', '.join(top_fields)})")
            )
            continue
        kind = NODE_SECTIONS.get(key)
        if key == "stages":
            resolved[key] = _validate_stages(value, _run_trainer(raw.get("trainer")), host, errors)
        elif kind is None:
            resolved[key] = value
        elif key == "losses":
            if not isinstance(value, list):
                errors.append(ConfigError("losses", f"expected a list of loss nodes, got {short_repr(value)}"))
                continue
            nodes = [_validate_node(item, kind, f"losses.{i}", host, errors) for i, item in enumerate(value)]
            resolved[key] = nodes
        else:
            resolved[key] = _validate_node(value, kind, key, host, errors)
    if "task" not in raw:
        resolved["task"] = _validate_node({"type": "medication_recommendation"}, "task", "task", host, errors)
    skip = {k for k, v in resolved.items() if v is None or (isinstance(v, list) and None in v)}
    for required in ("dataset", "model"):
        if required not in raw:
            errors.append(ConfigError(required, f"missing required section '{required}'"))
            skip.add(required)
    skip |= {k for k in raw if k not in RunConfig.model_fields}
    try:
        config = RunConfig.model_validate({k: v for k, v in resolved.items() if k not in skip})
    except ValidationError as error:
        errors.extend(_pydantic_errors(error, "", None, RunConfig, skip))
        config = None
    if config is not None:
        from medtoolkit.components.requirements import knowledge_errors, statistics_errors

        errors.extend(knowledge_errors(config))
        errors.extend(statistics_errors(config))
        errors.extend(_extras_errors(config))
    if errors:
        raise ConfigValidationError(errors, source)
    assert config is not None
    return config


def _extras_errors(config: RunConfig) -> list[ConfigError]:
    """Losses needing model extras the recommender does not provide (the run's and each stage's own),
    stage adapters that cannot adapt the run's recommender, and batch items or a recommender the
    task refuses."""
    from medtoolkit.components.requirements import adapter_errors, extras_errors, task_errors

    pairs = [(f"losses.{i}", node) for i, node in enumerate(config.losses)]
    for i, stage in enumerate(config.stages):
        pairs += [(f"stages.{i}.losses.{j}", node) for j, node in enumerate(stage.losses or [])]
    adapters = [(f"stages.{i}.adapter", stage.adapter) for i, stage in enumerate(config.stages)
                if stage.adapter is not None]
    return [*extras_errors(config.model, pairs), *adapter_errors(config.model, adapters),
            *task_errors(config.model, config.task)]


# ---------------------------------------------------------------------------- stages
def _run_trainer(value: Any) -> TrainerParams | None:
    """The run's trainer settings that stage trainers are merged over (None: they are invalid)."""
    if isinstance(value, TrainerParams):
        return value
    try:
        return TrainerParams.model_validate({} if value is None else value)
    except ValidationError:
        return None  # reported for the `trainer` section itself


def _stage_trainer(
    value: Any, run_trainer: TrainerParams | None, path: str, errors: list[ConfigError]
) -> TrainerParams | None:
    """The run's trainer updated by a stage's partial ``trainer`` mapping (None: invalid)."""
    if isinstance(value, TrainerParams):
        value = value.model_dump()
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        errors.append(ConfigError(path, f"expected a mapping of trainer keys, got {short_repr(value)}"))
        return None
    try:
        given = TrainerParams.model_validate(dict(value))
    except ValidationError as error:
        errors.extend(_pydantic_errors(error, path, None, TrainerParams, set()))
        return None
    if run_trainer is None:
        return None
    return run_trainer.model_copy(update={key: getattr(given, key) for key in value})


def _validate_stage(
    value: Any, path: str, run_trainer: TrainerParams | None, host: "PluginHost", errors: list[ConfigError]
) -> StageParams | None:
    """Resolve one stage mapping (its nodes, merged trainer); append problems to ``errors``."""
    if isinstance(value, StageParams):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        errors.append(ConfigError(path, f"expected a stage {{name: ..., ...}}, got {short_repr(value)}"))
        return None
    inputs: dict[str, Any] = {}
    failed: set[str] = set()
    for key, item in value.items():
        if key == "losses" and item is not None:
            if not isinstance(item, list):
                errors.append(ConfigError(_join(path, key), f"expected a list of loss nodes, got {short_repr(item)}"))
                failed.add(key)
                continue
            nodes = [_validate_node(node, "loss", _join(path, key, j), host, errors) for j, node in enumerate(item)]
            if None in nodes:
                failed.add(key)
            inputs[key] = nodes
        elif key == "adapter" and item is not None:
            node = _validate_node(item, "adapter", _join(path, key), host, errors)
            if node is None:
                failed.add(key)
            inputs[key] = node
        elif key == "trainer":
            trainer = _stage_trainer(item, run_trainer, _join(path, key), errors)
            if trainer is None:
                failed.add(key)
            inputs[key] = trainer
        else:
            inputs[key] = item
    if "trainer" not in value:
        if run_trainer is None:
            failed.add("trainer")
        inputs["trainer"] = run_trainer
    try:
        stage = StageParams.model_validate({k: v for k, v in inputs.items() if k not in failed})
    except ValidationError as error:
        errors.extend(_pydantic_errors(error, path, None, StageParams, failed))
        return None
    return None if failed else stage


def _validate_stages(
    value: Any, run_trainer: TrainerParams | None, host: "PluginHost", errors: list[ConfigError]
) -> list[StageParams] | None:
    """Resolve the ``stages`` list and check names and ``init_from`` across stages."""
    if not isinstance(value, list):
        errors.append(ConfigError("stages", f"expected a list of stages ({{name: ..., ...}}), got {short_repr(value)}"))
        return None
    stages = [_validate_stage(item, f"stages.{i}", run_trainer, host, errors) for i, item in enumerate(value)]
    errors.extend(_stage_order_errors(value))
    return None if None in stages else stages


def _stage_order_errors(items: list[Any]) -> list[ConfigError]:
    """Duplicate names and ``init_from`` naming no earlier stage (read off the raw mappings)."""
    found: list[ConfigError] = []

    def raw(item: Any, key: str) -> Any:
        if isinstance(item, StageParams):
            return getattr(item, key)
        return item.get(key) if isinstance(item, Mapping) else None

    names = [raw(item, "name") for item in items]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in first:
            found.append(ConfigError(f"stages.{i}.name", f"duplicate stage name {short_repr(name)} "
                                                         f"(also stages.{first[name]}.name)"))
        else:
            first[name] = i
    for i, item in enumerate(items):
        source = raw(item, "init_from")
        if source is None or not isinstance(source, str):
            continue  # a wrong type is reported by StageParams
        path = f"stages.{i}.init_from"
        earlier = [n for n in names[:i] if isinstance(n, str)]
        if source == names[i]:
            found.append(ConfigError(path, f"stage {short_repr(source)} cannot start from itself; "
                                           "name an earlier stage"))
        elif source in earlier:
            position = names.index(source)
            if raw(items[position], "repeat_per") is not None and raw(item, "repeat_per") is None:
                found.append(ConfigError(path, f"stage {short_repr(source)} is repeated per "
                                               f"{raw(items[position], 'repeat_per')}, so a stage starting from it "
                                               "must be repeated the same way (repeat_per)"))
        elif source in names:
            found.append(ConfigError(path, f"stage {short_repr(source)} comes later (stages.{names.index(source)}); "
                                           "init_from must name an earlier stage"))
        else:
            close = difflib.get_close_matches(source, earlier, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = f" (earlier stages: {', '.join(earlier)})" if earlier else " (it is the first stage)"
            found.append(ConfigError(path, f"unknown stage {short_repr(source)}{hint}{listed}"))
    return found


# ---------------------------------------------------------------------------- files & overrides
class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {short_repr(key)} (first on line {seen[key] + 1})", key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def _check_number(self, node: yaml.ScalarNode, kind: str) -> None:
        """Refuse number text whose conversion costs more than linear time (or is absurdly long).

        YAML 1.1 sexagesimal numbers (``1:30:00``) are converted part by part with growing big
        integers: 300,000 parts (a 1 MB run file) take minutes.
        """
        text = str(node.value)
        if text.count(":") > _MAX_SEXAGESIMAL_PARTS or len(text) > _MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"refusing the {kind} {short_repr(text, 60)} of {len(text):,} characters"
                + (f" ({text.count(':') + 1:,} ':'-separated parts)" if ":" in text else "")
                + "; write a plain number",
                node.start_mark,
            )

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # noqa: D102 - PyYAML hook
        self._check_number(node, "integer")
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:  # noqa: D102 - PyYAML hook
        self._check_number(node, "number")
        return super().construct_yaml_float(node)


#: most ``:`` in a YAML 1.1 sexagesimal number (``1:30:00`` has 2)
_MAX_SEXAGESIMAL_PARTS = 16
#: longest number text accepted (Python refuses decimal integers over 4,300 digits anyway)
_MAX_NUMBER_CHARS = 5_000
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_yaml_float)


def _read_text(path: Path) -> str:
    """The file's text: at most :data:`MAX_BYTES` bytes of UTF-8, else an error naming the file."""
    source = str(path)
    try:  # a FIFO (or a device) named as the run file must not hang the command
        data = read_regular_file(path, MAX_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"run file not found: {path}") from None
    except NotARegularFileError as error:
        raise ConfigValidationError([ConfigError("", f"cannot read the run file: it is {error.kind}")], source) from None
    except FileTooLargeError:
        raise ConfigValidationError(
            [ConfigError("", f"the run file is larger than {MAX_BYTES:,} bytes (the limit for a run file)")], source
        ) from None
    except OSError as error:
        message = f"cannot read the run file: {error.strerror or error}"
        raise ConfigValidationError([ConfigError("", message)], source) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigValidationError(
            [ConfigError("", f"not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} "
                             f"(byte offset {error.start}); save the file as UTF-8")],
            source,
        ) from None


def _parse_yaml(text: str) -> Any:
    """Check :mod:`medtoolkit.yaml_limits`, then parse with :class:`_UniqueKeyLoader`.

    Raises:
        YAMLLimitError: a resource limit is exceeded (checked before anything is built).
        yaml.YAMLError: invalid YAML or a duplicate key.
    """
    check_yaml_limits(text)
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a run file; errors name the file and line.

    A run file is at most :data:`~medtoolkit.yaml_limits.MAX_BYTES` of UTF-8 whose YAML nests at
    most :data:`~medtoolkit.yaml_limits.MAX_DEPTH` levels and expands (aliases included) to at
    most :data:`~medtoolkit.yaml_limits.MAX_NODES` nodes; anything else is refused before it is
    built.

    Raises:
        FileNotFoundError: no such file.
        ConfigValidationError: unreadable, too large, not UTF-8, over a YAML limit, invalid
            YAML, a duplicate key, or not a mapping (the message names the file).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        data = _parse_yaml(text)
    except YAMLLimitError as error:
        raise ConfigValidationError([ConfigError("", f"refused: {error}")], str(path)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigValidationError([ConfigError("", f"invalid YAML{where}: {error}")], str(path)) from None
    except ValueError as error:  # a value YAML cannot build, e.g. an integer of 5,000 digits
        raise ConfigValidationError([ConfigError("", f"invalid YAML value: {error}")], str(path)) from None
    except RecursionError:  # a last guard; check_yaml_limits bounds the depth first
        raise ConfigValidationError([ConfigError("", "YAML nested too deeply")], str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigValidationError([ConfigError("", "a run file must be a YAML mapping")], str(path))
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value.

    The value obeys the run-file limits (size, depth, nodes, aliases); text that is not
    valid YAML is kept as a plain string.

    Raises:
        ValueError: no ``=``, an empty key, a key path deeper than ``MAX_DEPTH``, or a value
            over a limit (the message echoes the override, shortened).
    """
    if "=" not in text:
        raise ValueError(f"override {short_repr(text)} must look like key.path=value")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not key or "" in key.split("."):
        raise ValueError(f"override {short_repr(text)} has an empty key")
    keys = key.split(".")
    if len(keys) > MAX_DEPTH:
        raise ValueError(f"override {short_repr(text)}: key path deeper than {MAX_DEPTH} levels")
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise ValueError(f"override {short_repr(text)}: longer than {MAX_BYTES:,} bytes")
    try:
        value = _parse_yaml(value_text) if value_text.strip() else ""
    except YAMLLimitError as error:
        raise ValueError(f"override {short_repr(text)}: refused: {error}") from None
    except yaml.YAMLError:
        value = value_text
    except ValueError as error:  # a value YAML cannot build, e.g. an integer of 5,000 digits
        raise ValueError(f"override {short_repr(text)}: invalid value: {error}") from None
    return keys, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Apply ``-o key=value`` overrides to a raw config.

    Setting a node's ``type`` to a different name switches the node: the parameters the run
    file gave it are reset (they belonged to the old type) and the change is reported in the
    returned notes. Parameters set by the overrides themselves are kept, before the switch
    or after it, so the order of the overrides does not matter
    (``dataset.root=... dataset.type=...`` is ``dataset.type=... dataset.root=...``).

    Returns:
        the new raw config and human-readable notes about switched nodes.
    """
    data = copy.deepcopy(dict(raw))
    notes: list[str] = []
    overridden: set[tuple[str, ...]] = set()  # key paths the overrides have set so far
    for text in overrides:
        keys, value = parse_override(text)
        target: Any = data
        for depth, key in enumerate(keys[:-1]):
            where = ".".join(keys[: depth + 1])
            if isinstance(target, list):
                if not key.isdigit() or int(key) >= len(target):
                    raise ValueError(
                        f"override {short_repr(text)}: {clip(where, MAX_ECHO)} is not an index of a list of {len(target)}"
                    )
                target = target[int(key)]
                continue
            if key not in target or target[key] is None:
                target[key] = {}
            if not isinstance(target[key], (dict, list)):
                raise ValueError(f"override {short_repr(text)}: {clip(where, MAX_ECHO)} is a value, not a section")
            target = target[key]
        last = keys[-1]
        if isinstance(target, list):
            if not last.isdigit() or int(last) >= len(target):
                raise ValueError(
                    f"override {short_repr(text)}: {clip(last, MAX_ECHO)} is not an index of a list of {len(target)}"
                )
            target[int(last)] = value
            overridden.add(tuple(keys))
            continue
        if last == "type" and target.get("type") not in (None, value):
            parameters = {name: item for name, item in target.items() if name != "type"}
            kept = _overridden_entries(parameters, tuple(keys[:-1]), overridden)
            dropped = sorted(name for name in parameters if name not in kept)
            notes.append(
                f"{'.'.join(keys[:-1])}: switched type {short_repr(target['type'])} -> {short_repr(value)}"
                + (f"; reset parameters {', '.join(dropped)}" if dropped else "")
                + (f"; kept {', '.join(sorted(kept))} (set by an override)" if kept else "")
            )
            target.clear()
            target[last] = value  # first, as in a run file
            target.update(kept)
        target[last] = value
        overridden.add(tuple(keys))
    return data, notes


def _overridden_entries(
    section: Mapping[str, Any], path: tuple[str, ...], overridden: set[tuple[str, ...]]
) -> dict[str, Any]:
    """The entries of ``section`` (at config ``path``) that overrides set.

    An entry an override set (itself, or a section around it such as
    ``model.encoder={...}``) is kept whole; a section an override reached into is kept with
    only what overrides set inside it; a list an override reached into is kept whole.

    Args:
        section: a config section.
        path: its dotted key path, split.
        overridden: the key paths the overrides have set so far.
    """
    kept: dict[str, Any] = {}
    for name, value in section.items():
        entry = path + (str(name),)
        if any(entry[:depth] in overridden for depth in range(1, len(entry) + 1)):
            kept[name] = value
        elif any(key[: len(entry)] == entry for key in overridden):
            if not isinstance(value, dict):
                kept[name] = value
            elif inside := _overridden_entries(value, entry, overridden):
                kept[name] = inside
    return kept
