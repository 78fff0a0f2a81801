"""Parameter models shared by every component: ``Params`` and child-slot ``Node`` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class ComponentBuildError(ValueError):
    """A component's constructor failed; the message names the node (see :meth:`Node.build`)."""


class Params(BaseModel):
    """Base of every component's nested ``Params``: unknown keys are rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


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

    @classmethod
    def of(cls, component: type, **params: Any) -> "Node":
        """A resolved node for ``component`` (a class with a nested ``Params``)."""
        name = getattr(component, "registered_name", None) or component.__name__
        node = cls(type=name, **params)
        node.bind(component, component.Params(**params))
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


def slot(kind: str, default: str | None = None, description: str | None = None, **default_params: Any) -> Any:
    """Declare a child slot of kind ``kind`` in a ``Params`` model.

    Args:
        kind: the component kind the slot accepts (``"encoder"``, ``"memory"``, ...).
        default: the registered name used when the config leaves the slot out
            (None makes the slot required).
        description: what the slot is for (shown in the config reference).
        **default_params: parameters of the default node.
    """
    extra = {"slot": kind}
    text = description or f"a {kind} node {{type: <registered {kind}>, ...}}"
    if default is None:
        return Field(json_schema_extra=extra, description=text)
    return Field(
        default_factory=lambda: Node(type=default, **default_params), json_schema_extra=extra, description=text
    )


def slot_kind(params_class: type[BaseModel], field_name: str) -> str | None:
    """The kind of a slot field, or None if the field is a plain parameter."""
    info = params_class.model_fields[field_name]
    extra = info.json_schema_extra
    if isinstance(extra, dict):
        kind = extra.get("slot")
        return str(kind) if kind is not None else None
    return None
