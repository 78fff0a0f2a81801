"""Parameter models shared by every component: ``Params`` and child-slot ``Node`` objects.

A parent declares its children with :func:`slot` (any component of a kind, or, for
encoders, only those consuming what the slot accepts) and :func:`drug_encoder_slot` (any
drug encoder); :func:`slot_mismatch` gives the one message for a child in the wrong slot.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

if TYPE_CHECKING:
    from medtoolkit.components.base import DrugEncoder
    from medtoolkit.components.schema import DataSchema


class ComponentBuildError(ValueError):
    """A component's constructor failed; the message names the node (see :meth:`Node.build`)."""


class Params(BaseModel):
    """Base of every component's nested ``Params``: unknown keys are rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @model_validator(mode="after")
    def _check_slots(self) -> "Params":
        """Refuse a resolved child of the wrong kind, or one its slot does not take (Python path).

        A node made by :meth:`Node.of` knows its component class: a memory in an encoder
        slot, or a visit encoder in a drug-encoder slot, is refused here with the message
        ``medtoolkit validate`` gives. Unresolved nodes (``Node(type="gru")``) are checked
        when they are resolved.

        Raises:
            ValueError: one line per slot that holds a component it does not take.
        """
        problems = []
        for field_name in type(self).model_fields:
            kind = slot_kind(type(self), field_name)
            node = getattr(self, field_name)
            if kind is None or not isinstance(node, Node) or node._component is None:
                continue
            problem = _kind_mismatch(kind, node._component)
            if problem is None:
                problem = slot_mismatch(type(self), field_name, node._component)
            if problem is not None:
                problems.append(f"{field_name}: {problem}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Node(BaseModel):
    """A child component in a config: ``{type: <registered name>, ...params}``.

    After validation (see :mod:`medtoolkit.config`) a node knows its component class and
    its validated :class:`Params`, so a parent simply calls :meth:`build`. In Python a
    node can also be made straight from a class with :meth:`of`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    _component: Any = PrivateAttr(default=None)
    _params: Any = PrivateAttr(default=None)
    _path: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _refuse_components(cls, value: Any) -> Any:
        """Refuse a component class or object where a node is expected, saying how to make one.

        Raises:
            ValueError: ``value`` is a class (``encoder=GRUEncoder``) or a built component
                (``encoder=GRUEncoder(...)``): a slot holds a node, built by its parent.
        """
        if not _is_component(value):
            return value
        klass = value if isinstance(value, type) else type(value)
        what = f"the class {klass.__name__}" if isinstance(value, type) else f"a built {klass.__name__} object"
        raise ValueError(
            f"got {what}; use Node.of({klass.__name__}, ...) for a slot (the parent builds its children from nodes)"
        )

    @classmethod
    def of(cls, component: type, **params: Any) -> "Node":
        """A resolved node for ``component`` (a class with a nested ``Params``).

        Args:
            component: the component class (``GRUEncoder``), not an object.
            **params: its parameters, validated by ``component.Params`` now.

        Raises:
            TypeError: ``component`` is not a class with a nested ``Params`` model.
            ValueError: the parameters are invalid; the message names the class
                (``GRUEncoder.Params: hiden_dim: unknown key; did you mean 'hidden_dim'? ...``).
        """
        params_class = getattr(component, "Params", None)
        if not isinstance(component, type) or not isinstance(params_class, type) or not issubclass(
            params_class, BaseModel
        ):
            raise TypeError(f"Node.of() takes a component class with a nested Params, got {_describe_value(component)}")
        name = getattr(component, "registered_name", None) or component.__name__
        try:
            validated = params_class(**params)
        except ValidationError as error:
            raise ValueError(_params_error(params_class, error)) from None
        node = cls(type=name, **params)
        node.bind(component, validated)
        return node

    def bind(self, component: type, params: Params, path: str = "") -> None:
        """Attach the resolved component class, its validated params and its config path."""
        self.__pydantic_private__["_component"] = component  # type: ignore[index]
        self.__pydantic_private__["_params"] = params  # type: ignore[index]
        self.__pydantic_private__["_path"] = path  # type: ignore[index]

    @property
    def raw_params(self) -> dict[str, Any]:
        """The node's parameters as written (without ``type``)."""
        return dict(self.model_extra or {})

    @property
    def component(self) -> type:
        if self._component is None:
            raise RuntimeError(
                f"node of type {self.type!r} is not resolved; build configs through "
                "medtoolkit.build() / medtoolkit.config.validate_config()"
            )
        return self._component

    @property
    def params(self) -> Params:
        if self._params is None:
            raise RuntimeError(f"node of type {self.type!r} is not resolved")
        return self._params

    def resolve(self, kind: str | None = None, host: Any = None) -> "Node":
        """Resolve this node in place (if needed) through a plugin host; returns ``self``.

        Nodes made by :meth:`of` or by config validation are already resolved. A bare
        ``Node(type="gru")`` (e.g. a slot default used from Python) is looked up in
        ``host`` (default: :func:`medtoolkit.plugins.default_host`) and its parameters
        (children included) are validated as in a run file.

        Args:
            kind: the component kind to look ``type`` up in; None searches every kind and
                requires the name to be unique across kinds.
            host: a :class:`~medtoolkit.plugins.PluginHost` (default: the process-wide host).

        Raises:
            medtoolkit.config.ConfigValidationError: unknown name or invalid parameters.
            ValueError: ``kind`` is None and the name is registered for several kinds.
        """
        if self._component is not None:
            return self
        from medtoolkit.config import ConfigError, ConfigValidationError, _validate_node

        if host is None:
            from medtoolkit.plugins import default_host

            host = default_host()
        if kind is None:
            from medtoolkit.components.base import KINDS

            kinds = [k for k in KINDS if self.type in host.registry(k)]
            if len(kinds) > 1:
                raise ValueError(
                    f"{self.type!r} is registered as {', '.join(kinds)}; pass kind= to Node.resolve()"
                )
            if not kinds:
                raise ConfigValidationError(
                    [ConfigError("type", f"no plugin registered a component named {self.type!r}")],
                    f"node {self.type!r}",
                )
            kind = kinds[0]
        errors: list[Any] = []
        resolved = _validate_node(self, kind, "", host, errors)
        if resolved is None or errors:
            broken = [info.name for info in getattr(host, "broken", [])]
            if broken:
                errors.append(ConfigError("", f"broken plugins (see `medtoolkit plugins`): {', '.join(broken)}"))
            raise ConfigValidationError(errors, f"{kind} node {self.type!r}")
        self.bind(resolved.component, resolved.params)
        return self

    def build(self, schema: "DataSchema | None" = None, **extra: Any) -> Any:
        """Instantiate the component with its params and the data schema.

        An unresolved node is first resolved through the default plugin host
        (see :meth:`resolve`; call ``node.resolve(kind)`` first when a name is
        registered for several kinds).

        Raises:
            ComponentBuildError: the component's constructor raised; the message names
                the node's config path and type (``model.memory (gcn): ...``) and the
                original exception is kept as ``__cause__``.
        """
        if self._component is None:
            self.resolve()
        try:
            return self.component(self.params, schema, **extra)
        except ComponentBuildError:
            raise  # a child node already said where it failed
        except Exception as error:  # noqa: BLE001 - any constructor failure, named by config path
            where = f"{self._path} ({self.type})" if self._path else f"component {self.type!r}"
            bare_key = isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str)
            message = (error.args[0] if bare_key else str(error)).strip() or type(error).__name__
            raise ComponentBuildError(f"{where}: {message}") from error


def _is_component(value: Any) -> bool:
    """True for a component class or object (anything with a ``kind`` and a nested ``Params``)."""
    params_class = getattr(value, "Params", None)
    return isinstance(getattr(value, "kind", None), str) and isinstance(params_class, type) and issubclass(
        params_class, BaseModel
    )


def _describe_value(value: Any) -> str:
    return f"the class {value.__qualname__}" if isinstance(value, type) else f"a {type(value).__qualname__} object"


def _params_error(params_class: type[BaseModel], error: ValidationError) -> str:
    """``GRUEncoder.Params: hiden_dim: unknown key ...; ...`` for a failed ``Params(**values)``."""
    items = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            fields = list(params_class.model_fields)
            close = difflib.get_close_matches(str(item["loc"][-1]), fields, n=1, cutoff=0.6) if item["loc"] else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown key{hint} (valid keys: {', '.join(fields) or 'none'})"
        items.append(f"{location}: {message}" if location else message)
    return f"{params_class.__qualname__}: " + "; ".join(items)


def _kind_mismatch(kind: str, component: type) -> str | None:
    """The message for a component of another kind in a slot of ``kind`` (None if the kinds match)."""
    component_kind = getattr(component, "kind", None)
    if not isinstance(component_kind, str) or not component_kind or component_kind == kind:
        return None
    name = getattr(component, "registered_name", None) or component.__name__
    return f"{name!r} is {_article(component_kind)} {component_kind}; this slot takes {_article(kind)} {kind}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


#: What an encoder slot accepts when it declares nothing: encoders of visits.
VISIT_INPUTS: tuple[str, ...] = ("visits",)
#: What a drug-encoder slot accepts ("any drug encoder", see :func:`drug_encoder_slot`).
DRUG_INPUTS: tuple[str, ...] = ("molecules",)


def slot(
    kind: str,
    default: str | None = None,
    description: str | None = None,
    *,
    consumes: str | tuple[str, ...] | None = None,
    **default_params: Any,
) -> Any:
    """Declare a child slot of kind ``kind`` in a ``Params`` model.

    Example::

        class Params(Params):
            encoder: Node = slot("encoder", "gru", description="visit encoder")

    Args:
        kind: the component kind the slot accepts (``"encoder"``, ``"memory"``, ...).
        default: the registered name used when the config leaves the slot out
            (None makes the slot required).
        description: what the slot is for (shown in the config reference).
        consumes: the inputs a component must declare in its ``consumes`` class
            attribute to fit the slot (one name or several). An encoder slot that
            declares nothing takes visit encoders only (:data:`VISIT_INPUTS`); a slot of
            another kind that declares nothing takes any component of its kind.
        **default_params: parameters of the default node.

    Raises:
        ValueError: ``consumes`` is empty or holds something other than non-empty strings.
    """
    extra: dict[str, Any] = {"slot": kind}
    if consumes is not None:
        accepted = (consumes,) if isinstance(consumes, str) else tuple(consumes)
        if not accepted or not all(isinstance(name, str) and name for name in accepted):
            raise ValueError(f"consumes must be a non-empty string or tuple of strings, got {consumes!r}")
        extra["consumes"] = list(accepted)
    text = description or f"a {kind} node {{type: <registered {kind}>, ...}}"
    if default is None:
        return Field(json_schema_extra=extra, description=text)
    return Field(
        default_factory=lambda: Node(type=default, **default_params), json_schema_extra=extra, description=text
    )


def drug_encoder_slot(default: str | None = None, description: str | None = None, **default_params: Any) -> Any:
    """Declare a slot that takes any drug encoder (an encoder consuming :data:`DRUG_INPUTS`).

    The same as ``slot("encoder", default, description, consumes=DRUG_INPUTS, ...)``. Build
    the child with :func:`build_drug_encoder`. ``medtoolkit validate`` refuses a visit
    encoder in this slot, and a drug encoder in a plain encoder slot.

    Args:
        default: the registered drug encoder used when the config leaves the slot out
            (None makes the slot required).
        description: what the slot is for (shown in the config reference).
        **default_params: parameters of the default node.
    """
    text = description or "a drug encoder node {type: <registered encoder consuming molecules>, ...}"
    return slot("encoder", default, text, consumes=DRUG_INPUTS, **default_params)


def _slot_extra(params_class: type[BaseModel], field_name: str) -> dict[str, Any]:
    extra = params_class.model_fields[field_name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def slot_kind(params_class: type[BaseModel], field_name: str) -> str | None:
    """The kind of a slot field, or None if the field is a plain parameter."""
    kind = _slot_extra(params_class, field_name).get("slot")
    return str(kind) if kind is not None else None


def slot_consumes(params_class: type[BaseModel], field_name: str) -> tuple[str, ...] | None:
    """What a slot field accepts (see :func:`slot`), or None if it accepts any component of its kind.

    Returns None for plain parameters too.
    """
    extra = _slot_extra(params_class, field_name)
    kind = extra.get("slot")
    if kind is None:
        return None
    declared = extra.get("consumes")
    if declared is not None:
        return tuple(str(name) for name in declared)  # type: ignore[union-attr]
    return VISIT_INPUTS if kind == "encoder" else None


def _consumes_mismatch(kind: str, accepted: tuple[str, ...], component: type, host: Any = None) -> str | None:
    """The message for ``component`` in a slot of ``kind`` that accepts ``accepted``, or None if it fits."""
    consumes = getattr(component, "consumes", None)
    if consumes in accepted:
        return None
    name = getattr(component, "registered_name", None) or component.__name__
    what = f"consumes {consumes}" if isinstance(consumes, str) else "declares nothing it consumes"
    if accepted == VISIT_INPUTS and kind == "encoder":
        wanted = "a visit encoder"
    elif accepted == DRUG_INPUTS and kind == "encoder":
        wanted = "a drug encoder"
    else:
        wanted = f"{_article(kind)} {kind}"
    message = f"{kind} {name!r} {what}; this slot takes {wanted} (consumes {' or '.join(accepted)})"
    if host is not None:
        fitting = [e.name for e in host.registry(kind) if getattr(e.obj, "consumes", None) in accepted]
        message += ": " + (", ".join(fitting) if fitting else "none registered")
    return message


def slot_mismatch(params_class: type[BaseModel], field_name: str, component: type, host: Any = None) -> str | None:
    """Why ``component`` does not fit the slot ``field_name`` of ``params_class`` (None if it fits).

    The one message used by config validation and by :func:`build_drug_encoder`, e.g.
    ``encoder 'gru' consumes visits; this slot takes a drug encoder (consumes molecules): mpnn``.

    Args:
        params_class: the ``Params`` model declaring the slot.
        field_name: the slot field.
        component: the component class placed in the slot.
        host: a :class:`~medtoolkit.plugins.PluginHost`; when given, the message ends
            with the registered components that fit (None: no list).

    Raises:
        ValueError: ``field_name`` is not a slot of ``params_class``.
    """
    kind = slot_kind(params_class, field_name)
    if kind is None:
        raise ValueError(f"{params_class.__qualname__}.{field_name} is not a slot")
    accepted = slot_consumes(params_class, field_name)
    if accepted is None:
        return None
    return _consumes_mismatch(kind, accepted, component, host)


def build_drug_encoder(
    node: Node, schema: "DataSchema | None", *, host: Any = None, query_dim: int | None = None, use: str = ""
) -> "DrugEncoder":
    """Build the drug encoder of a :func:`drug_encoder_slot` (the Python path: resolve, check, build).

    An unresolved node (``Node(type="...")``) is resolved as an encoder first, through
    ``host`` (default: the process-wide host).

    Args:
        node: the slot's node.
        schema: the data schema passed to the encoder.
        host: plugin host used to resolve the node and to list the encoders that fit.
        query_dim: when given, the drug vectors must have this width (they are compared with
            visit queries by dot products).
        use: what the drug vectors are used for, for the width error (``"the global view is q E_mol^T"``).

    Raises:
        ValueError: the encoder's ``output_dim`` differs from ``query_dim``.
        TypeError: the node is not a drug encoder; the message is the one
            ``medtoolkit validate`` gives (see :func:`slot_mismatch`). Raised in a
            parent's constructor, :meth:`Node.build` adds the parent's config path.
        medtoolkit.config.ConfigValidationError: the name is unknown or its params are invalid.
        ComponentBuildError: the encoder's constructor failed.
    """
    from medtoolkit.components.base import DrugEncoder

    if node._component is None:
        node.resolve("encoder", host)
    component = node.component
    problem = _consumes_mismatch("encoder", DRUG_INPUTS, component)
    if problem is not None:  # again, with the encoders that fit
        problem = _consumes_mismatch("encoder", DRUG_INPUTS, component, host if host is not None else _default_host())
    elif not (isinstance(component, type) and issubclass(component, DrugEncoder)):
        name = getattr(component, "registered_name", None) or component.__name__
        problem = f"encoder {name!r} consumes {component.consumes} but is not a medtoolkit.components.base.DrugEncoder"
    if problem is not None:
        raise TypeError(problem)
    encoder: DrugEncoder = node.build(schema)
    if query_dim is not None and int(encoder.output_dim) != int(query_dim):
        raise ValueError(f"the drug encoder's output_dim ({encoder.output_dim}) must equal the visit encoder's "
                         f"output_dim ({query_dim})" + (f": {use}" if use else ""))
    return encoder


def _default_host() -> Any:
    from medtoolkit.plugins import default_host

    return default_host()


def check_input_vocabularies(vocabularies: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse ``medications`` among the code vocabularies a visit model reads at visit t.

    A visit's medication codes are its prediction target; a model may read earlier visits'
    medications only (``batch.medications`` at visits ``< t``, or the codes shifted by one
    visit). Parameters declare it through the :data:`InputVocabularies` type.

    Args:
        vocabularies: the configured vocabulary names.

    Returns:
        ``vocabularies`` unchanged.

    Raises:
        ValueError: ``medications`` is among them, or a name repeats.
    """
    if "medications" in vocabularies:
        raise ValueError("'medications' cannot be an input vocabulary: a visit's medication codes are its "
                         "target (earlier visits' medications reach a model through its memory)")
    if len(set(vocabularies)) != len(vocabularies):
        raise ValueError(f"vocabularies must be distinct, got {list(vocabularies)}")
    return vocabularies


#: the type of a ``vocabularies`` parameter naming the code vocabularies a visit model reads:
#: ``medications`` and repeats are refused (:func:`check_input_vocabularies`)
InputVocabularies = Annotated[tuple[str, ...], AfterValidator(check_input_vocabularies)]
